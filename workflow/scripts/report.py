"""Snakemake entry point: every task's results -> results/report.md, its tables and plots."""

from vault_distill.report import build_report
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
tasks = list(snakemake.params.tasks)
results = build_report(
    tasks,
    base_model=snakemake.params.base_model,
    gguf_type=snakemake.params.gguf_type,
    report_md=snakemake.output.report,
    tables_html=snakemake.output.tables,
    compliance_png=snakemake.output.compliance,
    loss_pngs=dict(zip(tasks, snakemake.output.loss, strict=True)),
    meaningful_examples=snakemake.params.meaningful_examples,
    deploy=snakemake.params.deploy,
    preference=snakemake.params.preference,
)
for result in results:
    base, tuned = result.compliance("base"), result.compliance(result.tuned)
    log.warning(
        "report %s: format compliance base %d/%d -> tuned %d/%d",
        result.task,
        base["compliant"],
        base["answers"],
        tuned["compliant"],
        tuned["answers"],
    )
    if result.too_few_examples:
        log.warning("report %s: only %d SFT examples: its figures are not meaningful", result.task, result.sft_examples)
