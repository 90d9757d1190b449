"""Snakemake entry point: the task's evaluation figures added to its tracked training run."""

import json
from pathlib import Path

from vault_distill.layout import runs_dir
from vault_distill.runtime import setup_logging, write_json
from vault_distill.track import evaluation_figures, log_evaluation, read_history

log = setup_logging(snakemake.log[0])
task = snakemake.wildcards.task
trained = json.loads(Path(snakemake.input.metrics).read_text(encoding="utf-8")).get("tracking")
evaluation = json.loads(Path(snakemake.input.evaluation).read_text(encoding="utf-8"))
params = snakemake.params
reference = log_evaluation(
    report_to=params.report_to,
    task=task,
    trained=trained,
    history=read_history(snakemake.input.history),
    figures=evaluation_figures(evaluation),
    runs_dir=runs_dir(task),
    experiment=params.experiment,
    params={"task": task, "training": dict(params.training), "quantization": dict(params.quantization)},
)
write_json(snakemake.output[0], reference)
log.warning("track %s: %s", task, reference)
