"""llama.cpp against HF tokenization of the same text, on SmolLM2's real GGUF vocabulary.

The GGUF check tolerates exactly one known difference, llama.cpp keeping a whitespace run
whole before a digit, and fails on anything else.
"""

from __future__ import annotations

import pytest

from vault_distill.convert import GgufCheckFailed, whitespace_resegmentations
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
