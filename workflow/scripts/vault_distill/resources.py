"""What each job asks a scheduler for: memory (MB) and time (minutes), sized from the config
and from the model the job really loads.

Locally these numbers limit nothing unless `--resources` names them; under Slurm the executor
turns them into `sbatch --mem` and `--time`, and a job that outgrows them is killed. So they
are upper bounds with headroom, and they double on each retry (`attempt`).

Sizes come from the files a job reads, once those exist: Snakemake shows such a resource as
<TBD> in a dry run and evaluates it when the job's inputs are there. Calibration, measured on
a 2-core CPU with SmolLM2-135M (bf16 on disk 257 MB; Snakemake benchmark max_rss): base 0.65 GB,
quantize 0.68 GB, train 2.3 GB (batch 2 x 256 tokens), merge 0.69 GB, convert + check 1.3 GB,
teacher 0.4 GB; training ran at 67 tokens/s (TRL, batch 4 x 512).
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

MB = 2**20
# A Python process with torch and transformers imported, before it loads any model (~0.5 GB
# measured), with room for the allocator and the tokenizer.
PROCESS_MB = 1500
# A teacher process without a model in it (an API client, or llama.cpp before it maps a GGUF).
CLIENT_MB = 1000
# Activations and logits of a model whose config.json does not name its shape the usual way.
UNKNOWN_ACTIVATIONS_MB = 8000
# Every job's fixed cost in minutes: starting Python, importing torch, loading files.
STARTUP_MIN = 10
# Base models whose size cannot be known before they are downloaded (an HF hub id that is not
# in the local HF cache) are assumed to be this big in bf16: an 8B model.
UNKNOWN_MODEL_MB = 16000
# TRL QLoRA on 2 CPU cores trained SmolLM2-135M at 67 tokens/s; time per token grows with the
# parameter count. A GPU is assumed to be at least 20x faster (an assumption, not a measurement).
CPU_TOKENS_PER_S_135M = 67.0
GPU_SPEEDUP = 20.0
# Teacher answers stream at no less than this (llama.cpp, SmolLM2 on 2 cores: 60 tokens/s).
TEACHER_TOKENS_PER_S = 20.0
# Headroom on time estimates: schema retries, evaluation passes, a busy node.
HEADROOM = 1.5
# Bundled GGUFs are Q4_1: 4-bit weights plus a 16-bit scale and minimum per 32, 5 bits per weight.
BUNDLED_GGUF_BITS = 5


def folder_mb(path: str | Path) -> float:
    """Size of everything under `path`. A missing path raises FileNotFoundError naming it, which
    Snakemake takes as "not evaluable yet" for a resource that reads a job's input."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(errno.ENOENT, "not built yet", str(path))
    if root.is_file():
        return root.stat().st_size / MB
    return sum(item.stat().st_size for item in root.rglob("*") if item.is_file()) / MB


def _hub_cache_mb(repo_id: str) -> float | None:
    """bf16 size of a hub model from its files in the local HF cache, if they are there."""
    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(repo_id, "model.safetensors.index.json")
    if isinstance(index, str):
        total = json.loads(Path(index).read_text(encoding="utf-8")).get("metadata", {}).get("total_size")
        if total:
            return total / MB
    single = try_to_load_from_cache(repo_id, "model.safetensors")
    return Path(single).stat().st_size / MB if isinstance(single, str) else None


def source_model_mb(base_model: str, bundled_path: Path | None = None) -> float:
    """The configured base model's size in bf16, before it is materialized: from the bundled
    GGUF, a local folder's weight files, or the HF cache; UNKNOWN_MODEL_MB when it is not here."""
    if bundled_path is not None:
        return bundled_path.stat().st_size / MB * 16 / BUNDLED_GGUF_BITS
    local = Path(base_model).expanduser()
    if local.is_dir():
        weights = [item for item in local.rglob("*") if item.suffix in (".safetensors", ".bin", ".pt")]
        return sum(item.stat().st_size for item in weights) / MB
    return _hub_cache_mb(base_model) or UNKNOWN_MODEL_MB


def memory_mb(model_mb: float, copies: float, attempt: int = 1, extra_mb: float = 0.0) -> int:
    """A model job's memory: the process, `copies` of the model in memory at once, and extra."""
    return math.ceil((PROCESS_MB + copies * model_mb + extra_mb) * attempt)


# bf16 copies of the model that each model stage asks for, with headroom over the peaks that
# benchmarks/scale.py measured from 0.5B to 3B (1.0-1.4 copies beyond the process; checked in
# tests/test_resources.py). base: the source and the bf16 copy it writes. convert holds the bf16
# model, then the GGUF, never both (its check was fp32 next to the GGUF: 3.6 copies at 3B);
# base_gguf is convert for the base model.
MODEL_COPIES = {"base": 3, "quantize": 2, "merge": 2, "convert": 2, "base_gguf": 2}


def stage_memory_mb(stage: str, model_mb: float, attempt: int = 1) -> int:
    return memory_mb(model_mb, MODEL_COPIES[stage], attempt)


def training_memory_mb(model_mb: float, model_config: dict, training: dict, attempt: int = 1) -> int:
    """Two copies of the model (load and dequantize), then one batch's activations and logits."""
    return memory_mb(model_mb, 2, attempt, extra_mb=training_memory_extra_mb(model_config, training))


def minutes(seconds: float, attempt: int = 1) -> int:
    return math.ceil((STARTUP_MIN + HEADROOM * seconds / 60) * attempt)


def training_steps(train_examples: int, training: dict) -> int:
    if training["max_steps"]:
        return training["max_steps"]
    per_step = training["batch_size"] * training["grad_accum"]
    return training["epochs"] * max(1, math.ceil(train_examples / per_step))


def training_tokens(train_examples: int, training: dict) -> int:
    """Tokens the training processes at most: every example padded to max_length."""
    per_step = training["batch_size"] * training["grad_accum"] * training["max_length"]
    return training_steps(train_examples, training) * per_step


def training_seconds(model_mb: float, tokens: int, on_gpu: bool) -> float:
    params = model_mb * MB / 2  # bf16: two bytes per parameter
    tokens_per_s = CPU_TOKENS_PER_S_135M * 135e6 / params
    return tokens / (tokens_per_s * (GPU_SPEEDUP if on_gpu else 1.0))


def training_memory_extra_mb(model_config: dict, training: dict) -> float:
    """Activations kept for backward (see train.activation_bytes) and the fp32 logits with their
    gradient and softmax, for one batch at max_length. `model_config` is the model's config.json;
    one without the usual decoder keys gets UNKNOWN_ACTIVATIONS_MB."""
    from types import SimpleNamespace

    from .train import activation_bytes

    text = model_config.get("text_config", model_config)
    if any(key not in text for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")):
        return UNKNOWN_ACTIVATIONS_MB
    batch, length = training["batch_size"], training["max_length"]
    activations = activation_bytes(SimpleNamespace(**text), batch, length, dtype_bytes=2)
    logits = 3 * batch * length * text["vocab_size"] * 4
    return (activations + logits) / MB


def teacher_seconds(examples: int, teacher: dict) -> float:
    return examples * teacher["max_tokens"] / TEACHER_TOKENS_PER_S
