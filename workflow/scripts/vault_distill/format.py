"""The task's answer format as deployed: `results/{task}/format.json` is the task's output schema
exactly as Ollama's `format` takes it (a JSON schema, Ollama 0.5 and later; it cannot be set in a
Modelfile, so a client sends it with each request), and `snakemake serve` decodes every answer
under the same schema's grammar unless a request brings its own (serve.enforce_schema).

The grammar is llama.cpp's json-schema-to-grammar, mended where llama-cpp-python's port of it
differs from the C++ converter that Ollama uses, so that the quality benchmark's grammar arm, the
server and Ollama constrain alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from .runtime import write_json

# llama-cpp-python's port of llama.cpp's json-schema-to-grammar differs from the C++ converter
# that Ollama's `format` uses in two ways, both mended here so that the grammar arm constrains as
# Ollama does: (1) it ignores minimum and maximum on integers: a bounded integer with up to this
# many values is spelled as the enum of its values, the same language; (2) its string characters
# admit raw control characters, which JSON forbids: its `char` rule gets the C++ one's exclusions.
MAX_INTEGER_ENUM = 1000
PORT_CHAR_RULE = r'char ::= [^"\\] |'
LLAMA_CPP_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] |'


class FormatError(ValueError):
    """A task's output schema that cannot be served as a format; the message names the file."""


def grammar_schema(schema):
    """`schema` with every small bounded integer spelled as an enum, for the grammar only
    (answers are still validated against the schema itself)."""
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    low, high = schema.get("minimum"), schema.get("maximum")
    bounded = schema.get("type") == "integer" and isinstance(low, int) and isinstance(high, int)
    if bounded and 0 <= high - low < MAX_INTEGER_ENUM:
        rest = {key: value for key, value in schema.items() if key not in ("type", "minimum", "maximum")}
        return {**rest, "enum": list(range(low, high + 1))}
    return {key: grammar_schema(value) for key, value in schema.items()}


def schema_grammar(schema: dict) -> str:
    """The GBNF grammar of a JSON schema, as llama.cpp's own converter would write it."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(grammar_schema(schema)))
    if PORT_CHAR_RULE not in gbnf:
        raise RuntimeError("llama-cpp-python's json-schema-to-grammar changed its string rule; recheck schema_grammar")
    return gbnf.replace(PORT_CHAR_RULE, LLAMA_CPP_CHAR_RULE)


def schema_llama_grammar(schema: dict):
    """schema_grammar parsed by llama.cpp: what `grammar=` takes in create_chat_completion."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(schema_grammar(schema), verbose=False)


def answer_format(schema_file: str | Path) -> dict:
    """The task's output schema, once it is known to be a valid JSON schema of one JSON object
    that llama.cpp turns into a grammar; FormatError names the file otherwise."""
    try:
        schema = json.loads(Path(schema_file).read_text(encoding="utf-8"))
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except (json.JSONDecodeError, jsonschema.SchemaError) as err:
        raise FormatError(f"{schema_file}: not a valid JSON schema: {err}") from None
    if schema.get("type") != "object":
        raise FormatError(f'{schema_file}: the answer must be one JSON object ("type": "object")')
    try:
        schema_llama_grammar(schema)
    except (ValueError, RuntimeError) as err:
        raise FormatError(f"{schema_file}: llama.cpp cannot turn this schema into a grammar: {err}") from None
    return schema


def write_answer_format(schema_file: str | Path, out_file: str | Path) -> dict:
    schema = answer_format(schema_file)
    write_json(out_file, schema)
    return schema


def ollama_chat_request(model: str, answer_format: dict, user: str) -> dict:
    """An Ollama /api/chat request for one input, held to the task's format. The Modelfile gives
    the system prompt, the template and every sampling setting, so the request needs none."""
    return {"model": model, "stream": False, "format": answer_format, "messages": [{"role": "user", "content": user}]}
