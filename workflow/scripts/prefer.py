"""Snakemake entry point: preference pairs -> a DPO adapter trained from the SFT adapter."""

from vault_distill.config import training_settings
from vault_distill.prefer import train_preference
from vault_distill.runtime import read_jsonl, setup_logging, write_json

log = setup_logging(snakemake.log[0])
metrics = train_preference(
    pairs=read_jsonl(snakemake.input.pairs),
    quant_dir=snakemake.input.quantized,
    sft_adapter=snakemake.input.adapter,
    tokenizer_dir=snakemake.input.tokenizer,
    adapter_dir=snakemake.output.adapter,
    preference=snakemake.params.preference,
    # The dequantized-weight cache trades memory for the same adapter: from the config, not a rerun trigger.
    settings={
        **snakemake.params.training,
        "cache_dequantized_weights": training_settings(snakemake.config, snakemake.wildcards.task)[
            "cache_dequantized_weights"
        ],
    },
    threads=snakemake.threads,
)
write_json(snakemake.output.metrics, metrics)
log.warning("prefer %s: %s", snakemake.wildcards.task, {k: v for k, v in metrics.items() if k != "hardware"})
