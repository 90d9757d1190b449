"""How the default build's models do on a vault none of them learnt from: `quality_holdout` with
config/examples/holdout.yaml, in a finished default build (benchmarks/default_build.py's folder),
beside that build's own held-out notes.

    .venv/bin/python benchmarks/holdout_quality.py --out /tmp/default_build --save benchmarks/results/holdout.json

Only the holdout jobs run (its extract, the teacher's labels, gold and the four arms) and the
sample's quality report is scored again: `--rerun-triggers mtime` keeps a build made at an older
commit from being rebuilt for a changed rule. Prints the machine's matmul figures and the wall time.
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

from build_side_by_side import build  # noqa: E402
from default_build import jobs_done, quality_figures  # noqa: E402
from machine import machine_record  # noqa: E402


def holdout_recipe(out: Path) -> Path:
    """config/examples/holdout.yaml with its vault made absolute, for the build's folder."""
    recipe = yaml.safe_load((ROOT / "config" / "examples" / "holdout.yaml").read_text(encoding="utf-8"))
    recipe["quality"]["holdout"]["vault"] = str(ROOT / recipe["quality"]["holdout"]["vault"])
    path = out / "holdout.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/default_build"), help="a finished default build")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--save", type=Path, help="write the results file here")
    args = parser.parse_args(argv)
    record = {"date": datetime.date.today().isoformat(), **machine_record()}
    print(json.dumps(record), flush=True)
    targets = ["quality_holdout", "--rerun-triggers", "mtime", "--configfile", str(holdout_recipe(args.out))]
    wall = build(args.out, targets, args.cores)
    (args.out / "build.log").rename(args.out / "holdout.log")
    record["wall_s"], record["jobs"] = round(wall, 1), jobs_done(args.out / "holdout.log")
    results = args.out / "results"
    holdout = json.loads((results / "holdout" / "quality.json").read_text(encoding="utf-8"))
    sample = json.loads((results / "quality" / "quality.json").read_text(encoding="utf-8"))
    record["vault"] = "resources/vault_holdout"
    record["holdout"], record["sample"] = quality_figures(holdout), quality_figures(sample)
    print(f"quality_holdout: {wall:.0f} s, {record['jobs']} jobs")
    print((results / "holdout" / "quality.md").read_text(encoding="utf-8").split("\n\n# ", 1)[0])
    if args.save:
        args.save.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
