"""Snakemake entry point: preference pairs -> a DPO adapter trained from the SFT adapter."""

# Before TRL is imported: it imports Trackio, which reads TRACKIO_DIR only then.
from vault_distill.track import tracked_training, use_trackio_dir

use_trackio_dir()

from vault_distill.config import training_settings  # noqa: E402
from vault_distill.layout import runs_dir  # noqa: E402
from vault_distill.prefer import train_preference  # noqa: E402
from vault_distill.runtime import read_jsonl, setup_logging, write_json  # noqa: E402

log = setup_logging(snakemake.log[0])
task = snakemake.wildcards.task
# The dequantized-weight cache and the tracking change only how the same adapter is trained: from
# the config, not a rerun trigger.
configured = training_settings(snakemake.config, task)
runs = {key: configured[key] for key in ("cache_dequantized_weights", "report_to", "experiment")}
tracked = {"task": task, "preference": snakemake.params.preference, "training": snakemake.params.training}
with tracked_training(runs["report_to"], f"{task}-dpo", runs_dir(task), runs["experiment"], tracked) as tracking:
    metrics = train_preference(
        pairs=read_jsonl(snakemake.input.pairs),
        quant_dir=snakemake.input.quantized,
        sft_adapter=snakemake.input.adapter,
        tokenizer_dir=snakemake.input.tokenizer,
        adapter_dir=snakemake.output.adapter,
        preference=snakemake.params.preference,
        settings={**snakemake.params.training, **runs, "run_name": f"{task}-dpo"},
        threads=snakemake.threads,
    )
write_json(snakemake.output.metrics, {**metrics, "tracking": tracking.reference() if tracking else None})
log.warning("prefer %s: %s", task, {k: v for k, v in metrics.items() if k != "hardware"})
