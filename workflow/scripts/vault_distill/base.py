"""Stage base: the configured base model, materialized once as an HF safetensors folder in bf16,
which quantize, merge and base_gguf read."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .models import load_causal_lm, load_tokenizer

log = logging.getLogger(__name__)


def materialize_base(spec: str, out_dir: str | Path) -> dict:
    """Save the configured base model as a plain bf16 safetensors folder with its tokenizer.

    The bundled GGUF is dequantized on load; hub ids and local folders load as they are.
    Every later stage reads this folder, so the model is resolved (and downloaded) once.
    """
    import torch

    started = time.monotonic()
    tokenizer = load_tokenizer(spec)
    if not tokenizer.chat_template:
        raise ValueError(f"base_model: {spec} has no chat template; an instruct/chat model is needed")
    model = load_causal_lm(spec, dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "base_model": spec,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": round(time.monotonic() - started, 1),
    }
    log.info("materialized %s", info)
    return info
