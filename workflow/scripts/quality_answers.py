"""Snakemake entry point: one GGUF answers every held-out input, once per arm (prompted only,
and constrained to the task's schema), decoded as the Modelfile says."""

import json
import sys
from pathlib import Path

from tqdm import tqdm

from vault_distill.quality import answer_arms
from vault_distill.runtime import read_jsonl, setup_logging, write_json

log = setup_logging(snakemake.log[0])
task = snakemake.wildcards.task


def progress(arm, total):
    return tqdm(total=total, desc=f"{task} {arm}", unit="answer", file=sys.stderr, mininterval=1.0)


records = answer_arms(
    gguf_file=snakemake.input.gguf,
    heldout=read_jsonl(snakemake.input.heldout),
    schema=json.loads(Path(snakemake.input.output_schema).read_text(encoding="utf-8")),
    arms=tuple(snakemake.params.arms),
    decoding=snakemake.params.decoding,
    n_ctx=snakemake.params.n_ctx,
    threads=snakemake.threads,
    progress_factory=progress,
    lora_file=snakemake.input.get("lora"),
)
for arm, record in records.items():
    write_json(snakemake.output[arm], record)
    log.warning("quality %s %s: %d answers", task, arm, len(record["answers"]))
