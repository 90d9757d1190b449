"""Stage 4: a LoRA adapter per task, trained on the shared 4-bit base (HQQ or NF4) with TRL.

The recipe follows TRL's scripts/sft.py: SFTTrainer on prompt/completion records with
completion-only loss. The records were pre-truncated by the sft stage to fit max_length,
so TRL (which can only keep the start of a sequence) never truncates, and the completion
is never cut.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .chat_format import chat_format
from .config import keys_with_role
from .hardware import describe_hardware, dtype_name, peak_memory_mb, resolve_device, resolve_dtype, set_threads
from .quantize import dequantize, load_quantized, quantized_layers, saved_settings, weight_shape
from .split import tokenize_example
from .track import tracking_arguments

log = logging.getLogger(__name__)

# Share of the free memory that activations may take before gradient checkpointing is
# switched on: the rest is for weights, optimizer state, the allocator and the OS.
ACTIVATION_MEMORY_SHARE = 0.5
# Share of the free memory that the dequantized copy of the frozen 4-bit weights may take.
# Beyond it the weights stay 4-bit between steps, as QLoRA intends (a 7B base on a 24 GB GPU).
DEQUANTIZED_CACHE_MEMORY_SHARE = 0.25

# The settings that shape what is learned, as config/schema.yaml declares them (x-role: makes):
# the train rule's rerun trigger, and which checkpoints a killed training may resume from.
LEARNING_KEYS = keys_with_role("training", "makes")
# The settings that only change how the training runs, for the same adapter (x-role: runs): the
# memory trades and where the run is recorded.
RUN_KEYS = keys_with_role("training", "runs")


@dataclass(frozen=True)
class MemoryDecision:
    """A speed-for-memory trade, decided from what it needs and what the device has free."""

    enabled: bool
    reason: str
    need_mb: float
    budget_mb: float


def activation_bytes(config, batch_size: int, seq_len: int, dtype_bytes: int) -> float:
    """Activation memory kept for backward without checkpointing, per the usual estimate for a
    decoder layer (Korthikanti et al. 2022: ~34·s·b·h bytes in 16-bit + 5·a·s²·b for attention),
    scaled to the training dtype."""
    hidden = config.hidden_size
    layers = config.num_hidden_layers
    heads = config.num_attention_heads
    per_layer = 34 * seq_len * batch_size * hidden + 5 * heads * seq_len**2 * batch_size
    return per_layer * layers * dtype_bytes / 2


def decide_gradient_checkpointing(
    setting, config, batch_size: int, seq_len: int, dtype_bytes: int, free_bytes: float
) -> MemoryDecision:
    """`auto` recomputes activations only when keeping them would not fit the memory budget:
    recomputation costs a third forward pass per step (measured here: 69 vs 108 tok/s)."""
    return _memory_decision(
        setting,
        activation_bytes(config, batch_size, seq_len, dtype_bytes),
        free_bytes * ACTIVATION_MEMORY_SHARE,
        fits=(False, "activations fit the memory budget"),
        exceeds=(True, "activations exceed the memory budget"),
    )


def decide_dequantized_cache(setting, weight_bytes: float, free_bytes: float) -> MemoryDecision:
    """`auto` keeps the frozen base weights dequantized between steps when the copy fits the
    memory budget. HQQ otherwise dequantizes every layer twice per step (forward, and again
    for the input gradient in backward); the cached copy holds the very same values."""
    return _memory_decision(
        setting,
        weight_bytes,
        free_bytes * DEQUANTIZED_CACHE_MEMORY_SHARE,
        fits=(True, "the dequantized weights fit the memory budget"),
        exceeds=(False, "the dequantized weights exceed the memory budget"),
    )


def _memory_decision(
    setting, need: float, budget: float, fits: tuple[bool, str], exceeds: tuple[bool, str]
) -> MemoryDecision:
    """`True`/`False` as set in the config; `auto` picks `fits` or `exceeds` by the budget."""
    mb = (round(need / 2**20, 1), round(budget / 2**20, 1))
    if setting is True or setting is False:
        return MemoryDecision(bool(setting), "set in config", *mb)
    enabled, reason = exceeds if need > budget else fits
    return MemoryDecision(enabled, reason, *mb)


def dequantized_bytes(layers: list, dtype_bytes: int) -> int:
    return sum(math.prod(weight_shape(layer)) for layer in layers) * dtype_bytes


def cache_dequantized_weights(layers: list) -> None:
    """Dequantize each frozen 4-bit weight once; every later forward and backward reuses it.

    HQQ: the product is HQQ's own (`x @ W.t()`, and autograd's `grad @ W` for the input), on the
    weight HQQ's `dequantize` returns, so what is learned does not change (bitwise). NF4: the
    weight bitsandbytes dequantizes to; its fused CPU kernel rounds the product differently, within
    bf16 rounding. Only the repeated unpacking goes away; the 4-bit tensors stay in place.
    """
    import torch

    for layer in layers:
        with torch.no_grad():
            weight = dequantize(layer).detach()
        layer.forward = functools.partial(_matmul_cached, weight, layer.bias)


def _matmul_cached(weight, bias, x):
    import torch

    out = torch.matmul(x.to(weight.dtype), weight.t())
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out.to(x.dtype)


def free_memory_bytes(device: str) -> float:
    import psutil
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info()
        return float(free)
    return float(psutil.virtual_memory().available)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_fingerprint(settings: dict, train_file: str | Path, quantization: dict) -> str:
    """Identifies one training run: a checkpoint is only resumed by the very same run."""
    payload = {
        "settings": {key: settings.get(key) for key in LEARNING_KEYS},
        "train": file_digest(train_file),
        "quantization": quantization,  # the quantize job's saved_settings
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def training_autocast(device: str, dtype):
    """Autocast to the training dtype, for the forward pass.

    The base is already in that dtype, so this only moves the LoRA matmuls, whose weights stay
    fp32 for the optimizer, to bf16/fp16 compute with fp32 accumulation: mixed precision as on
    a GPU. Without it the Trainer does not autocast on the CPU, and PEFT runs every LoRA
    product in fp32 and adds a full-width fp32 copy of each LoRA output to the base output
    (measured: 356 -> 439 tok/s on judge, 2 cores).
    """
    import torch

    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=is_mixed_precision(dtype))


def is_mixed_precision(dtype) -> bool:
    import torch

    return dtype in (torch.bfloat16, torch.float16)


@contextlib.contextmanager
def mixed_precision_forward(model, device: str, dtype):
    """`training_autocast`, without PEFT's cast of every LoRA input to its weights' fp32.

    Under autocast that cast is exact, and autocast casts the input straight back to the training
    dtype for the LoRA product: the products are bitwise the same without it, and each LoRA layer
    loses two full-width copies of its input (and their backward). Measured on the Intel runner:
    `aten::copy_` 7.3 -> 1.3 s of 6 profiled steps (benchmarks/train_throughput.py --profile), and
    a 1.14x faster step, same batch, same process, alternating; loss and gradients bitwise equal.
    """
    from peft.helpers import disable_input_dtype_casting

    with training_autocast(device, dtype), disable_input_dtype_casting(model, active=is_mixed_precision(dtype)):
        yield


def completion_only_trainer(device: str, dtype, end_of_turn_id: int | None = None, end_of_turn_weight: float = 1.0):
    """SFTTrainer whose loss projects only the completion tokens through the LM head.

    The loss is transformers' own causal-LM loss (cross-entropy of the next token) over the
    same completion-only labels TRL builds. On the CPU, TRL scores every position of the
    batch through the 49k-word head in fp32 and adds entropy and top-1 metrics that nobody
    reads; prompts are ~85% of the tokens here, so that was a quarter of each step.

    `end_of_turn_weight` multiplies the loss of the token that ends the answer (one token of a
    hundred or more otherwise), so that stopping weighs more; 1.0 is plain cross-entropy.
    The forward runs under `mixed_precision_forward`.
    """
    import torch
    from trl import SFTTrainer

    class CompletionOnlyTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"][:, 1:]
            trained = labels != -100
            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone = getattr(causal_lm, causal_lm.base_model_prefix)
            with mixed_precision_forward(model, device, dtype):
                # Packed batches come as one row with position_ids restarting at each example and no
                # attention mask: transformers then masks each example off from the others (SDPA too).
                hidden = backbone(
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs.get("attention_mask"),
                    position_ids=inputs.get("position_ids"),
                    use_cache=False,
                ).last_hidden_state[:, :-1]
                logits = causal_lm.get_output_embeddings()(hidden[trained])
            targets = labels[trained]
            losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
            loss = (losses * token_weights(targets, end_of_turn_id, end_of_turn_weight)).sum()
            # Divided by the tokens of the whole accumulated batch when the Trainer counts them,
            # so gradient accumulation weighs every token alike (the Trainer then skips its own division).
            count = num_items_in_batch if num_items_in_batch is not None else trained.sum().clamp(min=1)
            loss = loss / count
            return (loss, {"loss": loss}) if return_outputs else loss

    return CompletionOnlyTrainer


def token_weights(targets, end_of_turn_id: int | None, end_of_turn_weight: float):
    """Loss weight of each trained token: `end_of_turn_weight` on the end-of-turn token, 1 elsewhere."""
    import torch

    weights = torch.ones(targets.shape, dtype=torch.float32, device=targets.device)
    if end_of_turn_id is not None:
        weights[targets == end_of_turn_id] = end_of_turn_weight
    return weights


def save_every_minutes(minutes: float):
    """A TrainerCallback that asks for a checkpoint once `minutes` have passed since the last
    one, whichever of it and `save_steps` comes first: a short default training (20 steps) gets
    checkpoints too, and a slow one never loses more than `minutes` of work to a kill."""
    from transformers import TrainerCallback

    class SaveEveryMinutes(TrainerCallback):
        def __init__(self):
            self.last_save = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() - self.last_save >= minutes * 60:
                control.should_save = True
            if control.should_save:  # by time, or by save_steps (TRL's flow callback ran first)
                self.last_save = time.monotonic()
            return control

        def on_save(self, args, state, control, **kwargs):
            log.info("checkpoint saved at step %d of %d", state.global_step, state.max_steps)

    return SaveEveryMinutes()


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint that was written to the end. The trainer writes trainer_state.json
    last (after the adapter, optimizer and RNG state), so a kill in the middle of a save leaves a
    folder without it, or with half of it: that one is skipped for the one before."""
    if not run_dir.is_dir():
        return None
    folders = [path for path in run_dir.glob("checkpoint-*") if path.name.partition("-")[2].isdigit()]
    for folder in sorted(folders, key=_step_of, reverse=True):
        if _saved_to_the_end(folder):
            return str(folder)
        log.warning("skipping %s: its save was cut off", folder)
    return None


