"""What happens in the text of an answer: the patterns behind a format failure (a loop, an
array that never closes, prose after the JSON, an enum copied whole) and the content defects
that a schema lets through (repeated array items, text copied from the prompt or the schema).

The quality benchmark counts these per arm, so that a change is judged by which failures it
removes; the teacher rejects answers with the content defects before a student learns them.
A truncated or broken answer is not JSON, so the text is read by a tolerant scanner that
records what it can (each object's keys, each array's items, what is left open at the end)
instead of giving up at the first error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import jsonschema

# Text patterns, in the order tables show them.
LOOP = "loop"  # a short stretch of text repeated 5+ times in a row
REPEATED_ITEMS = "repeated array items"  # the same item twice in one array (numbering aside)
REPEATED_KEYS = "repeated keys"  # one key twice in one object
COPIED_PROMPT = "prompt or schema text copied"  # a whole string value lifted from the instructions
ENUM_AS_LIST = "enum copied as a list"  # a field's allowed values given as its value
UNCLOSED_STRING = "string never closed"
UNCLOSED_ARRAY = "array never closed"
UNCLOSED_OBJECT = "object never closed"
TEXT_BEFORE_JSON = "text before the JSON"
TEXT_AFTER_JSON = "text after the JSON"  # including an object closed early, keys after it
BROKEN_SYNTAX = "broken JSON syntax"  # an unescaped quote, ')' for ']', a missing comma
TEXT_PATTERNS = (
    LOOP,
    REPEATED_ITEMS,
    REPEATED_KEYS,
    COPIED_PROMPT,
    ENUM_AS_LIST,
    UNCLOSED_STRING,
    UNCLOSED_ARRAY,
    UNCLOSED_OBJECT,
    TEXT_BEFORE_JSON,
    TEXT_AFTER_JSON,
    BROKEN_SYNTAX,
)
# What the schema says is wrong with a parsed answer, by JSON Schema keyword.
SCHEMA_PATTERNS = {
    "required": "missing field",
    "additionalProperties": "unexpected field",
    "maxItems": "too many items",
    "minItems": "too few items",
    "maxLength": "string too long",
    "minLength": "string too short",
    "enum": "value not in enum",
    "type": "wrong type",
}
OTHER_SCHEMA_ERROR = "other schema error"
PATTERNS = TEXT_PATTERNS + tuple(SCHEMA_PATTERNS.values()) + (OTHER_SCHEMA_ERROR,)
# Teacher answers carrying these are re-asked, then rejected, like a schema failure.
CONTENT_DEFECTS = (LOOP, REPEATED_ITEMS, COPIED_PROMPT, ENUM_AS_LIST)

_LOOP = re.compile(r"(.{2,40}?)\1{4,}", re.S)
_ENUMERATOR = re.compile(r"^\s*(?:\d+|[a-z])[.)]\s+")
_WORD = re.compile(r"\w+")
# Copies shorter than this many words are common phrases, not copied instructions.
MIN_COPIED_WORDS = 3


@dataclass
class Scan:
    """What a tolerant reading of the text found (see scan_json)."""

    objects: list[list[str]] = field(default_factory=list)  # each object's keys, in order
    arrays: list[tuple[str | None, list[str]]] = field(default_factory=list)  # (key, string items)
    strings: list[str] = field(default_factory=list)  # every string value (not keys)
    open_at_end: list[str] = field(default_factory=list)  # "object", "array", "string", innermost last
    before: str = ""
    after: str = ""
    broken: bool = False


def _read_string(text: str, start: int) -> tuple[str | None, int]:
    """The string literal opening at text[start] and the index after it; None if never closed."""
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == '"':
            raw = text[start : index + 1]
            try:
                return json.loads(raw), index + 1
            except json.JSONDecodeError:
                return raw[1:-1], index + 1
        index += 1
    return None, len(text)


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.scan = Scan()
        self.stack: list[dict] = []
        self.previous = ""  # the previous token's kind: "value", ":", ",", "open"

    def _value(self, kind: str, string: str | None = None) -> None:
        if self.previous == "value":
            self.scan.broken = True  # two values with no comma: usually an unescaped quote
        top = self.stack[-1] if self.stack else None
        if top is not None and top["kind"] == "object" and top["expect_key"] and kind == "string":
            top["keys"].append(string)
            top["last_key"] = string
            top["expect_key"] = False
        elif top is not None and top["kind"] == "array" and kind == "string":
            top["items"].append(string)
            self.scan.strings.append(string)
        elif kind == "string":
            self.scan.strings.append(string)
        self.previous = "value"

    def _open(self, kind: str) -> None:
        top = self.stack[-1] if self.stack else None
        key = top.get("last_key") if top is not None and top["kind"] == "object" else None
        self._value("container")
        self.stack.append({"kind": kind, "keys": [], "items": [], "expect_key": kind == "object", "key": key})
        self.previous = "open"

    def _close(self, kind: str) -> bool:
        """Close the innermost container; True when the outermost object has just closed."""
        if not self.stack or self.stack[-1]["kind"] != kind:
            self.scan.broken = True
            return False
        closed = self.stack.pop()
        if kind == "object":
            self.scan.objects.append(closed["keys"])
        else:
            self.scan.arrays.append((closed["key"], closed["items"]))
        self.previous = "value"
        return not self.stack

    def _punctuation(self, char: str) -> None:
        top = self.stack[-1] if self.stack else None
        if top is not None and top["kind"] == "object":
            top["expect_key"] = char == ","
        self.previous = char

    def run(self) -> Scan:
        start = self.text.find("{")
        if start < 0:
            self.scan.before = self.text.strip()
            return self.scan
        self.scan.before = self.text[:start].strip()
        index = start
        while index < len(self.text):
            char = self.text[index]
            if char == '"':
                string, index = _read_string(self.text, index)
                if string is None:
                    return self._left_open(["string"])
                self._value("string", string)
                continue
            if char in "{[":
                self._open("object" if char == "{" else "array")
            elif char in "}]" and self._close("object" if char == "}" else "array"):
                self.scan.after = self.text[index + 1 :].strip()
                return self.scan
            elif char == ")" and self.stack and self.stack[-1]["kind"] == "array":
                self.scan.broken = True  # a paren for a bracket: read on as if it closed the array
                self._close("array")
            elif char in ":,":
                self._punctuation(char)
            elif char.isalnum() or char in "-+.":
                end = index
                while end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "-+."):
                    end += 1
                self._value("scalar")
                index = end
                continue
            elif not char.isspace() and char not in "}]":
                self.scan.broken = True
            index += 1
        return self._left_open([])

    def _left_open(self, innermost: list[str]) -> Scan:
        """The scan where the text stops: what is still open, and the keys and items read so far."""
        self.scan.open_at_end = [container["kind"] for container in self.stack] + innermost
        for container in reversed(self.stack):
            if container["kind"] == "object":
                self.scan.objects.append(container["keys"])
            else:
                self.scan.arrays.append((container["key"], container["items"]))
        return self.scan


def scan_json(text: str) -> Scan:
    """The first JSON object in `text`, read as far as it goes: keys, arrays, strings, and what
    was left open where the text stops."""
    return _Scanner(text).run()


def normalized_item(item: str) -> str:
    """An array item as compared for repeats: numbering ("1. ", "b) "), case and spacing aside."""
    return " ".join(_ENUMERATOR.sub("", item).lower().split())


def looping_string(value: str) -> bool:
    """A stretch of text repeated 5+ times in a row inside one string; runs of whitespace (a
    table's padding copied from a note) do not count."""
    return any(match[1].strip() for match in _LOOP.finditer(value))


def has_repeated_items(arrays: list[tuple[str | None, list[str]]]) -> bool:
    for _, items in arrays:
        normalized = [normalized_item(item) for item in items if isinstance(item, str)]
        if len(normalized) != len(set(normalized)):
            return True
    return False


def _words(text: str) -> str:
    return " " + " ".join(_WORD.findall(text.lower())) + " "


def prompt_boilerplate(system: str, user: str, schema: dict) -> tuple[str, str]:
    """(what the answer should not copy: the system prompt, the schema and the input's header
    line; the input's own text, which it may quote). The header is the input's first paragraph."""
    header, _, body = user.partition("\n\n")
    return _words(system + "\n" + json.dumps(schema) + "\n" + header), _words(body)


def copied_strings(strings: list[str], boilerplate: str, body: str) -> list[str]:
    """Each string value of MIN_COPIED_WORDS+ words that appears whole in the instructions
    (word by word, case and punctuation aside) and not in the input."""
    copied = []
    for value in strings:
        words = _words(value)
        if len(words.split()) >= MIN_COPIED_WORDS and words in boilerplate and words not in body:
            copied.append(value)
    return copied


def enum_lists(arrays: list[tuple[str | None, list[str]]], schema: dict) -> list[str]:
    """Fields whose value is an array of 2+ of the field's own enum values, where one was asked."""
    properties = schema.get("properties", {})
    found = []
    for key, items in arrays:
        allowed = properties.get(key, {}).get("enum") if key else None
        if allowed and properties[key].get("type") != "array" and len(items) >= 2 and set(items) <= set(allowed):
            found.append(key)
    return found


def schema_patterns(value: dict, schema: dict) -> list[str]:
    """The schema's complaints about a parsed answer, by keyword (SCHEMA_PATTERNS)."""
    validator = jsonschema.Draft202012Validator(schema)
    return sorted({SCHEMA_PATTERNS.get(error.validator, OTHER_SCHEMA_ERROR) for error in validator.iter_errors(value)})


def _parsed_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _structure_patterns(scan: Scan) -> set[str]:
    found = set()
    if scan.open_at_end:
        innermost = scan.open_at_end[-1]
        found.add({"string": UNCLOSED_STRING, "array": UNCLOSED_ARRAY, "object": UNCLOSED_OBJECT}[innermost])
    if scan.before:
        found.add(TEXT_BEFORE_JSON)
    if scan.after:
        found.add(TEXT_AFTER_JSON)
    if scan.broken:
        found.add(BROKEN_SYNTAX)
    return found


def content_defects(text: str, schema: dict, system: str, user: str) -> list[str]:
    """The CONTENT_DEFECTS in an answer: what a schema-valid answer can still get wrong."""
    return _scanned_defects(scan_json(text), schema, system, user)


def _scanned_defects(scan: Scan, schema: dict, system: str, user: str) -> list[str]:
    boilerplate, body = prompt_boilerplate(system, user, schema)
    found = set()
    # A loop inside a string value: a grammar-bound teacher stops it at maxLength, so the
    # answer is valid, but a student without the grammar learns a string that never ends.
    if any(looping_string(value) for value in scan.strings):
        found.add(LOOP)
    if has_repeated_items(scan.arrays):
        found.add(REPEATED_ITEMS)
    if copied_strings(scan.strings, boilerplate, body):
        found.add(COPIED_PROMPT)
    if enum_lists(scan.arrays, schema):
        found.add(ENUM_AS_LIST)
    return [pattern for pattern in CONTENT_DEFECTS if pattern in found]


def failure_patterns(text: str, schema: dict, system: str = "", user: str = "") -> list[str]:
    """Every pattern (PATTERNS) found in one answer, in table order."""
    scan = scan_json(text)
    found = _structure_patterns(scan) | set(_scanned_defects(scan, schema, system, user))
    if LOOP not in found and _LOOP.search(text):  # a loop in a string value is already found
        found.add(LOOP)
    if any(len(keys) != len(set(keys)) for keys in scan.objects):
        found.add(REPEATED_KEYS)
    if (value := _parsed_object(text)) is not None:
        found.update(schema_patterns(value, schema))
    return [pattern for pattern in PATTERNS if pattern in found]
