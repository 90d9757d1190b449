"""`snakemake serve`: one real llama_cpp.server process with the base GGUF once and a LoRA GGUF
per task, each request answered under its own task's adapter."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import jsonschema
import pytest
from conftest import ROOT, TINY_TASKS, default_config

from vault_distill.format import schema_llama_grammar
from vault_distill.serve import free_port, request_sampling, task_handler, wait_for_server

SYSTEM_PROMPTS = {task: f"You are the {task}. Answer with one JSON object." for task in TINY_TASKS}
SCHEMAS = {
    task: json.loads((ROOT / "resources" / "schemas" / f"{task}.schema.json").read_text(encoding="utf-8"))
    for task in TINY_TASKS
}
# Unconstrained text: how a request opts out of its task's schema.
AS_TEXT = {"response_format": {"type": "text"}}
USER = "=== NOTE ===\n# Rust ownership\nEach value has one owner."
# The shipped decoding, greedy: every setting stated in the request and in the direct call alike.
SAMPLING = request_sampling({**default_config()["decoding"], "temperature": 0, "max_tokens": 12})


def test_a_request_states_the_shipped_decoding_in_the_servers_own_field_names():
    from llama_cpp.server.types import CreateChatCompletionRequest

    decoding = default_config()["decoding"]
    sampling = request_sampling(decoding)
    assert {key: sampling[key] for key in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed")} == {
        key: decoding[key] for key in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed")
    }
    assert sampling["max_tokens"] == decoding["max_tokens"]
    request = CreateChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], **sampling)
    assert all(getattr(request, key) == value for key, value in sampling.items())


def test_the_task_system_prompt_goes_first_only_when_the_request_has_none():
    seen = []
    handler = task_handler(lambda *, messages, **kwargs: seen.append((messages, kwargs)), "Be the judge.")
    handler(messages=[{"role": "user", "content": "hi"}], temperature=0.1)
    handler(messages=[{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}])
    assert seen[0] == (
        [{"role": "system", "content": "Be the judge."}, {"role": "user", "content": "hi"}],
        {"temperature": 0.1, "response_format": None},
    )
    assert seen[1][0][0] == {"role": "system", "content": "Mine."} and len(seen[1][0]) == 2


def test_the_task_grammar_holds_unless_the_request_sets_a_format_of_its_own():
    seen = []
    task_grammar, own_grammar, own_format = object(), object(), {"type": "json_object"}
    handler = task_handler(lambda *, messages, **kwargs: seen.append(kwargs), "Be the judge.", task_grammar)
    user = [{"role": "user", "content": "hi"}]
    handler(messages=user)
    handler(messages=user, response_format=own_format)
    handler(messages=user, response_format={"type": "text"})
    handler(messages=user, grammar=own_grammar)
    assert [(kwargs.get("grammar"), kwargs["response_format"]) for kwargs in seen] == [
        (task_grammar, None),
        (None, own_format),
        (None, {"type": "text"}),
        (own_grammar, None),
    ]


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tiny_loras, tmp_path_factory):
    """The server in its own process, as `snakemake serve` runs it; stopped after the module."""
    port = free_port()
    args = (str(tiny_loras["base_gguf"]), {t: str(p) for t, p in tiny_loras["loras"].items()}, SYSTEM_PROMPTS, 2048, 1)
    code = (
        f"from vault_distill.serve import serve; serve(*{args!r}, host='127.0.0.1', port={port}, schemas={SCHEMAS!r})"
    )
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {"PYTHONPATH": str(ROOT / "workflow" / "scripts"), "PATH": "/usr/bin:/bin"}
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        models = wait_for_server(f"http://127.0.0.1:{port}/v1/models", process, timeout_s=120)
    except RuntimeError as err:
        raise AssertionError(log.read_text()) from err
    yield port, models, process
    process.terminate()
    process.wait(timeout=30)


def direct_answer(tiny_loras, task: str, sampling: dict = SAMPLING, grammar=None) -> str:
    """The same request, answered by llama-cpp-python with only that task's LoRA on the base."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(tiny_loras["base_gguf"]),
        lora_path=str(tiny_loras["loras"][task]),
        n_ctx=2048,
        n_threads=1,
        n_threads_batch=1,
        verbose=False,
    )
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[task]}, {"role": "user", "content": USER}]
    answer = llm.create_chat_completion(messages=messages, grammar=grammar, **sampling)["choices"][0]["message"][
        "content"
    ]
    llm.close()
    return answer


def test_one_process_answers_each_task_with_its_own_adapter(server, tiny_loras):
    """Every task in turn, then the first again: each answer is what that task's adapter alone
    gives, so the adapter is switched per request and no cached prompt state leaks across."""
    port, models, process = server
    assert [model["id"] for model in models["data"]] == list(TINY_TASKS)
    served = {}
    for task in (*TINY_TASKS, TINY_TASKS[0]):
        body = {"model": task, "messages": [{"role": "user", "content": USER}], **SAMPLING, **AS_TEXT}
        response = post(port, "/v1/chat/completions", body)
        assert response["model"] == task
        served.setdefault(task, []).append(response["choices"][0]["message"]["content"])
    for task in TINY_TASKS:
        assert served[task][0] == direct_answer(tiny_loras, task), task
    assert served[TINY_TASKS[0]][0] == served[TINY_TASKS[0]][1]
    assert len({answers[0] for answers in served.values()}) == len(TINY_TASKS), "the adapters answer alike"
    assert process.poll() is None


def test_a_request_for_no_task_is_refused_with_the_task_names(server):
    port, _, _ = server
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(port, "/v1/chat/completions", {"model": "reflektor", "messages": [{"role": "user", "content": "hi"}]})
    assert refused.value.code == 404
    assert "judge, planner, seeder" in refused.value.read().decode()


def test_each_answer_is_valid_json_of_its_tasks_schema_with_no_format_in_the_request(server, tiny_loras):
    """serve.enforce_schema: random tiny adapters write schema-valid JSON only under the schema's
    grammar. The request sends none; the answer is the one the task's grammar gives directly."""
    port, _, _ = server
    sampling = {**SAMPLING, "max_tokens": 1500}
    for task in TINY_TASKS:
        body = {"model": task, "messages": [{"role": "user", "content": USER}], **sampling}
        choice = post(port, "/v1/chat/completions", body)["choices"][0]
        assert choice["finish_reason"] == "stop", (task, choice)
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMAS[task])
        grammar = schema_llama_grammar(SCHEMAS[task])
        assert choice["message"]["content"] == direct_answer(tiny_loras, task, sampling, grammar), task
        unconstrained = post(port, "/v1/chat/completions", {**body, **AS_TEXT})["choices"][0]["message"]["content"]
        assert unconstrained != choice["message"]["content"], task
