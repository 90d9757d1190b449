"""The failure patterns, on answers the tuned students and the default teacher really wrote
(taken from the quality benchmark's answer files and the teacher caches, shortened)."""

import json

import pytest
from conftest import ROOT

from vault_distill.failure_modes import (
    BROKEN_SYNTAX,
    COPIED_PROMPT,
    ENUM_AS_LIST,
    LOOP,
    PATTERNS,
    REPEATED_ITEMS,
    REPEATED_KEYS,
    TEXT_AFTER_JSON,
    TEXT_BEFORE_JSON,
    UNCLOSED_ARRAY,
    UNCLOSED_OBJECT,
    UNCLOSED_STRING,
    content_defects,
    failure_patterns,
    normalized_item,
    scan_json,
)


def schema(task):
    return json.loads((ROOT / "resources" / "schemas" / f"{task}.schema.json").read_text(encoding="utf-8"))


def prompt(task):
    return (ROOT / "resources" / "prompts" / f"{task}.md").read_text(encoding="utf-8")


JUDGE_INPUT = "=== KNOWLEDGE JUDGE DATA ===\n\n# Bloom filters\nA Bloom filter answers 'maybe' or 'no'."
ANALYST_INPUT = "=== TECHNICAL ANALYST DATA ===\n\n# Asyncio gather\nUse return_exceptions=True."


def patterns(task, text, user=""):
    return failure_patterns(text, schema(task), prompt(task), user)


def test_a_compliant_clean_answer_shows_no_pattern():
    text = '{"score": 4, "verdict": "keep", "strengths": ["clear example"], "gaps": ["no sources"]}'
    assert patterns("judge", text, JUDGE_INPUT) == []


def test_a_runaway_number_loop_that_hits_max_tokens():
    text = '{"highlights": ["fever-free"], "struggles": ["1.5.3.2.4' + ".1" * 60
    assert patterns("reflector", text) == [LOOP, UNCLOSED_STRING]


def test_an_array_that_never_closes_after_repeated_items():
    text = '{"topic": "Raft", "questions": ["1. How to fix the rule?", "2. How to fix the rule?", "3. How to'
    assert patterns("seeder", text) == [REPEATED_ITEMS, UNCLOSED_STRING]
    text = '{"topic": "Raft", "questions": ["How?", "Why?", '
    assert patterns("seeder", text) == [UNCLOSED_ARRAY]


def test_an_object_closed_early_with_keys_after_it():
    text = '{"highlights": ["1.5"], "struggles": ["3.4"], "energy_trend": "rising"}, "focus_next_week": "7.9"}'
    assert patterns("reflector", text) == [TEXT_AFTER_JSON]


def test_an_enum_given_as_a_list_with_a_paren_for_a_bracket():
    text = (
        '{"highlights": ["Bake"], "struggles": [], "energy_trend": ["rising", "steady", "falling"), '
        '"focus_next_week": "x"}'
    )
    found = patterns("reflector", text)
    assert ENUM_AS_LIST in found and BROKEN_SYNTAX in found


def test_an_unescaped_quote_inside_a_string_is_broken_syntax():
    text = '{"summary": "The second "good first issue" in the linter", "language": "rust"}'
    assert BROKEN_SYNTAX in patterns("analyst", text)


def test_a_valid_answer_with_the_wrong_shape_names_the_schema_keywords():
    text = '{"summary": "TECHNICAL ANALYST DATA", "language": "jq", "severity": "low"}'
    assert patterns("analyst", text, ANALYST_INPUT) == [COPIED_PROMPT, "missing field"]
    too_many = '{"goal": "g", "next_actions": ["a", "b", "c", "d", "e", "f"], "blocker": "b", "horizon_weeks": 4}'
    assert patterns("planner", too_many) == ["too many items"]


def test_repeated_keys_and_prose_before():
    text = 'Here it is: {"topic": "t", "topic": "u", "questions": ["q?"], "search_queries": ["s"]}'
    assert patterns("seeder", text) == [REPEATED_KEYS, TEXT_BEFORE_JSON]


def test_an_object_never_closed():
    assert patterns("judge", '{"score": 4, "verdict": "keep"') == [UNCLOSED_OBJECT]


def test_content_defects_of_the_default_teachers_own_answers():
    repeated = (
        '{"summary": "s", "language": "python", "severity": "low", "root_cause": "one", '
        '"fixes": ["return_exceptions=True", "return_exceptions=True"]}'
    )
    assert content_defects(repeated, schema("analyst"), prompt("analyst"), ANALYST_INPUT) == [REPEATED_ITEMS]
    copied = '{"score": 1, "verdict": "keep", "strengths": ["up to 3 short strings"], "gaps": ["no links"]}'
    assert content_defects(copied, schema("judge"), prompt("judge"), JUDGE_INPUT) == [COPIED_PROMPT]


def test_a_string_that_loops_inside_a_valid_answer_is_a_content_defect():
    """The default teacher's reflector answer, valid only because its grammar stopped the
    string at maxLength: a student without the grammar learns a string that never ends."""
    looping = (
        '{"highlights": ["shipped the parser"], "struggles": ["10.1.2.1.1.1.1.1.1.1.1.1.1"], '
        '"energy_trend": "steady", "focus_next_week": "tests"}'
    )
    assert content_defects(looping, schema("reflector"), prompt("reflector"), "") == [LOOP]
    # A number, a path, a version or a table row's padding is not a loop.
    plain = (
        '{"highlights": ["moved to 10.1.2"], "struggles": ["a/b/c/d config"], '
        '"energy_trend": "steady", "focus_next_week": "2026-10-12 \u2502 35.4 \u2502          34 \u2502"}'
    )
    assert content_defects(plain, schema("reflector"), prompt("reflector"), "") == []


def test_text_the_input_itself_holds_may_be_quoted():
    """A phrase in both the prompt and the input is the input's to quote."""
    user = "=== KNOWLEDGE JUDGE DATA ===\n\n# Note\nMy gaps: up to 3 short strings, says the form."
    answer = '{"score": 3, "verdict": "keep", "strengths": ["up to 3 short strings"], "gaps": ["g"]}'
    assert content_defects(answer, schema("judge"), prompt("judge"), user) == []
    # ... and two short words in common are a phrase, not a copy.
    answer = '{"score": 3, "verdict": "keep", "strengths": ["short strings"], "gaps": ["g"]}'
    assert content_defects(answer, schema("judge"), prompt("judge"), JUDGE_INPUT) == []


@pytest.mark.parametrize(
    ("item", "normalized"), [("1. How to fix X?", "how to fix x?"), ("b) Two  words", "two words"), ("10.1", "10.1")]
)
def test_numbering_is_not_what_makes_items_differ(item, normalized):
    assert normalized_item(item) == normalized


def test_the_scanner_records_keys_arrays_and_what_is_left_open():
    scan = scan_json('{"a": ["x", "y"], "b": {"c": "d"}, "e": ["z"')
    assert scan.arrays == [("a", ["x", "y"]), ("e", ["z"])]
    assert scan.objects == [["c"], ["a", "b", "e"]]
    assert scan.open_at_end == ["object", "array"]
    assert scan.strings == ["x", "y", "d", "z"]


def test_every_pattern_has_one_name():
    assert len(PATTERNS) == len(set(PATTERNS))
