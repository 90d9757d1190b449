"""Stage 3: chat examples -> prompt/completion records for TRL, with the base model's
own chat template, middle-truncated to fit max_length without ever cutting the answer.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass

from .chat_format import chat_format, render_hf, without_bos

# Stands where the middle of a long input was cut, so the model can tell.
TRUNCATION_MARKER = "\n[...]\n"
# Fewer user tokens than this cannot carry both a head and a tail worth keeping.
MIN_USER_TOKENS = 8


@dataclass
class SplitExample:
    prompt: str
    completion: str
    # The user turn as it stands in `prompt` (middle-truncated when it had to be), so the
    # held-out input can be sent again as a chat, exactly as training saw it.
    user: str
    n_tokens: int
    n_prompt_tokens: int
    n_completion_tokens: int
    truncated: bool


class DroppedExample(ValueError):
    """An example that cannot fit max_length without cutting its completion."""


def render_prompt(tokenizer, system: str, user: str) -> str:
    """The prompt as the template renders it to ask for an answer, without a bos the template
    writes itself: the tokenizer adds that one when TRL tokenizes, and two would differ from serving."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return without_bos(tokenizer, render_hf(tokenizer, messages))


def render_completion(tokenizer, user: str, assistant: str) -> str:
    """The assistant turn as the template writes it after the generation prompt, ending on the
    family's end-of-turn token exactly once.

    It is read off a conversation without a system message: Mistral v0.3 folds the system text
    into the last user message only, so with an answer after it the system text would vanish.
    TRL appends its eos_token (train.py sets it to this end-of-turn token) unless the completion
    already ends with it, so anything after the token is cut: ChatML's "\n" after <|im_end|>,
    Phi's "\n" and eos, Gemma's "\n" after <end_of_turn>.
    """
    end_of_turn = chat_format(tokenizer).end_of_turn
    asked = [{"role": "user", "content": user}]
    prompt = render_hf(tokenizer, asked)
    full = render_hf(tokenizer, [*asked, {"role": "assistant", "content": assistant}], add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently once an answer follows")
    completion = full[len(prompt) :]
    if end_of_turn not in completion:
        raise ValueError(f"the chat template does not end the answer with its end-of-turn token {end_of_turn!r}")
    return completion[: completion.rindex(end_of_turn) + len(end_of_turn)]


def count_tokens(tokenizer, text: str) -> int:
    """Token count of a prompt as it is served (with the bos the tokenizer adds)."""
    return len(tokenizer(text=text)["input_ids"])


def tokenize_example(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids), tokenized apart as they are served: llama.cpp tokenizes the
    prompt alone and the model writes the completion after it. Tokenized joined (TRL's own way), a
    GPT-2-style pre-tokenizer merges across the boundary ("\\n\\n" + "{" gives "\\n", "\\n", "{"
    where the prompt alone ends on "\\n\\n"), and the model is trained on a prompt it never sees."""
    return tokenizer(text=prompt)["input_ids"], tokenizer(text=completion, add_special_tokens=False)["input_ids"]


def count_example_tokens(tokenizer, prompt: str, completion: str) -> int:
    """Tokens of one training sequence, exactly as train.py hands it to TRL."""
    prompt_ids, completion_ids = tokenize_example(tokenizer, prompt, completion)
    return len(prompt_ids) + len(completion_ids)


def _char_cuts(tokenizer, text: str, head_tokens: int, tail_tokens: int) -> tuple[str, str]:
    """The text of the first `head_tokens` and the last `tail_tokens` tokens of `text`,
    as exact slices of it."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if head_tokens + tail_tokens >= len(offsets):
        return text, ""
    head_end = offsets[head_tokens - 1][1] if head_tokens > 0 else 0
    tail_start = offsets[len(offsets) - tail_tokens][0] if tail_tokens > 0 else len(text)
    tail_start = max(tail_start, head_end)
    return text[:head_end], text[tail_start:]


def middle_truncate(head: str, tail: str) -> str:
    """`head` and `tail` joined by the truncation marker, verbatim but for spaces opening the
    tail."""
    # The tail starts after the marker's newline. A cut that leaves it starting with spaces
    # before a digit gives "\n 4", which llama.cpp tokenizes "\n ", "4" and HF "\n", " ", "4":
    # the trained prompt would differ from the served one (and the GGUF check would fail).
    return head + TRUNCATION_MARKER + (tail.lstrip(" \t") or tail)


def build_example(tokenizer, system: str, user: str, assistant: str, max_length: int) -> SplitExample:
    """One prompt/completion pair of at most max_length tokens.

    The budget for the user content is max_length minus the template skeleton and the
    completion. When the content is over budget, its first third and last two thirds
    (in tokens) are kept. The completion is never cut: an example whose completion
    cannot fit raises DroppedExample.
    """
    completion = render_completion(tokenizer, user, assistant)
    prompt = render_prompt(tokenizer, system, user)
    total = count_example_tokens(tokenizer, prompt, completion)
    truncated = False
    kept_user = user
    if total > max_length:
        skeleton = count_example_tokens(tokenizer, render_prompt(tokenizer, system, TRUNCATION_MARKER), completion)
        budget = max_length - skeleton
        while True:
            if budget < MIN_USER_TOKENS:
                raise DroppedExample(
                    f"needs {skeleton + MIN_USER_TOKENS} tokens for skeleton + completion, max_length is {max_length}"
                )
            head_tokens = budget // 3
            head, tail = _char_cuts(tokenizer, user, head_tokens, budget - head_tokens)
            kept_user = middle_truncate(head, tail)
            prompt = render_prompt(tokenizer, system, kept_user)
            total = count_example_tokens(tokenizer, prompt, completion)
            if total <= max_length:
                break
            # Tokens can merge differently at the cut; shrink by the overshoot and retry.
            budget -= total - max_length
        truncated = True
    n_prompt = count_tokens(tokenizer, prompt)
    return SplitExample(
        prompt=prompt,
        completion=completion,
        user=kept_user,
        n_tokens=total,
        n_prompt_tokens=n_prompt,
        n_completion_tokens=total - n_prompt,
        truncated=truncated,
    )


def split_order(example_id: str) -> str:
    return hashlib.sha256(example_id.encode("utf-8")).hexdigest()


def train_val_split(records: list[dict], val_fraction: float) -> tuple[list[dict], list[dict]]:
    """Deterministic by input id: the same ids always land on the same side."""
    if len(records) < 2:
        return list(records), []
    ordered = sorted(records, key=lambda rec: split_order(rec["id"]))
    n_val = min(len(records) - 1, max(1, round(len(records) * val_fraction)))
    val_ids = {rec["id"] for rec in ordered[:n_val]}
    train = [rec for rec in records if rec["id"] not in val_ids]
    val = [rec for rec in records if rec["id"] in val_ids]
    return train, val


def _describe(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "mean": round(statistics.fmean(values), 1),
        "max": max(values),
    }


def build_sft_dataset(
    examples: list[dict], tokenizer, max_length: int, val_fraction: float
) -> tuple[list[dict], list[dict], dict]:
    """Teacher chat examples -> (train, val, stats)."""
    records, dropped = [], []
    for example in examples:
        roles = {message["role"]: message["content"] for message in example["messages"]}
        try:
            built = build_example(tokenizer, roles["system"], roles["user"], roles["assistant"], max_length)
        except DroppedExample as reason:
            dropped.append({"id": example["id"], "reason": str(reason)})
            continue
        records.append(
            {
                "id": example["id"],
                "prompt": built.prompt,
                "completion": built.completion,
                # The chat the prompt was rendered from: evaluation replays it through each
                # GGUF's own chat template, as Ollama would.
                "prompt_messages": [
                    {"role": "system", "content": roles["system"]},
                    {"role": "user", "content": built.user},
                ],
                "_stats": built,
            }
        )
    train, val = train_val_split(records, val_fraction)
    train_ids = {rec["id"] for rec in train}
    built_all = [rec.pop("_stats") for rec in records]
    prompt_tokens = [b.n_prompt_tokens for b in built_all]
    completion_tokens = [b.n_completion_tokens for b in built_all]
    stats = {
        "examples_in": len(examples),
        "train": len(train),
        "val": len(val),
        "max_length": max_length,
        "truncated": sum(b.truncated for b in built_all),
        "dropped": len(dropped),
        "dropped_examples": dropped,
        "tokens": {
            "prompt": _describe(prompt_tokens),
            "completion": _describe(completion_tokens),
            "total": _describe([b.n_tokens for b in built_all]),
        },
        "input_output_ratio": round(sum(prompt_tokens) / max(1, sum(completion_tokens)), 2),
        "train_tokens": sum(b.n_tokens for b, rec in zip(built_all, records, strict=True) if rec["id"] in train_ids),
    }
    return train, val, stats


def why_nothing_to_train(task: str, stats: dict) -> str | None:
    """The one-line error for a split with no training example (naming the key to change), or
    None when there is something to train on: an empty train file must never be written."""
    if stats["train"]:
        return None
    if stats["dropped"]:
        first = stats["dropped_examples"][0]["reason"]
        return (
            f"tasks.{task}.training.max_length: no example survives the split: all {stats['dropped']} were "
            f"dropped (the first {first})"
        )
    return f"tasks.{task}: no teacher answer to train on (see results/{task}/teacher_rejects.jsonl)"
