"""Snakemake entry point: the base model -> one 4-bit copy (HQQ or NF4) shared by every task."""

from vault_distill.hardware import resolve_device, resolve_dtype, set_threads
from vault_distill.quantize import quantize_base
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
device = resolve_device(snakemake.params.device)
info = quantize_base(
    snakemake.input[0],
    snakemake.output[0],
    snakemake.params.quantization,
    device=device,
    dtype=resolve_dtype(snakemake.params.dtype, device),
)
log.warning("quantize: %d layers with %s in %.1f s", info["quantized_layers"], info["method"], info["seconds"])
