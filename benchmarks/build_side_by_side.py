"""Two builds at one sitting, on one machine: the shipped config against the same config with some
keys changed (an issue's baseline, say). Runners of one kind differ by 2x, so build times are only
compared this way. Each build runs in a working directory of its own under OUT, from an empty
teacher cache and empty model caches, one after the other, with nothing else running:

    .venv/bin/python benchmarks/build_side_by_side.py --target reflector \\
        --baseline teacher.reject_defects=[] training.neftune_alpha=null tasks.reflector.decoding={}

Prints the bf16 matmul figure before and after, then a row per build: its wall time, the sums of
each stage's benchmarked job seconds (`results/benchmarks/`), and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import bf16_matmul_flops  # noqa: E402

from vault_distill.config import load_config  # noqa: E402
from vault_distill.report import markdown_table, read_benchmark  # noqa: E402


def parse_assignment(text: str) -> tuple[list[str], object]:
    """`training.neftune_alpha=null` -> (["training", "neftune_alpha"], None); values are YAML."""
    key, sep, value = text.partition("=")
    if not key or not sep:
        raise SystemExit(f"change {text!r}: expected DOTTED.KEY=YAML_VALUE")
    return key.split("."), yaml.safe_load(value)


def changed(config: dict, assignments: list[str]) -> dict:
    """A copy of `config` with each assignment applied; every key above the last must exist."""
    config = copy.deepcopy(config)
    for text in assignments:
        path, value = parse_assignment(text)
        node = config
        for depth, part in enumerate(path[:-1]):
            if not isinstance(node.get(part), dict):
                raise SystemExit(f"change {text!r}: config has no section {'.'.join(path[: depth + 1])!r}")
            node = node[part]
        node[path[-1]] = value
    return config


def workdir_config(config: dict) -> dict:
    """Prompts, schemas and the vault read from the repository; every cache stays relative, so
    that each build starts from its own empty one."""
    config = copy.deepcopy(config)
    config["vault"] = str(ROOT / config["vault"])
    for task in config["tasks"].values():
        for key in ("system_prompt", "output_schema"):
            task[key] = str(ROOT / task[key])
    return config


def prepare(workdir: Path, config: dict) -> None:
    """Write the build's config, and validate it as the workflow will (errors name the key)."""
    if workdir.exists():
        raise SystemExit(f"{workdir} exists: each build starts from an empty folder, so remove it or pick --out")
    (workdir / "config").mkdir(parents=True)
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(workdir_config(config), sort_keys=False), encoding="utf-8")
    load_config(path)


def build(workdir: Path, targets: list[str], cores: int) -> float:
    """Wall seconds of `snakemake --cores N TARGETS` in `workdir`; its output goes to build.log."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    command += ["--directory", str(workdir), "--cores", str(cores), *targets]
    started = time.monotonic()
    with open(workdir / "build.log", "w", encoding="utf-8") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"the build in {workdir} failed; see {workdir / 'build.log'}")
    return time.monotonic() - started


def stage_seconds(results: Path) -> dict[str, float]:
    """Each benchmarked rule's job seconds, summed over tasks (`benchmarks/{task}/<rule>.tsv`)."""
    sums: Counter = Counter()
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        sums[path.stem] += read_benchmark(path)["seconds"] or 0.0
    return dict(sums)


def measured_bf16(when: str) -> float:
    """The machine's bf16 matmul GFLOP/s now (512x512), printed: every timing comes with it."""
    gflops = bf16_matmul_flops("cpu", 512, 3) / 1e9
    print(f"bf16 matmul {when}: {gflops:.1f} GFLOP/s (512x512, now)", flush=True)
    return gflops


def render(rows: list[dict]) -> list[str]:
    stages = sorted({stage for row in rows for stage in row["stages"]})
    baseline = rows[0]["wall_s"]
    cells = [
        {
            "build": row["label"],
            "wall": f"{row['wall_s']:.0f} s",
            "ratio": f"{row['wall_s'] / baseline:.2f}",
            **{stage: f"{row['stages'].get(stage, 0.0):.0f}" for stage in stages},
        }
        for row in rows
    ]
    return markdown_table(list(cells[0]), cells)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", nargs="*", default=[], help="KEY=YAML changes: the baseline")
    parser.add_argument("--candidate", nargs="*", default=[], help="KEY=YAML changes: the other build (none)")
    parser.add_argument("--target", action="append", help="Snakemake targets (default: all)")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml", help="the shipped config")
    parser.add_argument("--out", type=Path, default=Path("/tmp/build_side_by_side"), help="the builds' folders")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for both builds")
    args = parser.parse_args(argv)
    shipped = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    builds = {"baseline": changed(shipped, args.baseline), "candidate": changed(shipped, args.candidate)}
    for label, config in builds.items():
        prepare(args.out / label, config)
    targets = args.target or ["all"]
    bf16 = {"before": measured_bf16("before")}
    rows = []
    for label in builds:
        wall = build(args.out / label, targets, args.cores)
        rows.append({"label": label, "wall_s": wall, "stages": stage_seconds(args.out / label / "results")})
        print(f"{label}: {wall:.0f} s", flush=True)
    bf16["after"] = measured_bf16("after")
    print("\n".join(render(rows)))
    saved = {"bf16_matmul_gflops_512": bf16, "targets": targets, "builds": rows}
    (args.out / "builds.json").write_text(json.dumps(saved, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
