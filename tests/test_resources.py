"""What each job asks a scheduler for. The requests are checked against the memory jobs really
use in tests/test_slurm.py; here, the sizing functions on real files, and what a dry run of the
workflow asks for with the config's settings."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, absolute_resources, default_config, make_workdir, snakemake

from vault_distill.models import bundled_gguf
from vault_distill.resources import (
    MB,
    UNKNOWN_ACTIVATIONS_MB,
    UNKNOWN_MODEL_MB,
    folder_mb,
    memory_mb,
    minutes,
    source_model_mb,
    training_memory_extra_mb,
    training_steps,
    training_tokens,
)
from vault_distill.train import activation_bytes

# SmolLM2-135M-Instruct's config.json, as results/base/model and results/base/hqq hold it.
SMOLLM2 = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "vocab_size": 49152}
SMOLLM2_PARAMETERS = 134_515_008  # counted from the bundled GGUF's tensors


def training(**overrides) -> dict:
    return {"max_steps": None, "epochs": 3, "batch_size": 4, "grad_accum": 1, "max_length": 512} | overrides


def test_folder_size_and_a_missing_folder(tmp_path):
    (tmp_path / "model" / "sub").mkdir(parents=True)
    (tmp_path / "model" / "a.safetensors").write_bytes(b"x" * 3 * MB)
    (tmp_path / "model" / "sub" / "b.bin").write_bytes(b"x" * MB)
    assert folder_mb(tmp_path / "model") == 4
    assert folder_mb(tmp_path / "model" / "sub" / "b.bin") == 1
    # Snakemake shows a resource as <TBD> when it fails on a missing input it names.
    not_built = tmp_path / "results" / "base" / "hqq"
    with pytest.raises(FileNotFoundError) as missing:
        folder_mb(not_built)
    assert missing.value.filename == str(not_built)


def test_source_model_sizes(tmp_path):
    bundled = source_model_mb("bundled:smollm2", bundled_gguf("bundled:smollm2", "base_model"))
    true_bf16_mb = SMOLLM2_PARAMETERS * 2 / MB
    assert abs(bundled - true_bf16_mb) / true_bf16_mb < 0.25, (bundled, true_bf16_mb)

    local = tmp_path / "my-model"
    local.mkdir()
    (local / "model-00001-of-00002.safetensors").write_bytes(b"x" * 2 * MB)
    (local / "model-00002-of-00002.safetensors").write_bytes(b"x" * MB)
    (local / "tokenizer.json").write_bytes(b"x" * MB)
    assert source_model_mb(str(local)) == 3

    assert source_model_mb("vault-distill-tests/no-such-model") == UNKNOWN_MODEL_MB


def test_training_steps_and_tokens():
    assert training_steps(30, training()) == 3 * 8  # ceil(30 / 4) steps per epoch
    assert training_steps(30, training(grad_accum=2)) == 3 * 4
    assert training_steps(30, training(max_steps=5)) == 5
    assert training_steps(0, training()) == 3
    assert training_tokens(30, training(max_steps=5, batch_size=2, max_length=256)) == 5 * 2 * 256


def test_training_memory_counts_activations_and_logits():
    extra = training_memory_extra_mb(SMOLLM2, training(batch_size=2, max_length=256))
    activations = activation_bytes(types.SimpleNamespace(**SMOLLM2), 2, 256, dtype_bytes=2) / MB
    logits = 3 * 2 * 256 * 49152 * 4 / MB
    assert extra == pytest.approx(activations + logits)
    assert training_memory_extra_mb({"text_config": SMOLLM2}, training(batch_size=2, max_length=256)) == extra
    assert training_memory_extra_mb({"model_type": "exotic"}, training()) == UNKNOWN_ACTIVATIONS_MB


def test_retries_ask_for_more():
    assert memory_mb(1000, copies=2, attempt=2) == 2 * memory_mb(1000, copies=2)
    assert minutes(600, attempt=2) == 2 * minutes(600)


def dry_run_resources(tmp_path: Path, **training_overrides) -> dict[str, dict[str, str]]:
    """Each rule's resources, as `snakemake -n` prints them for the judge task."""
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    config["training"].update(training_overrides)
    done = snakemake(make_workdir(tmp_path, config), "-n", "judge")
    resources = {}
    for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", done.stdout, flags=re.M | re.S):
        if line := re.search(r"resources: (.*)", body):
            resources[rule] = dict(item.split("=", 1) for item in line.group(1).split(", "))
    return resources