def _saved_to_the_end(folder: Path) -> bool:
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return state.get("global_step") == _step_of(folder)


@dataclass
class TrainResult:
    metrics: dict
    log_history: list[dict]


@dataclass
class PreparedModel:
    """The quantized base with its LoRA adapter, ready to train, and the memory trades taken."""

    model: object
    checkpointing: MemoryDecision
    dequantized_cache: MemoryDecision
    # Why the end-of-turn token's embedding row is trained too (None: it is not).
    end_of_turn_row: str | None = None
    # The quantize job's settings file: the method and its knobs.
    quantization: dict | None = None


# An end-of-turn token the checkpoint never learned to emit has an untrained embedding row: zero
# (Llama 3 base's <|eot_id|>), or one of many rows left near their shared initialisation. Measured:
# Gemma 3 270M pretrained's <end_of_turn> has 4,706 rows within cosine 0.99 of it; SmolLM2-Instruct's
# <|im_end|>, which it emits at the end of every answer, has 18; ordinary words have none.
TWIN_COSINE = 0.99
UNTRAINED_TWINS = 256
# Rows compared at a time: a float copy of a 7B model's whole embedding would be 2.2 GB.
ROWS_PER_BLOCK = 16384


def untrained_row(embedding, token_id: int) -> str | None:
    """Why row `token_id` of `embedding` (vocab x hidden) looks untrained, or None.

    LoRA on the projections cannot teach a model to emit a token whose embedding (tied to the output
    head in Gemma) no hidden state can tell apart from thousands of unused ones: the tuned model
    writes valid JSON and then a look-alike token instead of its end of turn, until max_tokens."""
    import torch

    row = embedding[token_id].float()
    direction = row / row.norm().clamp_min(1e-12)
    norms, twins = [], -1  # the row itself is counted once below
    for start in range(0, len(embedding), ROWS_PER_BLOCK):
        block = embedding[start : start + ROWS_PER_BLOCK].float()
        norms.append(block.norm(dim=1))
        twins += int((torch.nn.functional.normalize(block, dim=1) @ direction > TWIN_COSINE).sum())
    if row.norm() < 1e-3 * torch.cat(norms).median():
        return f"its embedding row is zero (norm {row.norm():.2g})"
    if twins >= UNTRAINED_TWINS:
        return f"its embedding row is one of {twins + 1} near-identical rows (cosine > {TWIN_COSINE})"
    return None


