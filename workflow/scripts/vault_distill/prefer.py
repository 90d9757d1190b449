"""Stage prefer: a preference stage on top of SFT, aimed at the student's own format failures.

After SFT, the tuned model (its LoRA GGUF on the base GGUF, decoded as served) answers every
*training* input. Each answer that is not compliant (evaluate.score_answer) becomes a pair: the
teacher's answer, as the split holds it, is the chosen one; the student's is the rejected one.
TRL's DPOTrainer trains on the pairs, on the same 4-bit base, starting from the SFT adapter. Its
reference is a frozen copy of that adapter (TRL adds one when it is handed a PeftModel), so the
loss moves the model away from its own failures relative to where SFT left it. A task with no
failing training answer keeps the SFT adapter, copied unchanged, and its metrics say so.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import Counter
from pathlib import Path

from .evaluate import answer_chats, load_gguf, reference_answer, score_model_answers
from .failure_modes import failure_patterns
from .hardware import describe_hardware, dtype_name, peak_memory_mb, resolve_device, resolve_dtype, set_threads
from .quantize import load_quantized, quantized_layers, saved_settings
from .track import tracking_arguments
from .train import (
    cache_dequantized_weights,
    decide_dequantized_cache,
    dequantized_bytes,
    free_memory_bytes,
    run_arguments,
)

log = logging.getLogger(__name__)

NO_PAIRS = "no failing training answer: the SFT adapter is kept unchanged"


class PreferenceError(ValueError):
    """Preference inputs that cannot be used; the message names the file."""


def answer_training_inputs(
    base_gguf: str | Path, lora_file: str | Path, train_rows: list[dict], decoding: dict, n_ctx: int, threads: int = 1
) -> list[dict]:
    """The SFT model's answer to each training input, decoded as the Modelfile says."""
    llm = load_gguf(base_gguf, n_ctx, decoding, threads, lora_file)
    chats = [{"id": row["id"], "messages": row["prompt_messages"]} for row in train_rows]
    answers = answer_chats(llm, chats, decoding)
    return [{"id": row["id"], **answer} for row, answer in zip(train_rows, answers, strict=True)]


def end_of_turn(completion: str) -> str:
    """What follows the teacher's JSON in a split completion: the chat family's end of turn."""
    answer = reference_answer(completion)
    return completion[completion.index(answer) + len(answer) :]


def preference_pairs(train_rows: list[dict], answers: list[dict], schema: dict) -> list[dict]:
    """One pair per training input whose answer is not compliant: the split's prompt, the
    teacher's completion chosen, the student's answer (ended as the teacher's is) rejected."""
    if [answer["id"] for answer in answers] != [row["id"] for row in train_rows]:
        raise PreferenceError("the answers are not for the training inputs (rerun the prefer_pairs job)")
    pairs = []
    for row, score in zip(train_rows, score_model_answers(answers, schema), strict=True):
        if score["compliant"]:
            continue
        system, user = (message["content"] for message in row["prompt_messages"][:2])
        pairs.append(
            {
                "id": row["id"],
                "prompt": row["prompt"],
                "chosen": row["completion"],
                "rejected": score["text"] + end_of_turn(row["completion"]),
                "outcome": score["outcome"],
                "patterns": failure_patterns(score["text"], schema, system, user),
            }
        )
    return pairs


def pairs_summary(train_rows: list[dict], pairs: list[dict]) -> dict:
    outcomes = Counter(pair["outcome"] for pair in pairs)
    return {"training_inputs": len(train_rows), "failing": len(pairs), "outcomes": dict(outcomes)}


