#!/usr/bin/env bash
# Idempotent environment setup for vault-distill.
#
# - The virtualenv (default: .venv) is reused while envs/requirements.txt is unchanged.
# - llama-cpp-python has no wheel on PyPI. It is compiled once per CPU feature set
#   into a wheel cache outside the repository, so fresh clones reuse it: with the
#   widest AVX512 set the CPU reports (F/BW/VL/CD/DQ, VNNI, VBMI, BF16), and a CPU
#   without AVX512 gets the portable AVX2 build. Each set has its own cache folder,
#   so no CPU is handed a wheel it cannot run.
# - AMX (Intel Xeon 4th gen and later) is built only with envs/patches/llama.cpp-amx-tile-config.patch:
#   unpatched, ggml_backend_amx_mul_mat crashes on its first tile instruction (the tile
#   configuration was built on the stack, where GCC drops its stores). The patch's hash
#   names the wheel's cache folder. VAULT_DISTILL_LLAMA_AMX=off builds without AMX.
# - The llama.cpp converters (the model's and the LoRA adapter's) are taken from that same
#   sdist, so a converter always matches the runtime that loads its output.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VAULT_DISTILL_VENV:-$root/.venv}
cache=${VAULT_DISTILL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-distill}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
requirements=$root/envs/requirements.txt
stamp=$venv/.requirements.sha256

# The llama.cpp build for this CPU: its name keys the wheel cache, its flags the compile.
cpu_flags=" $(grep -m1 '^flags' "${VAULT_DISTILL_CPUINFO:-/proc/cpuinfo}" 2>/dev/null | cut -d: -f2) "
has() { [[ $cpu_flags == *" $1 "* ]]; }
variant=portable
cmake_args="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if has avx512f && has avx512bw && has avx512vl && has avx512cd && has avx512dq; then
  variant=avx512 && cmake_args+=" -DGGML_AVX512=ON"
  if has avx512_vnni; then variant+=-vnni && cmake_args+=" -DGGML_AVX512_VNNI=ON"; fi
  if has avx512vbmi; then variant+=-vbmi && cmake_args+=" -DGGML_AVX512_VBMI=ON"; fi
  if has avx512_bf16; then variant+=-bf16 && cmake_args+=" -DGGML_AVX512_BF16=ON"; fi
  # ggml's AMX kernels (Q4_0, Q4_1, Q8_0 and K-quants) need AMX-INT8 and AVX512-VNNI.
  if has amx_tile && has amx_int8 && has avx512_vnni && [[ ${VAULT_DISTILL_LLAMA_AMX:-on} != off ]]; then
    amx_patch=$root/envs/patches/llama.cpp-amx-tile-config.patch
    variant+=-amx && cmake_args=${cmake_args/-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF/-DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON}
  fi
fi
if [[ ${1:-} == --llama-variant ]]; then
  echo "$variant $cmake_args" && exit 0
fi
build_name=$variant${amx_patch:+-$(sha256sum "$amx_patch" | cut -c1-8)}
wanted=$({ cat "$requirements" "$0"; echo "$build_name"; } | sha256sum | cut -d' ' -f1)
if [[ ${1:-} == --wheel-dir ]]; then  # where this CPU's wheel is cached (benchmarks/llama_cpp_speed.py)
  echo "$cache/wheels/$build_name-$("$python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')"
  exit 0
fi

if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]]; then
  exit 0
fi

llama_version=$(sed -nE 's/^llama-cpp-python(\[[a-z,]+\])?==([^ ]+).*/\2/p' "$requirements")
sdist=$cache/sdist/llama_cpp_python-$llama_version.tar.gz
wheel_dir=$(bash "$0" --wheel-dir)
mkdir -p "$cache/sdist" "$wheel_dir"

if [[ ! -f $sdist ]]; then
  echo "setup: downloading llama-cpp-python $llama_version sdist"
  "$python" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$llama_version" -d "$cache/sdist"
fi
if ! compgen -G "$wheel_dir/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
  echo "setup: compiling llama-cpp-python $llama_version for $variant once (about 9 minutes on 2 cores)"
  # Built aside and moved in whole, so that an interrupted compile never looks cached.
  building=$(mktemp -d "$cache/wheels/.building-XXXXXX")
  source=$sdist
  if [[ -n ${amx_patch:-} ]]; then
    source=$building/src && mkdir "$source" && tar -xzf "$sdist" -C "$source" --strip-components=1
    # The ceiling keeps git from mistaking an enclosing repository for the patch's target.
    GIT_CEILING_DIRECTORIES=$building git -C "$source" apply "$amx_patch" ||
      { echo "setup: $amx_patch does not apply to llama-cpp-python $llama_version" >&2 && exit 1; }
  fi
  CMAKE_ARGS="$cmake_args" "$python" -m pip wheel --quiet --no-deps -w "$building" "$source"
  mv "$building"/llama_cpp_python-*.whl "$wheel_dir"/ && rm -rf "$building"
fi

echo "setup: creating $venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet --find-links "$wheel_dir" -r "$requirements"
# Same version, other build: pip would keep a venv's previous llama.cpp build, so swap it in.
"$venv/bin/pip" install --quiet --no-deps --force-reinstall "$wheel_dir"/llama_cpp_python-"$llama_version"-*.whl

converter=$venv/share/llama.cpp
rm -rf "$converter" && mkdir -p "$converter"
tar -xzf "$sdist" -C "$converter" --strip-components=3 \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/convert_hf_to_gguf.py" \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/convert_lora_to_gguf.py" \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/conversion" \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/gguf-py"
echo "$llama_version" >"$converter/VERSION"

echo "$wanted" >"$stamp"
echo "setup: ready ($venv)"
