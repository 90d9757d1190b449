"""Snakemake entry point: results/{task}/format.json, the task's schema as Ollama's `format`."""

from vault_distill.format import write_answer_format
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
write_answer_format(snakemake.input.schema, snakemake.output[0])
log.info("format for %s: %s", snakemake.wildcards.task, snakemake.input.schema)
