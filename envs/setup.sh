#!/usr/bin/env bash
# Idempotent environment setup for vault-distill.
#
# - The virtualenv (default: .venv) is reused while envs/requirements.txt is unchanged.
# - llama-cpp-python has no wheel on PyPI. It is compiled once per CPU feature set
#   into a wheel cache outside the repository, so fresh clones reuse it: with the
#   widest AVX512 set the CPU reports (F/BW/VL/CD/DQ, VNNI, VBMI, BF16), and with
#   every AMX path off (the native build hits an AMX general-protection fault in
#   ggml_backend_amx_mul_mat). A CPU without AVX512 gets the portable AVX2 build.
#   Each set has its own cache folder, so no CPU is handed a wheel it cannot run.
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
fi
if [[ ${1:-} == --llama-variant ]]; then
  echo "$variant $cmake_args" && exit 0
fi
wanted=$({ cat "$requirements" "$0"; echo "$variant"; } | sha256sum | cut -d' ' -f1)

if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]]; then
  exit 0
fi

llama_version=$(sed -nE 's/^llama-cpp-python(\[[a-z,]+\])?==([^ ]+).*/\2/p' "$requirements")
py_tag=$("$python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
sdist=$cache/sdist/llama_cpp_python-$llama_version.tar.gz
wheel_dir=$cache/wheels/$variant-$py_tag
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
  CMAKE_ARGS="$cmake_args" "$python" -m pip wheel --quiet --no-deps -w "$building" "$sdist"
  mv "$building"/llama_cpp_python-*.whl "$wheel_dir"/ && rmdir "$building"
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
