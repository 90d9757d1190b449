"""Snakemake entry point: notes -> results/{task}/inputs.jsonl."""

from pathlib import Path

from vault_distill.extract import extract_task_inputs
from vault_distill.runtime import setup_logging, write_jsonl

log = setup_logging(snakemake.log[0])
params = snakemake.params
result = extract_task_inputs(Path(params.vault), params.header, params.select)
for path, reason in sorted(result.skipped.items()):
    log.warning("skipped %s: %s", path, reason)
if not result.records:
    raise SystemExit(f"tasks.{snakemake.wildcards.task}.select: no usable notes selected in {params.vault}")
write_jsonl(snakemake.output[0], result.records)
log.info("%d inputs written, %d notes skipped", len(result.records), len(result.skipped))
