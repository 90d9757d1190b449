"""Stage preflight: a max_length that cannot hold a task stops the run before any teacher call;
so does a vault too small for a task, when the DAG is built."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from conftest import ROOT, absolute_resources, default_config, make_workdir, snakemake

from vault_distill.preflight import PreflightError, check_max_length, tokens_needed, typical_value
from vault_distill.split import build_example
from vault_distill.teach import canonical_answer

TASKS = default_config()["tasks"]


def task_files(task: str) -> tuple[str, dict]:
    settings = TASKS[task]
    system = (ROOT / settings["system_prompt"]).read_text(encoding="utf-8").strip()
    return system, json.loads((ROOT / settings["output_schema"]).read_text(encoding="utf-8"))


@pytest.mark.parametrize("task", list(TASKS))
def test_typical_answer_is_valid_for_every_task_schema(task):
    _, schema = task_files(task)
    answer = typical_value(schema)
    jsonschema.validate(answer, schema)
    assert set(answer) == set(schema["properties"])


def test_typical_values_follow_the_schema_bounds():
    schema = {
        "type": "object",
        "properties": {
            "short": {"type": "string", "maxLength": 10},
            "long": {"type": "string", "minLength": 90, "maxLength": 200},
            "many": {"type": "array", "minItems": 3, "items": {"type": "integer", "minimum": 4}},
            "one": {"type": "array", "maxItems": 1},
            "maybe": {"type": ["null", "boolean"]},
        },
    }
    value = typical_value(schema)
    assert len(value["short"]) <= 5 and len(value["long"]) >= 90
    assert value["many"] == [4, 4, 4] and len(value["one"]) == 1 and value["maybe"] is True


@pytest.mark.parametrize("task", list(TASKS))
def test_the_default_max_length_holds_every_task_and_the_need_is_a_real_example(tokenizer, task):
    system, schema = task_files(task)
    header = TASKS[task]["header"]
    needed = tokens_needed(tokenizer, system, header, schema)
    checked = check_max_length(tokenizer, task, system, header, schema, 512)
    assert checked == {"max_length": 512, "tokens_needed": needed, "room_for_notes": 512 - needed}
    # At exactly `needed` tokens the split can still build an example from a long input and the
    # typical answer; one token less, the check refuses.
    notes = header + "\n\n" + "A long note about the week. " * 200
    built = build_example(tokenizer, system, notes, canonical_answer(typical_value(schema)), needed)
    assert built.truncated and built.n_tokens <= needed
    with pytest.raises(PreflightError) as refused:
        check_max_length(tokenizer, task, system, header, schema, needed - 1)
    assert str(refused.value) == (
        f"tasks.{task}.training.max_length: {needed - 1} tokens cannot hold this task's system prompt, header, "
        f"a minimum input and a typical answer: it needs at least {needed}"
    )


def judge_only_config(tmp_path: Path, calls: Path) -> dict:
    """The judge task alone, with a real command teacher that notes every call it gets."""
    config = absolute_resources(default_config())
    config["tasks"] = {"judge": config["tasks"]["judge"]}
    teacher = tmp_path / "teacher.sh"
    answer = json.dumps({"score": 3, "verdict": "keep", "strengths": ["clear"], "gaps": []})
    teacher.write_text(f"#!/bin/sh\ncat > /dev/null\necho call >> {calls}\necho '{answer}'\n", encoding="utf-8")
    teacher.chmod(0o755)
    config["teacher"].update(
        backend="command", command=[str(teacher)], response_format="none", cache_dir=str(tmp_path / "cache")
    )
    return config


@pytest.mark.slow
def test_a_max_length_too_small_stops_before_any_teacher_call(tmp_path):
    calls = tmp_path / "calls.log"
    config = judge_only_config(tmp_path, calls)
    config["tasks"]["judge"]["training"] = {"max_length": 128}
    workdir = make_workdir(tmp_path, config)
    # Extract first: with one core the scheduler may pick preflight before extract, and then
    # extract never runs, so the kept-work check needs the inputs built beforehand.
    snakemake(workdir, "--cores", "1", "results/judge/inputs.jsonl")
    done = snakemake(workdir, "--cores", "1", "results/judge/teacher.jsonl", check=False)
    assert done.returncode != 0
    log = (workdir / "results/logs/judge/preflight.log").read_text(encoding="utf-8")
    output = done.stdout + done.stderr + log
    assert "tasks.judge.training.max_length: 128 tokens cannot hold this task's system prompt" in output
    assert not calls.exists(), "the teacher was asked"
    assert not (workdir / "results/judge/teacher.jsonl").exists()
    assert (workdir / "results/judge/inputs.jsonl").exists(), "work already done is kept"

    # Fixed: the check passes and the teacher is asked, once per example.
    config["tasks"]["judge"].update(training={"max_length": 512}, examples=3)
    (workdir / "config/config.yaml").write_text(json.dumps(config), encoding="utf-8")
    snakemake(workdir, "--cores", "1", "results/judge/teacher.jsonl")
    assert len(calls.read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("task", "change", "expected"),
    [
        (
            "judge",
            {"min_examples": 100},
            "tasks.judge.min_examples: 65 usable inputs found in {vault} (folders ['topics']), 100 needed",
        ),
        (
            "reflector",
            {"select": {"folders": ["daily"], "group": "window", "window_days": 90}},
            "tasks.reflector.min_examples: 0 usable inputs found in {vault} (folders ['daily']), 8 needed; 69 dated "
            "notes found, spanning 69 days (2026-09-01 to 2026-11-08); window_days: 90 needs notes spanning at least "
            "90 days",
        ),
    ],
)
def test_too_few_inputs_stop_the_run_when_the_dag_is_built(tmp_path, task, change, expected):
    config = absolute_resources(default_config())
    config["tasks"][task].update(change)
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "-n", task, check=False)
    assert done.returncode != 0
    assert expected.format(vault=workdir / "vault") in done.stdout + done.stderr
    assert not (workdir / "results").exists()


ALPACA_TEMPLATE = (  # no Ollama TEMPLATE is derived for it: none of the families renders this
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + '\n\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)


@pytest.mark.slow
def test_a_chat_template_with_no_modelfile_stops_before_any_teacher_call(tmp_path, tokenizer):
    calls = tmp_path / "calls.log"
    config = judge_only_config(tmp_path, calls)
    student = copy.deepcopy(tokenizer)
    student.chat_template = ALPACA_TEMPLATE
    student.save_pretrained(tmp_path / "student")
    config["base_model"] = str(tmp_path / "student")
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "--cores", "1", "results/judge/teacher.jsonl", check=False)
    assert done.returncode != 0
    log = (workdir / "results/logs/base_tokenizer.log").read_text(encoding="utf-8")
    assert (
        "base_model: chat template family not supported for Ollama: its template looks like Alpaca (supported: ChatML"
        in done.stdout + done.stderr + log
    )
    assert f"[base_model is {tmp_path / 'student'}]" in done.stdout + done.stderr + log
    assert not calls.exists(), "the teacher was asked"
