"""Stage teach, its fast unit tests: how an answer is parsed, validated and written, and what a
run asks, on a real subprocess teacher (the command backend). The network and llama.cpp
backends run in test_teach_backends.py."""

import json
import stat
import sys

import pytest
from conftest import ROOT, command_teacher_settings

from vault_distill.config import ConfigError, check_teacher_sampling
from vault_distill.teach import (
    SchemaFailure,
    acceptance_settings,
    canonical_answer,
    consensus,
    deduplicated,
    parse_answer,
    run_teacher,
    teacher_system,
    validate_answer,
)

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["score", "verdict"],
    "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "verdict": {"enum": ["keep", "archive"]}},
}


def test_parse_answer_takes_the_first_object_past_fences_and_prose():
    assert parse_answer('  {"score": 3}  ') == {"score": 3}
    assert parse_answer('Sure!\n```json\n{"score": 4, "verdict": "keep"}\n```\nHope it helps.') == {
        "score": 4,
        "verdict": "keep",
    }
    with pytest.raises(SchemaFailure, match="not an object"):
        parse_answer("[1, 2]")
    with pytest.raises(SchemaFailure, match="no JSON object"):
        parse_answer("A fine note.")
    with pytest.raises(SchemaFailure, match="invalid JSON"):
        parse_answer('{"score": 3,')


def test_validate_answer_names_every_failing_field():
    assert validate_answer('{"score": 5, "verdict": "keep"}', SCHEMA) == {"score": 5, "verdict": "keep"}
    with pytest.raises(SchemaFailure, match=r"score: 9 is greater than the maximum of 5.*verdict: 'maybe'"):
        validate_answer('{"score": 9, "verdict": "maybe"}', SCHEMA)


def test_canonical_answer_is_compact_keeps_key_order_and_unicode():
    assert (
        canonical_answer({"verdict": "keep", "score": 2, "note": "ça"})
        == '{"verdict": "keep", "score": 2, "note": "ça"}'
    )


def teacher_script(tmp_path, answers: dict[str, str]):
    """A real program on stdin/stdout: it answers by the input's last line, and logs each call."""
    script = tmp_path / "teacher.py"
    script.write_text(
        "import json, sys\n"
        f"answers = {json.dumps(answers)}\n"
        "prompt = sys.stdin.read()\n"
        f"open({str(tmp_path / 'calls.log')!r}, 'a').write('call\\n')\n"
        "print(answers[prompt.strip().splitlines()[-1]])\n",
        encoding="utf-8",
    )
    runner = tmp_path / "teacher.sh"
    runner.write_text(f"#!/bin/sh\nexec python3 {script}\n", encoding="utf-8")
    runner.chmod(runner.stat().st_mode | stat.S_IXUSR)
    return [str(runner)]


def test_run_teacher_asks_the_first_inputs_rejects_bad_answers_and_pays_once(tmp_path):
    answers = {"a": '{"score": 4, "verdict": "keep"}', "b": "no idea", "c": '{"score": 1, "verdict": "archive"}'}
    config = command_teacher_settings(tmp_path / "cache", teacher_script(tmp_path, answers), schema_retries=1)
    inputs = [{"id": key, "sources": [f"{key}.md"], "user": key} for key in ("a", "b", "c")]
    run = run_teacher(inputs, "Judge the note.", SCHEMA, config, max_examples=2)
    assert [example["id"] for example in run.examples] == ["a"]
    assert run.examples[0]["messages"][2]["content"] == '{"score": 4, "verdict": "keep"}'
    assert [reject["id"] for reject in run.rejects] == ["b"] and run.rejects[0]["attempts"] == 2
    assert run.stats == {
        "inputs": 3,
        "asked": 2,
        "cached": 0,
        "generated": 2,
        "waited": 0,
        "deduplicated": 0,
        "accepted": 1,
        "rejected": 1,
        "refused_for_defects": {},
        "rejected_with_defects": 0,
        "accepted_with_defects": {"looping_string": 0, "repeated_items": 0, "copied_prompt": 0, "enum_as_list": 0},
    }
    calls = (tmp_path / "calls.log").read_text().count("call")
    assert calls == 3  # a once; b twice (one schema retry)

    again = run_teacher(inputs, "Judge the note.", SCHEMA, config, max_examples=3)
    assert again.stats["cached"] == 2 and again.stats["generated"] == 1
    assert (tmp_path / "calls.log").read_text().count("call") == calls + 1


