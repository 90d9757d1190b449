"""Why the answers fail, side by side for several builds: the quality benchmark's answer files
read again, each failure counted by outcome and by what happens in its text (failure_modes).

Each RUN is LABEL=RESULTS_DIR, a results folder on which `snakemake quality` has run (or at least
the arms asked for). The table has one row per task, run and arm; the last line sums each run:

    <label>_<arm>_compliant=<k>/<n> ...

    .venv/bin/python benchmarks/failure_table.py before=/tmp/old/results after=results
    .venv/bin/python benchmarks/failure_table.py now=results --arm tuned --arm sft
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from vault_distill.evaluate import OUTCOMES  # noqa: E402
from vault_distill.failure_modes import PATTERNS  # noqa: E402
from vault_distill.quality import arm_statistics, quality_files, read_arm, score_arm  # noqa: E402
from vault_distill.report import markdown_table  # noqa: E402
from vault_distill.runtime import read_jsonl  # noqa: E402

TASKS = ("judge", "planner", "seeder", "analyst", "reflector")


def arm_rows(label: str, results: str, task: str, arm: str, schema: dict) -> dict:
    """One task's arm of one run, scored as the quality benchmark scores it (no labels needed)."""
    files = quality_files(task, results)
    heldout = read_jsonl(files["heldout"])
    stats = arm_statistics(score_arm(read_arm(files[arm])["answers"], heldout, {}, schema))
    return {"task": task, "run": label, "arm": arm, **stats}


def failure_table(runs: dict[str, str], arms: list[str], schemas: Path, tasks=TASKS) -> list[dict]:
    rows = []
    for task in tasks:
        schema = json.loads((schemas / f"{task}.schema.json").read_text(encoding="utf-8"))
        rows += [arm_rows(label, results, task, arm, schema) for label, results in runs.items() for arm in arms]
    return rows


def render(rows: list[dict]) -> list[str]:
    """The markdown table: compliance, outcomes and every text pattern that occurs at all."""
    outcomes = [o for o in OUTCOMES[1:] if any(row["outcomes"].get(o) for row in rows)]
    patterns = [p for p in PATTERNS if any(row["failure_patterns"].get(p) for row in rows)]
    cells = [
        {
            "task": row["task"],
            "run": row["run"],
            "arm": row["arm"],
            "compliant": f"{row['compliant']}/{row['n']}",
            **{o: str(row["outcomes"].get(o, 0)) for o in outcomes},
            **{p: str(row["failure_patterns"].get(p, 0)) for p in patterns},
        }
        for row in rows
    ]
    return markdown_table(list(cells[0]), cells) if cells else []


def totals(rows: list[dict]) -> str:
    sums: dict[str, list[int]] = {}
    for row in rows:
        key = f"{row['run']}_{row['arm']}_compliant"
        compliant, n = sums.get(key, [0, 0])
        sums[key] = [compliant + row["compliant"], n + row["n"]]
    return " ".join(f"{key}={compliant}/{n}" for key, (compliant, n) in sums.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RESULTS_DIR, one per build to compare")
    parser.add_argument("--arm", action="append", help="arms to show (default: tuned)")
    parser.add_argument("--schemas", type=Path, default=ROOT / "resources" / "schemas")
    parser.add_argument("--task", action="append", help="tasks to show (default: all five)")
    args = parser.parse_args(argv)
    runs = dict(run.split("=", 1) for run in args.runs)
    rows = failure_table(runs, args.arm or ["tuned"], args.schemas, tuple(args.task or TASKS))
    print("\n".join(render(rows)))
    print(totals(rows))


if __name__ == "__main__":
    main()
