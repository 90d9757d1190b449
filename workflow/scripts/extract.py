"""Snakemake entry point: notes -> results/{task}/inputs.jsonl and its extract stats."""

from pathlib import Path

from vault_distill.extract import ambiguous_link_lines, extract_task_inputs, too_few_inputs
from vault_distill.runtime import setup_logging, write_json, write_jsonl

log = setup_logging(snakemake.log[0])
params = snakemake.params
result = extract_task_inputs(Path(params.vault), params.header, params.select)
for path, reasons in sorted(result.repaired.items()):
    log.warning("repaired %s: %s", path, "; ".join(reasons))
for path, reason in sorted(result.skipped.items()):
    log.warning("skipped %s: %s", path, reason)
for line in ambiguous_link_lines(result.ambiguous_links):
    log.warning("%s", line)
shortfall = too_few_inputs(result, Path(params.vault), params.select, needed=1)
if shortfall:
    # quality_holdout_extract names its own selector's key.
    select_key = params.get("select_key", "tasks.{task}.select").format(task=snakemake.wildcards.task)
    raise SystemExit(f"{select_key}: {shortfall}")
write_jsonl(snakemake.output.inputs, result.records)
stats = result.stats()
write_json(snakemake.output.stats, stats)
log.info(
    "%d inputs written; repaired by reason: %s; skipped by reason: %s; ambiguous links: %d",
    stats["inputs"],
    stats["repaired"],
    stats["skipped"],
    stats["ambiguous_links"],
)
