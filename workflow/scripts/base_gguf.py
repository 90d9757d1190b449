"""Snakemake entry point: the base model -> GGUF of the same type as the tuned ones, checked,
so that evaluation compares base and tuned models served the same way."""

import json
from pathlib import Path

from vault_distill.gguf import check_as_dict, check_base_gguf, convert_to_gguf
from vault_distill.hardware import set_threads
from vault_distill.runtime import setup_logging, write_json

log = setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
out = Path(snakemake.output.gguf)
convert_to_gguf(snakemake.input.model, out, snakemake.params.outtype, snakemake.log[0])
try:
    check = check_base_gguf(out, snakemake.input.model, snakemake.params.check_tokens, snakemake.threads)
except Exception:
    out.unlink(missing_ok=True)  # a file that failed its check must not look finished
    raise
write_json(snakemake.output.check, check_as_dict(check))
log.info("check: %s", json.dumps(check_as_dict(check)))
log.warning(
    "base gguf %s: %.0f MB, greedy agrees on %d/%d tokens (%d near-tie flips)",
    out.name,
    out.stat().st_size / 2**20,
    check.agreed_tokens,
    check.compared_tokens,
    check.near_tie_flips,
)
