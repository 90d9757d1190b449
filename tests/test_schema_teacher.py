"""The tiny builds' command teacher (tests/schema_teacher.py), run as teach.CommandBackend runs it:
every answer to every task's real inputs validates against that task's schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, command_teacher_settings, default_config
from schema_teacher import SCHEMA_MARK, WORD, answer

from vault_distill.extract import extract_task_inputs
from vault_distill.failure_modes import LOOP, REPEATED_ITEMS, content_defects
from vault_distill.teach_backends import SCHEMA_INSTRUCTION, CommandBackend

TEACHER = [sys.executable, str(ROOT / "tests" / "schema_teacher.py")]
TASKS = default_config()["tasks"]


def task_prompts(task: str, limit: int = 6) -> tuple[str, dict, list[str]]:
    settings = TASKS[task]
    inputs = extract_task_inputs(ROOT / "resources" / "vault", settings["header"], settings["select"]).records
    schema = json.loads((ROOT / settings["output_schema"]).read_text(encoding="utf-8"))
    system = (ROOT / settings["system_prompt"]).read_text(encoding="utf-8")
    return system, schema, [record["user"] for record in inputs[:limit]]


def test_the_prompt_mark_is_the_schema_instructions_own():
    assert SCHEMA_MARK in SCHEMA_INSTRUCTION and SCHEMA_INSTRUCTION.endswith(SCHEMA_MARK + "{schema}")


@pytest.mark.parametrize("task", list(TASKS))
def test_every_answer_through_the_command_backend_validates_and_follows_its_input(task, tmp_path):
    system, schema, users = task_prompts(task)
    backend = CommandBackend(command_teacher_settings(tmp_path / "cache", TEACHER))
    texts = [backend.complete(system, user, schema, attempt=0) for user in users]
    for text in texts:
        jsonschema.validate(json.loads(text), schema)
        assert LOOP not in content_defects(text, schema, system, users[0])
    assert len(set(texts)) == len(texts), "two inputs got the same answer"
    assert backend.complete(system, users[0], schema, attempt=1) == texts[0], "not deterministic"


def test_strings_are_the_inputs_own_words():
    system, schema, users = task_prompts("analyst", limit=1)
    value = answer(system + SCHEMA_INSTRUCTION.format(schema=json.dumps(schema)) + "\n\n" + users[0])
    body_words = set(WORD.findall(users[0].partition("\n\n")[2]))
    assert set(value["summary"].split()) <= body_words


def test_some_answers_repeat_an_item_for_dedupe_to_drop():
    repeated = 0
    for task in TASKS:
        system, schema, users = task_prompts(task, limit=10)
        for user in users:
            text = json.dumps(answer(system + SCHEMA_INSTRUCTION.format(schema=json.dumps(schema)) + "\n\n" + user))
            repeated += REPEATED_ITEMS in content_defects(text, schema, system, user)
    assert repeated >= 3


def test_a_prompt_without_a_schema_fails_loudly(tmp_path: Path):
    with pytest.raises(ValueError):
        answer("no schema here")