def tokenized_rows(rows: list[dict], tokenizer) -> list[dict]:
    """TRL's pre-tokenized form: the prompt and the completion tokenized apart, as served
    (split.tokenize_example), with loss on the completion only."""
    out = []
    for row in rows:
        prompt_ids, completion_ids = tokenize_example(tokenizer, row["prompt"], row["completion"])
        out.append(
            {
                "input_ids": prompt_ids + completion_ids,
                "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
            }
        )
    return out


def prepare_model(quant_dir: str | Path, settings: dict, device: str, dtype, end_of_turn_id=None) -> PreparedModel:
    """Load the 4-bit base, take the memory trades the budget allows, and add the LoRA adapter.

    When the end-of-turn token's embedding row looks untrained (`untrained_row`), that one row is
    trained too (PEFT's trainable_token_indices; with tied embeddings the output row moves with it)."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    quantization = saved_settings(quant_dir)
    model = load_quantized(quant_dir, device=device, dtype=dtype, settings=quantization)
    end_of_turn_row = None
    if end_of_turn_id is not None:
        end_of_turn_row = untrained_row(model.get_input_embeddings().weight.detach(), end_of_turn_id)
        if end_of_turn_row:
            log.warning("training the end-of-turn token's embedding row: %s", end_of_turn_row)
    dtype_bytes = torch.tensor([], dtype=dtype).element_size()
    free_bytes = free_memory_bytes(device)
    checkpointing = decide_gradient_checkpointing(
        settings["gradient_checkpointing"],
        model.config,
        settings["batch_size"],
        settings["max_length"],
        dtype_bytes,
        free_bytes,
    )
    log.info("gradient checkpointing: %s", checkpointing)
    layers = quantized_layers(model)
    dequantized_cache = decide_dequantized_cache(
        settings["cache_dequantized_weights"],
        dequantized_bytes(layers, dtype_bytes),
        free_bytes,
    )
    log.info("dequantized weight cache: %s", dequantized_cache)
    if dequantized_cache.enabled:
        cache_dequantized_weights(layers)
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=checkpointing.enabled,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    lora = LoraConfig(
        r=settings["lora_r"],
        lora_alpha=settings["lora_alpha"],
        lora_dropout=settings["lora_dropout"],
        target_modules=list(settings["target_modules"]),
        trainable_token_indices=[end_of_turn_id] if end_of_turn_row else None,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    return PreparedModel(model, checkpointing, dequantized_cache, end_of_turn_row, quantization)


def run_arguments(seed: int, device: str, dtype) -> dict:
    """The TrainingArguments every trainer here shares: the task's seed, the device and its precision."""
    import torch

    return {
        "seed": seed,
        "data_seed": seed,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "use_cpu": device == "cpu",
    }


