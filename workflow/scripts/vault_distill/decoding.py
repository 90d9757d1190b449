"""A task's sampling settings (config `decoding`, with the task's own `decoding` over it), spelled for
each decoder that uses it.

The Modelfile states every one of them as an Ollama PARAMETER, and the evaluation and the
quality benchmark pass the very same values to llama.cpp, so a measured compliance rate
describes the decoder a user runs. Nothing is left to either program's defaults, which differ:
llama-cpp-python's `create_chat_completion` samples with min_p 0.05 and no repeat penalty,
Ollama with min_p 0 and repeat_penalty 1.1.
"""

from __future__ import annotations

import math
import re

# config key -> (Ollama Modelfile PARAMETER, llama-cpp-python create_chat_completion keyword).
# repeat_last_n has no per-request keyword: llama-cpp-python reads it from Llama(last_n_tokens_size).
NAMES: dict[str, tuple[str, str | None]] = {
    "temperature": ("temperature", "temperature"),
    "top_k": ("top_k", "top_k"),
    "top_p": ("top_p", "top_p"),
    "min_p": ("min_p", "min_p"),
    "repeat_penalty": ("repeat_penalty", "repeat_penalty"),
    "repeat_last_n": ("repeat_last_n", None),
    "seed": ("seed", "seed"),
    "max_tokens": ("num_predict", "max_tokens"),
}
INTEGER_KEYS = ("top_k", "repeat_last_n", "seed", "max_tokens")

# Samplers both programs have but the config does not expose, pinned to their neutral values
# so that neither decoder applies one the other does not.
NEUTRAL_LLAMA_CPP = {
    "typical_p": 1.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "tfs_z": 1.0,
    "mirostat_mode": 0,
}

_PARAMETER = re.compile(r"^PARAMETER (\w+) (.+)$", re.MULTILINE)


def check_decoding(decoding: dict) -> None:
    """Every key present, with a value both Ollama and llama.cpp accept."""
    missing = [key for key in NAMES if key not in decoding]
    if missing:
        raise ValueError(f"decoding settings lack {', '.join(missing)}")
    for key in NAMES:
        value = decoding[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"decoding.{key} must be a finite number, got {value!r}")
        if key in INTEGER_KEYS and not isinstance(value, int):
            raise ValueError(f"decoding.{key} must be an integer, got {value!r}")
    if decoding["temperature"] < 0:
        raise ValueError(f"decoding.temperature must be >= 0, got {decoding['temperature']!r}")


def _modelfile_value(key: str, value) -> str:
    return str(int(value)) if key in INTEGER_KEYS else repr(float(value))


def modelfile_parameters(decoding: dict) -> list[str]:
    """`PARAMETER name value` lines, in the config's order."""
    check_decoding(decoding)
    return [f"PARAMETER {NAMES[key][0]} {_modelfile_value(key, decoding[key])}" for key in NAMES]


def read_modelfile_parameters(text: str) -> dict:
    """The sampling settings a Modelfile states, under their config names (stop and num_ctx aside)."""
    by_ollama_name = {ollama: key for key, (ollama, _) in NAMES.items()}
    settings = {}
    for name, raw in _PARAMETER.findall(text):
        if name in by_ollama_name:
            key = by_ollama_name[name]
            settings[key] = int(raw) if key in INTEGER_KEYS else float(raw)
    return settings


def llama_cpp_sampling(decoding: dict) -> dict:
    """Keywords for `Llama.create_chat_completion`: the config's values and the neutral rest."""
    check_decoding(decoding)
    sampling = {llama: decoding[key] for key, (_, llama) in NAMES.items() if llama is not None}
    return {**sampling, **NEUTRAL_LLAMA_CPP}


def llama_cpp_model_options(decoding: dict) -> dict:
    """Keywords for the `Llama(...)` constructor that belong to sampling."""
    return {"last_n_tokens_size": decoding["repeat_last_n"]}


def describe_decoding(decoding: dict) -> str:
    """`temperature 0.1, top_k 40, ..., at most 384 tokens`: the sampling settings in one line."""
    settings = [f"{key} {decoding[key]}" for key in NAMES if key != "max_tokens"]
    return ", ".join(settings) + f", at most {decoding['max_tokens']} tokens"


def describe_task_decodings(per_task: dict[str, dict]) -> str:
    """Every task's decoding in one line: for each setting the value most tasks share, then what a
    task sets otherwise (`temperature 0.1, ..., at most 384 tokens; reflector: repeat_penalty 1.05`)."""
    values = list(per_task.values())
    shared = {key: max((d[key] for d in values), key=lambda v: sum(o[key] == v for o in values)) for key in NAMES}
    own = [
        f"{task}: " + ", ".join(f"{key} {d[key]}" for key in NAMES if d[key] != shared[key])
        for task, d in per_task.items()
        if any(d[key] != shared[key] for key in NAMES)
    ]
    return "; ".join([describe_decoding(shared), *own])
