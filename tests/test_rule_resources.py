"""The rules' resource functions, on real folders and files: what a job of each stage asks a
scheduler for, and that Snakemake can call each with the arguments it passes."""

from __future__ import annotations

import json
import types

import pytest
from conftest import default_config
from snakemake.common import get_function_params

from vault_distill.resources import CLIENT_MB, MB, training_tokens
from vault_distill.rule_resources import RuleResources

# What Snakemake passes a resource function, by argument name.
SNAKEMAKE_ARGUMENTS = {"wildcards", "input", "threads", "attempt"}
SMOLLM2 = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "vocab_size": 49152}


@pytest.fixture
def quantized(tmp_path):
    """A 4-bit folder of 64 MB (a sparse file: its size is what counts) with a real config."""
    folder = tmp_path / "hqq"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMOLLM2), encoding="utf-8")
    with open(folder / "model.safetensors", "wb") as weights:
        weights.truncate(64 * MB)
    return folder


def job_input(tmp_path, quantized, examples: int) -> types.SimpleNamespace:
    lines = "".join(json.dumps({"id": i}) + "\n" for i in range(examples))
    (tmp_path / "train.jsonl").write_text(lines, encoding="utf-8")
    return types.SimpleNamespace(
        quantized=str(quantized), train=str(tmp_path / "train.jsonl"), pairs=str(tmp_path / "train.jsonl")
    )


def judge():
    return types.SimpleNamespace(task="judge")


def test_every_resource_function_takes_only_what_snakemake_passes():
    sizing = RuleResources(default_config())
    functions = [
        sizing.base_memory_mb,
        sizing.base_runtime,
        sizing.train_memory_mb,
        sizing.train_runtime,
        sizing.prefer_runtime,
        sizing.teacher_memory_mb,
        sizing.teacher_runtime,
        RuleResources.model_memory_mb("convert", "merged"),
        RuleResources.model_runtime("merged", 0.2),
    ]
    for function in functions:
        assert set(get_function_params(function)) <= SNAKEMAKE_ARGUMENTS, function


def test_model_stages_ask_for_a_gpu_unless_the_config_pins_the_cpu():
    config = default_config()
    assert RuleResources(config).gpu_count() == 1  # device: auto
    config["training"]["device"] = "cpu"
    assert RuleResources(config).gpu_count() == 0


def test_the_quantized_folder_is_sized_as_the_bf16_model_behind_it(tmp_path, quantized):
    config = default_config()
    sizing = RuleResources(config)
    assert sizing.quantized_model_mb(job_input(tmp_path, quantized, 1)) == pytest.approx(4 * 64, rel=0.01)
    config["quantization"]["nbits"] = 2
    assert sizing.quantized_model_mb(job_input(tmp_path, quantized, 1)) == pytest.approx(8 * 64, rel=0.01)


def test_training_time_grows_with_the_examples_and_shrinks_on_a_gpu(tmp_path, quantized):
    config = default_config()
    config["training"]["device"] = "cpu"
    on_cpu = RuleResources(config)
    few, many = (on_cpu.train_runtime(judge(), job_input(tmp_path, quantized, n), 1) for n in (8, 400))
    assert many > few
    assert on_cpu.train_runtime(judge(), job_input(tmp_path, quantized, 8), 2) >= 2 * few - 1  # a retry doubles it
    config_gpu = default_config()
    assert RuleResources(config_gpu).train_runtime(judge(), job_input(tmp_path, quantized, 400), 1) < many


def test_training_memory_counts_the_task_batch(tmp_path, quantized):
    config = default_config()
    small = RuleResources(config).train_memory_mb(judge(), job_input(tmp_path, quantized, 1), 1)
    config["tasks"]["judge"]["training"] = {"batch_size": 4 * config["training"]["batch_size"]}
    assert RuleResources(config).train_memory_mb(judge(), job_input(tmp_path, quantized, 1), 1) > small


def test_a_dpo_pair_counts_three_sequences_of_prompt_plus_answer(tmp_path, quantized):
    config = default_config()
    sizing = RuleResources(config)
    steps = sizing.preference_steps("judge")
    assert steps["max_length"] == config["training"]["max_length"] + config["decoding"]["max_tokens"]
    assert steps["batch_size"] == config["preference"]["batch_size"] and steps["grad_accum"] == 1
    longer = default_config()
    longer["preference"]["epochs"] = 10 * config["preference"]["epochs"]
    tokens = training_tokens(50, steps)
    assert training_tokens(50, RuleResources(longer).preference_steps("judge")) == 10 * tokens
    assert RuleResources(longer).prefer_runtime(judge(), job_input(tmp_path, quantized, 50), 1) > sizing.prefer_runtime(
        judge(), job_input(tmp_path, quantized, 50), 1
    )


def test_a_server_teacher_is_a_client_on_one_thread():
    config = default_config()
    assert RuleResources(config).teacher_threads() == 2  # the bundled llama.cpp teacher computes
    bundled = RuleResources(config).teacher_memory_mb(judge(), 1)
    config["teacher"] |= {"backend": "openai", "model": "qwen2.5:7b-instruct"}
    server = RuleResources(config)
    assert server.teacher_threads() == 1
    assert server.teacher_memory_mb(judge(), 1) == CLIENT_MB
    assert server.teacher_memory_mb(judge(), 2) == 2 * CLIENT_MB
    assert bundled > CLIENT_MB  # the GGUF is mapped into the teacher's own process


def test_teacher_time_grows_with_the_examples_asked_for():
    config = default_config()
    few = RuleResources(config).teacher_runtime(judge(), 1)
    config["tasks"]["judge"]["examples"] = 10 * config["tasks"]["judge"]["examples"]
    assert RuleResources(config).teacher_runtime(judge(), 1) > few
