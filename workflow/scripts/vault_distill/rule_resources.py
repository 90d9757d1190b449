"""What each rule asks a scheduler for (Slurm: --mem, --time, --gpus, --cpus-per-task), sized
from the config and from the model files a job reads, with the formulas in resources.py.

The rules call the methods of one RuleResources(config), made in common.smk: each method is a
Snakemake resource function (its argument names are the ones Snakemake passes). One that reads
`input` is <TBD> in a dry run until that input exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .config import decoding_settings, training_settings
from .models import BUNDLED, bundled_gguf, resolve_gguf
from .quantize import bits_per_weight
from .resources import (
    CLIENT_MB,
    folder_mb,
    memory_mb,
    minutes,
    source_model_mb,
    stage_memory_mb,
    teacher_seconds,
    training_memory_mb,
    training_seconds,
    training_tokens,
)

# The base stage downloads (hub ids) and writes the bf16 copy, each at 10 MB/s or better.
BASE_SECONDS_PER_MB = 0.2


def count_lines(path: str | Path) -> int:
    return sum(1 for line in Path(path).read_text(encoding="utf-8").splitlines() if line)


class RuleResources:
    def __init__(self, config: dict):
        self.config = config

    def gpu_count(self) -> int:
        """Model stages ask the scheduler for a GPU unless the config pins them to the CPU.
        Locally an undeclared resource is not limited, so a CPU-only machine still runs them."""
        return 0 if self.config["training"]["device"] == "cpu" else 1

    def source_model_size_mb(self) -> float:
        spec = self.config["base_model"]
        return source_model_mb(spec, bundled_gguf(spec, "base_model") if spec in BUNDLED else None)

    def base_memory_mb(self, wildcards, attempt) -> int:
        """Materializing the base holds the source and the bf16 copy it writes."""
        return stage_memory_mb("base", self.source_model_size_mb(), attempt)

    def base_runtime(self, wildcards, attempt) -> int:
        """Downloading (hub ids) and writing the bf16 copy, at BASE_SECONDS_PER_MB."""
        return minutes(self.source_model_size_mb() * BASE_SECONDS_PER_MB, attempt)

    @staticmethod
    def model_memory_mb(stage: str, input_key: str | int) -> Callable:
        """resources.stage_memory_mb for the bf16 model in the folder input[input_key]."""

        def mem_mb(wildcards, input, attempt):
            return stage_memory_mb(stage, folder_mb(input[input_key]), attempt)

        return mem_mb

    @staticmethod
    def model_runtime(input_key: str | int, seconds_per_mb: float) -> Callable:
        """A job whose work grows with the size of the model in the folder input[input_key]."""

        def runtime(wildcards, input, attempt):
            return minutes(folder_mb(input[input_key]) * seconds_per_mb, attempt)

        return runtime

    def quantize_seconds_per_mb(self) -> float:
        """Measured on CPU: 130 s (optimize) and 1 s (no optimize) for 257 MB; loading dominates."""
        return 0.5 if self.config["quantization"]["optimize"] else 0.05

    def quantized_model_mb(self, input) -> float:
        """The bf16 size of the model behind the 4-bit folder (an overestimate: embeddings stay bf16)."""
        return folder_mb(input.quantized) * 16 / bits_per_weight(self.config["quantization"])

    def train_memory_mb(self, wildcards, input, attempt) -> int:
        """resources.training_memory_mb for the model behind the 4-bit folder and the task's settings."""
        model_mb = self.quantized_model_mb(input)  # first: <TBD> while the folder is not built
        model_config = json.loads((Path(input.quantized) / "config.json").read_text(encoding="utf-8"))
        return training_memory_mb(model_mb, model_config, training_settings(self.config, wildcards.task), attempt)

    def train_runtime(self, wildcards, input, attempt) -> int:
        """Every step at full length, at the measured CPU speed scaled by model size (or a GPU's)."""
        tokens = training_tokens(count_lines(input.train), training_settings(self.config, wildcards.task))
        return self._training_minutes(input, tokens, attempt)

    def prefer_runtime(self, wildcards, input, attempt) -> int:
        """DPO as SFT-like steps: each pair runs chosen and rejected through the policy and, without
        gradients, the reference (counted as a third sequence), each up to max_length + max_tokens."""
        tokens = 3 * training_tokens(count_lines(input.pairs), self.preference_steps(wildcards.task))
        return self._training_minutes(input, tokens, attempt)

    def preference_steps(self, task: str) -> dict:
        """The settings that set how many DPO steps run, and how long each sequence is."""
        preference, training = self.config["preference"], training_settings(self.config, task)
        return {
            "epochs": preference["epochs"],
            "batch_size": preference["batch_size"],
            "grad_accum": 1,
            "max_steps": None,
            "max_length": training["max_length"] + decoding_settings(self.config, task)["max_tokens"],
        }

    def _training_minutes(self, input, tokens: int, attempt: int) -> int:
        seconds = training_seconds(self.quantized_model_mb(input), tokens, self.gpu_count() > 0)
        return minutes(seconds, attempt)

    def teacher_threads(self) -> int:
        """Only the in-process llama.cpp teacher computes; the others wait on a server."""
        return 2 if self.config["teacher"]["backend"] == "llama_cpp" else 1

    def teacher_memory_mb(self, wildcards, attempt) -> int:
        teacher = self.config["teacher"]
        if teacher["backend"] != "llama_cpp":
            return CLIENT_MB * attempt
        return memory_mb(folder_mb(resolve_gguf(teacher["model"], "teacher.model")), 1.5, attempt)

    def teacher_runtime(self, wildcards, attempt) -> int:
        examples = self.config["tasks"][wildcards.task]["examples"]
        return minutes(teacher_seconds(examples, self.config["teacher"]), attempt)
