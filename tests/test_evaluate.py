"""The scorer: what counts as a format-compliant answer, on the real judge schema."""

import json
import re

import jsonschema
import pytest
from conftest import ROOT

from vault_distill.evaluate import (
    COMPLIANT,
    NOT_AN_OBJECT,
    NOT_JSON,
    PROSE_AROUND_JSON,
    SCHEMA_ERRORS,
    TRUNCATED,
    EvaluationError,
    aggregate,
    build_evaluation,
    held_out_chats,
    reference_answer,
    render_samples,
    score_answer,
)

SCHEMA = json.loads((ROOT / "resources/schemas/judge.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
VALID = json.dumps({"score": 4, "verdict": "keep", "strengths": ["clear"], "gaps": ["no sources"]})


def score(text, finish_reason="stop"):
    return score_answer(text, finish_reason, VALIDATOR)


def test_valid_answer_is_compliant_and_surrounding_whitespace_is_allowed():
    for text in (VALID, f"\n  {VALID}\n"):
        result = score(text)
        assert result["compliant"] and result["valid"] and result["parses_json"] and result["embedded_valid"]
        assert result["outcome"] == COMPLIANT
        assert result["failing_fields"] == [] and result["errors"] == []
        assert result["chars"] == len(text)


def test_invalid_answer_names_the_failing_fields():
    answer = {"score": 9, "verdict": "maybe", "strengths": ["ok", ""], "extra": 1}
    result = score(json.dumps(answer))
    assert result["parses_json"] and not result["valid"] and not result["compliant"]
    assert result["outcome"] == SCHEMA_ERRORS
    # Missing and unexpected properties are named themselves, not the object around them.
    assert result["failing_fields"] == ["extra", "gaps", "score", "strengths/1", "verdict"]
    assert any(error.startswith("score: 9 is greater than the maximum") for error in result["errors"])


def test_truncated_answer_is_not_compliant():
    cut = VALID[: len(VALID) // 2]
    result = score(cut, finish_reason="length")
    assert result["outcome"] == TRUNCATED
    assert not result["parses_json"] and not result["compliant"]


def test_valid_json_that_ran_to_max_tokens_is_not_compliant():
    """It parses, but the model did not end its turn: a server would keep generating."""
    result = score(VALID + "\n\n", finish_reason="length")
    assert result["valid"] and not result["compliant"]
    assert result["outcome"] == TRUNCATED


@pytest.mark.parametrize("text", ["The note is good. I would keep it.", "", "{not json at all", "score: 4"])
def test_non_json_answer(text):
    result = score(text)
    assert result["outcome"] == NOT_JSON
    assert not result["parses_json"] and not result["embedded_valid"] and not result["compliant"]


@pytest.mark.parametrize(
    "text",
    [f"Here is my verdict: {VALID}", f"```json\n{VALID}\n```", f"{VALID}\nI hope this helps!"],
)
def test_prose_prefix_or_fences_are_not_compliant_but_recorded(text):
    """A consumer calls json.loads on the answer: prose or fences around the object break it.
    What a forgiving parser would recover is kept apart, as embedded_valid."""
    result = score(text)
    assert result["outcome"] == PROSE_AROUND_JSON
    assert not result["parses_json"] and not result["compliant"]
    assert result["embedded_valid"]


def test_json_that_is_not_an_object():
    result = score("[1, 2, 3]")
    assert result["parses_json"] and result["outcome"] == NOT_AN_OBJECT and not result["compliant"]


def answer(text, finish_reason="stop", tokens=10, seconds=0.5):
    return {"text": text, "tokens": tokens, "seconds": seconds, **score(text, finish_reason)}


def test_aggregate_counts_every_outcome():
    answers = [
        answer(VALID, tokens=30),
        answer(VALID[:20], "length", tokens=64),
        answer("prose " + VALID),
        answer(json.dumps({"score": 4})),
    ]
    totals = aggregate(answers)
    assert totals["answers"] == 4 and totals["compliant"] == 1 and totals["compliance"] == 0.25
    assert totals["ran_to_max_tokens"] == 1 and totals["ended_with_end_of_turn"] == 3
    assert totals["embedded_valid"] == 2 and totals["parses_json"] == 2 and totals["valid"] == 1
    assert totals["outcomes"] == {COMPLIANT: 1, TRUNCATED: 1, PROSE_AROUND_JSON: 1, SCHEMA_ERRORS: 1}
    assert totals["failing_fields"] == {"gaps": 1, "strengths": 1, "verdict": 1}
    assert totals["tokens"]["max"] == 64 and totals["tokens_per_s"] == round(114 / 2.0, 1)


def test_held_out_chats_need_rows_with_their_messages(tmp_path):
    val = tmp_path / "val.jsonl"
    with pytest.raises(EvaluationError, match=re.escape(f"{val}: no held-out examples")):
        held_out_chats([], val)
    with pytest.raises(EvaluationError, match="has no prompt_messages"):
        held_out_chats([{"id": "a", "prompt": "p", "completion": "c"}], val)


def test_samples_show_both_models_and_survive_backticks_in_answers():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "=== NOTE ===\nbody"}]
    chats = [{"id": f"n{i}", "messages": messages, "reference": VALID + "<|im_end|>"} for i in range(3)]
    tricky = "```json\n" + VALID + "\n```"
    scored = {"base": [answer(tricky)] * 3, "tuned": [answer(VALID)] * 3}
    evaluation = build_evaluation("judge", chats, scored, {"max_tokens": 64})
    assert evaluation["models"]["base"]["compliant"] == 0 and evaluation["models"]["tuned"]["compliant"] == 3
    assert evaluation["answers"][0]["reference"] == VALID
    text = render_samples(evaluation, samples=2)
    assert "base 0/3 → tuned 3/3" in text and "Showing 2 of 3 inputs" in text
    assert text.count("**base**") == 2 and text.count("**tuned**") == 2
    assert "````text\n" + tricky + "\n````" in text  # a longer fence than the answer's own


def test_reference_answer_drops_the_end_of_turn_token():
    assert reference_answer(VALID + "<|im_end|>") == VALID
    assert reference_answer("no json") == "no json"