def sft_config(
    settings: dict, run_dir: Path, device: str, dtype, checkpoint_every: int, evaluate: bool, end_of_turn=None
):
    """TRL's SFTConfig for one task: the settings mapped to TRL's names, and the pipeline's fixed choices.

    `end_of_turn` is the chat family's token that ends an answer. TRL appends its eos_token to a
    completion unless the completion ends with it; where that token is not the eos (Gemma's
    <end_of_turn>, Phi's <|end|>) the default would train a stray eos after every answer.
    """
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(run_dir),
        num_train_epochs=settings["epochs"],
        max_steps=settings["max_steps"] or -1,
        per_device_train_batch_size=settings["batch_size"],
        per_device_eval_batch_size=settings["batch_size"],
        gradient_accumulation_steps=settings["grad_accum"],
        learning_rate=settings["learning_rate"],
        optim=settings["optimizer"],
        lr_scheduler_type=settings["lr_scheduler"],
        warmup_steps=settings["warmup_ratio"],
        weight_decay=settings["weight_decay"],
        neftune_noise_alpha=settings["neftune_alpha"],
        **run_arguments(settings["seed"], device, dtype),
        # Checkpointing is already set up by prepare_model_for_kbit_training (or off).
        gradient_checkpointing=False,
        max_length=settings["max_length"],
        completion_only_loss=True,
        eos_token=end_of_turn,
        # BFD packing: examples share rows of max_length, with no padding (TRL's padding-free path).
        packing=settings["packing"],
        packing_strategy="bfd",
        # Batches of similar lengths waste less compute on padding; same examples, other order.
        train_sampling_strategy="group_by_length",
        prediction_loss_only=True,
        eval_strategy="epoch" if evaluate else "no",
        logging_steps=1,
        save_strategy="steps",
        save_steps=checkpoint_every,
        save_total_limit=1,
        **tracking_arguments(settings),
        dataloader_num_workers=0,
    )


