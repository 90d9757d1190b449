"""The llama.cpp library that setup builds: the widest x86 feature set the CPU reports, its own wheel
per feature set, and AMX only with the patch that stops ggml_backend_amx_mul_mat crashing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

SETUP = ROOT / "envs" / "setup.sh"
BASE_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2"
AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl"
CPUS = {
    # Intel Xeon (Sapphire Rapids), the runner kind whose native build crashed.
    "intel with amx": (f"{BASE_FLAGS} {AVX512} avx512_vnni avx512vbmi avx512_bf16 amx_bf16 amx_tile amx_int8",
                       "avx512-vnni-vbmi-bf16-amx"),
    "amx without avx512_vnni": (f"{BASE_FLAGS} {AVX512} amx_tile amx_int8", "avx512"),
    # AMD EPYC (Zen 4), this machine's kind.
    "amd zen 4": (f"{BASE_FLAGS} {AVX512} avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni avx512_bf16",
                  "avx512-vnni-vbmi-bf16"),
    "avx512 without bf16": (f"{BASE_FLAGS} {AVX512} avx512_vnni", "avx512-vnni"),
    "avx512f alone is not enough": (f"{BASE_FLAGS} avx512f", "portable"),
    "avx2 only": (BASE_FLAGS, "portable"),
}  # fmt: skip


AMX_FLAGS = {"-DGGML_AMX_TILE=ON", "-DGGML_AMX_INT8=ON"}


def llama_variant(cpuinfo=None, **env) -> tuple[str, str]:
    env = {**os.environ, **({"VAULT_DISTILL_CPUINFO": str(cpuinfo)} if cpuinfo else {}), **env}
    done = subprocess.run(["bash", str(SETUP), "--llama-variant"], env=env, capture_output=True, text=True, check=True)
    name, _, cmake_args = done.stdout.strip().partition(" ")
    return name, cmake_args


def write_cpuinfo(folder, flags: str):
    (folder / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return folder / "cpuinfo"


@pytest.mark.parametrize("cpu", CPUS)
def test_the_build_follows_the_cpu_flags(tmp_path, cpu):
    flags, expected = CPUS[cpu]
    name, cmake_args = llama_variant(write_cpuinfo(tmp_path, flags))
    assert name == expected
    args = set(cmake_args.split())
    assert "-DGGML_NATIVE=OFF" in args
    assert "-DGGML_AMX_BF16=OFF" in args  # no ggml kernel uses it
    amx = name.endswith("-amx")
    assert (args >= AMX_FLAGS) == amx
    assert not amx or "-DGGML_AVX512_VNNI=ON" in args  # ggml's AMX kernels need both
    assert amx or {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF"} <= args
    assert ("-DGGML_AVX512=ON" in args) == name.startswith("avx512")


def test_amx_can_be_turned_off(tmp_path):
    name, cmake_args = llama_variant(write_cpuinfo(tmp_path, CPUS["intel with amx"][0]), VAULT_DISTILL_LLAMA_AMX="off")
    assert name == "avx512-vnni-vbmi-bf16"
    assert not AMX_FLAGS & set(cmake_args.split())


def test_the_amx_patch_applies_to_the_pinned_sdist(tmp_path):
    """setup refuses to build AMX without it; a new llama-cpp-python pin must carry a patch that applies."""
    setup = SETUP.read_text()
    patch = ROOT / "envs" / "patches" / "llama.cpp-amx-tile-config.patch"
    assert patch.name in setup
    sdists = sorted((Path.home() / ".cache" / "vault-distill" / "sdist").glob("llama_cpp_python-*.tar.gz"))
    pinned = [path for path in sdists if f"-{installed_version()}.tar.gz" in path.name]
    if not pinned:
        pytest.skip("setup's sdist cache is elsewhere")
    mmq = "vendor/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp"
    subprocess.run(["tar", "-xzf", pinned[0], "-C", tmp_path, "--strip-components=1", f"{pinned[0].name[:-7]}/{mmq}"],
                   check=True)  # fmt: skip
    subprocess.run(["git", "-C", tmp_path, "apply", "--check", patch], check=True,
                   env={**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)})  # fmt: skip


def installed_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def test_the_installed_library_is_this_cpus_build():
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    name, _ = llama_variant()
    assert ("AMX_INT8 = 1" in info) == name.endswith("-amx"), (name, info)
    assert ("AVX512 = 1" in info) == name.startswith("avx512"), (name, info)
    for feature in ("vnni", "vbmi", "bf16"):
        assert (f"AVX512_{feature.upper()} = 1" in info) == (feature in name.split("-")), (name, info)


# Runs in its own process: a crash in a kernel (the unpatched AMX one dies with SIGILL) fails the
# test instead of killing pytest. Logits of the bundled Q4_1 model, served as every stage serves it,
# before and after a PyTorch bf16 matmul on the same threads (oneDNN's AMX kernels release the tiles
# after use, as the convert check and the prefer stage do between llama.cpp calls), and of the same
# weights dequantized to F32, which no quantized kernel (AMX, REPACK, tinyBLAS) touches.
FORWARD = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    import torch
    import llama_cpp
    from llama_cpp import Llama

    source, reference, text = sys.argv[1], sys.argv[2], sys.argv[3]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = 0, True, 2  # 0: LLAMA_FTYPE_ALL_F32
    assert llama_cpp.llama_model_quantize(source.encode(), reference.encode(), ctypes.byref(params)) == 0

    def load(path):
        return Llama(model_path=path, n_ctx=512, logits_all=True, n_threads=2, n_threads_batch=2, verbose=True)

    def logits(llm):
        tokens = llm.tokenize(text.encode())[:256]
        llm.reset()
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float64)

    llm = load(source)
    served = logits(llm)
    torch.set_num_threads(2)
    matrix = torch.randn(512, 512, dtype=torch.bfloat16)
    (matrix @ matrix).sum()
    served_again = logits(llm)
    exact = logits(load(reference))
    log_p = lambda x: x - x.max(1, keepdims=True) - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True))
    p, q = log_p(exact), log_p(served)
    print(json.dumps({"kl": float((np.exp(p) * (p - q)).sum(1).mean()),
                      "argmax": float((served.argmax(1) == exact.argmax(1)).mean()),
                      "after_torch_max_diff": float(np.abs(served_again - served).max())}))
""")  # fmt: skip


def test_the_served_forward_matches_its_dequantized_reference(tmp_path):
    """The prefill goes through the build's fastest kernels (AMX's tile path where built). It must not
    crash, nor change after PyTorch used the same threads, nor drift from the exact weights: KL 0.0036
    for AVX512 and 0.0037 for AMX on the Intel runner (8-bit activations, 400 tokens). The unpatched
    AMX build dies here with SIGILL, and the first patch (tiles configured once per thread) after
    the matmul."""
    from vault_distill.models import bundled_gguf

    text = "\n".join(path.read_text() for path in sorted((ROOT / "resources" / "vault").rglob("*.md"))[:8])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    model = str(bundled_gguf("bundled:smollm2", "model"))
    args = [sys.executable, "-c", FORWARD, model, str(tmp_path / "f32.gguf"), text]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("AMX model buffer" in done.stderr) == llama_variant()[0].endswith("-amx"), done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["kl"] < 0.02, measured
    assert measured["argmax"] > 0.9, measured
    assert measured["after_torch_max_diff"] == 0.0, measured
