"""Snakemake entry point: check a task's settings against the tokenizer before any teacher call."""

import json
from pathlib import Path

from vault_distill.preflight import PreflightError, check_max_length
from vault_distill.runtime import setup_logging, write_json

log = setup_logging(snakemake.log[0])
from transformers import AutoTokenizer  # noqa: E402 - after logging, so its warnings land in the log

tokenizer = AutoTokenizer.from_pretrained(snakemake.input.tokenizer)
try:
    checked = check_max_length(
        tokenizer,
        task=snakemake.wildcards.task,
        system=Path(snakemake.input.system_prompt).read_text(encoding="utf-8").strip(),
        header=snakemake.params.header,
        schema=json.loads(Path(snakemake.input.output_schema).read_text(encoding="utf-8")),
        max_length=snakemake.params.max_length,
    )
except PreflightError as err:
    raise SystemExit(str(err)) from None
write_json(snakemake.output[0], checked)
log.info("preflight %s: %s", snakemake.wildcards.task, checked)
