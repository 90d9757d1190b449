"""The GGUF check: prove that a converted file is the model we trained, served the way Ollama and
llama.cpp will serve it. Each GGUF the convert stages write (merged, base, LoRA on the base) passes
it or is deleted (convert.record_check). docs/design.md gives the argument behind each step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .hardware import release_freed_memory

log = logging.getLogger(__name__)

# Rounding moves every logit by at most d = max|GGUF - HF| at that position, so the gap
# between two logits moves by at most 2d: a greedy choice whose HF margin is >= 2d
# cannot flip, and one below it may. d itself must stay small next to the logits' range,
# or the file is not the same model. Measured on a tuned SmolLM2-135M, d/range is at most
# 0.028 for Q8_0 (d up to 1.8 logits over a 66-logit range), 0.005 for bf16, 0.0004 for f32.
MAX_RELATIVE_LOGIT_ERROR = 0.1


class GgufCheckFailed(RuntimeError):
    """The GGUF file does not reproduce the merged model."""


@dataclass
class GgufCheck:
    template_prompts_equal: int
    tokenization_equal: bool
    whitespace_resegmentations: int
    compared_tokens: int
    agreed_tokens: int
    greedy_prefix_agreement: int
    near_tie_flips: int
    max_logit_error: float
    max_relative_logit_error: float
    hf_greedy: list[int]
    gguf_greedy: list[int]
    # LoRA serving only: the largest logit difference from the merged GGUF along hf_greedy.
    max_logit_diff_vs_merged_gguf: float | None = None


def gguf_chat_prompt(llm, messages: list[dict]) -> str:
    """The prompt llama-cpp-python builds from the GGUF's own chat template, constructed
    exactly as Llama.__init__ does for its default chat handler."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise GgufCheckFailed("the GGUF has no tokenizer.chat_template: Ollama and llama.cpp would send raw text")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    formatter = Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )
    return formatter(messages=messages).prompt


def whitespace_resegmentations(hf_ids: list[int], gguf_ids: list[int], decode: Callable[[list[int]], str]) -> list[str]:
    """The whitespace runs that llama.cpp splits differently from HF; fail on any other difference.

    llama.cpp's pre-tokenizer for the SmolLM/GPT-2 family keeps a whitespace run whole before a
    digit, where HF's regex leaves the last space apart: HF reads "\\n 4" as "\\n", " ", "4" and
    llama.cpp as "\\n ", "4". Any note with an indented numbered list or aligned numbers meets
    it, Ollama serves the model with llama.cpp's split anyway, and the text is the same. A wrong
    vocabulary or pre-tokenizer changes other text (words, digit groups), and that still fails.
    """
    from difflib import SequenceMatcher

    resegmented = []
    matcher = SequenceMatcher(a=list(hf_ids), b=list(gguf_ids), autojunk=False)
    for tag, hf_start, hf_end, gguf_start, gguf_end in matcher.get_opcodes():
        if tag == "equal":
            continue
        hf_text, gguf_text = decode(hf_ids[hf_start:hf_end]), decode(gguf_ids[gguf_start:gguf_end])
        if hf_text != gguf_text or not hf_text.isspace():
            raise GgufCheckFailed(
                f"llama.cpp tokenizes the held-out prompt differently from HF: {hf_text!r} (HF tokens "
                f"{hf_ids[hf_start:hf_end]}) vs {gguf_text!r} (GGUF tokens {gguf_ids[gguf_start:gguf_end]})"
            )
        resegmented.append(hf_text)
    return resegmented


def check_chat_template(llm, tokenizer, conversations: list[list[dict]]) -> None:
    """(2) The GGUF's own chat template builds the prompt apply_chat_template builds."""
    for messages in conversations:
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        got = gguf_chat_prompt(llm, messages)
        if got != expected:
            raise GgufCheckFailed(
                f"the GGUF's chat template renders a different prompt than apply_chat_template:\n"
                f"HF:   {expected!r}\nGGUF: {got!r}"
            )


def check_tokenization(llm, tokenizer, prompt: str, prompt_ids: list[int]) -> list[str]:
    """(3) llama.cpp tokenizes the prompt as HF does, but for the tolerated whitespace runs (returned)."""
    gguf_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    resegmented = whitespace_resegmentations(prompt_ids, gguf_ids, tokenizer.decode)
    if resegmented:
        log.warning(
            "llama.cpp splits %d whitespace run(s) of the held-out prompt differently from HF (tolerated): %s",
            len(resegmented),
            ", ".join(repr(text) for text in resegmented[:5]),
        )
    return resegmented


