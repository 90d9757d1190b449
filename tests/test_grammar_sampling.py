"""Greedy decoding with the grammar checked last picks exactly the tokens llama-cpp-python's own
chain picks, on the real bundled model and llama.cpp's real grammar sampler."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT
from llama_cpp import Llama, LlamaGrammar
from llama_cpp._internals import LlamaSampler

from vault_distill.grammar_sampling import GrammarLastLlama, GreedyGrammarSampler, is_plain_greedy
from vault_distill.models import bundled_gguf

SCHEMA = json.loads((ROOT / "resources" / "schemas" / "judge.schema.json").read_text(encoding="utf-8"))
NOTES = sorted((ROOT / "resources" / "vault" / "topics").glob("*.md"))[:2]


def load(cls):
    path = bundled_gguf("bundled:smollm2", "model")
    return cls(model_path=str(path), n_ctx=2048, n_threads=2, n_threads_batch=2, seed=0, verbose=False)


@pytest.fixture(scope="module")
def models():
    return load(Llama), load(GrammarLastLlama)


def answer(llm, note, max_tokens=160, **options) -> str:
    response = llm.create_chat_completion(
        messages=[
            {"role": "system", "content": "Grade the note. Answer with one JSON object."},
            {"role": "user", "content": note.read_text(encoding="utf-8")[:1200]},
        ],
        response_format={"type": "json_object", "schema": SCHEMA},
        max_tokens=max_tokens,
        seed=0,
        **options,
    )
    return response["choices"][0]["message"]["content"]


@pytest.mark.slow
@pytest.mark.parametrize("note", NOTES, ids=[note.stem for note in NOTES])
def test_greedy_under_a_schema_answers_exactly_as_llama_cpp_python(models, note):
    stock, grammar_last = models
    expected = answer(stock, note, temperature=0.0)
    got = answer(grammar_last, note, temperature=0.0)
    assert got == expected
    assert isinstance(grammar_last._sampler, GreedyGrammarSampler)
    # The model's own first choice is not always JSON: the fallback over the whole vocabulary ran.
    assert grammar_last._sampler.fallbacks > 0


@pytest.mark.slow
def test_the_grammar_refuses_a_token_that_cannot_start_the_json(models):
    _, llm = models
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    sampler = GreedyGrammarSampler(llm._model, grammar, llm._n_vocab)
    (brace,) = llm.tokenize(b"{", add_bos=False, special=False)
    (word,) = llm.tokenize(b"Hello", add_bos=False, special=False)
    assert sampler.allows(brace)
    assert not sampler.allows(word)
    sampler.close()
    assert sampler.grammar is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.7},
        {"temperature": 0.0, "presence_penalty": 1.0},
        {"temperature": 0.0, "frequency_penalty": 0.5},
        {"temperature": 0.0, "repeat_penalty": 1.1},
    ],
)
def test_any_other_decoding_keeps_llama_cpp_pythons_own_chain(models, options):
    _, llm = models
    answer(llm, NOTES[0], max_tokens=4, **options)
    assert isinstance(llm._sampler, LlamaSampler)


def test_plain_greedy_is_only_the_argmax():
    assert is_plain_greedy(0.0, 1.0, 0.0, 0.0, None, 0)
    assert not is_plain_greedy(0.1, 1.0, 0.0, 0.0, None, 0)
    assert not is_plain_greedy(0.0, 1.1, 0.0, 0.0, None, 0)
    assert not is_plain_greedy(0.0, 1.0, 0.5, 0.0, None, 0)
    assert not is_plain_greedy(0.0, 1.0, 0.0, 1.0, None, 0)
    assert not is_plain_greedy(0.0, 1.0, 0.0, 0.0, [lambda ids, logits: logits], 0)
    assert not is_plain_greedy(0.0, 1.0, 0.0, 0.0, None, 2)