# bitsandbytes' paged optimizers page their state between GPU and host memory through CUDA
# unified memory. On the CPU there is nothing to page to: bitsandbytes 0.50.2 warns and keeps the
# state as ordinary tensors (measured, and tested in test_train.py), so the run goes on unpaged.
PAGED_ON_CPU = "paged optimizers are not supported on CPU: bitsandbytes keeps the state unpaged"


def optimizer_fallback(optimizer: str, device: str, warn: bool = False) -> str | None:
    """What the device cannot honour of `optimizer`, as bitsandbytes handles it, or None; logged
    with `warn`."""
    fallback = PAGED_ON_CPU if optimizer.startswith("paged_") and device == "cpu" else None
    if fallback and warn:
        log.warning("optimizer %s: %s", optimizer, fallback)
    return fallback


def check_tokenized(trainer, rows: list[dict], max_length: int) -> None:
    """Every record was pre-truncated to max_length, so TRL must neither cut nor drop one."""
    longest = max(len(ids) for ids in trainer.train_dataset["input_ids"])
    if longest > max_length:
        raise ValueError(f"an example has {longest} tokens > max_length={max_length}; rerun the sft stage")
    dataset = trainer.train_dataset
    # A packed row (training.packing) lists the lengths of the examples it holds.
    kept = sum(map(len, dataset["seq_lengths"])) if "seq_lengths" in dataset.column_names else len(dataset)
    if kept != len(rows):
        raise ValueError(f"TRL dropped {len(rows) - kept} examples with no trainable token")


def trained_tokens(trainer, rows: list[dict], settings: dict, resume_from: str | None) -> int:
    """Unpadded tokens this process trained on (a resumed run counts only its own steps)."""
    tokens_per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    steps_per_epoch = math.ceil(len(trainer.train_dataset) / (settings["batch_size"] * settings["grad_accum"]))
    steps_here = trainer.state.global_step - (_step_of(resume_from) if resume_from else 0)
    return round(tokens_per_epoch * steps_here / steps_per_epoch)


def memory_trade_metrics(prepared: PreparedModel) -> dict:
    checkpointing, cache = prepared.checkpointing, prepared.dequantized_cache
    return {
        "gradient_checkpointing": checkpointing.enabled,
        "gradient_checkpointing_reason": checkpointing.reason,
        "activation_estimate_mb": checkpointing.need_mb,
        "activation_budget_mb": checkpointing.budget_mb,
        "dequantized_weight_cache": cache.enabled,
        "dequantized_weight_cache_reason": cache.reason,
        "dequantized_weight_cache_mb": cache.need_mb,
        "dequantized_weight_cache_budget_mb": cache.budget_mb,
    }


@dataclass
class TrainingRun:
    """What one call of the training loop measured."""

    trainer: object
    rows: list[dict]
    val_examples: int
    resume_from: str | None
    output: object
    wall: float
    eval_loss: float | None


