"""What every benchmark says about the machine it ran on: the matmul figures to compare runners
by, and the runner kind in words. Runners of one kind differ by 2x, so a timing is only ever
compared with another taken at the same sitting, and printed with these figures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from vault_distill.hardware import cpu_model, resolve_dtype  # noqa: E402


def matmul_flops(device: str, dtype, size: int, repeats: int, warmups: int = 2) -> float:
    """FLOP/s of one large matmul in `dtype`: the ceiling a training step is measured against."""
    import torch

    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(warmups):
        a @ b
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def bf16_matmul_flops(device: str, size: int, repeats: int) -> float:
    """The bf16 matmul figure every benchmark prints with its timings, to compare runners. A CPU
    without native bf16 runs it ~100x slower than fp32 (13 s a 2048² matmul on 2 Zen 3 cores), so
    there it is timed once, unwarmed: a figure that low needs no second digit."""
    import torch

    if device == "cpu" and resolve_dtype("auto", "cpu") != torch.bfloat16:
        return matmul_flops(device, torch.bfloat16, size, repeats=1, warmups=0)
    return matmul_flops(device, torch.bfloat16, size, repeats)


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def runner_kind(flags: set[str] | None = None, model: str | None = None) -> str:
    """The runner kind in the words the docs use: 'AMD EPYC, Zen 4 (AVX512, AVX512_BF16)'. Zen 3
    and Zen 4 both say 'AMD EPYC'; AVX512 tells them apart (Zen 3 has none)."""
    flags = cpu_flags() if flags is None else flags
    model = cpu_model() if model is None else model
    if "amx_tile" in flags:
        return f"{model} (AVX512, AMX)"
    if "AMD" in model:
        if "avx512f" in flags:
            extra = ", AVX512_BF16" if "avx512_bf16" in flags else ""
            return f"{model}, Zen 4 (AVX512{extra})"
        return f"{model}, Zen 3 (AVX2, no AVX512, no native bf16)"
    return f"{model} ({'AVX512' if 'avx512f' in flags else 'AVX2'})"


def head_commit() -> str:
    """The short commit the measurement ran at ('unknown' outside a git checkout)."""
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def machine_record() -> dict:
    """What a results file says about its machine, measured now."""
    import torch

    record = {"runner": runner_kind(), "cpus": os.cpu_count(), "commit": head_commit()}
    record["bf16_matmul_gflops_2048"] = round(bf16_matmul_flops("cpu", 2048, 5) / 1e9, 1)
    if resolve_dtype("auto", "cpu") != torch.bfloat16:
        record["fp32_matmul_gflops_2048"] = round(matmul_flops("cpu", torch.float32, 2048, 5) / 1e9, 1)
    return record
