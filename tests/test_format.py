"""format.json, the task's schema as Ollama's `format` takes it, and the grammar that the server
and the quality benchmark decode under: llama.cpp's own parser reads every grammar here."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from vault_distill.format import (
    LLAMA_CPP_CHAR_RULE,
    FormatError,
    answer_format,
    grammar_schema,
    ollama_chat_request,
    schema_grammar,
    write_answer_format,
)

SCHEMAS = sorted((ROOT / "resources" / "schemas").glob("*.schema.json"))
SCHEMA = json.loads((ROOT / "resources/schemas/judge.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("schema_file", SCHEMAS, ids=lambda path: path.name)
def test_each_shipped_schema_is_written_as_it_is_and_makes_a_grammar(schema_file, tmp_path):
    out = tmp_path / "format.json"
    written = write_answer_format(schema_file, out)
    assert json.loads(out.read_text(encoding="utf-8")) == written == json.loads(schema_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a valid JSON schema"),
        ('{"type": "strin"}', "not a valid JSON schema"),
        ('{"type": "array", "items": {"type": "string"}}', "the answer must be one JSON object"),
    ],
)
def test_a_schema_that_cannot_be_a_format_names_its_file(text, message, tmp_path):
    schema_file = tmp_path / "mine.schema.json"
    schema_file.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=rf"{schema_file}: {message}"):
        answer_format(schema_file)


def test_grammar_schema_spells_small_bounded_integers_as_enums_only():
    planner = json.loads((ROOT / "resources/schemas/planner.schema.json").read_text(encoding="utf-8"))
    mended = grammar_schema(planner)
    assert mended["properties"]["horizon_weeks"] == {"enum": list(range(1, 53))}
    assert mended["properties"]["next_actions"] == planner["properties"]["next_actions"]
    wide = {"type": "integer", "minimum": 0, "maximum": 10**6}
    assert grammar_schema(wide) == wide
    assert grammar_schema({"type": "integer", "minimum": 1}) == {"type": "integer", "minimum": 1}


def test_schema_grammar_bounds_integers_and_refuses_raw_control_characters():
    from llama_cpp import LlamaGrammar

    gbnf = schema_grammar(SCHEMA)
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)
    assert rules["score"] == '"1" | "2" | "3" | "4" | "5"'
    assert rules["char"].startswith(LLAMA_CPP_CHAR_RULE.split(" ::= ", 1)[1])
    LlamaGrammar.from_string(gbnf, verbose=False)  # llama.cpp's own parser accepts it


def test_the_ollama_request_carries_the_format_and_leaves_the_rest_to_the_modelfile():
    request = ollama_chat_request("vault-judge", SCHEMA, "=== NOTE ===\n# CAP theorem")
    assert request == {
        "model": "vault-judge",
        "stream": False,
        "format": SCHEMA,
        "messages": [{"role": "user", "content": "=== NOTE ===\n# CAP theorem"}],
    }
