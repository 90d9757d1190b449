"""Training speed: the seed recipe against the pipeline's own train step, side by side.

Both runs train one task's real SFT split (what `snakemake results/<task>/sft/train.jsonl`
wrote) for the same epochs, in this one process, on this machine:

1. the seed recipe, as qlora-rdna4's train.py does it: HQQ 4-bit quantization with
   optimize=True inside the run, batch 1 x grad-accum 8, gradient checkpointing on, bf16,
   TRL's SFTTrainer with its default completion-only loss, LoRA dropout 0.05;
2. the pipeline: the quantize rule's quantization (optimize=False, done once for all five
   tasks but counted here in full) and `train_adapter`, exactly as the train rule runs it.

The last line is `speedup_vs_seed=<x> mfu=<x> tok_s=<n> seed_tok_s=<n>`:
- speedup_vs_seed: the seed job's wall time over the pipeline job's, quantization included;
- tok_s / seed_tok_s: unpadded trained tokens per second of training;
- mfu: model FLOPs per token times tok_s, over the FLOP/s of one large matmul in the dtype the
  step computes in, measured on the spot. That is bf16 where the device computes bf16 natively,
  and fp32 where it does not (a CPU without AVX512_BF16 or AMX runs bf16 matmuls at a few
  GFLOP/s: a bf16 ceiling there would make any fp32 step look faster than the machine).
  A LoRA step's FLOPs per token are 4 x the frozen matmul weights (forward and input gradient;
  a frozen weight has no weight gradient) + 6 x the trained ones. Full fine-tuning's
  6 x parameters overstates a LoRA step by half: it read mfu 1.14 on Zen 3.

    .venv/bin/python benchmarks/train_throughput.py                 # the default task, full epochs
    .venv/bin/python benchmarks/train_throughput.py --tiny          # a few steps: proves it runs
    .venv/bin/python benchmarks/train_throughput.py --profile 8     # where the pipeline's step spends its time
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import bf16_matmul_flops, matmul_flops  # noqa: E402

from vault_distill.config import load_config, training_settings  # noqa: E402
from vault_distill.hardware import resolve_device, resolve_dtype, set_threads  # noqa: E402
from vault_distill.quantize import load_quantized, quantize_base  # noqa: E402
from vault_distill.runtime import read_jsonl  # noqa: E402
from vault_distill.train import train_adapter  # noqa: E402

SEED_BATCH_SIZE = 1
SEED_GRAD_ACCUM = 8
SEED_LORA_DROPOUT = 0.05


def weight_shapes(model_dir: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    shapes = {}
    for shard in model_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                shapes[name] = handle.get_slice(name).get_shape()
    return shapes


def parameter_count(model_dir: Path) -> int:
    return sum(math.prod(shape) for shape in weight_shapes(model_dir).values())


def matmul_parameters(model_dir: Path) -> int:
    """Weights that a token multiplies: every 2-D weight but the input embedding, which is a row
    lookup. With tied embeddings that same matrix is the output projection, so it counts once."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    tied = config.get("tie_word_embeddings", False)
    return sum(
        math.prod(shape)
        for name, shape in weight_shapes(model_dir).items()
        if len(shape) == 2 and (tied or not name.endswith("embed_tokens.weight"))
    )


def lora_step_flops_per_token(frozen_matmul_parameters: int, trainable_parameters: int) -> int:
    """A LoRA step's model FLOPs per token: 2 for the forward and 2 for the input gradient of each
    frozen weight (it has no weight gradient), 6 for each trained one. Recomputed activations
    (gradient checkpointing) and dequantization are overhead, not counted, as MFU counts them."""
    return 4 * frozen_matmul_parameters + 6 * trainable_parameters


