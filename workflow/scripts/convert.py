"""Snakemake entry point: merged model -> GGUF via llama.cpp's converter, then checked."""

from vault_distill.convert import convert_and_check
from vault_distill.gguf_check import check_task_gguf
from vault_distill.hardware import set_threads
from vault_distill.runtime import read_jsonl, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
examples, held_out = read_jsonl(snakemake.input.examples), read_jsonl(snakemake.input.val)
if not held_out:  # fail before the conversion, not after it
    raise SystemExit(f"{snakemake.input.val} is empty: the GGUF check needs one held-out prompt (val_fraction > 0)")
convert_and_check(
    snakemake.input.merged,
    snakemake.output.gguf,
    snakemake.params.outtype,
    snakemake.output.check,
    snakemake.log[0],
    lambda gguf: check_task_gguf(
        gguf, snakemake.input.merged, examples, held_out, snakemake.params.check_tokens, snakemake.threads
    ),
)
