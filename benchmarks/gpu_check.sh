#!/usr/bin/env bash
# The GPU check, ready to run on a machine with a CUDA GPU (not yet run on one: see README,
# "Cost as the model grows"). It prints what it measures; nothing here runs on the CPU.
#
#   bash benchmarks/gpu_check.sh            # after `make setup` with a CUDA build of torch
#
# 1. torch sees the GPU, and bf16 matmul speed on it;
# 2. benchmarks/scale.py on the GPU: every model stage at the 0.5B, 1.5B and 3B shapes, with
#    torch's CUDA peak beside each stage's RSS;
# 3. one default task (judge) end to end on the GPU in a scratch copy of the workflow, with its
#    teacher answers from this checkout's cache: stage times and train_metrics.json;
# 4. benchmarks/quant_backends.py on the GPU: HQQ against bitsandbytes NF4 with its CUDA kernels.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${VAULT_DISTILL_VENV:-$root/.venv}/bin/python

"$python" - <<'EOF'
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
"$python" "$root/benchmarks/scale.py"

echo "== judge end to end on the GPU"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
git -C "$root" archive HEAD | tar -x -C "$scratch"
teacher_cache=$root/cache/teacher
started=$(date +%s)
(cd "$scratch" && "$python" -m snakemake --cores all judge \
    --config "teacher={cache_dir: $teacher_cache}" >"$scratch/judge.log" 2>&1) ||
    { tail -50 "$scratch/judge.log"; exit 1; }
echo "judge: $(($(date +%s) - started)) s end to end"
for stage in base quantize base_gguf judge/train judge/merge judge/convert judge/evaluate; do
    printf '%-16s %s\n' "$stage" "$(tail -1 "$scratch/results/benchmarks/$stage.tsv" | cut -f1,3)"
done
"$python" -c "import json, sys; m = json.load(open(sys.argv[1])); print({k: m[k] for k in ('device', 'dtype', 'tokens_per_s', 'peak_memory_mb', 'peak_memory_kind', 'wall_time_s', 'eval_loss')})" \
    "$scratch/results/judge/train_metrics.json"
"$python" -c "import json, sys; e = json.load(open(sys.argv[1]))['models']; print({m: (e[m]['compliant'], e[m]['answers']) for m in e})" \
    "$scratch/results/judge/eval.json"

echo "== HQQ against NF4 on the GPU (judge's split from the run above)"
"$python" "$root/benchmarks/quant_backends.py" --results "$scratch/results" --kernel-steps 8
