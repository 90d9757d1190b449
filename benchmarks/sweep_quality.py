"""What a training setting does to the students, over seeds: the `sweep` target in a finished
default build (benchmarks/default_build.py's folder), lora_r 4/16/64 x seeds 0/1/2 by default.

    .venv/bin/python benchmarks/sweep_quality.py --out /tmp/default_build --save benchmarks/results/sweep.json

A grid too long for one sitting is measured in runs (`--grid '{"lora_r": [4, 64]}' --seeds 1
--append`): each run is added to the results file's `runs`, and the file's `tasks` is every
variant of every run, each setting summarized over all the seeds scored for it. `--beside` names
the default build's results file measured on this machine just before, so that the run's seconds
can be set against that build's wall time.

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
from vault_distill.sweep import cell_value, render_sweep_markdown, summarize  # noqa: E402

# Where and when a run was measured: what every figure shown comes with.
PROVENANCE_KEYS = ("date", "runner", "cpus", "commit", "bf16_matmul_gflops_2048", "fp32_matmul_gflops_2048")
# What a run keeps besides its variants: its provenance, what it swept and at what cost.
RUN_KEYS = (
    *PROVENANCE_KEYS,
    "grid",
    "seeds",
    "wall_s",
    "jobs",
    "variant_seconds",
    "trained",
    "beside_build",
)


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


def pattern_settings(pattern: str) -> dict:
    """A variant's Paramspace folder ('lora_r~16/seed~0') as its settings ({'lora_r': 16, 'seed': 0})."""
    return {key: cell_value(value) for key, value in (part.split("~", 1) for part in pattern.split("/"))}


def _value_order(value) -> tuple:
    # Numbers sort as numbers (4 before 16); the type name keeps mixed columns comparable.
    return type(value).__name__, value


def _settings_order(variant: dict) -> list:
    return [(key, *_value_order(value)) for key, value in pattern_settings(variant["variant"]).items()]


def runs_of(record: dict) -> list[dict]:
    """A results file's runs; a file written before runs existed is one run."""
    return record.get("runs", [record])


def trained_count(record: dict) -> int:
    """The variants a run trained (not the build's own model); a merged file keeps it per run."""
    return sum(not v["build_model"] for result in record["tasks"].values() for v in result["variants"])


def merge_runs(runs: list[dict]) -> dict:
    """The runs as one sweep: each task's variants (a variant scored twice: the later run's), each
    setting summarized over every seed scored for it. Top-level provenance is the latest run's."""
    by_task: dict[str, dict[str, dict]] = {}
    for index, run in enumerate(runs):
        for task, result in run.get("tasks", {}).items():
            for variant in result["variants"]:
                by_task.setdefault(task, {})[variant["variant"]] = {**variant, "run": index}
    tasks = {}
    for task, variants in by_task.items():
        ordered = sorted(variants.values(), key=_settings_order)
        scored = [{"settings": pattern_settings(v["variant"]), "score": v} for v in ordered]
        tasks[task] = {"summary": summarize(scored), "variants": ordered}
    grid: dict[str, list] = {}
    for run in runs:
        for key, values in run["grid"].items():
            grid[key] = sorted(set(grid.get(key, [])) | set(values), key=_value_order)
    latest = runs[-1]
    return {
        **{key: latest[key] for key in PROVENANCE_KEYS if key in latest},
        "grid": grid,
        "seeds": sorted({seed for run in runs for seed in run["seeds"]}),
        "runs": [{"trained": trained_count(run)} | {key: run[key] for key in RUN_KEYS if key in run} for run in runs],
        "tasks": tasks,
    }


def beside_build(path: Path) -> dict:
    """The default build's wall time from its results file, to set a run's seconds against."""
    build = json.loads(path.read_text(encoding="utf-8"))
    return {key: build[key] for key in ("date", "commit")} | {
        "wall_s": build["all"]["wall_s"],
        "jobs": build["all"]["jobs"],
    }


def saved_runs(path: Path) -> list[dict]:
    """The runs already in a results file, each with the variants the file keeps of it (none: no file)."""
    if not path.exists():
        return []
    record = json.loads(path.read_text(encoding="utf-8"))
    return [{**run, "tasks": _run_tasks(record, index)} for index, run in enumerate(runs_of(record))]


def _run_tasks(record: dict, index: int) -> dict:
    """The variants a merged file keeps of its run `index`, in the shape a run record has them."""
    if "runs" not in record:
        return record["tasks"]
    tasks: dict[str, dict] = {}
    for task, result in record["tasks"].items():
        variants = [
            {k: v for k, v in variant.items() if k != "run"}
            for variant in result["variants"]
            if variant["run"] == index
        ]
        if variants:
            tasks[task] = {"variants": variants}
    return tasks


def run_sweep(args) -> dict:
    """One run: the sweep target for args' grid and seeds in args.out, as a run record."""
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
    if args.beside:
        record["beside_build"] = beside_build(args.beside)
    print(f"sweep: {wall:.0f} s now, {sum(record['variant_seconds'].values()):.0f} s of variant jobs in all")
    print(render_sweep_markdown(sweep))
    return record


def merged_files(save: Path, paths: list[Path], beside: Path | None) -> dict:
    """--save's runs followed by each file's, as one sweep; `beside` for added runs that lack one."""
    runs = saved_runs(save)
    build = beside_build(beside) if beside else None
    for path in paths:
        if path.resolve() == save.resolve():
            raise SystemExit(f"{path} is --save itself: its runs are kept anyway")
        added = saved_runs(path)
        if build:
            added = [{"beside_build": build, **run} for run in added]
        runs += added
    return merge_runs(runs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/default_build"), help="a finished default build")
    parser.add_argument("--grid", type=json.loads, default={"lora_r": [4, 16, 64]}, help="sweep.grid, as JSON")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sweep.seeds")
    parser.add_argument("--tasks", nargs="*", default=[], help="sweep.tasks (none: every task)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--save", type=Path, help="write the results file here")
    parser.add_argument("--append", action="store_true", help="add this run to --save's runs (default: replace them)")
    parser.add_argument(
        "--beside",
        type=Path,
        help="the default build's results file, measured on this machine just before (--merge: for added runs)",
    )
    parser.add_argument("--merge", type=Path, nargs="+", help="build nothing: add these files' runs to --save's")
    args = parser.parse_args(argv)
    if args.merge:
        merged = merged_files(args.save, args.merge, args.beside)
    else:
        record = run_sweep(args)
        earlier = saved_runs(args.save) if args.append and args.save else []
        merged = merge_runs([*earlier, record])
    if args.save:
        args.save.write_text(json.dumps(merged, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
