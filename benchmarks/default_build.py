"""The two README figures a new user meets first: what `snakemake --cores all all` and then
`snakemake --cores all quality` cost on this machine with the shipped config, and what the quality
benchmark found. One build in a fresh folder, from empty teacher and model caches, nothing else
running:

    .venv/bin/python benchmarks/default_build.py --save benchmarks/results/default_build.json
    .venv/bin/python benchmarks/render_docs.py      # then regenerate the README's and docs' figures

Prints the machine's matmul figures, each target's wall time and job count, and the quality table.
The saved file holds the date, the commit, the runner kind, the matmul figures, each target's wall
time, jobs and stage seconds, and quality.json's figures per task and arm.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from build_side_by_side import build, prepare, stage_seconds  # noqa: E402
from machine import head_commit, machine_record  # noqa: E402

# What the docs show of each arm; the whole quality.json stays in the build's folder.
ARM_FIGURES = ("n", "compliant", "ci95", "field_agreement", "valid_but_wrong", "ran_to_max_tokens", "gold")


def jobs_done(log: Path) -> int:
    """The job count Snakemake's log ends on ('51 of 51 steps (100%) done')."""
    counts = re.findall(r"(\d+) of (\d+) steps? \(100%\) done", log.read_text(encoding="utf-8"))
    if not counts:
        raise SystemExit(f"{log}: no 'N of N steps (100%) done' line; did the build finish?")
    return int(counts[-1][1])


def quality_figures(quality: dict) -> dict:
    """quality.json cut to the figures the docs show, per task and arm."""
    tasks = {
        task: {arm: {key: arms[arm][key] for key in ARM_FIGURES if key in arms[arm]} for arm in quality["arms"]}
        for task, arms in quality["tasks"].items()
    }
    for task, arms in quality["tasks"].items():
        if "teacher_gold" in arms:
            tasks[task]["teacher_gold"] = arms["teacher_gold"]
    return {"arms": quality["arms"], "teacher_is_base": quality["teacher_is_base"], "tasks": tasks}


def rescore(out: Path) -> dict:
    """quality.json again from a finished build's answers with this checkout's scoring (the gold
    labels derived anew from the build's vault): no model answers, nothing is paid for."""
    from vault_distill.decoding import describe_task_decodings
    from vault_distill.gold import write_gold_labels
    from vault_distill.layout import quality_arms, quality_files
    from vault_distill.quality import build_quality

    config = yaml.safe_load((out / "config" / "config.yaml").read_text(encoding="utf-8"))
    results = out / "results"
    for task in config["tasks"]:
        files = quality_files(task, str(results))
        inputs = results / task / "inputs.jsonl"
        write_gold_labels(task, files["heldout"], inputs, config["vault"], files["gold"])
    decodings = {
        task: {**config["decoding"], **settings.get("decoding", {})} for task, settings in config["tasks"].items()
    }
    serve = config.get("serve", {})
    return build_quality(
        schemas={task: settings["output_schema"] for task, settings in config["tasks"].items()},
        teacher=config["teacher"],
        base_model=config["base_model"],
        decoding_line=describe_task_decodings(decodings),
        teacher_labels=config["quality"]["teacher_labels"],
        results=str(results),
        arms=quality_arms(config["gguf"]["deploy"], config["preference"]["enabled"]),
        enforce_schema=serve.get("enforce_schema", True),
    )


def run_target(workdir: Path, target: str, cores: int) -> dict:
    wall = build(workdir, [target], cores)
    log = workdir / f"{target}.log"
    (workdir / "build.log").rename(log)
    row = {"wall_s": round(wall, 1), "jobs": jobs_done(log)}
    print(f"{target}: {wall:.0f} s, {row['jobs']} jobs", flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml", help="the shipped config")
    parser.add_argument("--out", type=Path, default=Path("/tmp/default_build"), help="the build's folder (new)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--save", type=Path, help="write the results file here")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="build nothing: score --out's finished build again with this checkout and update --save's quality figures",
    )
    args = parser.parse_args(argv)
    if args.rescore:
        update_quality_figures(args.out, args.save)
        return
    prepare(args.out, yaml.safe_load(args.config.read_text(encoding="utf-8")))
    record = {"date": datetime.date.today().isoformat(), **machine_record()}
    print(json.dumps(record), flush=True)
    record["all"] = run_target(args.out, "all", args.cores)
    record["all"]["stages"] = {k: round(v, 1) for k, v in stage_seconds(args.out / "results").items()}
    record["quality"] = run_target(args.out, "quality", args.cores)
    quality = json.loads((args.out / "results" / "quality" / "quality.json").read_text(encoding="utf-8"))
    record["quality"]["figures"] = quality_figures(quality)
    print((args.out / "results" / "quality" / "quality.md").read_text(encoding="utf-8"))
    if args.save:
        args.save.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def update_quality_figures(out: Path, save: Path) -> None:
    """The results file's quality figures, rescored (see rescore); its timings stay as measured."""
    record = json.loads(save.read_text(encoding="utf-8"))
    record["quality"]["figures"] = quality_figures(rescore(out))
    record["quality"]["rescored"] = {"date": datetime.date.today().isoformat(), "commit": head_commit()}
    save.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(record["quality"]["rescored"]))


if __name__ == "__main__":
    main()