def dpo_config(preference: dict, settings: dict, run_dir: Path, device: str, dtype):
    """TRL's DPOConfig: the preference settings, the task's seed and device, no checkpoints
    (a preference run is minutes long; a killed one starts again)."""
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(run_dir),
        num_train_epochs=preference["epochs"],
        per_device_train_batch_size=preference["batch_size"],
        learning_rate=preference["learning_rate"],
        beta=preference["beta"],
        lr_scheduler_type="cosine",
        **run_arguments(settings["seed"], device, dtype),
        # A rejected answer may be max_tokens long on a prompt of max_length: nothing is cut.
        max_length=None,
        # TRL checkpoints activations by default; at these lengths it only costs time (SFT keeps it off too).
        gradient_checkpointing=False,
        # The reference (the frozen SFT adapter) scores each pair once, not once per epoch.
        precompute_ref_log_probs=True,
        logging_steps=1,
        save_strategy="no",
        **tracking_arguments(settings),
        dataloader_num_workers=0,
    )


def load_sft_policy(quant_dir: str | Path, sft_adapter: str | Path, device: str, dtype, cache_setting="auto"):
    """The 4-bit base with the SFT adapter on it, trainable; its frozen weights kept dequantized
    where training.cache_dequantized_weights and the memory budget allow, as the train job does."""
    import torch
    from peft import PeftModel, prepare_model_for_kbit_training

    model = load_quantized(quant_dir, device=device, dtype=dtype, settings=saved_settings(quant_dir))
    layers = quantized_layers(model)
    dtype_bytes = torch.tensor([], dtype=dtype).element_size()
    cache = decide_dequantized_cache(cache_setting, dequantized_bytes(layers, dtype_bytes), free_memory_bytes(device))
    log.info("dequantized weight cache: %s", cache)
    if cache.enabled:
        cache_dequantized_weights(layers)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return PeftModel.from_pretrained(model, str(sft_adapter), is_trainable=True)


def _reward_means(history: list[dict]) -> dict:
    keys = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
    last = next((entry for entry in reversed(history) if "rewards/margins" in entry), {})
    return {key.replace("/", "_"): last.get(key) for key in keys}


def train_preference(
    pairs: list[dict],
    quant_dir: str | Path,
    sft_adapter: str | Path,
    tokenizer_dir: str | Path,
    adapter_dir: str | Path,
    preference: dict,
    settings: dict,
    threads: int = 1,
) -> dict:
    """DPO from the SFT adapter on `pairs`, saved to `adapter_dir`; the metrics. No pairs: the
    SFT adapter is copied and nothing is trained."""
    if not pairs:
        log.warning("prefer: %s", NO_PAIRS)
        shutil.copytree(sft_adapter, adapter_dir, dirs_exist_ok=True)
        return {"pairs": 0, "trained": False, "note": NO_PAIRS}
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOTrainer

    set_threads(threads)
    device = resolve_device(settings["device"])
    dtype = resolve_dtype(settings["dtype"], device)
    torch.manual_seed(settings["seed"])
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    dataset = Dataset.from_list([{key: pair[key] for key in ("prompt", "chosen", "rejected")} for pair in pairs])
    run_dir = Path(adapter_dir).parent / "dpo_run"
    trainer = DPOTrainer(
        model=load_sft_policy(quant_dir, sft_adapter, device, dtype, settings.get("cache_dequantized_weights", "auto")),
        args=dpo_config(preference, settings, run_dir, device, dtype),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    started = time.monotonic()
    output = trainer.train()
    wall = time.monotonic() - started
    # Only the trained adapter: TRL's frozen reference copy ("ref") is not part of the model.
    trainer.model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
    tokenizer.save_pretrained(str(adapter_dir))
    shutil.rmtree(run_dir, ignore_errors=True)
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    if losses and not math.isfinite(losses[-1]):
        raise ValueError(f"preference training diverged: final loss {losses[-1]}")
    return {
        "pairs": len(pairs),
        "trained": True,
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": output.training_loss,
        **_reward_means(history),
        "wall_time_s": round(wall, 1),
        "peak_memory_mb": round(peak_memory_mb(device)[0], 1),
        "device": device,
        "dtype": dtype_name(dtype),
        "threads": threads,
        "hardware": describe_hardware(device),
    }
