"""Snakemake entry point: task inputs -> schema-valid teacher answers."""

import json
import sys
from pathlib import Path

from vault_distill.runtime import read_jsonl, setup_logging, write_json, write_jsonl
from vault_distill.teach import run_teacher, teacher_system

log = setup_logging(snakemake.log[0])
system = Path(snakemake.input.system_prompt).read_text(encoding="utf-8").strip()
addition = [Path(path).read_text(encoding="utf-8") for path in snakemake.input.get("teacher_prompt", [])]
run = run_teacher(
    inputs=read_jsonl(snakemake.input.inputs),
    system=system,
    teacher_system=teacher_system(system, addition[0] if addition else None),
    schema=json.loads(Path(snakemake.input.output_schema).read_text(encoding="utf-8")),
    # params hold only what changes an answer or which are kept (the rerun trigger); how it is asked (cache
    # folder, endpoint, timeouts, retries, key variable) comes from the config, so that
    # changing it reruns no teacher.
    settings={**snakemake.config["teacher"], **snakemake.params.teacher, **snakemake.params.acceptance},
    max_examples=snakemake.params.examples,
    threads=snakemake.threads,
    progress_file=sys.stderr,
)
write_jsonl(snakemake.output.examples, run.examples)
write_jsonl(snakemake.output.rejects, run.rejects)
write_json(snakemake.output.stats, run.stats)
summary = " ".join(f"{key}={value}" for key, value in run.stats.items())
log.warning("teacher %s: %s", snakemake.wildcards.task, summary)
