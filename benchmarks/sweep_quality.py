"""What a training setting does to the students, over seeds: the `sweep` target in a finished
default build (benchmarks/default_build.py's folder), lora_r 4/16/64 x seeds 0/1/2 by default.

    .venv/bin/python benchmarks/sweep_quality.py --out /tmp/default_build --save benchmarks/results/sweep.json

Only the sweep's jobs run (each variant's training, merge, conversion and 40 answers without a
grammar); the variant with the build's own settings is the build's own model. `--rerun-triggers
mtime` keeps a build made at an older commit from being rebuilt for a changed rule. A variant
already built is never rebuilt, so a run cut short goes on where it stopped. Prints the machine's
matmul figures, the sweep's table and the compute seconds its variants took.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from build_side_by_side import build  # noqa: E402
from default_build import jobs_done  # noqa: E402
from machine import machine_record  # noqa: E402

from vault_distill.report import read_benchmark  # noqa: E402
from vault_distill.sweep import render_sweep_markdown  # noqa: E402


def sweep_recipe(out: Path, grid: dict, seeds: list[int], tasks: list[str]) -> Path:
    path = out / "sweep.yaml"
    recipe = {"sweep": {"tasks": tasks, "grid": grid, "table": None, "seeds": seeds}}
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def variant_seconds(results: Path, sweep: dict) -> dict[str, float]:
    """Each sweep job's seconds summed over the variants of `sweep` that were trained for it (not
    the build's own model), from results/benchmarks/<task>/sweep/<variant>/."""
    sums: dict[str, float] = {}
    for task, result in sweep["tasks"].items():
        for variant in result["variants"]:
            if variant.get("build_model"):
                continue
            for path in sorted((results / "benchmarks" / task / "sweep" / variant["variant"]).glob("*.tsv")):
                sums[path.stem] = round(sums.get(path.stem, 0.0) + (read_benchmark(path)["seconds"] or 0.0), 1)
    return sums


def sweep_record(sweep: dict) -> dict:
    """sweep.json cut to what the docs show: per task, each setting's spread over the seeds, and
    each variant's compliance (with whether it is the build's own model)."""
    return {
        task: {
            "summary": result["summary"],
            "variants": [
                {
                    "variant": variant["variant"],
                    "build_model": variant.get("build_model", False),
                    **{key: variant["score"][key] for key in ("n", "compliant", "ci95", "gold_rate")},
                }
                for variant in result["variants"]
            ],
        }
        for task, result in sweep["tasks"].items()
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/default_build"), help="a finished default build")
    parser.add_argument("--grid", type=json.loads, default={"lora_r": [4, 16, 64]}, help="sweep.grid, as JSON")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sweep.seeds")
    parser.add_argument("--tasks", nargs="*", default=[], help="sweep.tasks (none: every task)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--save", type=Path, help="write the results file here")
    args = parser.parse_args(argv)
    record = {"date": datetime.date.today().isoformat(), **machine_record()}
    print(json.dumps(record), flush=True)
    recipe = sweep_recipe(args.out, args.grid, args.seeds, args.tasks)
    # --forcerun sweep: the report is rescored every time (seconds); under mtime triggers alone a
    # changed grid would keep the old report.
    targets = ["sweep", "--forcerun", "sweep", "--rerun-triggers", "mtime", "--configfile", str(recipe)]
    wall = build(args.out, targets, args.cores)
    (args.out / "build.log").rename(args.out / "sweep.log")
    results = args.out / "results"
    sweep = json.loads((results / "sweep" / "sweep.json").read_text(encoding="utf-8"))
    log = args.out / "sweep.log"
    jobs = 0 if "Nothing to be done" in log.read_text(encoding="utf-8") else jobs_done(log)
    record |= {"grid": args.grid, "seeds": args.seeds, "wall_s": round(wall, 1), "jobs": jobs}
    record["variant_seconds"] = variant_seconds(results, sweep)
    record["tasks"] = sweep_record(sweep)
    print(f"sweep: {wall:.0f} s now, {sum(record['variant_seconds'].values()):.0f} s of variant jobs in all")
    print(render_sweep_markdown(sweep))
    if args.save:
        args.save.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