def hf_greedy(
    hf_dir: str | Path, tokenizer, prompt_ids: list[int], n_tokens: int, adapter_dir: str | Path | None = None
) -> tuple[list[int], list]:
    """The merged HF model's greedy tokens after the prompt, and the logits of each step. With
    `adapter_dir`, `hf_dir` is the bf16 base and the adapter is merged into it in memory, as the
    merge stage merges it: the same model, without a merged folder on disk.

    The model runs in bf16, the dtype its weights are saved in: 2 bytes a weight, where an fp32
    copy took 4 (28 GB at 7B). bf16 activations move the logits by far less than Q8_0 does
    (measured: d/range 0.005 for a bf16 GGUF against 0.028 for Q8_0), and the margin test below
    compares the two computations actually run, so it stays sound. It returns before the GGUF is
    loaded, and the model is freed, so the two never share memory.
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.bfloat16)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.eval()
    with torch.no_grad():
        generated = model.generate(
            torch.tensor([prompt_ids]),
            max_new_tokens=n_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    tokens = generated.sequences[0, len(prompt_ids) :].tolist()
    logits = [step[0].float() for step in generated.logits]
    del model, generated
    release_freed_memory()
    return tokens, logits


def teacher_forced_logits(llm, prompt_ids: list[int], tokens: list[int]) -> list:
    """llama.cpp's logits before each of `tokens`, each token fed in after its step: every
    position sees the same context, whatever the model would have picked."""
    import numpy as np

    llm.reset()
    llm.eval(prompt_ids)
    logits = []
    for token in tokens:
        logits.append(np.array(llm.scores[llm.n_tokens - 1]))
        llm.eval([token])
    return logits


def compare_greedy(llm, prompt_ids: list[int], hf_tokens: list[int], hf_logits: list) -> dict:
    """(4) Teacher-forced along the HF greedy path, so that every position sees the same context:
    the GGUF picks the HF token wherever the HF margin is too wide for rounding to flip it."""
    import numpy as np

    result = {"gguf_tokens": [], "agreed": 0, "flips": 0, "errors": [], "relative_errors": []}
    for position, (hf_token, got) in enumerate(
        zip(hf_tokens, teacher_forced_logits(llm, prompt_ids, hf_tokens), strict=True)
    ):
        reference = hf_logits[position].numpy()
        error = float(np.max(np.abs(got - reference)))
        relative = error / float(reference.max() - reference.min())
        result["errors"].append(error)
        result["relative_errors"].append(relative)
        if relative > MAX_RELATIVE_LOGIT_ERROR:
            raise GgufCheckFailed(
                f"token {position}: GGUF logits differ from the merged model's by up to {error:.2f} "
                f"({relative:.1%} of their range > {MAX_RELATIVE_LOGIT_ERROR:.0%}); the conversion changed the model"
            )
        gguf_token = int(np.argmax(got))
        result["gguf_tokens"].append(gguf_token)
        top2 = np.sort(reference)[-2:]
        margin = float(top2[1] - top2[0])
        if gguf_token == hf_token:
            result["agreed"] += 1
        elif margin < 2 * error:
            result["flips"] += 1
        else:
            raise GgufCheckFailed(
                f"greedy token {position} differs (GGUF {gguf_token}, HF {hf_token}) although the HF margin "
                f"{margin:.2f} exceeds twice the logit error {error:.2f}: rounding cannot explain it"
            )
    return result


@dataclass(frozen=True)
class LoraServing:
    """A task served as a LoRA GGUF on the base GGUF, checked against base + PEFT adapter."""

    lora_file: str | Path
    adapter_dir: str | Path


def check_gguf(
    gguf_file: str | Path,
    hf_dir: str | Path,
    conversations: list[list[dict]],
    prompt: str,
    n_tokens: int,
    threads: int = 1,
    lora: LoraServing | None = None,
) -> GgufCheck:
    """Fail unless the GGUF (1) loads in llama.cpp, (2) builds the same chat prompt as HF's
    apply_chat_template for every conversation, (3) tokenizes the held-out prompt into the
    same pieces, but for whitespace_resegmentations, and (4) agrees with the merged HF model's
    greedy completion of it on the first `n_tokens` tokens, wherever the HF margin is too wide
    for rounding to flip the choice. With `lora`, the GGUF is the base with the task's LoRA GGUF
    applied, and the HF model is the base with the task's adapter merged in."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    adapter_dir = lora.adapter_dir if lora else None
    # First: one model in memory at a time.
    hf_tokens, hf_logits = hf_greedy(hf_dir, tokenizer, prompt_ids, n_tokens, adapter_dir)
    llm = Llama(
        model_path=str(gguf_file),
        lora_path=str(lora.lora_file) if lora else None,
        n_ctx=len(prompt_ids) + n_tokens + 8,
        n_threads=max(1, threads),
        logits_all=True,
        verbose=False,
    )
    check_chat_template(llm, tokenizer, conversations)
    resegmented = check_tokenization(llm, tokenizer, prompt, prompt_ids)
    greedy = compare_greedy(llm, prompt_ids, hf_tokens, hf_logits)
    gguf_tokens = greedy["gguf_tokens"]
    prefix = next((i for i, (a, b) in enumerate(zip(gguf_tokens, hf_tokens, strict=True)) if a != b), len(hf_tokens))
    return GgufCheck(
        template_prompts_equal=len(conversations),
        tokenization_equal=not resegmented,
        whitespace_resegmentations=len(resegmented),
        compared_tokens=len(hf_tokens),
        agreed_tokens=greedy["agreed"],
        greedy_prefix_agreement=prefix,
        near_tie_flips=greedy["flips"],
        max_logit_error=round(max(greedy["errors"], default=0.0), 4),
        max_relative_logit_error=round(max(greedy["relative_errors"], default=0.0), 4),
        hf_greedy=hf_tokens,
        gguf_greedy=gguf_tokens,
    )


