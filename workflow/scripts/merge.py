"""Snakemake entry point: adapter + bf16 base -> merged HF model with no HQQ tensors."""

from vault_distill.hardware import resolve_device, set_threads
from vault_distill.merge import merge_adapter
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
# Merge on the GPU the job was given (training.device is not cpu), if torch sees one.
device = resolve_device("auto") if snakemake.resources.get("gpu", 0) else "cpu"
merge_adapter(snakemake.input.base, snakemake.input.adapter, snakemake.output[0], device=device)
