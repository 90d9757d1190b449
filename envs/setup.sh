#!/usr/bin/env bash
# Idempotent environment setup for vault-distill.
#
# - The virtualenv (default: .venv) is reused while envs/requirements.txt is unchanged.
# - llama-cpp-python has no wheel on PyPI. It is compiled once, portable
#   (-DGGML_NATIVE=OFF: the native build hits an AMX general-protection fault on
#   some CPUs), into a wheel cache outside the repository, so fresh clones reuse it.
# - The llama.cpp converter is taken from that same sdist, so the converter always
#   matches the runtime that loads its output.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VAULT_DISTILL_VENV:-$root/.venv}
cache=${VAULT_DISTILL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-distill}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
requirements=$root/envs/requirements.txt
stamp=$venv/.requirements.sha256
wanted=$(cat "$requirements" "$0" | sha256sum | cut -d' ' -f1)

if [[ -f $stamp && $(cat "$stamp") == "$wanted" ]]; then
  exit 0
fi

llama_version=$(sed -nE 's/^llama-cpp-python(\[[a-z,]+\])?==([^ ]+).*/\2/p' "$requirements")
py_tag=$("$python" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
sdist=$cache/sdist/llama_cpp_python-$llama_version.tar.gz
wheel_dir=$cache/wheels/portable-$py_tag
mkdir -p "$cache/sdist" "$wheel_dir"

if [[ ! -f $sdist ]]; then
  echo "setup: downloading llama-cpp-python $llama_version sdist"
  "$python" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$llama_version" -d "$cache/sdist"
fi
if ! compgen -G "$wheel_dir/llama_cpp_python-$llama_version-*.whl" >/dev/null; then
  echo "setup: compiling llama-cpp-python $llama_version once (about 9 minutes on 2 cores)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$python" -m pip wheel --quiet --no-deps \
    -w "$wheel_dir" "$sdist"
fi

echo "setup: creating $venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet --find-links "$wheel_dir" -r "$requirements"

converter=$venv/share/llama.cpp
rm -rf "$converter" && mkdir -p "$converter"
tar -xzf "$sdist" -C "$converter" --strip-components=3 \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/convert_hf_to_gguf.py" \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/conversion" \
  "llama_cpp_python-$llama_version/vendor/llama.cpp/gguf-py"
echo "$llama_version" >"$converter/VERSION"

echo "$wanted" >"$stamp"
echo "setup: ready ($venv)"
