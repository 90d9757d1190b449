"""Snakemake entry point (optional target `ollama`): register a model with `ollama create`."""

import json
import shutil
import subprocess
from pathlib import Path

from vault_distill.format import ollama_chat_request
from vault_distill.runtime import setup_logging

log = setup_logging(snakemake.log[0])
ollama = shutil.which("ollama")
if ollama is None:
    raise SystemExit("the `ollama` target needs the ollama binary on PATH (https://ollama.com/download)")
modelfile = Path(snakemake.input.modelfile)
# FROM ./<file>.gguf is resolved against the Modelfile's folder, so run there.
done = subprocess.run(
    [ollama, "create", snakemake.params.name, "-f", modelfile.name],
    cwd=modelfile.parent,
    capture_output=True,
    text=True,
    check=False,
)
log.info("%s\n%s", done.stdout, done.stderr)
if done.returncode != 0:
    raise SystemExit(f"ollama create {snakemake.params.name} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
answer_format = json.loads(Path(snakemake.input.format).read_text(encoding="utf-8"))
request = ollama_chat_request(snakemake.params.name, answer_format, "<the task's input, as in inputs.jsonl>")
created = {"model": snakemake.params.name, "format": snakemake.input.format, "example_request": request}
Path(snakemake.output[0]).write_text(json.dumps(created, indent=2) + "\n", encoding="utf-8")
log.warning(
    "ollama: created %s; ask it with its format: curl -s http://localhost:11434/api/chat -d '%s'",
    snakemake.params.name,
    json.dumps(request),
)