def training_metrics(
    run: TrainingRun, prepared: PreparedModel, settings: dict, device: str, dtype, threads: int
) -> dict:
    """train_metrics.json."""
    trainer, rows, wall = run.trainer, run.rows, run.wall
    train_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tokens = trained_tokens(trainer, rows, settings, run.resume_from)
    peak_mb, peak_kind = peak_memory_mb(device)
    trainable, total = prepared.model.get_nb_trainable_parameters()
    metrics = {
        "examples": len(rows),
        "val_examples": run.val_examples,
        "epochs": settings["epochs"],
        "epochs_done": round(trainer.state.epoch or 0.0, 3),
        "steps": trainer.state.global_step,
        "resumed_from_step": _step_of(run.resume_from) if run.resume_from else None,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "mean_train_loss": run.output.training_loss,
        "eval_loss": run.eval_loss,
        "wall_time_s": round(wall, 1),
        "trained_tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1) if wall > 0 else None,
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": peak_kind,
        "device": device,
        "dtype": dtype_name(dtype),
        "threads": threads,
        "hardware": describe_hardware(device),
        **memory_trade_metrics(prepared),
        "end_of_turn_row_trained": prepared.end_of_turn_row,
        "optimizer": settings["optimizer"],
        "optimizer_fallback": optimizer_fallback(settings["optimizer"], device),
        "quantization": prepared.quantization,
        "trainable_parameters": trainable,
        "total_parameters": total,
    }
    if metrics["final_train_loss"] is not None and not math.isfinite(metrics["final_train_loss"]):
        raise ValueError(f"training diverged: final train loss {metrics['final_train_loss']}")
    return metrics


def train_adapter(
    train_rows: list[dict],
    val_rows: list[dict],
    quant_dir: str | Path,
    tokenizer_dir: str | Path,
    adapter_dir: str | Path,
    settings: dict,
    checkpoint_root: str | Path,
    checkpoint_every: int,
    train_file: str | Path,
    checkpoint_minutes: float | None = None,
    threads: int = 1,
    callbacks: list | None = None,
) -> TrainResult:
    """Train one task's LoRA adapter and save it to `adapter_dir`. Checkpoints go to `checkpoint_root/
    <fingerprint>`, every `checkpoint_every` steps or `checkpoint_minutes`, whichever comes first, outside the
    rule's outputs: a killed run resumes from its last one, a finished run deletes them. `callbacks`: a profiler's."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    if not train_rows:
        raise ValueError("no training examples: the sft stage produced an empty train.jsonl")
    set_threads(threads)
    device = resolve_device(settings["device"])
    dtype = resolve_dtype(settings["dtype"], device)
    torch.manual_seed(settings["seed"])

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rows, evals = tokenized_rows(train_rows, tokenizer), tokenized_rows(val_rows, tokenizer)
    end_of_turn = chat_format(tokenizer).end_of_turn
    end_of_turn_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    prepared = prepare_model(quant_dir, settings, device, dtype, end_of_turn_id)
    run_dir = Path(checkpoint_root) / run_fingerprint(settings, train_file, prepared.quantization)
    resume_from = last_checkpoint(run_dir)
    trainer = completion_only_trainer(device, dtype, end_of_turn_id, settings["end_of_turn_weight"])(
        model=prepared.model,
        args=sft_config(settings, run_dir, device, dtype, checkpoint_every, bool(evals), end_of_turn),
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(evals) if evals else None,
        processing_class=tokenizer,
        callbacks=[*([save_every_minutes(checkpoint_minutes)] if checkpoint_minutes else []), *(callbacks or [])],
    )
    check_tokenized(trainer, rows, settings["max_length"])

    if resume_from:
        log.warning("resuming from %s", resume_from)
    optimizer_fallback(settings["optimizer"], device, warn=True)
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.monotonic() - started
    eval_loss = final_eval_loss(trainer) if evals else None
    trainer.model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))

    run = TrainingRun(trainer, rows, len(evals), resume_from, output, wall, eval_loss)
    metrics = training_metrics(run, prepared, settings, device, dtype, threads)
    shutil.rmtree(run_dir, ignore_errors=True)
    return TrainResult(metrics=metrics, log_history=trainer.state.log_history)


def final_eval_loss(trainer) -> float:
    """The eval loss of the trained adapter. The per-epoch evaluation has usually just measured it at
    the final step (same model, same batches): reuse that rather than evaluating it a second time."""
    logged = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    if logged and logged[-1]["step"] == trainer.state.global_step:
        return logged[-1]["eval_loss"]
    return trainer.evaluate()["eval_loss"]


def _step_of(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def write_log_history(path: str | Path, history: list[dict]) -> None:
    """One row per logged step, train and eval entries alike, for the loss plots."""
    keys = {key for entry in history for key in entry}
    columns = [key for key in ("step", "epoch") if key in keys] + sorted(keys - {"step", "epoch"})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
