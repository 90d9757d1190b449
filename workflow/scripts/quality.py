"""Snakemake entry point: every task's arms scored -> quality.json, quality.md and the plot."""

from pathlib import Path

from vault_distill.decoding import describe_task_decodings
from vault_distill.quality import build_quality, plot_quality, render_quality_markdown
from vault_distill.runtime import setup_logging, write_json

log = setup_logging(snakemake.log[0])
quality = build_quality(
    schemas=snakemake.params.schemas,
    teacher=snakemake.params.teacher,
    base_model=snakemake.params.base_model,
    decoding_line=describe_task_decodings(snakemake.params.decoding),
    teacher_labels=snakemake.params.teacher_labels,
    arms=tuple(snakemake.params.arms),
    enforce_schema=snakemake.params.enforce_schema,
)
write_json(snakemake.output.json, quality)
Path(snakemake.output.markdown).write_text(render_quality_markdown(quality), encoding="utf-8")
plot_quality(quality, snakemake.output.plot)
for task, arms in quality["tasks"].items():
    log.warning(
        "quality %s: %s",
        task,
        ", ".join(f"{arm} {arms[arm]['compliant']}/{arms[arm]['n']}" for arm in quality["arms"])
        + f"; as deployed ({arms['as_deployed']['arm']}) {arms['as_deployed']['compliant']}/{arms['as_deployed']['n']}",
    )
