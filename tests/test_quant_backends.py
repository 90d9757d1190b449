"""benchmarks/quant_backends.py --tiny: both quantization methods quantize, measure and train the same
split side by side, and the last line gives the comparison. On the 2-layer random model the figures
mean nothing; the full-size run on a real task's split is the measurement (docs/performance.md)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from vault_distill.runtime import write_jsonl

pytestmark = pytest.mark.slow


def test_the_benchmark_measures_both_methods_on_the_same_split(tiny_model_dir, tmp_path):
    rows = [
        {
            "prompt": f"<|im_start|>user\nnote {i}<|im_end|>\n<|im_start|>assistant\n",
            "completion": f'{{"n": {i}}}<|im_end|>',
        }
        for i in range(6)
    ]
    write_jsonl(tmp_path / "train.jsonl", rows[:4])
    write_jsonl(tmp_path / "val.jsonl", rows[4:])
    files = {"--base": tiny_model_dir, "--tokenizer": tiny_model_dir}
    files |= {"--train": tmp_path / "train.jsonl", "--val": tmp_path / "val.jsonl"}
    command = [sys.executable, str(ROOT / "benchmarks" / "quant_backends.py"), "--tiny", "--threads", "2"]
    done = subprocess.run(
        command + [str(part) for pair in files.items() for part in pair], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(
        r"nf4_over_hqq_tok_s=[\d.]+ nf4_peak_mb=\d+ hqq_peak_mb=\d+ nf4_eval_loss=[\d.]+ hqq_eval_loss=[\d.]+",
        lines[-1],
    ), lines[-1]
    assert "bf16 matmul: " in lines[0]
    measured = json.loads(next(line for line in lines if line.startswith("json "))[5:])
    for method in ("hqq", "nf4"):
        row = measured[method]
        assert row["steps"] == 2 and row["eval_loss"] > 0 and row["tok_s"] > 0
        assert row["disk_mb"] > 0 and row["memory_mb"] > 0 and row["peak_mb"] > row["memory_mb"]
        # Every projection type, each with an error that is neither zero nor the weight itself.
        errors = row["dequant_error"]
        assert set(errors) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        assert all(0 < error["mean"] <= error["max"] < 1 for error in errors.values())
    assert measured["hqq"]["dequant_error"] != measured["nf4"]["dequant_error"]
    assert any(line.startswith("own 4-bit matmul, cache off, 2 steps: ") for line in lines)
