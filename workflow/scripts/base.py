"""Snakemake entry point: materialize the configured base model as an HF safetensors folder."""

from vault_distill.base import materialize_base
from vault_distill.hardware import set_threads
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
info = materialize_base(snakemake.params.base_model, snakemake.output[0])
log.warning("base %s: %s parameters, %s", info["base_model"], f"{info['parameters']:,}", info["architecture"])
