"""Snakemake entry point: the holdout vault's arms scored -> results/holdout/quality.json, and
quality.md with the sample vault's figures beside it, and the plot."""

import json
from pathlib import Path

from vault_distill.decoding import describe_task_decodings
from vault_distill.quality import build_quality, plot_quality, render_quality_markdown, render_vault_comparison
from vault_distill.runtime import setup_logging, write_json

log = setup_logging(snakemake.log[0])
holdout = build_quality(
    schemas=snakemake.params.schemas,
    teacher=snakemake.params.teacher,
    base_model=snakemake.params.base_model,
    decoding_line=describe_task_decodings(snakemake.params.decoding),
    teacher_labels=snakemake.params.teacher_labels,
    enforce_schema=snakemake.params.enforce_schema,
    bench="holdout",
)
holdout["vault"] = snakemake.params.vault
sample = json.loads(Path(snakemake.input.sample).read_text(encoding="utf-8"))
write_json(snakemake.output.json, holdout)
markdown = render_vault_comparison(sample, holdout) + "\n" + render_quality_markdown(holdout)
Path(snakemake.output.markdown).write_text(markdown, encoding="utf-8")
plot_quality(holdout, snakemake.output.plot)
for task, arms in holdout["tasks"].items():
    log.warning(
        "holdout %s: %s", task, ", ".join(f"{arm} {arms[arm]['compliant']}/{arms[arm]['n']}" for arm in holdout["arms"])
    )
