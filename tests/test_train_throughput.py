"""benchmarks/train_throughput.py's FLOP count: a LoRA step's model FLOPs per token, from the
weights a token really multiplies. The full benchmark run is in test_model_stages."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_benchmark
from safetensors.torch import save_file

train_throughput = load_benchmark("train_throughput")


def tiny_checkpoint(path, tied: bool):
    weights = {
        "model.embed_tokens.weight": torch.zeros(100, 8),
        "model.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8),
        "model.layers.0.mlp.up_proj.weight": torch.zeros(16, 8),
        "model.layers.0.input_layernorm.weight": torch.zeros(8),
    }
    if not tied:
        weights["lm_head.weight"] = torch.zeros(100, 8)
    path.mkdir()
    save_file(weights, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"tie_word_embeddings": tied}), encoding="utf-8")
    return path


@pytest.mark.parametrize("tied", [True, False])
def test_the_embedding_lookup_is_free_and_the_output_projection_counts_once(tmp_path, tied):
    model_dir = tiny_checkpoint(tmp_path / "model", tied)
    # q_proj 64 + up_proj 128 + the output projection 800 (tied: the embedding matrix itself);
    # the norm's vector and the input lookup multiply nothing.
    assert train_throughput.matmul_parameters(model_dir) == 64 + 128 + 800
    assert train_throughput.parameter_count(model_dir) == 800 + 64 + 128 + 8 + (0 if tied else 800)


def test_a_lora_step_counts_four_flops_a_frozen_weight_and_six_a_trained_one():
    assert train_throughput.lora_step_flops_per_token(1000, 10) == 4 * 1000 + 6 * 10
