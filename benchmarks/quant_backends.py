"""bitsandbytes NF4 against HQQ, side by side on one task's SFT split, in this one process.

For each method, `quantization.method` as the quantize and train rules run it:
- quantize: wall time, size on disk, size in memory (the loaded model's tensors, tied ones once);
- train (`train_adapter`, the task's training settings): trained tok/s, peak memory, final train
  loss and eval loss on the task's val split;
- the largest absolute dequantization error against the bf16 weights, per layer type.

The pipeline keeps the frozen 4-bit weights dequantized between steps where they fit
(`training.cache_dequantized_weights: auto`), for either method. `--kernel-steps N` also trains N
steps of each method with that cache off, so each library's own 4-bit matmul is timed too (on a
CPU without the `kernels` package, bitsandbytes' is a slow fallback).

Each method runs in a fresh child process of this one, one after the other, so that neither
inherits the other's memory: peak memory is that process's max RSS on the CPU, torch's max
allocated on CUDA (hardware.peak_memory_mb, as train_metrics.json reports it). The last line is

    nf4_over_hqq_tok_s=<x> nf4_peak_mb=<n> hqq_peak_mb=<n> nf4_eval_loss=<x> hqq_eval_loss=<x>

    .venv/bin/python benchmarks/quant_backends.py                 # judge, full training
    .venv/bin/python benchmarks/quant_backends.py --kernel-steps 8
    .venv/bin/python benchmarks/quant_backends.py --tiny          # 2 steps: proves it runs
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import bf16_matmul_flops  # noqa: E402
from train_throughput import load_config  # noqa: E402

from vault_distill.config import training_settings  # noqa: E402
from vault_distill.hardware import peak_memory_mb, resolve_device, resolve_dtype, set_threads  # noqa: E402
from vault_distill.quantize import dequantize, is_quantized_layer, load_quantized, quantize_base  # noqa: E402
from vault_distill.resources import folder_mb  # noqa: E402
from vault_distill.runtime import read_jsonl  # noqa: E402
from vault_distill.train import train_adapter  # noqa: E402

METHODS = ("hqq", "nf4")


def tensor_mb(model) -> float:
    """Bytes of every tensor the loaded model holds (parameters, buffers, 4-bit state), tied once."""
    import torch

    seen, total = set(), 0
    for tensor in model.state_dict().values():
        if torch.is_tensor(tensor) and tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total / 2**20


def dequantization_error(model, base_dir: Path, dtype) -> dict[str, dict[str, float]]:
    """Per layer type (q_proj, …, down_proj): the largest and the mean |W_4bit - W_bf16|."""
    import torch
    from transformers import AutoModelForCausalLM

    original = dict(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype).named_modules())
    errors = defaultdict(lambda: {"max": 0.0, "sum": 0.0, "count": 0})
    for name, module in model.named_modules():
        if not is_quantized_layer(module):
            continue
        with torch.no_grad():
            diff = (dequantize(module).float() - original[name].weight.float()).abs()
        entry = errors[name.rsplit(".", 1)[-1]]
        entry["max"] = max(entry["max"], diff.max().item())
        entry["sum"] += diff.sum().item()
        entry["count"] += diff.numel()
    return {kind: {"max": e["max"], "mean": e["sum"] / e["count"]} for kind, e in sorted(errors.items())}


def run_method(method: str, data: dict, settings: dict, quantization: dict, work: Path, threads: int) -> dict:
    """Quantize the base with `method`, measure it, then train the task's adapter on it. Runs in
    a fresh child process, so that its peak memory is its own."""
    set_threads(threads)
    device = resolve_device(settings["device"])
    dtype = resolve_dtype(settings["dtype"], device)
    quant_dir = work / method
    info = quantize_base(data["base_dir"], quant_dir, {**quantization, "method": method}, device, dtype)
    quantize_peak_mb, peak_kind = peak_memory_mb(device)
    model = load_quantized(quant_dir, device, dtype)
    measured = {
        "quantize_s": info["seconds"],
        "disk_mb": folder_mb(quant_dir),
        "memory_mb": tensor_mb(model),
        "dequant_error": dequantization_error(model, data["base_dir"], dtype),
        "quantize_peak_mb": quantize_peak_mb,
    }
    del model
    gc.collect()
    metrics = train(method, data, settings, quant_dir, work, threads)
    return measured | {
        "peak_mb": peak_memory_mb(device)[0],
        "peak_kind": peak_kind,
        "tok_s": metrics["tokens_per_s"],
        "steps": metrics["steps"],
        "final_train_loss": metrics["final_train_loss"],
        "eval_loss": metrics["eval_loss"],
        "dequantized_weight_cache": metrics["dequantized_weight_cache"],
    }


def in_child(function, *args):
    """`function(*args)` in a fresh spawned process: no memory, threads or imports carried over."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def train(method: str, data: dict, settings: dict, quant_dir: Path, work: Path, threads: int) -> dict:
    result = train_adapter(
        train_rows=data["train"],
        val_rows=data["val"],
        quant_dir=quant_dir,
        tokenizer_dir=data["tokenizer_dir"],
        adapter_dir=work / f"{method}-adapter-{settings['cache_dequantized_weights']}",
        settings=settings,
        checkpoint_root=work / "checkpoints",
        checkpoint_every=10**6,
        train_file=data["train_file"],
        threads=threads,
    )
    return result.metrics


