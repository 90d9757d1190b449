"""Snakemake entry point: one task's SFT data -> a LoRA adapter on the shared HQQ base."""

from pathlib import Path

from vault_distill.config import training_settings
from vault_distill.runtime import read_jsonl, setup_logging, write_json
from vault_distill.train import MEMORY_TRADE_KEYS, train_adapter, write_log_history

log = setup_logging(snakemake.log[0])
task = snakemake.wildcards.task
# The memory trades and checkpoint cadence trade memory or time for the same adapter, so they
# are not among the rule's params (its rerun trigger) and come from the config.
checkpoints = snakemake.config["checkpoints"]
settings = training_settings(snakemake.config, task)
memory_trades = {key: settings[key] for key in MEMORY_TRADE_KEYS}
result = train_adapter(
    train_rows=read_jsonl(snakemake.input.train),
    val_rows=read_jsonl(snakemake.input.val),
    quant_dir=snakemake.input.quantized,
    tokenizer_dir=snakemake.input.tokenizer,
    adapter_dir=snakemake.output.adapter,
    settings={**snakemake.params.training, **memory_trades},
    checkpoint_root=Path(checkpoints["dir"]) / task,
    checkpoint_every=checkpoints["every_steps"],
    checkpoint_minutes=checkpoints["every_minutes"],
    train_file=snakemake.input.train,
    threads=snakemake.threads,
)
write_json(snakemake.output.metrics, result.metrics)
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