def test_a_teacher_prompt_reaches_the_teacher_only_and_is_its_own_cache_key(tmp_path):
    """tasks.<task>.teacher_prompt: the teacher reads it after the system prompt; the example the
    student learns from carries the system prompt alone. Asking with it is a new cache key."""
    script = tmp_path / "teacher.py"
    log = tmp_path / "prompts.log"
    script.write_text(
        "import sys\n"
        f"open({str(log)!r}, 'a').write(sys.stdin.read() + '\\n---\\n')\n"
        """print('{"score": 4, "verdict": "keep"}')\n""",
        encoding="utf-8",
    )
    config = command_teacher_settings(tmp_path / "cache", [sys.executable, str(script)])
    inputs = [{"id": "a", "sources": ["a.md"], "user": "a note"}]
    asked = teacher_system("Judge the note.", "\nA worked example: a dated note scores 2.\n")
    assert asked == "Judge the note.\n\nA worked example: a dated note scores 2."
    assert teacher_system("Judge the note.", None) == teacher_system("Judge the note.", "  \n") == "Judge the note."
    run = run_teacher(inputs, "Judge the note.", SCHEMA, config, max_examples=1, teacher_system=asked)
    prompts = log.read_text().split("\n---\n")[:-1]
    assert len(prompts) == 1 and "A worked example" in prompts[0] and "Judge the note." in prompts[0]
    assert run.examples[0]["messages"][0] == {"role": "system", "content": "Judge the note."}
    assert run_teacher(inputs, "Judge the note.", SCHEMA, config, 1, teacher_system=asked).stats["cached"] == 1
    plain = run_teacher(inputs, "Judge the note.", SCHEMA, config, max_examples=1)
    prompts = log.read_text().split("\n---\n")[:-1]
    assert plain.stats["generated"] == 1 and len(prompts) == 2 and "A worked example" not in prompts[1]


LIST_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["verdict", "gaps"],
    "properties": {"verdict": {"enum": ["keep", "archive"]}, "gaps": {"type": "array", "items": {"type": "string"}}},
}


def attempt_teacher(tmp_path, answers: dict[str, list[str]]):
    """A real program that answers an input's Nth call with its Nth answer (the last one after)."""
    script = tmp_path / "teacher.py"
    log = tmp_path / "calls.log"
    script.write_text(
        "import json, sys\n"
        f"answers = {json.dumps(answers)}\n"
        "key = sys.stdin.read().strip().splitlines()[-1]\n"
        f"log = open({str(log)!r}, 'a+'); log.seek(0); seen = log.read().split().count(key)\n"
        "log.write(key + '\\n')\n"
        "print(answers[key][min(seen, len(answers[key]) - 1)])\n",
        encoding="utf-8",
    )
    return [sys.executable, str(script)], log


def test_answers_with_content_defects_are_re_asked_and_the_cache_is_re_judged_without_paying(tmp_path):
    repeated = '{"verdict": "keep", "gaps": ["no sources", "no sources"]}'
    clean = '{"verdict": "keep", "gaps": ["no sources"]}'
    command, log = attempt_teacher(tmp_path, {"a": [repeated, clean], "b": [repeated]})
    inputs = [{"id": key, "sources": [f"{key}.md"], "user": key} for key in ("a", "b")]

    def run(*defects):
        settings = command_teacher_settings(tmp_path / "cache", command, schema_retries=1, reject_defects=defects)
        return run_teacher(inputs, "Judge the note.", LIST_SCHEMA, settings, max_examples=2)

    def calls():
        return len(log.read_text().split())

    accepting = run()
    assert [e["messages"][2]["content"] for e in accepting.examples] == [repeated, repeated]
    assert accepting.stats["accepted_with_defects"]["repeated_items"] == 2 and calls() == 2

    # The check turned on: both cached answers are refused, and only the second attempts are paid.
    checked = run("repeated_items")
    assert [e["messages"][2]["content"] for e in checked.examples] == [clean]
    assert [r["id"] for r in checked.rejects] == ["b"] and checked.rejects[0]["attempts"] == 2
    assert checked.stats["refused_for_defects"] == {"repeated_items": 3}  # a once, b twice
    assert checked.stats["rejected_with_defects"] == 1
    assert checked.stats["accepted_with_defects"]["repeated_items"] == 0
    assert calls() == 4

    assert run("repeated_items").stats["generated"] == 0 and calls() == 4
    # ... and turned off again: b's refused answer comes back from the cache, for free.
    unchecked = run()
    assert len(unchecked.examples) == 2 and unchecked.stats["generated"] == 0 and calls() == 4
    assert unchecked.stats["refused_for_defects"] == {"repeated_items": 2}  # a's first answer, b's second


