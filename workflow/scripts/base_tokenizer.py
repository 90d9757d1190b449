"""Snakemake entry point: save the base model's tokenizer (with its chat template)."""

from vault_distill.modelfile import UnsupportedTemplate, ollama_template
from vault_distill.models import folder_digest, load_tokenizer
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
# The rule's rerun trigger is the tokenizer's fingerprint (params), not the model's name: a
# base model with the same tokenizer must keep every SFT set. So the name comes from the config.
base_model = snakemake.config["base_model"]
tokenizer = load_tokenizer(base_model)
if not tokenizer.chat_template:
    raise SystemExit(f"base_model: {base_model} has no chat template")
# Every task ends in an Ollama Modelfile written from this template: a family that cannot be
# written must stop the run here, before any teacher is paid or any model trained.
try:
    template = ollama_template(tokenizer)
except UnsupportedTemplate as err:
    raise SystemExit(f"{err} [base_model is {base_model}]") from None
log.info("chat template: %s, stops %s", template.family, template.stops)
tokenizer.save_pretrained(snakemake.output[0])
if folder_digest(snakemake.output[0]) != snakemake.params.fingerprint:
    raise SystemExit(
        f"base_model: the tokenizer of {base_model} is not the one fingerprinted when the DAG was built "
        "(its files changed since): run the workflow again"
    )
log.info("saved %s tokenizer (eos=%r)", type(tokenizer).__name__, tokenizer.eos_token)
