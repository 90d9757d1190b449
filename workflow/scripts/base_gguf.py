"""Snakemake entry point: the base model -> GGUF of the same type as the tuned ones, checked,
so that evaluation compares base and tuned models served the same way."""

from vault_distill.convert import convert_and_check
from vault_distill.gguf_check import check_base_gguf
from vault_distill.hardware import set_threads
from vault_distill.runtime import setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
convert_and_check(
    snakemake.input.model,
    snakemake.output.gguf,
    snakemake.params.outtype,
    snakemake.output.check,
    snakemake.log[0],
    lambda gguf: check_base_gguf(gguf, snakemake.input.model, snakemake.params.check_tokens, snakemake.threads),
)
