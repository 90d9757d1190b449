"""benchmarks/decoding_sweep.py on the tiny GGUF: it answers the held-out inputs again under each
setting (only the keys named change), writes them in the quality benchmark's layout, and prints
the baseline's row beside each setting's (the figures themselves mean nothing at this size)."""

import subprocess
import sys

import pytest
from conftest import ROOT, default_config

from vault_distill.quality import read_arm
from vault_distill.runtime import write_json, write_jsonl

CHAT = [{"role": "system", "content": "Grade the note."}, {"role": "user", "content": "=== JUDGE ===\n\n# A note"}]
VALID = '{"score": 4, "verdict": "keep", "strengths": ["clear"], "gaps": ["no sources"]}'

sys.path.insert(0, str(ROOT / "benchmarks"))
from decoding_sweep import overridden, parse_setting  # noqa: E402


def write_quality_run(results, gguf):
    heldout = [{"id": f"x{i}", "source": "val", "reference": None, "messages": CHAT} for i in range(2)]
    write_jsonl(results / "quality" / "judge" / "heldout.jsonl", heldout)
    answers = [{"id": f"x{i}", "text": VALID, "finish_reason": "stop", "tokens": 9, "seconds": 0.1} for i in range(2)]
    decoding = {**default_config()["decoding"], "max_tokens": 8}
    (results / "judge").mkdir()
    (results / "judge" / "judge.Q8_0.gguf").symlink_to(gguf)
    arm = {
        "arm": "tuned",
        "gguf": "results/judge/judge.Q8_0.gguf",
        "decoding": decoding,
        "n_ctx": 256,
        "answers": answers,
    }
    write_json(results / "quality" / "judge" / "answers" / "tuned.json", arm)
    return decoding


def test_sweep_answers_again_under_each_setting(tiny_loras, tmp_path):
    decoding = write_quality_run(tmp_path / "results", tiny_loras["base_gguf"])
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "decoding_sweep.py"), "greedy=temperature=0,repeat_last_n=16",
         "--results", str(tmp_path / "results"), "--out", str(tmp_path / "sweep"), "--task", "judge"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("bf16 matmul: ")
    assert any(line.startswith("| judge | quality | 2/2 |") for line in lines)
    # The tiny random model cannot write the schema's JSON in 8 tokens.
    assert any(line.startswith("| judge | greedy | 0/2 |") for line in lines)
    assert lines[-1] == "quality_compliant=2/2 greedy_compliant=0/2"
    record = read_arm(tmp_path / "sweep" / "greedy" / "results" / "quality" / "judge" / "answers" / "tuned.json")
    assert record["decoding"] == {**decoding, "temperature": 0, "repeat_last_n": 16}
    assert [answer["id"] for answer in record["answers"]] == ["x0", "x1"]
    assert all(answer["tokens"] <= 8 for answer in record["answers"])
    greedy = tmp_path / "sweep" / "greedy" / "results"
    table = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "failure_table.py"), f"greedy={greedy}", "--task", "judge"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert table.stdout.strip().splitlines()[-1] == "greedy_tuned_compliant=0/2"


def test_settings_are_parsed_and_checked_by_key():
    assert parse_setting("rp1=repeat_penalty=1.0,temperature=0") == ("rp1", {"repeat_penalty": 1.0, "temperature": 0})
    decoding = default_config()["decoding"]
    assert overridden(decoding, {"top_k": 0}) == {**decoding, "top_k": 0}
    with pytest.raises(SystemExit, match="repeat_penalti"):
        overridden(decoding, {"repeat_penalti": 1.0})
    with pytest.raises(ValueError, match=r"decoding\.temperature"):
        overridden(decoding, {"temperature": -1})
    with pytest.raises(SystemExit, match="LABEL=KEY=VALUE"):
        parse_setting("greedy")
