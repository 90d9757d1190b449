"""Snakemake entry point: an Ollama Modelfile whose TEMPLATE is the base model's own chat
template, translated to Go text/template (and tested byte for byte against it)."""

from pathlib import Path

from vault_distill.modelfile import ollama_template, render_modelfile
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402 - after logging, so its warnings land in the log

template = ollama_template(AutoTokenizer.from_pretrained(snakemake.input.tokenizer))
text = render_modelfile(
    gguf_file=Path(snakemake.input.gguf).name,
    template=template,
    system_prompt=Path(snakemake.input.system_prompt).read_text(encoding="utf-8").strip(),
    num_ctx=snakemake.params.num_ctx,
    decoding=snakemake.params.decoding,
)
Path(snakemake.output[0]).write_text(text, encoding="utf-8")
log.info("Modelfile for %s: %s template, stops %s", snakemake.wildcards.task, template.family, template.stops)
