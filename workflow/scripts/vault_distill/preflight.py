"""Stage preflight: a task's settings checked against the base model's tokenizer before any
teacher call, so that a run which could not train stops before anything is paid for.

It runs as soon as the tokenizer exists, and every teach job waits for it. A rerun of the
check reruns the teach job too, which then answers from the teacher cache: nothing is paid twice.
"""

from __future__ import annotations

from .split import MIN_USER_TOKENS, TRUNCATION_MARKER, count_example_tokens, render_completion, render_prompt
from .teach import canonical_answer

# Filler for a typical string value: ordinary words, as a teacher's answer has them.
TYPICAL_WORDS = "the notes describe one clear next step for this part of the work "
# A typical string fills half its maxLength, up to this many characters.
TYPICAL_STRING_CHARS = 60
# A typical array has this many items, within its minItems and maxItems.
TYPICAL_ITEMS = 2


class PreflightError(ValueError):
    """A setting that cannot work; the message names the key."""


def typical_string(schema: dict) -> str:
    longest = schema.get("maxLength", 2 * TYPICAL_STRING_CHARS)
    chars = max(schema.get("minLength", 1), min(TYPICAL_STRING_CHARS, longest // 2))
    text = (TYPICAL_WORDS * (chars // len(TYPICAL_WORDS) + 1))[:chars]
    return text[:-1] + "s" if text.endswith(" ") else text


def typical_value(schema: dict):
    """A value valid for a (simple) JSON Schema, sized like a typical teacher answer: every
    property present, strings half their maxLength, arrays of two items."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object":
        return {key: typical_value(prop) for key, prop in schema.get("properties", {}).items()}
    if kind == "array":
        items = max(schema.get("minItems", 0), TYPICAL_ITEMS)
        items = min(items, schema.get("maxItems", items))
        return [typical_value(schema.get("items", {"type": "string"})) for _ in range(items)]
    if kind == "string":
        return typical_string(schema)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return {"boolean": True, "null": None}.get(kind)


def tokens_needed(tokenizer, system: str, header: str, schema: dict) -> int:
    """Tokens of the smallest example worth training on: system prompt, the input's header, the
    truncation marker and MIN_USER_TOKENS of notes, then a typical answer ending the turn."""
    user = header + "\n\n" + TRUNCATION_MARKER.strip()
    answer = canonical_answer(typical_value(schema))
    prompt = render_prompt(tokenizer, system, user)
    return count_example_tokens(tokenizer, prompt, render_completion(tokenizer, user, answer)) + MIN_USER_TOKENS


def check_max_length(tokenizer, task: str, system: str, header: str, schema: dict, max_length: int) -> dict:
    """What the task needs against its max_length; raises PreflightError when it cannot fit."""
    needed = tokens_needed(tokenizer, system, header, schema)
    if needed > max_length:
        raise PreflightError(
            f"tasks.{task}.training.max_length: {max_length} tokens cannot hold this task's system prompt, "
            f"header, a minimum input and a typical answer: it needs at least {needed}"
        )
    return {"max_length": max_length, "tokens_needed": needed, "room_for_notes": max_length - needed}
