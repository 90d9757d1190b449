"""Snakemake entry point: results/quality/{task}/gold.jsonl, the held-out inputs' gold values."""

from vault_distill.gold import write_gold_labels
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
labels = write_gold_labels(
    snakemake.wildcards.task,
    snakemake.input.heldout,
    snakemake.input.inputs,
    snakemake.params.vault,
    snakemake.output[0],
)
counts = {}
for row in labels:
    for field in row["gold"]:
        counts[field] = counts.get(field, 0) + 1
log.warning(
    "gold %s: %d held-out inputs, with a gold value: %s", snakemake.wildcards.task, len(labels), counts or "none"
)
