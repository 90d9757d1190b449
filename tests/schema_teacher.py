"""A `command` teacher for the tiny builds: it reads the prompt that teach.CommandBackend writes on
stdin (system prompt, the schema instruction with the JSON Schema, a blank line, the task input) and
prints one answer that validates against that schema, made of the input's own words.

Deterministic: the same prompt gives the same answer, so two builds agree byte for byte. Every
answer differs by input, so the rebuild contract sees exactly the answers that changed. Some
arrays repeat their first item (when the input's digest says so and the schema has room), so that
`teacher.dedupe_items` has something to drop. It costs no model and milliseconds per answer.

    python tests/schema_teacher.py < prompt.txt
    python tests/schema_teacher.py --seconds 0.5 < prompt.txt   # as slow as a real teacher, for kill tests
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time

# teach_backends.SCHEMA_INSTRUCTION's last words before the schema (tests/test_schema_teacher.py checks it).
SCHEMA_MARK = "validates against this JSON Schema, and nothing else:\n"
WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]+")
# Words per generated string: enough to read as a phrase, short enough for every maxLength here.
PHRASE_WORDS = 6


def split_prompt(prompt: str) -> tuple[dict, str]:
    """(the JSON Schema, the task input) of a command teacher's prompt."""
    start = prompt.index(SCHEMA_MARK) + len(SCHEMA_MARK)
    schema, length = json.JSONDecoder().raw_decode(prompt[start:])
    return schema, prompt[start + length :].strip()


class Answerer:
    """Values for a schema, drawn from the input's words in order, with choices seeded by its digest."""

    def __init__(self, text: str):
        body = text.partition("\n\n")[2] or text  # the input's header line is the task's, not the note's
        self.words = WORD.findall(body) or ["note"]
        self.digest = hashlib.sha256(text.encode("utf-8")).digest()
        self.cursor = 0

    def number(self, salt: int) -> int:
        return self.digest[salt % len(self.digest)]

    def value(self, schema: dict, salt: int = 0):
        if "enum" in schema:
            return schema["enum"][self.number(salt) % len(schema["enum"])]
        kind = schema.get("type")
        if kind == "object":
            properties = schema.get("properties", {})
            return {key: self.value(properties[key], salt + i) for i, key in enumerate(properties)}
        if kind == "array":
            return self.array(schema, salt)
        if kind == "integer":
            low, high = schema.get("minimum", 0), schema.get("maximum", 100)
            return low + self.number(salt) % (high - low + 1)
        if kind == "boolean":
            return bool(self.number(salt) % 2)
        return self.string(schema)

    def array(self, schema: dict, salt: int) -> list:
        low = schema.get("minItems", 0)
        high = schema.get("maxItems", low + 3)
        count = min(high, max(low, 1) + self.number(salt) % 2)
        items = [self.value(schema.get("items", {}), salt + 7 * i) for i in range(count)]
        if items and count < high and self.number(salt + 1) % 3 == 0:
            items.append(items[0])  # a repeated item, for teacher.dedupe_items to drop
        return items

    def string(self, schema: dict) -> str:
        """The next PHRASE_WORDS words of the input, cut to maxLength (never below minLength)."""
        words = [self.words[(self.cursor + i) % len(self.words)] for i in range(PHRASE_WORDS)]
        self.cursor += PHRASE_WORDS
        text = " ".join(words)[: schema.get("maxLength", 200)].strip()
        return text.ljust(schema.get("minLength", 0), ".")


def teacher_settings(cache_dir: str) -> dict:
    """The `teacher:` keys that make this program the teacher, its answers cached under `cache_dir`."""
    return {
        "backend": "command",
        "model": "schema-teacher",
        "command": [sys.executable, __file__],
        "response_format": "none",
        "cache_dir": cache_dir,
    }


def answer(prompt: str) -> dict:
    schema, text = split_prompt(prompt)
    return Answerer(text).value(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.0, help="wait this long before answering")
    args = parser.parse_args()
    text = answer(sys.stdin.read())
    time.sleep(args.seconds)
    print(json.dumps(text))


if __name__ == "__main__":
    main()
