"""Snakemake entry point (target `serve`): every task from one llama.cpp process, behind an
OpenAI-compatible API, until stopped."""

from pathlib import Path

from vault_distill.runtime import setup_logging
from vault_distill.serve import read_formats, serve

setup_logging(snakemake.log[0])
tasks = list(snakemake.params.tasks)
serve(
    base_gguf=snakemake.input.base_gguf,
    loras=dict(zip(tasks, snakemake.input.loras, strict=True)),
    system_prompts={
        task: Path(path).read_text(encoding="utf-8").strip()
        for task, path in zip(tasks, snakemake.input.system_prompts, strict=True)
    },
    n_ctx=snakemake.params.n_ctx,
    threads=snakemake.threads,
    host=snakemake.params.host,
    port=snakemake.params.port,
    repeat_last_n=snakemake.params.repeat_last_n,
    schemas=read_formats(tasks, snakemake.input.formats) if snakemake.params.enforce_schema else None,
)
