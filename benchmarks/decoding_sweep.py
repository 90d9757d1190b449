"""The tuned models' held-out compliance under other decoding settings, in one process beside the
settings the quality benchmark used: decoding is how the Modelfile serves the model (its
PARAMETERs), so a decoding change needs no retrain, only new answers.

Reads a results folder on which `snakemake quality` has run: each task's held-out inputs, its
tuned GGUF, and the decoding settings and context of its tuned arm (the baseline, `quality`).
Each SETTING is LABEL=KEY=VALUE[,KEY=VALUE...] over those decoding settings. The answers go to
OUT/<label>/results/quality/<task>/ in the benchmark's own layout, so that failure_table.py reads them:

    .venv/bin/python benchmarks/decoding_sweep.py rp1=repeat_penalty=1.0 greedy=temperature=0
    .venv/bin/python benchmarks/failure_table.py quality=results rp1=/tmp/decoding_sweep/rp1/results

Prints one row per task and setting (compliant, Wilson interval, outcomes, answer seconds) and a
last line of totals, `<label>_compliant=<k>/<n>`, with the bf16 matmul figure of this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from failure_table import TASKS  # noqa: E402
from machine import bf16_matmul_flops  # noqa: E402

from vault_distill.decoding import check_decoding  # noqa: E402
from vault_distill.quality import answer_arms, arm_statistics, quality_files, read_arm, score_arm  # noqa: E402
from vault_distill.report import markdown_table  # noqa: E402
from vault_distill.runtime import read_jsonl, write_json  # noqa: E402

BASELINE = "quality"


def parse_setting(text: str) -> tuple[str, dict]:
    """`rp1=repeat_penalty=1.0,temperature=0` -> ("rp1", {"repeat_penalty": 1.0, "temperature": 0})."""
    label, sep, assignments = text.partition("=")
    if not label or not sep or not assignments:
        raise SystemExit(f"setting {text!r}: expected LABEL=KEY=VALUE[,KEY=VALUE...]")
    changes = {}
    for assignment in assignments.split(","):
        key, sep, value = assignment.partition("=")
        if not sep:
            raise SystemExit(f"setting {text!r}: {assignment!r} is not KEY=VALUE")
        changes[key.strip()] = yaml.safe_load(value)
    return label, changes


def overridden(decoding: dict, changes: dict) -> dict:
    """`decoding` with `changes` applied; a key decoding does not have is an error, by name."""
    unknown = sorted(set(changes) - set(decoding))
    if unknown:
        raise SystemExit(f"unknown decoding key(s) {unknown}; known: {sorted(decoding)}")
    settings = {**decoding, **changes}
    check_decoding(settings)
    return settings


def sweep_task(results: Path, out: Path, task: str, settings: dict[str, dict], arm: str, schema: dict) -> list[dict]:
    """One task's rows: the quality benchmark's own answers first, then one row per setting."""
    files = quality_files(task, str(results))
    heldout = read_jsonl(files["heldout"])
    baseline = read_arm(files[arm])
    # The arm names its GGUF as the workflow does, relative to the folder that holds results/.
    gguf = results.parent / baseline["gguf"]
    rows = [{"task": task, "setting": BASELINE, "seconds": None, **score(baseline["answers"], heldout, schema)}]
    for label, changes in settings.items():
        decoding = overridden(baseline["decoding"], changes)
        started = time.monotonic()
        record = answer_arms(gguf, heldout, schema, (arm,), decoding, baseline["n_ctx"], threads=2)[arm]
        seconds = time.monotonic() - started
        target = quality_files(task, str(out / label / "results"))
        Path(target["heldout"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files["heldout"], target["heldout"])
        write_json(target[arm], record)
        rows.append({"task": task, "setting": label, "seconds": seconds, **score(record["answers"], heldout, schema)})
    return rows


def score(answers: list[dict], heldout: list[dict], schema: dict) -> dict:
    return arm_statistics(score_arm(answers, heldout, {}, schema))


def render(rows: list[dict]) -> list[str]:
    cells = [
        {
            "task": row["task"],
            "setting": row["setting"],
            "compliant": f"{row['compliant']}/{row['n']}",
            "Wilson 95%": "–".join(f"{bound:.2f}" for bound in row["ci95"]),
            "outcomes": ", ".join(f"{k} {v}" for k, v in row["outcomes"].items() if k != "compliant" and v),
            "answer s": "" if row["seconds"] is None else f"{row['seconds']:.0f}",
        }
        for row in rows
    ]
    return markdown_table(list(cells[0]), cells)


def totals(rows: list[dict]) -> str:
    sums: dict[str, list[int]] = {}
    for row in rows:
        compliant, n = sums.get(row["setting"], [0, 0])
        sums[row["setting"]] = [compliant + row["compliant"], n + row["n"]]
    return " ".join(f"{label}_compliant={compliant}/{n}" for label, (compliant, n) in sums.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help="LABEL=KEY=VALUE[,KEY=VALUE...] over the arm's decoding")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="where `snakemake quality` ran")
    parser.add_argument("--out", type=Path, default=Path("/tmp/decoding_sweep"), help="where the answers go")
    parser.add_argument("--arm", default="tuned", help="the quality arm whose GGUF and decoding to vary")
    parser.add_argument("--schemas", type=Path, default=ROOT / "resources" / "schemas")
    parser.add_argument("--task", action="append", help="tasks to run (default: all five)")
    args = parser.parse_args(argv)
    settings = dict(parse_setting(text) for text in args.settings)
    bf16 = bf16_matmul_flops("cpu", 2048, 5) / 1e9
    print(f"bf16 matmul: {bf16:.0f} GFLOP/s (2048x2048, this machine, now)", flush=True)
    rows = []
    for task in args.task or TASKS:
        schema = json.loads((args.schemas / f"{task}.schema.json").read_text(encoding="utf-8"))
        rows += sweep_task(args.results, args.out, task, settings, args.arm, schema)
        print("\n".join(render(rows[-len(settings) - 1 :])), flush=True)
    print("\n".join(render(rows)))
    print(totals(rows))


if __name__ == "__main__":
    main()
