"""What checking a change costs: `make setup`, `make test-fast` and `make test` timed one after
the other in a fresh clone of this checkout's HEAD, nothing else running:

    .venv/bin/python benchmarks/suite_time.py --save benchmarks/results/test_suite.json
    .venv/bin/python benchmarks/render_docs.py

Setup reuses the llama.cpp wheel cache (~/.cache/vault-distill) when it holds this CPU's build;
the saved file says which. `make test` is what `.ci/run` runs, so its time is CI's, less the clone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import machine_record  # noqa: E402

WHEEL_CACHE = Path.home() / ".cache" / "vault-distill" / "wheels"


def timed_make(clone: Path, target: str) -> tuple[float, str]:
    """Wall seconds of `make TARGET` in `clone`, and its output (also in make-TARGET.log)."""
    started = time.monotonic()
    done = subprocess.run(["make", target], cwd=clone, capture_output=True, text=True)
    wall = time.monotonic() - started
    output = done.stdout + done.stderr
    (clone / f"make-{target}.log").write_text(output, encoding="utf-8")
    if done.returncode != 0:
        raise SystemExit(f"make {target} failed after {wall:.0f} s; see {clone / f'make-{target}.log'}")
    print(f"make {target}: {wall:.0f} s", flush=True)
    return wall, output


def passed_count(output: str) -> int:
    """The count on pytest's last line ('731 passed, 3 warnings in 1672.1s')."""
    counts = re.findall(r"(\d+) passed", output)
    if not counts:
        raise SystemExit("no 'N passed' line in pytest's output")
    return int(counts[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clone", type=Path, default=Path("/tmp/suite_time"), help="the fresh clone (new)")
    parser.add_argument("--save", type=Path, help="write the results file here")
    args = parser.parse_args(argv)
    if args.clone.exists():
        raise SystemExit(f"{args.clone} exists: the suite is timed in a fresh clone, so remove it or pick --clone")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(args.clone)], check=True)
    record = {"date": datetime.date.today().isoformat(), **machine_record()}
    cached = any(WHEEL_CACHE.glob("*/*.whl"))
    record["setup_from"] = "a cached llama.cpp wheel" if cached else "nothing (llama.cpp compiled)"
    print(json.dumps(record), flush=True)
    record["setup_s"] = round(timed_make(args.clone, "setup")[0])
    wall, output = timed_make(args.clone, "test-fast")
    record["test_fast_s"], record["test_fast_tests"] = round(wall), passed_count(output)
    wall, output = timed_make(args.clone, "test")
    record["test_s"], record["tests"] = round(wall), passed_count(output)
    if args.save:
        args.save.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
