"""Snakemake entry point: the base model -> one HQQ-quantized copy shared by every task."""

from vault_distill.hardware import resolve_device, resolve_dtype, set_threads
from vault_distill.quantize import quantize_base
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
device = resolve_device(snakemake.params.device)
settings = snakemake.params.quantization
info = quantize_base(
    snakemake.input[0],
    snakemake.output[0],
    nbits=settings["nbits"],
    group_size=settings["group_size"],
    optimize=settings["optimize"],
    device=device,
    dtype=resolve_dtype(snakemake.params.dtype, device),
)
log.warning("quantize: %d layers to %d-bit in %.1f s", info["quantized_layers"], info["nbits"], info["seconds"])
