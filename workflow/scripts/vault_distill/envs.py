"""envs/vault-distill.yaml (for `--sdm conda`) is generated from envs/requirements.txt,
the single source of truth, so the two can never disagree.

Regenerate with: python -m vault_distill.envs > envs/vault-distill.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REQUIREMENTS = ROOT / "envs" / "requirements.txt"


def pinned_requirements(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def conda_env(requirements_text: str, python_version: str = "3.11") -> str:
    lines = [
        "# GENERATED from envs/requirements.txt by `python -m vault_distill.envs`; do not edit.",
        "# llama-cpp-python compiles from source: set CMAKE_ARGS=-DGGML_NATIVE=OFF before creating",
        "# this environment on CPUs with AMX (the native build crashes there).",
        "name: vault-distill",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python_version}",
        "  - pip",
        "  - pip:",
    ]
    lines += [f"      - {req}" for req in pinned_requirements(requirements_text)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(conda_env(REQUIREMENTS.read_text(encoding="utf-8")))
