"""Snakemake entry point: results/{task}/MODEL_CARD.md from the task's result files."""

from vault_distill.model_card import write_model_card
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
params = snakemake.params
settings = {
    "task": snakemake.wildcards.task,
    **{
        key: getattr(params, key)
        for key in ("base_model", "vault", "teacher", "teacher_prompt", "meaningful_examples", "model_name", "adapter")
    },
    "select": dict(params.select),
    "training": dict(params.training),
    "quantization": dict(params.quantization),
}
found = write_model_card(snakemake.output[0], dict(snakemake.input.items()), settings)
log.info("model card for %s: license %s", snakemake.wildcards.task, found)
