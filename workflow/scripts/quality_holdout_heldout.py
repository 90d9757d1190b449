"""Snakemake entry point: every input extracted from the holdout vault is held out (no model ever
trained on one), up to quality.max_inputs in the split's hash order, as chats cut to max_length."""

from pathlib import Path

from vault_distill.quality import build_heldout
from vault_distill.runtime import read_jsonl, setup_logging, write_jsonl

log = setup_logging(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402 - after logging, so its warnings land in the log

heldout, unseen = build_heldout(
    inputs=read_jsonl(snakemake.input.inputs),
    train=[],
    val=[],
    system=Path(snakemake.input.system_prompt).read_text(encoding="utf-8").strip(),
    tokenizer=AutoTokenizer.from_pretrained(snakemake.input.tokenizer),
    max_length=snakemake.params.max_length,
    max_inputs=snakemake.params.max_inputs,
)
write_jsonl(snakemake.output.heldout, heldout)
write_jsonl(snakemake.output.unseen_inputs, unseen)
log.warning("quality_holdout_heldout %s: %d held-out inputs", snakemake.wildcards.task, len(heldout))
