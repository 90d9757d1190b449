"""Snakemake entry point: the task's held-out inputs for the quality benchmark (the val split,
then every extracted input that no split used), as chats cut to fit max_length."""

from pathlib import Path

from vault_distill.quality import build_heldout
from vault_distill.runtime import read_jsonl, setup_logging, write_jsonl

log = setup_logging(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402 - after logging, so its warnings land in the log

heldout, unseen = build_heldout(
    inputs=read_jsonl(snakemake.input.inputs),
    # quality_holdout_heldout has no split: every input of the holdout vault is held out.
    train=read_jsonl(snakemake.input.train) if snakemake.input.get("train") else [],
    val=read_jsonl(snakemake.input.val) if snakemake.input.get("val") else [],
    system=Path(snakemake.input.system_prompt).read_text(encoding="utf-8").strip(),
    tokenizer=AutoTokenizer.from_pretrained(snakemake.input.tokenizer),
    max_length=snakemake.params.max_length,
    max_inputs=snakemake.params.max_inputs,
)
write_jsonl(snakemake.output.heldout, heldout)
write_jsonl(snakemake.output.unseen_inputs, unseen)
log.warning(
    "quality_heldout %s: %d held-out inputs (%d from the val split, %d unseen)",
    snakemake.wildcards.task,
    len(heldout),
    len(heldout) - len(unseen),
    len(unseen),
)
