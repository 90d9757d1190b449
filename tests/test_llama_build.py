"""The llama.cpp library that setup builds: the widest x86 feature set the CPU reports, never AMX
(its ggml path, ggml_backend_amx_mul_mat, crashes on AMX CPUs), and its own wheel per feature set."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import ROOT

SETUP = ROOT / "envs" / "setup.sh"
BASE_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2"
AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl"
CPUS = {
    # Intel Xeon (Sapphire Rapids), the runner kind whose native build crashed.
    "intel with amx": (f"{BASE_FLAGS} {AVX512} avx512_vnni avx512vbmi avx512_bf16 amx_bf16 amx_tile amx_int8",
                       "avx512-vnni-vbmi-bf16"),
    # AMD EPYC (Zen 4), this machine's kind.
    "amd zen 4": (f"{BASE_FLAGS} {AVX512} avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni avx512_bf16",
                  "avx512-vnni-vbmi-bf16"),
    "avx512 without bf16": (f"{BASE_FLAGS} {AVX512} avx512_vnni", "avx512-vnni"),
    "avx512f alone is not enough": (f"{BASE_FLAGS} avx512f", "portable"),
    "avx2 only": (BASE_FLAGS, "portable"),
}  # fmt: skip


def llama_variant(cpuinfo=None) -> tuple[str, str]:
    env = {**os.environ, **({"VAULT_DISTILL_CPUINFO": str(cpuinfo)} if cpuinfo else {})}
    done = subprocess.run(["bash", str(SETUP), "--llama-variant"], env=env, capture_output=True, text=True, check=True)
    name, _, cmake_args = done.stdout.strip().partition(" ")
    return name, cmake_args


@pytest.mark.parametrize("cpu", CPUS)
def test_the_build_follows_the_cpu_flags_and_never_enables_amx(tmp_path, cpu):
    flags, expected = CPUS[cpu]
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    name, cmake_args = llama_variant(tmp_path / "cpuinfo")
    assert name == expected
    args = cmake_args.split()
    assert "-DGGML_NATIVE=OFF" in args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    assert not [arg for arg in args if "AMX" in arg and not arg.endswith("=OFF")]
    assert ("-DGGML_AVX512=ON" in args) == name.startswith("avx512")


def test_the_installed_library_is_this_cpus_build_without_amx():
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    name, _ = llama_variant()
    assert "AMX" not in info, info
    assert ("AVX512 = 1" in info) == name.startswith("avx512"), (name, info)
    for feature in ("vnni", "vbmi", "bf16"):
        assert (f"AVX512_{feature.upper()} = 1" in info) == (feature in name.split("-")), (name, info)
