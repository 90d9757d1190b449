"""Snakemake entry point: every task's arms scored -> quality.json, quality.md and the plot; for the
holdout vault (rule quality_holdout), with the sample vault's figures beside it."""

import json
from pathlib import Path

from vault_distill.decoding import describe_task_decodings
from vault_distill.layout import tracked_json
from vault_distill.quality import build_quality, plot_quality, render_quality_markdown, render_vault_comparison
from vault_distill.runtime import setup_logging, write_json
from vault_distill.track import append_figures, quality_figures

log = setup_logging(snakemake.log[0])
bench = snakemake.params.get("bench", "quality")
quality = build_quality(
    schemas=snakemake.params.schemas,
    teacher=snakemake.params.teacher,
    base_model=snakemake.params.base_model,
    decoding_line=describe_task_decodings(snakemake.params.decoding),
    teacher_labels=snakemake.params.teacher_labels,
    arms=tuple(snakemake.params.arms),
    enforce_schema=snakemake.params.enforce_schema,
    bench=bench,
)
markdown = render_quality_markdown(quality)
if bench == "holdout":
    quality["vault"] = snakemake.params.vault
    sample = json.loads(Path(snakemake.input.sample).read_text(encoding="utf-8"))
    markdown = render_vault_comparison(sample, quality) + "\n" + markdown
# Where training.report_to tracks a task, its figures join the task's run (the track job's reference).
quality["tracked"] = {}
for task in quality["tasks"]:
    if tracked_json(task) in snakemake.input.get("tracked", []):
        reference = json.loads(Path(tracked_json(task)).read_text(encoding="utf-8"))
        append_figures(reference, quality_figures(quality["tasks"][task], bench), reference.get("step", 0))
        quality["tracked"][task] = reference
write_json(snakemake.output.json, quality)
Path(snakemake.output.markdown).write_text(markdown, encoding="utf-8")
plot_quality(quality, snakemake.output.plot)
for task, arms in quality["tasks"].items():
    log.warning(
        "%s %s: %s",
        bench,
        task,
        ", ".join(f"{arm} {arms[arm]['compliant']}/{arms[arm]['n']}" for arm in quality["arms"])
        + f"; as deployed ({arms['as_deployed']['arm']}) {arms['as_deployed']['compliant']}/{arms['as_deployed']['n']}",
    )
