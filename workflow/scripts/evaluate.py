"""Snakemake entry point: base and tuned GGUF answer the held-out inputs; both are scored."""

import json
import sys
from pathlib import Path

from tqdm import tqdm

from vault_distill.evaluate import ServedModel, evaluate_task, render_samples, tuned_model
from vault_distill.runtime import read_jsonl, setup_logging, write_json

log = setup_logging(snakemake.log[0])
task = snakemake.wildcards.task


def progress(model, total):
    return tqdm(total=total, desc=f"{task} {model}", unit="answer", file=sys.stderr, mininterval=1.0)


# Each arm the rule was given: base and merged are whole GGUFs, the LoRA arms run on the base one.
given = list(snakemake.input.keys())  # a Namedlist: `in` would search its values
served = {model: ServedModel(snakemake.input[model]) for model in ("base", "tuned") if model in given}
for lora_arm in ("tuned_adapter", "sft"):
    if lora_arm in given:
        served[lora_arm] = ServedModel(snakemake.input.base, snakemake.input[lora_arm])
evaluation = evaluate_task(
    task,
    val_rows=read_jsonl(snakemake.input.val),
    val_file=snakemake.input.val,
    schema=json.loads(Path(snakemake.input.output_schema).read_text(encoding="utf-8")),
    ggufs=served,
    decoding=snakemake.params.decoding,
    n_ctx=snakemake.params.n_ctx,
    threads=snakemake.threads,
    progress_factory=progress,
)
write_json(snakemake.output.evaluation, evaluation)
Path(snakemake.output.samples).write_text(render_samples(evaluation, snakemake.params.samples), encoding="utf-8")
base, tuned = evaluation["models"]["base"], evaluation["models"][tuned_model(evaluation["models"])]
log.warning(
    "evaluate %s: format compliance base %d/%d -> tuned %d/%d (tuned ran to max_tokens %d times)",
    task,
    base["compliant"],
    base["answers"],
    tuned["compliant"],
    tuned["answers"],
    tuned["ran_to_max_tokens"],
)
