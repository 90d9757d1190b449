"""Snakemake entry point: the SFT model's answers to its training inputs -> preference pairs."""

import json
from pathlib import Path

from vault_distill.convert import convert_adapter_to_gguf
from vault_distill.prefer import answer_training_inputs, pairs_summary, preference_pairs
from vault_distill.runtime import read_jsonl, setup_logging, write_json, write_jsonl

log = setup_logging(snakemake.log[0])
train_rows = read_jsonl(snakemake.input.train)
convert_adapter_to_gguf(snakemake.input.adapter, snakemake.input.base, snakemake.output.lora, snakemake.log[0])
answers = answer_training_inputs(
    snakemake.input.base_gguf,
    snakemake.output.lora,
    train_rows,
    decoding=snakemake.params.decoding,
    n_ctx=snakemake.params.n_ctx,
    threads=snakemake.threads,
)
pairs = preference_pairs(
    train_rows, answers, json.loads(Path(snakemake.input.output_schema).read_text(encoding="utf-8"))
)
summary = pairs_summary(train_rows, pairs)
write_json(snakemake.output.answers, {**summary, "decoding": snakemake.params.decoding, "answers": answers})
write_jsonl(snakemake.output.pairs, pairs)
log.warning("prefer_pairs %s: %d of %d training answers fail: %s", snakemake.wildcards.task,
            summary["failing"], summary["training_inputs"], summary["outcomes"])  # fmt: skip
