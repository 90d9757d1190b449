"""A student that is not ChatML, through every stage: benchmarks/student_family.py --tiny builds one task
with a 2-layer random Gemma 3 that keeps the real tokenizer (262k vocabulary), sliding-window attention,
256-dimension heads and tied embeddings, and the official Gemma 3 template. Quality is measured by the
full-size run of the same script, not here."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gemma")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "student_family.py"), "--tiny", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir, done.stdout.strip().splitlines()


def test_every_stage_builds_a_gemma_student_and_then_has_nothing_to_do(tiny_gemma):
    _, lines = tiny_gemma
    assert re.fullmatch(
        r"family=gemma3 tuned_compliance=\S+ base_compliance=\S+ gguf_greedy=\d+/\d+ build_s=\S+", lines[-1]
    )
    assert "snakemake -n afterwards: Nothing to be done" in lines
    assert lines[0].startswith("bf16 matmul: ")


def test_the_gemma_gguf_passes_its_check_with_the_gemma_template(tiny_gemma):
    workdir, _ = tiny_gemma
    check = json.loads((workdir / "results" / "judge" / "gguf_check.json").read_text(encoding="utf-8"))
    assert check["template_prompts_equal"] >= 1 and check["tokenization_equal"] is True


def test_the_gemma_modelfile_stops_on_end_of_turn_and_speaks_as_model(tiny_gemma):
    workdir, _ = tiny_gemma
    modelfile = (workdir / "results" / "judge" / "Modelfile").read_text(encoding="utf-8")
    assert 'PARAMETER stop "<end_of_turn>"' in modelfile
    assert "<start_of_turn>model" in modelfile and "<|im_start|>" not in modelfile


def test_gemma_answers_end_on_end_of_turn_without_a_stray_eos(tiny_gemma):
    workdir, _ = tiny_gemma
    rows = [json.loads(line) for line in (workdir / "results" / "judge" / "sft" / "train.jsonl").open(encoding="utf-8")]
    assert rows and all(row["completion"].endswith("<end_of_turn>") for row in rows)
    assert not any("<eos>" in row["completion"] or row["prompt"].startswith("<bos>") for row in rows)
