"""The plumbing of every entry script: JSON lines and JSON files, and where the logging goes."""

import json
import subprocess
import sys

from conftest import ROOT

from vault_distill.runtime import read_jsonl, write_json, write_jsonl


def test_jsonl_round_trips_unicode_and_skips_blank_lines(tmp_path):
    rows = [{"id": "a", "text": "naïve – ✓"}, {"id": "b", "nested": {"x": [1, 2]}}]
    write_jsonl(tmp_path / "deep" / "rows.jsonl", rows)
    path = tmp_path / "deep" / "rows.jsonl"
    assert "naïve" in path.read_text(encoding="utf-8")  # not \\u-escaped
    path.write_text(path.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")
    assert read_jsonl(path) == rows
    write_json(tmp_path / "x" / "v.json", {"k": "ü"})
    assert json.loads((tmp_path / "x" / "v.json").read_text(encoding="utf-8")) == {"k": "ü"}


def test_setup_logging_sends_logs_and_stderr_to_the_rule_log_and_warnings_to_the_console(tmp_path):
    code = (
        "import sys\n"
        "from vault_distill.runtime import setup_logging\n"
        f"log = setup_logging({str(tmp_path / 'logs' / 'job.log')!r})\n"
        "log.info('detail only in the log')\n"
        "print('a library writes to stderr', file=sys.stderr)\n"
        "log.warning('summary for the console')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT / "workflow" / "scripts")},
        check=True,
    )
    log = (tmp_path / "logs" / "job.log").read_text(encoding="utf-8")
    assert "detail only in the log" in log and "a library writes to stderr" in log and "summary" in log
    assert "summary for the console" in done.stderr and "detail only" not in done.stderr