def seed_recipe(
    rows: list[dict],
    base_dir: Path,
    tokenizer_dir: Path,
    work: Path,
    settings: dict,
    device: str,
    dtype,
    optimize: bool,
) -> dict:
    """The seed's train.py: quantize with optimize=True, then stock TRL at batch 1 x 8."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    started = time.monotonic()
    seed_quantization = {"method": "hqq", "nbits": 4, "group_size": 64, "optimize": optimize}
    quantize_base(base_dir, work / "seed_hqq", seed_quantization, device=device, dtype=dtype)
    torch.manual_seed(settings["seed"])
    model = load_quantized(work / "seed_hqq", device=device, dtype=dtype)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(
        model,
        LoraConfig(
            r=settings["lora_r"],
            lora_alpha=settings["lora_alpha"],
            lora_dropout=SEED_LORA_DROPOUT,
            target_modules=list(settings["target_modules"]),
            task_type="CAUSAL_LM",
        ),
    )
    args = SFTConfig(
        output_dir=str(work / "seed_run"),
        num_train_epochs=settings["epochs"],
        max_steps=settings["max_steps"] or -1,
        per_device_train_batch_size=SEED_BATCH_SIZE,
        gradient_accumulation_steps=SEED_GRAD_ACCUM,
        learning_rate=settings["learning_rate"],
        lr_scheduler_type="cosine",
        seed=settings["seed"],
        bf16=dtype == torch.bfloat16,
        use_cpu=device == "cpu",
        max_length=settings["max_length"],
        completion_only_loss=True,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(str(tokenizer_dir)),
    )
    train_started = time.monotonic()
    trainer.train()
    train_wall = time.monotonic() - train_started
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    steps_per_epoch = math.ceil(len(rows) / (SEED_BATCH_SIZE * SEED_GRAD_ACCUM))
    tokens = tokens_per_epoch * trainer.state.global_step / steps_per_epoch
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "job_wall_s": time.monotonic() - started,
        "train_wall_s": train_wall,
        "tokens": tokens,
        "tok_s": tokens / train_wall,
        "steps": trainer.state.global_step,
        "final_train_loss": losses[-1] if losses else None,
    }


def step_profiler(steps: int, warmup: int, device: str):
    """A TrainerCallback that records `steps` optimizer steps after `warmup` with torch.profiler
    (the first steps pay for allocations and kernel choices); `.table()` is where their time went."""
    import torch
    from transformers import TrainerCallback

    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)

    class StepProfiler(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            schedule = torch.profiler.schedule(wait=0, warmup=warmup, active=steps, repeat=1)
            self.profiler = torch.profiler.profile(activities=activities, schedule=schedule, record_shapes=True)
            self.profiler.start()

        def on_step_end(self, args, state, control, **kwargs):
            self.profiler.step()

        def on_train_end(self, args, state, control, **kwargs):
            self.profiler.stop()

        def table(self, rows: int = 30) -> str:
            sort_by = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
            return self.profiler.key_averages().table(sort_by=sort_by, row_limit=rows)

    return StepProfiler()


def pipeline_recipe(
    rows: list[dict],
    train_file: Path,
    base_dir: Path,
    tokenizer_dir: Path,
    work: Path,
    settings: dict,
    quantization: dict,
    device: str,
    dtype,
    threads: int,
    callbacks: list | None = None,
) -> dict:
    """The quantize rule and the train rule, as the workflow runs them."""
    started = time.monotonic()
    quantize_base(base_dir, work / "hqq", quantization, device=device, dtype=dtype)
    result = train_adapter(
        train_rows=rows,
        val_rows=[],
        quant_dir=work / "hqq",
        tokenizer_dir=tokenizer_dir,
        adapter_dir=work / "adapter",
        settings=settings,
        checkpoint_root=work / "checkpoints",
        checkpoint_every=10**6,
        train_file=train_file,
        threads=threads,
        callbacks=callbacks,
    )
    metrics = result.metrics
    return {
        "job_wall_s": time.monotonic() - started,
        "train_wall_s": metrics["wall_time_s"],
        "tokens": metrics["trained_tokens"],
        "tok_s": metrics["tokens_per_s"],
        "steps": metrics["steps"],
        "final_train_loss": metrics["final_train_loss"],
        "gradient_checkpointing": metrics["gradient_checkpointing"],
        "trainable_parameters": metrics["trainable_parameters"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="judge")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="a build's results folder")
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--epochs", type=float, help="override the task's epochs (both recipes)")
    parser.add_argument("--examples", type=int, help="train on the first N examples only")
    parser.add_argument("--tiny", action="store_true", help="8 examples, 1 epoch, no HQQ optimize: only proves it runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--profile", type=int, metavar="STEPS", help="profile STEPS steps of the pipeline alone")
    args = parser.parse_args()

    config = load_config(args.config)
    settings = training_settings(config, args.task)
    examples, epochs, seed_optimize = args.examples, args.epochs, True
    if args.tiny:
        examples, epochs, seed_optimize = examples or 8, epochs or 1, False
        settings["max_steps"] = None
    if epochs:
        settings["epochs"] = epochs
    train_file = args.results / args.task / "sft" / "train.jsonl"
    base_dir, tokenizer_dir = args.results / "base" / "model", args.results / "base" / "tokenizer"
    for needed in (train_file, base_dir, tokenizer_dir):
        if not needed.exists():
            sys.exit(f"{needed} is missing: build it first, e.g. snakemake --cores 2 {train_file} {base_dir}")
    rows = read_jsonl(train_file)[:examples]

    import torch

    set_threads(args.threads)
    device = resolve_device(settings["device"])
    dtype = resolve_dtype(settings["dtype"], device)
    size = 8192 if device.startswith("cuda") else 2048
    peak = matmul_flops(device, dtype, size, repeats=20 if device.startswith("cuda") else 5)
    # The bf16 figure is printed with every timing, so that runners can be compared; where the
    # step does not compute in bf16 it is measured once, briefly (it can be 100x slower).
    bf16 = peak if dtype == torch.bfloat16 else bf16_matmul_flops(device, size, repeats=1)
    params = parameter_count(base_dir)
    print(
        f"device={device} dtype={dtype} threads={args.threads} bf16_matmul_{size}={bf16 / 1e9:.1f} GFLOP/s "
        f"ceiling_{str(dtype).removeprefix('torch.')}_matmul_{size}={peak / 1e9:.1f} GFLOP/s"
    )
    print(f"task={args.task} examples={len(rows)} epochs={settings['epochs']} parameters={params}")

    if args.profile:
        profile_pipeline(args, rows, train_file, base_dir, tokenizer_dir, settings, config, device, dtype)
        return
    with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
        work = Path(tmp)
        (work / "seed").mkdir()
        (work / "pipeline").mkdir()
        seed = seed_recipe(rows, base_dir, tokenizer_dir, work / "seed", settings, device, dtype, seed_optimize)
        print("seed", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in seed.items()}))
        ours = pipeline_recipe(
            rows,
            train_file,
            base_dir,
            tokenizer_dir,
            work / "pipeline",
            settings,
            config["quantization"],
            device,
            dtype,
            args.threads,
        )
        print("pipeline", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in ours.items()}))

    flops_per_token = lora_step_flops_per_token(matmul_parameters(base_dir), ours["trainable_parameters"])
    print(f"model_flops_per_token={flops_per_token} (4 x frozen matmul weights + 6 x trained)")
    mfu = flops_per_token * ours["tok_s"] / peak
    print(
        f"speedup_vs_seed={seed['job_wall_s'] / ours['job_wall_s']:.2f} mfu={mfu:.2f} "
        f"tok_s={ours['tok_s']:.0f} seed_tok_s={seed['tok_s']:.0f}"
    )


PROFILE_WARMUP_STEPS = 2


def profile_pipeline(args, rows, train_file, base_dir, tokenizer_dir, settings, config, device, dtype) -> None:
    """The pipeline's train step alone, under torch.profiler: its tok/s and the ops that take the time."""
    settings["max_steps"] = PROFILE_WARMUP_STEPS + args.profile
    profiler = step_profiler(args.profile, PROFILE_WARMUP_STEPS, device)
    with tempfile.TemporaryDirectory(prefix="train_profile_") as tmp:
        ours = pipeline_recipe(rows, train_file, base_dir, tokenizer_dir, Path(tmp), settings,
                               config["quantization"], device, dtype, args.threads, callbacks=[profiler])  # fmt: skip
    print(profiler.table())
    print(f"profiled_steps={args.profile} tok_s={ours['tok_s']:.0f} (every step, warm-up included)")


if __name__ == "__main__":
    main()
