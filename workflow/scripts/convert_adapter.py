"""Snakemake entry point: the task's PEFT adapter -> a llama.cpp LoRA GGUF for the base GGUF,
then checked as strictly as the merged GGUF: base GGUF + LoRA against base + adapter merged."""

from pathlib import Path

from vault_distill.convert import convert_adapter_to_gguf, record_check
from vault_distill.gguf_check import check_task_lora
from vault_distill.hardware import set_threads
from vault_distill.runtime import read_jsonl, setup_logging

setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
examples, held_out = read_jsonl(snakemake.input.examples), read_jsonl(snakemake.input.val)
if not held_out:  # fail before the conversion, not after it
    raise SystemExit(f"{snakemake.input.val} is empty: the GGUF check needs one held-out prompt (val_fraction > 0)")
convert_adapter_to_gguf(snakemake.input.adapter, snakemake.input.base, snakemake.output.gguf, snakemake.log[0])
record_check(
    Path(snakemake.output.gguf),
    snakemake.output.check,
    lambda lora: check_task_lora(
        lora,
        (snakemake.input.base_gguf, snakemake.input.base),
        snakemake.input.adapter,
        (examples, held_out),
        snakemake.params.check_tokens,
        snakemake.threads,
        snakemake.input.get("merged_gguf"),
    ),
)