def test_an_answer_whose_string_loops_is_re_asked_when_looping_string_is_rejected(tmp_path):
    looping = '{"verdict": "keep", "gaps": ["1.1.1.1.1.1.1.1.1.1.1.1"]}'
    clean = '{"verdict": "keep", "gaps": ["no sources"]}'
    command, log = attempt_teacher(tmp_path, {"a": [looping, clean]})
    inputs = [{"id": "a", "sources": ["a.md"], "user": "a"}]
    settings = command_teacher_settings(tmp_path / "cache", command, schema_retries=1)
    assert run_teacher(inputs, "Judge.", LIST_SCHEMA, settings, 1).stats["accepted_with_defects"]["looping_string"] == 1

    settings["reject_defects"] = ["looping_string"]
    checked = run_teacher(inputs, "Judge.", LIST_SCHEMA, settings, 1)
    assert [e["messages"][2]["content"] for e in checked.examples] == [clean]
    assert checked.stats["refused_for_defects"] == {"looping_string": 1}
    assert len(log.read_text().split()) == 2


def test_deduplicated_drops_repeats_as_compared_for_repeats_and_keeps_min_items():
    schema = {
        "type": "object",
        "properties": {
            "fixes": {"type": "array", "items": {"type": "string"}},
            "steps": {"type": "array", "minItems": 2, "items": {"type": "string"}},
            "nested": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
        },
    }
    answer = {
        "fixes": ["Bake a", "1. bake  A", "Cool it", "Bake a"],
        "steps": ["Same", "same"],
        "nested": {"tags": ["x", "y", "x"]},
        "score": 3,
    }
    assert deduplicated(answer, schema) == {
        "fixes": ["Bake a", "Cool it"],
        "steps": ["Same", "same"],  # one item left would break minItems: kept as it is
        "nested": {"tags": ["x", "y"]},
        "score": 3,
    }
    assert deduplicated({"fixes": ["a", "b"]}, schema) == {"fixes": ["a", "b"]}


def test_dedupe_items_trains_on_the_deduplicated_answer_and_asks_nothing_again(tmp_path):
    """teacher.dedupe_items repairs the cached answer instead of re-asking: no call is paid, the
    example has each item once, and a repeated_items check no longer refuses the repaired answer."""
    repeated = '{"verdict": "keep", "gaps": ["no sources", "No sources", "no date"]}'
    command, log = attempt_teacher(tmp_path, {"a": [repeated], "b": ['{"verdict": "keep", "gaps": ["x"]}']})
    inputs = [{"id": key, "sources": [f"{key}.md"], "user": key} for key in ("a", "b")]
    settings = command_teacher_settings(tmp_path / "cache", command, reject_defects=("repeated_items",))
    assert [e["id"] for e in run_teacher(inputs, "Judge.", LIST_SCHEMA, settings, 2).examples] == ["b"]

    settings["dedupe_items"] = True
    run = run_teacher(inputs, "Judge.", LIST_SCHEMA, settings, 2)

    assert [e["messages"][2]["content"] for e in run.examples] == [
        '{"verdict": "keep", "gaps": ["no sources", "no date"]}',
        '{"verdict": "keep", "gaps": ["x"]}',
    ]
    assert run.stats["deduplicated"] == 1 and run.stats["generated"] == 0
    assert run.stats["accepted_with_defects"]["repeated_items"] == 0
    assert len(log.read_text().split()) == 2


