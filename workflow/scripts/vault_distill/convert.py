"""Stage 6: convert the merged model (or the adapter) to GGUF with llama.cpp's own converter, and
keep the file only if it passes the GGUF check (gguf_check.py).

The converter is `convert_hf_to_gguf.py` from the llama.cpp that the installed
llama-cpp-python was built from (envs/setup.sh unpacks it, with its own gguf-py, into
<venv>/share/llama.cpp), so the file format always matches the runtime that loads it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .gguf_check import GgufCheck, check_as_dict
from .layout import LORA_OUTTYPE
from .runtime import write_json

log = logging.getLogger(__name__)

# Where envs/setup.sh puts the converter; VAULT_DISTILL_CONVERTER points elsewhere.
CONVERTER_DIR = Path(sys.prefix) / "share" / "llama.cpp"


class ConversionError(RuntimeError):
    """The converter failed; the message carries its last lines."""


def converter_dir() -> Path:
    return Path(os.environ.get("VAULT_DISTILL_CONVERTER", CONVERTER_DIR))


def run_converter(name: str, args: list[str], out_file: str | Path, log_file: str | Path) -> None:
    """Run one of llama.cpp's converters (`name` in converter_dir()), its output in the log."""
    where = converter_dir()
    script = where / name
    if not script.is_file():
        raise ConversionError(f"llama.cpp converter not found at {script}; run `make setup`")
    env = dict(os.environ)
    # The converter's own gguf-py goes first: it must match the converter, not the gguf
    # package that transformers uses for reading GGUF files.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(where / "gguf-py"), env.get("PYTHONPATH")]))
    argv = [sys.executable, str(script), *args, "--outfile", str(out_file)]
    with open(log_file, "a", encoding="utf-8") as handle:
        handle.write("$ " + " ".join(argv) + "\n")
        handle.flush()
        done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False)
    if done.returncode != 0:
        tail = Path(log_file).read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        hint = ""
        if any("BPE pre-tokenizer was not recognized" in line for line in tail):
            hint = (
                " The base model's tokenizer is unknown to this llama.cpp version, so it cannot be converted"
                " faithfully; use a base model that llama.cpp supports."
            )
        Path(out_file).unlink(missing_ok=True)
        raise ConversionError(f"{name} exited {done.returncode}.{hint}\n" + "\n".join(tail))


def convert_to_gguf(model_dir: str | Path, out_file: str | Path, outtype: str, log_file: str | Path) -> None:
    run_converter("convert_hf_to_gguf.py", [str(model_dir), "--outtype", outtype], out_file, log_file)


def convert_and_check(
    model_dir: str | Path,
    out_file: str | Path,
    outtype: str,
    check_file: str | Path,
    log_file: str | Path,
    run_check: Callable[[Path], GgufCheck],
) -> GgufCheck:
    """Convert, check, and record the check (see record_check)."""
    convert_to_gguf(model_dir, out_file, outtype, log_file)
    return record_check(Path(out_file), check_file, run_check)


def record_check(out: Path, check_file: str | Path, run_check: Callable[[Path], GgufCheck]) -> GgufCheck:
    """Check a converted file and record the check. A file that fails its check is deleted, so
    that it never looks finished to Snakemake or to a user."""
    try:
        check = run_check(out)
    except Exception:
        out.unlink(missing_ok=True)
        raise
    record = check_as_dict(check)
    write_json(check_file, record)
    log.info("check: %s", json.dumps(record))
    log.warning(
        "gguf %s: %.0f MB, template ok for %d conversations, greedy agrees on %d/%d tokens (%d near-tie flips)",
        out.name,
        out.stat().st_size / 2**20,
        check.template_prompts_equal,
        check.agreed_tokens,
        check.compared_tokens,
        check.near_tie_flips,
    )
    return check


# Tensor names in a PEFT adapter that convert_lora_to_gguf.py turns into a llama.cpp LoRA.
LORA_TENSOR = ("lora_A.weight", "lora_B.weight")


class AdapterNotServable(ValueError):
    """The PEFT adapter carries weights that a llama.cpp LoRA adapter cannot."""


def check_servable_adapter(adapter_dir: str | Path) -> None:
    """Only lora_A/lora_B pairs become a GGUF adapter. The train stage trains the end-of-turn
    token's embedding row when the base never learned it (train_metrics.json,
    end_of_turn_row_trained): that row lives only in the merged model."""
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as weights:
        other = [name for name in weights.keys() if not name.endswith(LORA_TENSOR)]  # noqa: SIM118
    if other:
        raise AdapterNotServable(
            f"{adapter_dir}: the adapter carries {len(other)} tensor(s) that are not LoRA pairs (e.g. {other[0]}), "
            "which a llama.cpp LoRA GGUF cannot: the end-of-turn embedding row trained for a base that never "
            "learned it (train_metrics.json: end_of_turn_row_trained). Serve this base with gguf.deploy: merged"
        )


def convert_adapter_to_gguf(
    adapter_dir: str | Path, base_dir: str | Path, out_file: str | Path, log_file: str | Path
) -> None:
    """The task's PEFT adapter as a llama.cpp LoRA GGUF, with llama.cpp's own converter; the base
    folder gives the architecture (its config only: no weights are read)."""
    check_servable_adapter(adapter_dir)
    args = ["--base", str(base_dir), "--outtype", LORA_OUTTYPE, str(adapter_dir)]
    run_converter("convert_lora_to_gguf.py", args, out_file, log_file)
