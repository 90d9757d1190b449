"""Snakemake entry point: teacher answers -> TRL prompt/completion train/val sets."""

from vault_distill.runtime import read_jsonl, setup_logging, write_json, write_jsonl
from vault_distill.split import build_sft_dataset, why_nothing_to_train

log = setup_logging(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402 - after logging, so its warnings land in the log

tokenizer = AutoTokenizer.from_pretrained(snakemake.input.tokenizer)
train, val, stats = build_sft_dataset(
    read_jsonl(snakemake.input.examples),
    tokenizer,
    max_length=snakemake.params.max_length,
    val_fraction=snakemake.params.val_fraction,
)
task = snakemake.wildcards.task
nothing_to_train = why_nothing_to_train(task, stats)
if nothing_to_train:
    raise SystemExit(nothing_to_train)
write_jsonl(snakemake.output.train, train)
write_jsonl(snakemake.output.val, val)
write_json(snakemake.output.stats, stats)
log.info("stats: %s", stats)
log.warning(
    "sft %s: train=%d val=%d truncated=%d dropped=%d",
    task,
    stats["train"],
    stats["val"],
    stats["truncated"],
    stats["dropped"],
)
