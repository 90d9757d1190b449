"""Device and dtype choice, thread count and the hardware record every model job writes."""

import pytest
import torch

from vault_distill.hardware import (
    describe_cpu,
    describe_hardware,
    dtype_name,
    peak_memory_mb,
    resolve_device,
    resolve_dtype,
    set_threads,
)


def test_auto_picks_a_gpu_only_when_torch_sees_one():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"training\.device: 'cuda:1' requested"):
            resolve_device("cuda:1")


def test_dtype_follows_the_setting_or_the_device():
    assert resolve_dtype("float32", "cpu") is torch.float32
    assert resolve_dtype("auto", "cpu") in (torch.bfloat16, torch.float32)
    assert dtype_name(torch.bfloat16) == "bfloat16"


def test_threads_and_memory_and_the_hardware_record():
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(0)
        assert torch.get_num_threads() == 1  # never zero
    finally:
        torch.set_num_threads(before)
    peak, kind = peak_memory_mb("cpu")
    assert peak > 10 and kind == "max_rss"
    record = describe_hardware("cpu")
    assert record["gpu"] is None and record["torch"] == torch.__version__
    assert record["cpu"] and describe_cpu()["cpu_cores"] >= 1


def test_freed_memory_goes_back_to_the_os():
    """After a large tensor is freed, malloc_trim returns its pages: RSS falls back (glibc here)."""
    import platform

    import psutil
    import torch

    from vault_distill.hardware import release_freed_memory

    process = psutil.Process()
    before = process.memory_info().rss
    chunks = [torch.ones(64, 1024) for _ in range(4096)]  # 1 GB in 256 KB pieces, below mmap's threshold
    del chunks
    released = release_freed_memory()
    if platform.libc_ver()[0] == "glibc":
        assert released and process.memory_info().rss - before < 256 * 2**20
