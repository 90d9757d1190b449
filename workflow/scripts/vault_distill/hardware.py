"""Device, dtype and thread choices, made once and the same way for every model stage.

`device: auto` picks CUDA (ROCm builds of torch report themselves as CUDA too) when torch
sees one, else the CPU. `dtype: auto` picks bf16 where the device computes it natively.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path


def guard_torch_compile() -> None:
    """Make torch.compile a no-op on Python >= 3.14, where dynamo does not run yet.

    hqq decorates some kernels with torch.compile at import time; without this guard the
    import itself fails there. Must run before hqq is imported.
    """
    if sys.version_info < (3, 14):
        return
    import torch

    def passthrough(model=None, *args, **kwargs):
        return model if model is not None else (lambda fn: fn)

    torch.compile = passthrough


def resolve_device(setting: str) -> str:
    import torch

    if setting != "auto":
        if setting.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"training.device: {setting!r} requested, but torch sees no CUDA/ROCm device")
        return setting
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(setting: str, device: str):
    import torch

    if setting != "auto":
        return getattr(torch, setting)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def set_threads(threads: int) -> None:
    """Use as many CPU threads as Snakemake gave the job, so parallel jobs do not fight."""
    import torch

    torch.set_num_threads(max(1, threads))


def release_freed_memory() -> bool:
    """Hand memory that Python and torch have freed back to the OS (glibc's malloc_trim), so that
    the next allocation does not land on top of it: measured on HQQ quantization at the 0.5B shape,
    1.76-1.96 GB peak RSS without it, 1.57 GB with it. False where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def peak_memory_mb(device: str) -> tuple[float, str]:
    """Peak memory of this process: CUDA max allocated on a GPU, max RSS on the CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "max_rss"


def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux (where platform.processor() is often
    empty), else whatever platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def describe_cpu() -> dict:
    return {"cpu": cpu_model(), "cpu_cores": os.cpu_count()}


def describe_hardware(device: str) -> dict:
    """Where a model job ran, recorded with its numbers: on a cluster the jobs may land on
    different nodes than the one that writes the report."""
    import torch

    gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None
    return {**describe_cpu(), "gpu": gpu, "torch": torch.__version__}