@pytest.mark.slow  # starts Snakemake
def test_dry_run_requests(tmp_path):
    auto = dry_run_resources(tmp_path / "auto")
    assert {rule: auto[rule].get("gpu") for rule in ("base", "quantize", "train", "merge", "convert", "teach")} == {
        "base": "0",
        "quantize": "1",
        "train": "1",
        "merge": "1",
        "convert": "0",
        "teach": "0",
    }
    # Sizes that depend on files not built yet are evaluated when the job is ready.
    assert auto["train"]["mem_mb"] == "<TBD>" and auto["train"]["runtime"] == "<TBD>"
    # Known now: the default examples of at most max_tokens teacher tokens; the base from the bundled GGUF.
    defaults = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    examples = {task["examples"] for task in defaults["tasks"].values()}
    assert len(examples) == 1, "every default task asks for as many examples"
    assert auto["teach"]["runtime"] == str(minutes(examples.pop() * defaults["teacher"]["max_tokens"] / 20))
    assert 1500 < int(auto["base"]["mem_mb"]) < 4000

    on_cpu = dry_run_resources(tmp_path / "cpu", device="cpu")
    assert [on_cpu[rule]["gpu"] for rule in ("quantize", "train", "merge")] == ["0", "0", "0"]


def test_profile_uses_the_pinned_slurm_executor():
    settings = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text(encoding="utf-8"))
    assert settings["executor"] == "slurm"
    requirements = (ROOT / "envs" / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^snakemake-executor-plugin-slurm==\S+$", requirements, flags=re.M)


# What benchmarks/scale.py measured (`--save`): every model stage's peak memory at Qwen2.5's
# 0.5B, 1.5B and 3B shapes, on this project's 2-core CPU runner.
SCALE_MEASURED = ROOT / "benchmarks" / "results" / "scale.json"


def scale_rows() -> list[dict]:
    import json

    return [row for row in json.loads(SCALE_MEASURED.read_text(encoding="utf-8"))["rows"] if "failed" not in row]


def test_every_model_stage_requests_at_least_its_peak_measured_at_every_size():
    """The scheduler requests of resources.py against the peaks measured from 0.5B to 3B. train's
    request is computed from the bf16 size itself, a lower bound of what the rule computes (the
    rule scales the 4-bit folder, whose embeddings stay 16-bit, by 16/4)."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale import MAX_LENGTH, QWEN25_VOCAB, SHAPES

    from vault_distill.resources import stage_memory_mb, training_memory_mb

    rows = scale_rows()
    assert {row["size"] for row in rows} == set(SHAPES)
    assert {row["stage"] for row in rows} == {"base", "quantize", "train", "merge", "convert"}
    short = []
    for row in rows:
        if row["stage"] == "train":
            shape = {**SHAPES[row["size"]], "vocab_size": QWEN25_VOCAB}
            requested = training_memory_mb(row["bf16_mb"], shape, {"batch_size": 1, "max_length": MAX_LENGTH})
        else:
            requested = stage_memory_mb(row["stage"], row["bf16_mb"])
        if requested < row["peak_mb"]:
            short.append(f"{row['stage']}@{row['size']}: requests {requested} MB, measured {row['peak_mb']} MB")
    assert not short, short


def test_base_gguf_is_sized_as_the_convert_stage_it_is():
    from vault_distill.resources import MODEL_COPIES

    assert MODEL_COPIES["base_gguf"] == MODEL_COPIES["convert"]
