"""Snakemake entry point: merged model -> GGUF via llama.cpp's converter, then checked."""

import json
from pathlib import Path

from vault_distill.gguf import check_as_dict, check_gguf, convert_to_gguf
from vault_distill.hardware import set_threads
from vault_distill.runtime import read_jsonl, setup_logging, write_json

log = setup_logging(snakemake.log[0])
set_threads(snakemake.threads)
out = Path(snakemake.output.gguf)
convert_to_gguf(snakemake.input.merged, out, snakemake.params.outtype, snakemake.log[0])

held_out = read_jsonl(snakemake.input.val)
if not held_out:
    raise SystemExit(f"{snakemake.input.val} is empty: the GGUF check needs one held-out prompt (val_fraction > 0)")
messages_by_id = {ex["id"]: ex["messages"] for ex in read_jsonl(snakemake.input.examples)}
messages = messages_by_id[held_out[0]["id"]]
system, user, answer = (m["content"] for m in messages)
conversations = [
    [{"role": "system", "content": system}, {"role": "user", "content": user}],
    [{"role": "user", "content": user}],
    [
        {"role": "system", "content": system},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Again, for the same note."},
    ],
]
try:
    check = check_gguf(
        out,
        snakemake.input.merged,
        conversations,
        prompt=held_out[0]["prompt"],
        n_tokens=snakemake.params.check_tokens,
        threads=snakemake.threads,
    )
except Exception:
    out.unlink(missing_ok=True)  # a file that failed its check must not look finished
    raise
write_json(snakemake.output.check, check_as_dict(check))
log.info("check: %s", json.dumps(check_as_dict(check)))
log.warning(
    "gguf %s: %.0f MB, template ok for %d conversations, greedy agrees on %d/%d tokens (%d near-tie flips)",
    out.name,
    out.stat().st_size / 2**20,
    check.template_prompts_equal,
    check.agreed_tokens,
    check.compared_tokens,
    check.near_tie_flips,
)