def check_as_dict(check: GgufCheck) -> dict:
    return asdict(check)


def probe_conversations(system: str, user: str, answer: str) -> list[list[dict]]:
    """The conversation shapes every GGUF's template is checked on: with and without a system
    message, and multi-turn (an assistant turn followed by another user turn)."""
    return [
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        [{"role": "user", "content": user}],
        [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Again, for the same note."},
        ],
    ]


# The base GGUF belongs to no task, so it is checked on a fixed conversation of the same
# shapes as a task's.
BASE_CHECK_SYSTEM = "You are a careful assistant. Answer with one JSON object and nothing else."
BASE_CHECK_USER = "=== NOTE ===\n# Rust ownership\nEach value has one owner; borrowing lends it without moving."
BASE_CHECK_CONVERSATIONS = probe_conversations(BASE_CHECK_SYSTEM, BASE_CHECK_USER, '{"topic": "ownership"}')


def check_base_gguf(gguf_file: str | Path, hf_dir: str | Path, n_tokens: int, threads: int = 1) -> GgufCheck:
    """check_gguf for the converted base model, on BASE_CHECK_CONVERSATIONS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    prompt = tokenizer.apply_chat_template(BASE_CHECK_CONVERSATIONS[0], tokenize=False, add_generation_prompt=True)
    return check_gguf(gguf_file, hf_dir, BASE_CHECK_CONVERSATIONS, prompt, n_tokens, threads)


def check_task_gguf(
    gguf_file: str | Path,
    hf_dir: str | Path,
    examples: list[dict],
    held_out: list[dict],
    n_tokens: int,
    threads: int,
    lora: LoraServing | None = None,
) -> GgufCheck:
    """check_gguf for a tuned model, on its first held-out example: the conversation shapes
    built from that example's messages, and its SFT prompt for the greedy comparison."""
    messages = {example["id"]: example["messages"] for example in examples}[held_out[0]["id"]]
    system, user, answer = (message["content"] for message in messages)
    conversations = probe_conversations(system, user, answer)
    return check_gguf(gguf_file, hf_dir, conversations, held_out[0]["prompt"], n_tokens, threads, lora)


def logit_difference(
    base_gguf: str | Path,
    lora_file: str | Path,
    merged_gguf: str | Path,
    prompt_ids: list[int],
    tokens: list[int],
    threads: int,
) -> float:
    """The largest logit difference between the LoRA on the base GGUF and the merged GGUF,
    teacher-forced along the same tokens: what serving adapters costs against merged files."""
    from llama_cpp import Llama

    scores = []
    for model_path, lora_path in ((base_gguf, lora_file), (merged_gguf, None)):
        llm = Llama(
            model_path=str(model_path),
            lora_path=str(lora_path) if lora_path else None,
            n_ctx=len(prompt_ids) + len(tokens) + 8,
            n_threads=max(1, threads),
            logits_all=True,
            verbose=False,
        )
        scores.append(teacher_forced_logits(llm, prompt_ids, tokens))
        llm.close()
    return round(max(float(abs(a - b).max()) for a, b in zip(*scores, strict=True)), 4)


def check_task_lora(
    lora_file: str | Path,
    base: tuple[str | Path, str | Path],
    adapter_dir: str | Path,
    held_out: tuple[list[dict], list[dict]],
    n_tokens: int,
    threads: int,
    merged_gguf: str | Path | None = None,
) -> GgufCheck:
    """check_task_gguf for the LoRA GGUF on `base` = (base GGUF, bf16 base folder), against that
    base with `adapter_dir` merged in; with `merged_gguf`, its logit difference from that file too."""
    from transformers import AutoTokenizer

    base_gguf, base_dir = base
    examples, val_rows = held_out
    lora = LoraServing(lora_file, adapter_dir)
    check = check_task_gguf(base_gguf, base_dir, examples, val_rows, n_tokens, threads, lora)
    if merged_gguf is not None:
        prompt_ids = AutoTokenizer.from_pretrained(str(base_dir))(val_rows[0]["prompt"], add_special_tokens=False)
        check.max_logit_diff_vs_merged_gguf = logit_difference(
            base_gguf, lora_file, merged_gguf, prompt_ids["input_ids"], check.hf_greedy, threads
        )
    return check
