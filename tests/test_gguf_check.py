"""The GGUF check: llama.cpp against HF tokenization of the same text, on SmolLM2's real GGUF
vocabulary, and a LoRA GGUF on the base GGUF against base + adapter.

The check tolerates exactly one known difference, llama.cpp keeping a whitespace run
whole before a digit, and fails on anything else.
"""

from __future__ import annotations

import pytest

from vault_distill.gguf_check import GgufCheckFailed, whitespace_resegmentations
from vault_distill.models import resolve_gguf

NOTE_WITH_NUMBERED_STEPS = (
    "## Steps\n 1. Stop the service\n 2. Run the migration\n   10. Check the logs\n"
    "| run | loss |\n| a   |  12 |\n\n  3. done"
)


@pytest.fixture(scope="module")
def llama_vocab():
    from llama_cpp import Llama

    return Llama(model_path=str(resolve_gguf("bundled:smollm2", "base_model")), vocab_only=True, verbose=False)


def both_tokenizations(tokenizer, llama_vocab, text: str) -> tuple[list[int], list[int]]:
    hf_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    gguf_ids = list(llama_vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True))
    return hf_ids, gguf_ids


def test_llama_cpp_splits_whitespace_before_digits_differently_and_that_is_tolerated(tokenizer, llama_vocab):
    hf_ids, gguf_ids = both_tokenizations(tokenizer, llama_vocab, NOTE_WITH_NUMBERED_STEPS)
    assert hf_ids != gguf_ids, "llama.cpp now splits like HF: the tolerance can go"
    resegmented = whitespace_resegmentations(hf_ids, gguf_ids, tokenizer.decode)
    assert len(resegmented) >= 4 and all(text.isspace() for text in resegmented)
    assert "\n " in resegmented


def test_identical_tokenization_has_no_resegmentation(tokenizer, llama_vocab):
    hf_ids, gguf_ids = both_tokenizations(tokenizer, llama_vocab, "Raft elects a leader; the log replicates.")
    assert hf_ids == gguf_ids
    assert whitespace_resegmentations(hf_ids, gguf_ids, tokenizer.decode) == []


def test_a_different_split_of_words_fails(tokenizer):
    hf_ids = tokenizer("a strong leader", add_special_tokens=False)["input_ids"]
    # The same text, split into other tokens: what a wrong pre-tokenizer would do.
    resplit = (
        tokenizer("a", add_special_tokens=False)["input_ids"]
        + tokenizer(" str", add_special_tokens=False)["input_ids"]
        + tokenizer("ong leader", add_special_tokens=False)["input_ids"]
    )
    assert tokenizer.decode(resplit) == tokenizer.decode(hf_ids) and resplit != hf_ids
    with pytest.raises(GgufCheckFailed, match="tokenizes the held-out prompt differently"):
        whitespace_resegmentations(hf_ids, resplit, tokenizer.decode)


def test_different_text_fails(tokenizer):
    hf_ids = tokenizer("the leader", add_special_tokens=False)["input_ids"]
    other = tokenizer("the follower", add_special_tokens=False)["input_ids"]
    with pytest.raises(GgufCheckFailed, match="follower"):
        whitespace_resegmentations(hf_ids, other, tokenizer.decode)


def chat_prompt(tokenizer, conversations) -> str:
    return tokenizer.apply_chat_template(conversations[0], tokenize=False, add_generation_prompt=True)


def test_a_lora_gguf_on_the_base_gguf_passes_the_check_against_base_plus_adapter(tiny_loras, tiny_model_dir, tokenizer):
    """convert_lora_to_gguf.py's file, applied by llama.cpp to the base GGUF, is the HF base with
    the PEFT adapter merged: the same template, tokens and greedy path as the merged model."""
    from vault_distill.gguf_check import BASE_CHECK_CONVERSATIONS, LoraServing, check_gguf

    task = "judge"
    lora = LoraServing(tiny_loras["loras"][task], tiny_loras["adapters"][task])
    prompt = chat_prompt(tokenizer, BASE_CHECK_CONVERSATIONS)
    check = check_gguf(tiny_loras["base_gguf"], tiny_model_dir, BASE_CHECK_CONVERSATIONS, prompt, 8, lora=lora)
    assert check.template_prompts_equal == 3 and check.compared_tokens == 8
    assert check.agreed_tokens + check.near_tie_flips == 8 and check.agreed_tokens >= 4
    assert check.max_relative_logit_error < 0.01  # f16 base and f16 LoRA: rounding only


def test_the_check_fails_when_the_lora_is_another_tasks(tiny_loras, tiny_model_dir, tokenizer):
    from vault_distill.gguf_check import BASE_CHECK_CONVERSATIONS, LoraServing, check_gguf

    wrong = LoraServing(tiny_loras["loras"]["planner"], tiny_loras["adapters"]["judge"])
    prompt = chat_prompt(tokenizer, BASE_CHECK_CONVERSATIONS)
    with pytest.raises(GgufCheckFailed, match="differ"):
        check_gguf(tiny_loras["base_gguf"], tiny_model_dir, BASE_CHECK_CONVERSATIONS, prompt, 8, lora=wrong)


def test_adapter_on_base_is_within_rounding_of_the_merged_gguf(tiny_loras, tiny_model_dir, tokenizer, tmp_path):
    """The logit difference between serving base + LoRA and serving the merged file is rounding:
    a small share of what the adapter itself moves."""
    from vault_distill.convert import convert_to_gguf
    from vault_distill.gguf_check import BASE_CHECK_CONVERSATIONS, logit_difference
    from vault_distill.merge import merge_adapter

    task = "judge"
    merge_adapter(tiny_model_dir, tiny_loras["adapters"][task], tmp_path / "merged")
    merged_gguf = tmp_path / "merged.F16.gguf"
    convert_to_gguf(tmp_path / "merged", merged_gguf, "f16", tmp_path / "convert.log")
    prompt_ids = tokenizer(chat_prompt(tokenizer, BASE_CHECK_CONVERSATIONS), add_special_tokens=False)["input_ids"]
    tokens = tokenizer(" the plan is", add_special_tokens=False)["input_ids"]
    served = logit_difference(tiny_loras["base_gguf"], tiny_loras["loras"][task], merged_gguf, prompt_ids, tokens, 1)
    another = logit_difference(
        tiny_loras["base_gguf"], tiny_loras["loras"]["seeder"], merged_gguf, prompt_ids, tokens, 1
    )
    assert served < 0.05 * another, (served, another)
