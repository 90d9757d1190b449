"""benchmarks/failure_table.py on hand-made answer files: each run's failures are counted by outcome
and by text pattern, and the last line sums each run."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

from vault_distill.runtime import write_json, write_jsonl

CHAT = [{"role": "system", "content": "Grade the note."}, {"role": "user", "content": "=== JUDGE ===\n\n# A note"}]
VALID = '{"score": 4, "verdict": "keep", "strengths": ["clear"], "gaps": ["no sources"]}'


def write_run(results, texts):
    heldout = [{"id": f"x{i}", "source": "val", "reference": None, "messages": CHAT} for i in range(len(texts))]
    write_jsonl(results / "quality" / "judge" / "heldout.jsonl", heldout)
    answers = [
        {"id": f"x{i}", "text": text, "finish_reason": reason, "tokens": 9, "seconds": 0.1}
        for i, (text, reason) in enumerate(texts)
    ]
    write_json(results / "quality" / "judge" / "answers" / "tuned.json", {"arm": "tuned", "answers": answers})


def test_two_runs_side_by_side(tmp_path):
    looping = '{"score": 4, "verdict": "keep", "gaps": ["1.1.1.1.1.1.1'
    write_run(tmp_path / "old", [(VALID, "stop"), (looping, "length")])
    write_run(tmp_path / "new", [(VALID, "stop"), (VALID, "stop")])
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "failure_table.py"), f"old={tmp_path / 'old'}",
         f"new={tmp_path / 'new'}", "--task", "judge"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "| task | run | arm | compliant | ran to max_tokens | loop | string never closed |"
    assert "| judge | old | tuned | 1/2 | 1 | 1 | 1 |" in lines
    assert "| judge | new | tuned | 2/2 | 0 | 0 | 0 |" in lines
    assert lines[-1] == "old_tuned_compliant=1/2 new_tuned_compliant=2/2"
