"""Snakemake entry point: save the base model's tokenizer (with its chat template)."""

from vault_distill.models import load_tokenizer
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
tokenizer = load_tokenizer(snakemake.params.base_model)
if not tokenizer.chat_template:
    raise SystemExit(f"base_model: {snakemake.params.base_model} has no chat template")
tokenizer.save_pretrained(snakemake.output[0])
log.info("saved %s tokenizer (eos=%r)", type(tokenizer).__name__, tokenizer.eos_token)
