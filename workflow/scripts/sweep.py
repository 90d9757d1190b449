"""Snakemake entry point: every sweep variant scored -> sweep.json, sweep.md and sweep.png."""

from pathlib import Path

from vault_distill.runtime import setup_logging, write_json
from vault_distill.sweep import build_sweep, plot_sweep, render_sweep_markdown

log = setup_logging(snakemake.log[0])
params = snakemake.params
answers = {task: dict(files) for task, files in params.answers.items()}
sweep = build_sweep(dict(params.schemas), dict(params.variants), params.teacher_labels, answers=answers)
write_json(snakemake.output.json, sweep)
Path(snakemake.output.markdown).write_text(render_sweep_markdown(sweep), encoding="utf-8")
plot_sweep(sweep, snakemake.output.plot)
for task, result in sweep["tasks"].items():
    for group in result["summary"]:
        log.warning("sweep %s %s: compliant %s of %d", task, group["settings"], group["compliant"], group["n"])
