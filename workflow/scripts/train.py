"""Snakemake entry point: one task's SFT data -> a LoRA adapter on the shared HQQ base."""

# Before TRL is imported: it imports Trackio, which reads TRACKIO_DIR only then.
from vault_distill.track import tracked_training, use_trackio_dir

use_trackio_dir()

from pathlib import Path  # noqa: E402

from vault_distill.config import training_settings  # noqa: E402
from vault_distill.layout import runs_dir  # noqa: E402
from vault_distill.runtime import read_jsonl, setup_logging, write_json  # noqa: E402
from vault_distill.train import RUN_KEYS, train_adapter, write_log_history  # noqa: E402

log = setup_logging(snakemake.log[0])
task = snakemake.wildcards.task
# A sweep variant (rule sweep_train) keeps its checkpoints and its tracked run apart from the task's own.
variant = snakemake.wildcards.get("variant")
run_name = f"{task}/{variant}" if variant else task
# The memory trades, the tracking and the checkpoint cadence change only how the same adapter is
# trained, so they are not among the rule's params (its rerun trigger) and come from the config.
checkpoints = snakemake.config["checkpoints"]
configured = training_settings(snakemake.config, task)
settings = {**snakemake.params.training, **{key: configured[key] for key in RUN_KEYS}}
tracked = {"task": task, "training": snakemake.params.training, "quantization": snakemake.config["quantization"]}
with tracked_training(settings["report_to"], run_name, runs_dir(task), settings["experiment"], tracked) as tracking:
    result = train_adapter(
        train_rows=read_jsonl(snakemake.input.train),
        val_rows=read_jsonl(snakemake.input.val),
        quant_dir=snakemake.input.quantized,
        tokenizer_dir=snakemake.input.tokenizer,
        adapter_dir=snakemake.output.adapter,
        settings={**settings, "run_name": run_name},
        checkpoint_root=Path(checkpoints["dir"]) / task / (variant or ""),
        checkpoint_every=checkpoints["every_steps"],
        checkpoint_minutes=checkpoints["every_minutes"],
        train_file=snakemake.input.train,
        threads=snakemake.threads,
    )
write_json(snakemake.output.metrics, {**result.metrics, "tracking": tracking.reference() if tracking else None})
write_log_history(snakemake.output.history, result.log_history)
m = result.metrics
log.warning(
    "train %s: %d steps, loss %.3f, eval loss %s, %.0f tok/s, %.0f s on %s/%s",
    task,
    m["steps"],
    m["final_train_loss"],
    f"{m['eval_loss']:.3f}" if m["eval_loss"] is not None else "n/a",
    m["tokens_per_s"],
    m["wall_time_s"],
    m["device"],
    m["dtype"],
)
