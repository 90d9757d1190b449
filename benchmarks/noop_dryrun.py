"""How long `snakemake -n all` takes when everything is built: the cost of asking
"what would rerun?" (parsing, note selection, the DAG and its metadata checks).

    .venv/bin/python benchmarks/noop_dryrun.py                   # builds a tiny pipeline first
    .venv/bin/python benchmarks/noop_dryrun.py --workdir DIR     # times an existing full build

The tiny build is the embedded default (the sample vault, all five tasks) with small teacher
and training settings: the DAG, and so the dry run, is the same size as the default's.
The last line is the median, e.g. `noop_dryrun_s=2.31`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    return subprocess.run([*command, *args], capture_output=True, text=True, check=False)


def build_tiny_pipeline(workdir: Path, cores: int) -> None:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    for folder in ("vault", "prompts", "schemas"):
        shutil.copytree(ROOT / "resources" / folder, workdir / folder)
    config["vault"] = "vault"
    for name, task in config["tasks"].items():
        task.update(
            system_prompt=f"prompts/{name}.md",
            output_schema=f"schemas/{name}.schema.json",
            examples=3,
            val_fraction=0.34,
            training={},
        )
    config["teacher"].update(max_tokens=160, n_ctx=2048)
    config["training"].update(max_length=256, max_steps=1, batch_size=1, lora_r=4, lora_alpha=8)
    (workdir / "config").mkdir()
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    done = snakemake(workdir, "--cores", str(cores), "all")
    if done.returncode != 0:
        sys.exit(f"the tiny build failed:\n{done.stderr[-4000:]}")


def time_noop_dry_run(workdir: Path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = snakemake(workdir, "-n", "all")
        times.append(time.perf_counter() - started)
        if done.returncode != 0 or "Nothing to be done" not in done.stdout + done.stderr:
            sys.exit(f"{workdir} is not a complete build: `snakemake -n all` plans jobs:\n{done.stdout[-3000:]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="a fully built working directory (default: build a tiny one)")
    parser.add_argument("--repeat", type=int, default=5, help="timed dry runs; the median is reported")
    parser.add_argument("--cores", type=int, default=2, help="cores for the tiny build")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="noop-dryrun-") as tmp:
        workdir = args.workdir
        if workdir is None:
            workdir = Path(tmp) / "work"
            started = time.perf_counter()
            build_tiny_pipeline(workdir, args.cores)
            print(f"tiny build: {time.perf_counter() - started:.0f} s")
        snakemake(workdir, "-n", "all")  # warm the file cache (and any memo), untimed
        times = time_noop_dry_run(workdir, args.repeat)
    print("dry runs (s): " + " ".join(f"{t:.2f}" for t in times))
    print(f"noop_dryrun_s={statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
