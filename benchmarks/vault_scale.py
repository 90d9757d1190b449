"""What a big, link-heavy vault costs before any job runs: each task's extract, and `snakemake -n
all`, whose DAG runs every task's note selection and link resolution.

    .venv/bin/python benchmarks/vault_scale.py                    # 20,000 notes
    .venv/bin/python benchmarks/vault_scale.py --notes 2000 --save benchmarks/results/vault_scale.json

The vault is generated here (never committed): random wiki links (cycles among them), links to
notes that do not exist, duplicate names in other folders, aliases, headings and block links, a
share of Windows (BOM + CRLF) notes, and a year of daily notes. The shipped config's selectors read
it as they read the sample vault. The last line reads `vault_scale_dry_run_s=…` (the median of the
dry runs after the first); the target is a DAG of 10 s or less at 20,000 notes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Where the notes go, as shares of the vault (daily notes are one a day, the rest of the share
# goes to inbox-like extra folders no task reads).
FOLDERS = {"topics": 0.4, "tech": 0.25, "goals": 0.1, "projects": 0.15}
WORDS = [
    "raft",
    "paxos",
    "lease",
    "quorum",
    "backup",
    "restore",
    "sensor",
    "soil",
    "tempo",
    "cadence",
    "rust",
    "borrow",
    "token",
    "cache",
    "shard",
    "log",
]
DUPLICATE_SHARE = 0.03  # notes whose name another folder also has
DANGLING_SHARE = 0.1  # of links (3 a note on average), to notes that do not exist
WINDOWS_SHARE = 0.05  # notes saved with a BOM and CRLF


def note_names(n_notes: int, rng: random.Random) -> list[str]:
    """Vault-relative paths: folders by FOLDERS' shares, one daily note a day, some duplicate names."""
    paths = []
    start = dt.date(2025, 1, 1)
    n_daily = min(365, n_notes // 10)
    paths += [f"daily/{start + dt.timedelta(days=day)}.md" for day in range(n_daily)]
    rest = n_notes - n_daily
    for folder, share in FOLDERS.items():
        paths += [f"{folder}/{' '.join(rng.sample(WORDS, 3)).capitalize()} {i}.md" for i in range(int(rest * share))]
    named = [path for path in paths if not path.startswith("daily/")]
    for path in rng.sample(named, int(len(named) * DUPLICATE_SHARE)):
        paths.append(f"archive/{rng.choice(list(FOLDERS))}/{path.rsplit('/', 1)[1]}")
    return paths


def note_text(path: str, paths: list[str], rng: random.Random) -> str:
    stems = [p.rsplit("/", 1)[1][:-3] for p in rng.sample(paths, min(len(paths), rng.randint(0, 6)))]
    links = [f"[[{stem}{rng.choice(['', '#Notes', '#^b1', '|see'])}]]" for stem in stems]
    if rng.random() < DANGLING_SHARE * 3:  # one such link in this share of notes
        links.append("[[Never written " + str(rng.randint(0, 10**6)) + "]]")
    tags = rng.sample(["research", "tech", "goal", "health", "garden"], 2)
    meta = [f"tags: [{', '.join(tags)}]"] + (
        ["aliases: [" + rng.choice(WORDS) + " notes]"] if rng.random() < 0.05 else []
    )
    if path.startswith("daily/"):
        meta.append(f"date: {path[6:16]}")
        meta.append(f"energy: {rng.randint(1, 5)}")
    body = " ".join(rng.choices(WORDS, k=rng.randint(40, 160)))
    return (
        "---\n"
        + "\n".join(meta)
        + "\n---\n# "
        + path.rsplit("/", 1)[1][:-3]
        + "\n\n"
        + body
        + "\n\n"
        + " ".join(links)
        + "\n"
    )


def generate_vault(root: Path, n_notes: int, seed: int = 0) -> list[str]:
    """Write the vault under `root`; its note paths."""
    rng = random.Random(seed)
    paths = note_names(n_notes, rng)
    for path in paths:
        text = note_text(path, paths, rng)
        data = text.encode("utf-8")
        if rng.random() < WINDOWS_SHARE:
            data = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return paths


def time_extracts(vault: Path, config: dict) -> dict[str, dict]:
    """Each task's extract, in this process, as the DAG and the extract job run it."""
    from vault_distill.extract import extract_task_inputs

    figures = {}
    for task, settings in config["tasks"].items():
        started = time.perf_counter()
        result = extract_task_inputs(vault, settings["header"], settings["select"])
        stats = result.stats()
        figures[task] = {
            "seconds": round(time.perf_counter() - started, 2),
            "inputs": stats["inputs"],
            "notes_read": len(result.notes_read),
            "ambiguous_links": stats["ambiguous_links"],
            "line_endings_repaired": stats["repaired"].get("line endings", 0),
        }
    return figures


def time_dry_runs(workdir: Path, vault: Path, repeat: int) -> dict[str, float]:
    """The first `snakemake -n all` (it also memoizes the student's tokenizer fingerprint, which
    no vault changes), then the median of `repeat` more: the DAG's own cost."""
    first = time_dry_run(workdir, vault)
    again = sorted(time_dry_run(workdir, vault) for _ in range(repeat))
    return {"first_dry_run_s": first, "dry_run_s": again[len(again) // 2]}


def prepare_workdir(workdir: Path) -> None:
    """A working directory with the shipped config, prompts and schemas, and no results."""
    (workdir / "resources").mkdir(parents=True)
    for name in ("prompts", "schemas"):  # the shipped config names them relative to the workdir
        (workdir / "resources" / name).symlink_to(ROOT / "resources" / name)
    (workdir / "config").symlink_to(ROOT / "config")


def time_dry_run(workdir: Path, vault: Path) -> float:
    """`snakemake -n all` on the generated vault: the whole DAG, nothing built."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    config = ["--config", f"vault={vault}"]
    started = time.perf_counter()
    done = subprocess.run([*command, "-n", "all", *config], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"snakemake -n all failed on the generated vault:\n{done.stderr[-3000:]}")
    return round(seconds, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notes", type=int, default=20_000, help="notes in the generated vault")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed")
    parser.add_argument("--repeat", type=int, default=3, help="timed dry runs after the first; the median is kept")
    parser.add_argument("--save", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    from machine import machine_record

    record = {"date": dt.date.today().isoformat(), **machine_record(), "notes": args.notes}
    print(f"machine: {record['runner']}, bf16 matmul {record['bf16_matmul_gflops_2048']} GFLOP/s")
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="vault-scale-") as tmp:
        vault = Path(tmp) / "vault"
        started = time.perf_counter()
        generate_vault(vault, args.notes, args.seed)
        print(f"generated {args.notes} notes in {time.perf_counter() - started:.1f} s")
        record["extract"] = time_extracts(vault, config)
        for task, figures in record["extract"].items():
            print(f"extract {task}: {json.dumps(figures)}")
        prepare_workdir(Path(tmp) / "work")
        record |= time_dry_runs(Path(tmp) / "work", vault, args.repeat)
    if args.save:
        args.save.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"first dry run {record['first_dry_run_s']} s (memoizes the tokenizer fingerprint)")
    print(f"vault_scale_dry_run_s={record['dry_run_s']}")


if __name__ == "__main__":
    main()
