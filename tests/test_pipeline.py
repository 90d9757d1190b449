"""The data half, end to end through Snakemake: the shared five-task build's data, and a teacher
killed part way, on the schema teacher (tests/schema_teacher.py) behind the command backend."""

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import (
    FIVE_TASK_EXAMPLES,
    ROOT,
    absolute_resources,
    default_config,
    kill_snakemake_when,
    make_workdir,
    snakemake,
    use_schema_teacher,
)

from vault_distill.cache import ResponseCache

pytestmark = pytest.mark.slow

SFT_TARGETS = [f"results/{task}/sft/{split}.jsonl" for task in default_config()["tasks"] for split in ("train", "val")]


# Seconds per answer of the killed teacher: slow enough that the kill lands between answers.
ANSWER_SECONDS = 0.5


def small_config(tmp_path: Path, examples: int) -> dict:
    config = use_schema_teacher(absolute_resources(default_config()), tmp_path / "teacher-cache")
    config["teacher"]["command"] += ["--seconds", str(ANSWER_SECONDS)]
    config["training"]["max_length"] = 256
    for task in config["tasks"].values():
        task["examples"] = examples
        task["val_fraction"] = 0.25
        task["training"] = {}
    return config


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_sft_datasets_for_all_five_tasks_then_nothing_to_do(five_task_build):
    """The data half of the shared five-task build (conftest.py), built through `all`."""
    workdir = five_task_build
    for task, settings in default_config()["tasks"].items():
        schema = json.loads((ROOT / settings["output_schema"]).read_text())
        stats = json.loads((workdir / f"results/{task}/teacher_stats.json").read_text())
        assert stats["inputs"] >= 30, task
        assert stats["asked"] == FIVE_TASK_EXAMPLES and stats["generated"] == FIVE_TASK_EXAMPLES
        for example in read_jsonl(workdir / f"results/{task}/teacher.jsonl"):
            jsonschema.validate(json.loads(example["messages"][2]["content"]), schema)
            assert example["messages"][1]["content"].startswith(settings["header"])
        train = read_jsonl(workdir / f"results/{task}/sft/train.jsonl")
        val = read_jsonl(workdir / f"results/{task}/sft/val.jsonl")
        assert (
            len(train) + len(val)
            == stats["accepted"] - json.loads((workdir / f"results/{task}/sft/stats.json").read_text())["dropped"]
        )
        assert all(rec["completion"].endswith("<|im_end|>") for rec in train + val)
        extract_stats = json.loads((workdir / f"results/{task}/extract_stats.json").read_text())
        assert extract_stats["inputs"] == stats["inputs"] and extract_stats["notes_selected"] >= stats["inputs"]
        # The sample vault's notes saved on Windows (BOM + CRLF): repaired, and no \r goes on.
        assert extract_stats["repaired"]["line endings"] >= 1, task
        inputs = read_jsonl(workdir / f"results/{task}/inputs.jsonl")
        assert not any("\r" in row["user"] for row in inputs), task
        assert not any("\r" in row["prompt"] + row["completion"] for row in train + val), task
        assert json.loads((workdir / f"results/{task}/preflight.json").read_text())["room_for_notes"] > 0

    again = snakemake(workdir, "-n", *SFT_TARGETS)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_killed_teacher_reruns_only_missing_inputs(tmp_path, tiny_model_dir):
    config = small_config(tmp_path, examples=10)
    config["base_model"] = str(tiny_model_dir)  # SmolLM2's tokenizer, loaded from a folder, not from the GGUF
    workdir = make_workdir(tmp_path, config)
    cache = ResponseCache(config["teacher"]["cache_dir"])
    target = "results/judge/teacher.jsonl"
    kill_snakemake_when(workdir, target, lambda: len(cache.stored_keys()) >= 3, timeout_s=300)
    cached_before = len(cache.stored_keys())
    assert 3 <= cached_before < 10
    assert not (workdir / target).exists()

    snakemake(workdir, "--cores", "2", "--rerun-incomplete", target)
    stats = json.loads((workdir / "results/judge/teacher_stats.json").read_text())
    assert stats["cached"] == cached_before
    assert stats["generated"] == 10 - cached_before
    assert len(cache.stored_keys()) == 10
