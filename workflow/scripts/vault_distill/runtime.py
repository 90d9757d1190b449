"""Plumbing shared by the thin Snakemake entry scripts: logging and JSON lines I/O."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def setup_logging(log_path: str | Path) -> logging.Logger:
    """Send logging, warnings and stderr (tqdm, libraries) to the rule's log file.

    The summary lines also go to the console, so `snakemake` shows what happened.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = sys.__stderr__
    log_path.write_text("", encoding="utf-8")
    # Append mode: a subprocess (llama.cpp's converter) appends to the same file, and a stream
    # that kept its own offset would write over its lines.
    stream = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stderr = stream
    file_handler = logging.StreamHandler(stream)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console_handler = logging.StreamHandler(console)
    console_handler.setLevel(logging.WARNING)
    console_handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[file_handler, console_handler], force=True)
    logging.captureWarnings(True)
    return logging.getLogger("vault_distill")


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_json(path: str | Path, value) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
