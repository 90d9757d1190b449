"""Snakemake entry point: an Ollama Modelfile FROM the shared base GGUF with the task's LoRA GGUF
as its ADAPTER, and the TEMPLATE, stops and parameters of the merged model's Modelfile."""

import os
from pathlib import Path

from vault_distill.modelfile import ollama_template, render_modelfile
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402 - after logging, so its warnings land in the log

here = Path(snakemake.output[0]).parent
template = ollama_template(AutoTokenizer.from_pretrained(snakemake.input.tokenizer))
text = render_modelfile(
    gguf_file=os.path.relpath(snakemake.input.base_gguf, here),
    template=template,
    system_prompt=Path(snakemake.input.system_prompt).read_text(encoding="utf-8").strip(),
    num_ctx=snakemake.params.num_ctx,
    decoding=snakemake.params.decoding,
    adapter_file=os.path.relpath(snakemake.input.lora, here),
)
Path(snakemake.output[0]).write_text(text, encoding="utf-8")
log.info("adapter Modelfile for %s: %s template, stops %s", snakemake.wildcards.task, template.family, template.stops)