def print_method(method: str, row: dict) -> None:
    print(
        f"{method}: quantize {row['quantize_s']:.1f} s, disk {row['disk_mb']:.1f} MB, memory {row['memory_mb']:.1f} MB;"
        f" train {row['tok_s']} tok/s over {row['steps']} steps (dequantized cache: {row['dequantized_weight_cache']}),"
        f" peak {row['peak_mb']:.0f} MB ({row['peak_kind']}; after quantize {row['quantize_peak_mb']:.0f});"
        f" final train loss {row['final_train_loss']:.4f}, eval loss {row['eval_loss']:.4f}"
    )
    for kind, error in row["dequant_error"].items():
        print(f"  {method} |W_4bit - W_bf16| {kind:<10} max {error['max']:.4f}  mean {error['mean']:.5f}")


def kernel_rows(data: dict, settings: dict, work: Path, steps: int, threads: int) -> dict[str, float]:
    """tok/s of each library's own 4-bit matmul: `steps` steps with the dequantized cache off."""
    uncached = {**settings, "cache_dequantized_weights": False, "max_steps": steps}
    return {
        method: in_child(train, method, data, uncached, work / method, work, threads)["tokens_per_s"]
        for method in METHODS
    }


def task_data(args) -> dict:
    results = args.results
    data = {
        "train_file": args.train or results / args.task / "sft" / "train.jsonl",
        "val_file": args.val or results / args.task / "sft" / "val.jsonl",
        "base_dir": args.base or results / "base" / "model",
        "tokenizer_dir": args.tokenizer or results / "base" / "tokenizer",
    }
    for needed in data.values():
        if not Path(needed).exists():
            sys.exit(
                f"{needed} is missing: build it first, e.g. snakemake --cores 2 results/{args.task}/sft/train.jsonl"
            )
    return data | {"train": read_jsonl(data["train_file"]), "val": read_jsonl(data["val_file"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="judge")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--base", type=Path, help="an HF model folder (default: results/base/model)")
    parser.add_argument("--tokenizer", type=Path, help="default: results/base/tokenizer")
    parser.add_argument("--train", type=Path, help="default: results/<task>/sft/train.jsonl")
    parser.add_argument("--val", type=Path, help="default: results/<task>/sft/val.jsonl")
    parser.add_argument("--max-steps", type=int, help="cap the training (both methods alike)")
    parser.add_argument("--max-length", type=int, help="the task's max_length otherwise (rows past it lose loss)")
    parser.add_argument("--kernel-steps", type=int, default=0, help="also time N steps with the cache off")
    parser.add_argument("--tiny", action="store_true", help="2 steps, 2 kernel steps: only proves it runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()

    config = load_config(args.config)
    settings = training_settings(config, args.task)
    if args.tiny:
        args.max_steps, args.kernel_steps = args.max_steps or 2, args.kernel_steps or 2
    if args.max_steps:
        settings["max_steps"] = args.max_steps
    if args.max_length:
        settings["max_length"] = args.max_length
    data = task_data(args)
    set_threads(args.threads)
    device = resolve_device(settings["device"])
    matmul = bf16_matmul_flops(device, 8192 if device.startswith("cuda") else 2048, 20 if device != "cpu" else 5)
    print(f"device={device} threads={args.threads} bf16 matmul: {matmul / 1e9:.0f} GFLOP/s (this machine, now)")
    print(f"task={args.task} train={len(data['train'])} val={len(data['val'])} base={data['base_dir']}")
    print("each method runs in a fresh child process of this one, one after the other")

    rows = {}
    with tempfile.TemporaryDirectory(prefix="quant_backends_") as tmp:
        for method in METHODS:
            rows[method] = in_child(run_method, method, data, settings, config["quantization"], Path(tmp), args.threads)
            print_method(method, rows[method])
        if args.kernel_steps:
            kernels = kernel_rows(data, settings, Path(tmp), args.kernel_steps, args.threads)
            print(
                f"own 4-bit matmul, cache off, {args.kernel_steps} steps: hqq {kernels['hqq']} tok/s,"
                f" nf4 {kernels['nf4']} tok/s (nf4/hqq {kernels['nf4'] / kernels['hqq']:.2f})"
            )
    print("json", json.dumps(rows))
    hqq, nf4 = rows["hqq"], rows["nf4"]
    print(
        f"nf4_over_hqq_tok_s={nf4['tok_s'] / hqq['tok_s']:.2f} nf4_peak_mb={nf4['peak_mb']:.0f} "
        f"hqq_peak_mb={hqq['peak_mb']:.0f} nf4_eval_loss={nf4['eval_loss']:.4f} hqq_eval_loss={hqq['eval_loss']:.4f}"
    )


if __name__ == "__main__":
    main()