@pytest.mark.parametrize("task", ["judge", "planner", "seeder", "analyst", "reflector"])
def test_each_shipped_teacher_prompts_worked_example_is_a_valid_answer(task):
    """resources/prompts/teacher/<task>.md: its worked example is what the teacher is to imitate,
    so it must be an answer the task's schema accepts."""
    text = (ROOT / "resources" / "prompts" / "teacher" / f"{task}.md").read_text(encoding="utf-8")
    schema = json.loads((ROOT / "resources" / "schemas" / f"{task}.schema.json").read_text(encoding="utf-8"))
    answers = [line.removeprefix("Answer: ") for line in text.splitlines() if line.startswith("Answer: ")]
    assert len(answers) == 1
    validate_answer(answers[0], schema)


def ok(answer: dict) -> dict:
    return {"status": "ok", "answer": answer, "attempts": 1}


def test_consensus_keeps_the_sample_the_others_agree_with_most():
    keep = {"score": 4, "verdict": "keep"}
    samples = [ok({"score": 1, "verdict": "archive"}), ok(keep), ok({"score": 4, "verdict": "keep"})]
    assert consensus(samples, SCHEMA) == (samples[1], 1)  # two agree; the first of them on the tie
    assert consensus([ok(keep), ok({"score": 2, "verdict": "archive"})], SCHEMA)[1] == 0  # a tie: the first
    rejected = {"status": "rejected", "errors": ["not JSON"], "attempts": 3}
    assert consensus([rejected, ok(keep)], SCHEMA) == (samples[1], 1)  # only accepted answers count
    assert consensus([rejected, rejected], SCHEMA)[1] == 0


def test_samples_are_each_cached_by_seed_and_one_sample_is_the_first_of_several(tmp_path):
    """teacher.samples 3: three answers per input, each its own cache entry; the majority is kept.
    Back to 1 sample, the first sample's answer is the cached one: nothing is asked."""
    archive, keep = '{"score": 1, "verdict": "archive"}', '{"score": 4, "verdict": "keep"}'
    command, log = attempt_teacher(tmp_path, {"a": [archive, keep, keep], "b": [keep]})
    inputs = [{"id": key, "sources": [f"{key}.md"], "user": key} for key in ("a", "b")]
    settings = command_teacher_settings(tmp_path / "cache", command) | {"temperature": 0.7, "samples": 3}
    run = run_teacher(inputs, "Judge the note.", SCHEMA, settings, max_examples=2)
    assert [e["messages"][2]["content"] for e in run.examples] == [keep, keep]
    assert run.stats["generated"] == 6 and run.stats["samples"] == 3 and run.stats["consensus_not_first"] == 1
    again = run_teacher(inputs, "Judge the note.", SCHEMA, settings, max_examples=2)
    assert again.stats["cached"] == 6 and len(log.read_text().split()) == 6
    single = run_teacher(inputs, "Judge the note.", SCHEMA, settings | {"samples": 1}, max_examples=2)
    assert single.stats["cached"] == 2 and [e["messages"][2]["content"] for e in single.examples] == [archive, keep]
    assert "samples" not in single.stats and len(log.read_text().split()) == 6


def test_samples_need_a_temperature_and_are_no_rerun_trigger_at_one():
    teacher = {"samples": 3, "temperature": 0.0}
    with pytest.raises(ConfigError, match=r"^config key 'teacher.samples': 3 samples at temperature 0"):
        check_teacher_sampling(teacher)
    check_teacher_sampling({"samples": 3, "temperature": 0.7})
    check_teacher_sampling({"samples": 1, "temperature": 0.0})
    shipped = {"reject_defects": ["looping_string"], "dedupe_items": False, "samples": 1}
    assert acceptance_settings(shipped) == {"reject_defects": ["looping_string"], "dedupe_items": False}
    assert acceptance_settings(shipped | {"samples": 3})["samples"] == 3
