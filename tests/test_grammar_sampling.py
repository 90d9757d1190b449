"""Decoding with the grammar checked last, on the real bundled model and llama.cpp's real grammar
sampler: greedy picks exactly the tokens llama-cpp-python's own chain picks, and sampling at a
temperature draws from the grammar-first distribution."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from conftest import ROOT
from llama_cpp import Llama, LlamaGrammar, LogitsProcessorList
from llama_cpp._internals import LlamaSampler

from vault_distill.grammar_sampling import GrammarLastLlama, GrammarLastSampler, is_plain_greedy
from vault_distill.models import bundled_gguf

SCHEMA = json.loads((ROOT / "resources" / "schemas" / "judge.schema.json").read_text(encoding="utf-8"))
NOTES = sorted((ROOT / "resources" / "vault" / "topics").glob("*.md"))[:2]


def load(cls):
    path = bundled_gguf("bundled:smollm2", "model")
    return cls(model_path=str(path), n_ctx=2048, n_threads=2, n_threads_batch=2, seed=0, verbose=False)


@pytest.fixture(scope="module")
def models():
    return load(Llama), load(GrammarLastLlama)


def answer(llm, note, max_tokens=160, seed=0, **options) -> str:
    response = llm.create_chat_completion(
        messages=[
            {"role": "system", "content": "Grade the note. Answer with one JSON object."},
            {"role": "user", "content": note.read_text(encoding="utf-8")[:1200]},
        ],
        response_format={"type": "json_object", "schema": SCHEMA},
        max_tokens=max_tokens,
        seed=seed,
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
    assert isinstance(grammar_last._sampler, GrammarLastSampler)
    assert grammar_last._sampler.greedy
    # The model's own first choice is not always JSON: the fallback over the whole vocabulary ran.
    assert grammar_last._sampler.fallbacks > 0


def json_schema_sampler(llm, **chain_options) -> GrammarLastSampler:
    grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    chain = Llama._init_sampler(llm, **{"grammar": None, **chain_options})
    return GrammarLastSampler(llm._model, grammar, llm._n_vocab, chain, greedy=False)


def token(llm, text: bytes) -> int:
    (single,) = llm.tokenize(text, add_bos=False, special=False)
    return single


@pytest.mark.slow
def test_the_grammar_refuses_a_token_that_cannot_start_the_json(models):
    _, llm = models
    sampler = json_schema_sampler(llm, temp=0.0)
    assert sampler.allows(token(llm, b"{"))
    assert sampler.allows(token(llm, b'{"'))
    assert not sampler.allows(token(llm, b"Hello"))
    sampler.close()
    assert sampler.grammar is None


@pytest.mark.slow
def test_sampling_with_the_grammar_last_draws_from_the_grammar_first_distribution(models):
    """At the start of the JSON, the model's favourite token is refused; of the two allowed ones,
    "{" has logit 1 and '{"' logit 0, so at temperature 1 "{" must come e/(e+1) = 0.731 of the time."""
    _, llm = models
    sampler = json_schema_sampler(llm, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, temp=1.0)
    brace, brace_quote, hello = token(llm, b"{"), token(llm, b'{"'), token(llm, b"Hello")
    logits = np.full(llm._n_vocab, -100.0, dtype=np.float32)
    logits[[hello, brace, brace_quote]] = [5.0, 1.0, 0.0]

    draws = 2000
    picks = [sampler.choose(logits) for _ in range(draws)]  # nothing accepted: the grammar stays at the start

    assert set(picks) == {brace, brace_quote}
    expected = np.e / (np.e + 1)
    assert picks.count(brace) / draws == pytest.approx(expected, abs=4 * np.sqrt(expected * (1 - expected) / draws))
    assert sampler.fallbacks > 0.9 * draws  # "Hello" has 97% of the unconstrained probability


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sampled_answers_under_a_schema_are_valid_and_follow_their_seed(models, seed):
    _, llm = models
    first = answer(llm, NOTES[0], max_tokens=400, temperature=0.7, seed=seed)
    assert isinstance(llm._sampler, GrammarLastSampler)
    assert not llm._sampler.greedy
    assert answer(llm, NOTES[0], max_tokens=400, temperature=0.7, seed=seed) == first
    # llama-cpp-python's grammar bounds no integer (the teacher's validation does): the rest holds.
    unbounded = {**SCHEMA, "properties": {**SCHEMA["properties"], "score": {"type": "integer"}}}
    assert jsonschema.validate(json.loads(first), unbounded) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.0, "logits_processor": LogitsProcessorList([lambda ids, logits: logits])},
        {"temperature": 0.7, "mirostat_mode": 2},
    ],
)
def test_a_logits_processor_or_mirostat_keeps_llama_cpp_pythons_own_chain(models, options):
    _, llm = models
    answer(llm, NOTES[0], max_tokens=4, **options)
    assert isinstance(llm._sampler, LlamaSampler)


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
def test_any_decoding_under_a_grammar_checks_it_last(models, options):
    _, llm = models
    answer(llm, NOTES[0], max_tokens=4, **options)
    assert isinstance(llm._sampler, GrammarLastSampler)
    assert not llm._sampler.greedy


def test_plain_greedy_is_only_the_argmax():
    assert is_plain_greedy(0.0, 1.0, 0.0, 0.0)
    assert not is_plain_greedy(0.1, 1.0, 0.0, 0.0)
    assert not is_plain_greedy(0.0, 1.1, 0.0, 0.0)
    assert not is_plain_greedy(0.0, 1.0, 0.5, 0.0)
    assert not is_plain_greedy(0.0, 1.0, 0.0, 1.0)
