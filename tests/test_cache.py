"""The teacher cache under real concurrency: several teacher processes share one cache, as
teacher jobs on several cluster nodes share one cache folder on a shared filesystem.

The teacher is the real `command` backend running a real shell script. The script logs every
call it receives (one appended line per call, with the prompt's hash), so "paid calls" are
counted by what the backend really received, not by what the cache believes it did.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import stat
import time
from pathlib import Path

import pytest
from conftest import command_teacher_settings, held_cache_keys

from vault_distill.cache import ResponseCache, cache_key
from vault_distill.teach import generation_identity, run_teacher

SYSTEM = "Label the note."
SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string"}, "score": {"type": "integer"}},
    "required": ["topic", "score"],
    "additionalProperties": False,
}
# Answers with the prompt's hash, so each key has its own answer, and logs the call. A paid
# call takes a few tens of milliseconds (a process start, a hash, a short sleep standing in for
# a model's latency), long enough that workers arriving at the same key really overlap.
TEACHER_SCRIPT = """#!/bin/sh
h=$(sha256sum | cut -c1-16)
sleep 0.05
printf '%s\\n' "$h" >> "$CALLS"
printf '{"topic": "%s", "score": 3}\\n' "$h"
"""
SPAWN = multiprocessing.get_context("spawn")


def make_inputs(ids) -> list[dict]:
    return [{"id": f"n{i}", "sources": [f"n{i}.md"], "user": f"note {i}: some text about thing {i}"} for i in ids]


def teacher_settings(tmp_path: Path) -> dict:
    script = tmp_path / "teacher.sh"
    script.write_text(TEACHER_SCRIPT, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return command_teacher_settings(tmp_path / "cache", [str(script)])


def key_of(settings: dict, record: dict) -> str:
    return cache_key({**generation_identity(settings), "system": SYSTEM, "user": record["user"], "schema": SCHEMA})


def paid_calls(calls: Path) -> list[str]:
    return calls.read_text(encoding="utf-8").split() if calls.exists() else []


def teacher_worker(inputs, settings, calls, start, results) -> None:
    """One teacher job: waits for the others at `start`, then answers its inputs."""
    os.environ["CALLS"] = str(calls)
    start.wait()
    run = run_teacher(inputs, SYSTEM, SCHEMA, settings, max_examples=len(inputs))
    answers = {example["id"]: example["messages"][-1]["content"] for example in run.examples}
    results.put({"stats": run.stats, "answers": answers, "rejects": run.rejects})


def collect(workers, results, timeout_s: float = 120) -> list[dict]:
    outputs = [results.get(timeout=timeout_s) for _ in workers]
    for worker in workers:
        worker.join(timeout_s)
        assert worker.exitcode == 0, f"teacher worker exited with {worker.exitcode}"
    return outputs


def test_concurrent_teachers_pay_once_per_key(tmp_path):
    settings = teacher_settings(tmp_path)
    calls = tmp_path / "calls.log"
    shared = list(range(40))
    # Six workers over the same 40 inputs in three orders (two workers per order, so pairs
    # arrive at the same key together, and the reversed ones meet the others in the middle),
    # each with two inputs of its own.
    orders = [shared, shared[::-1], shared[20:] + shared[:20]]
    worker_inputs = [make_inputs(orders[w % 3] + [100 + 2 * w, 101 + 2 * w]) for w in range(6)]
    start, results = SPAWN.Barrier(len(worker_inputs)), SPAWN.Queue()
    workers = [
        SPAWN.Process(target=teacher_worker, args=(inputs, settings, calls, start, results)) for inputs in worker_inputs
    ]
    for worker in workers:
        worker.start()
    outputs = collect(workers, results)

    every_record = {record["user"]: record for inputs in worker_inputs for record in inputs}
    assert len(every_record) == 52
    # The backend received each distinct prompt exactly once.
    calls_log = paid_calls(calls)
    assert len(calls_log) == 52, f"{len(calls_log)} paid calls for 52 distinct inputs"
    assert len(set(calls_log)) == 52
    assert sum(out["stats"]["generated"] for out in outputs) == 52

    for inputs, out in zip(worker_inputs, outputs, strict=True):
        stats = out["stats"]
        assert stats["cached"] + stats["generated"] + stats["waited"] == len(inputs) == stats["accepted"]
        assert not out["rejects"]
    assert sum(out["stats"]["waited"] for out in outputs) > 0, "no worker ever waited for another: no real overlap"
    # Every worker got the same answer for the same input, whoever paid for it.
    for record_id in {record["id"] for record in every_record.values()}:
        answers = {out["answers"][record_id] for out in outputs if record_id in out["answers"]}
        assert len(answers) == 1, (record_id, answers)

    # Every entry is in the cache, whole, under its own key.
    cache = ResponseCache(settings["cache_dir"])
    expected_keys = sorted(key_of(settings, record) for record in every_record.values())
    assert cache.stored_keys() == expected_keys
    assert not held_cache_keys(cache.root)


def one_input(tmp_path: Path, number: int):
    """Teacher settings, the paid-calls log, one input record, its cache key and the cache."""
    settings = teacher_settings(tmp_path)
    [record] = make_inputs([number])
    return settings, tmp_path / "calls.log", record, key_of(settings, record), ResponseCache(settings["cache_dir"])


def hold_and_write_half(cache_dir, key, record, holding) -> None:
    """A teacher job that took a key and is killed halfway through writing its answer."""
    cache = ResponseCache(cache_dir)
    with cache.hold(key) as entry:
        data = json.dumps(record).encode()
        # A second descriptor on the same file, never closed: closing any descriptor of a file
        # drops the process's POSIX locks on it, which is why the cache keeps exactly one.
        handle = open(entry.path, "r+b")  # noqa: SIM115
        handle.write(data[: len(data) // 2])
        handle.flush()
        holding.set()
        signal.pause()


def test_a_killed_writer_leaves_no_torn_record_and_no_lock(tmp_path):
    settings, calls, record, key, cache = one_input(tmp_path, 7)
    holding = SPAWN.Event()
    writer = SPAWN.Process(
        target=hold_and_write_half,
        args=(settings["cache_dir"], key, {"status": "ok", "answer": {"topic": "x", "score": 1}}, holding),
    )
    writer.start()
    try:
        assert holding.wait(60), "the writer never took the key"
        with cache.hold(key, wait=False) as entry:
            assert entry is None, "a key held by a live process must not be handed out"
        assert cache.path(key).stat().st_size > 0, "the half-written record is really on disk"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()

    # The kernel dropped the dead writer's lock; its half record reads as no record.
    assert held_cache_keys(cache.root) == []
    assert cache.get(key) is None and cache.stored_keys() == []
    os.environ["CALLS"] = str(calls)
    run = run_teacher([record], SYSTEM, SCHEMA, settings, max_examples=1)
    assert run.stats["generated"] == 1 and run.stats["accepted"] == 1
    assert len(paid_calls(calls)) == 1
    stored = cache.get(key)
    assert stored["status"] == "ok" and json.dumps(stored["answer"]) == run.examples[0]["messages"][-1]["content"]


def blocked_lock_waiters(path: Path) -> int:
    """How many processes are blocked in a lock on `path` right now (Linux /proc/locks)."""
    inode = f":{path.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and inode in line)


def test_a_worker_waits_for_the_holder_and_takes_its_answer(tmp_path):
    settings, calls, record, key, cache = one_input(tmp_path, 3)
    outcome = {"status": "ok", "answer": {"topic": "from the holder", "score": 5}, "attempts": 1}
    start, results = SPAWN.Barrier(1), SPAWN.Queue()
    with cache.hold(key) as entry:
        waiter = SPAWN.Process(target=teacher_worker, args=([record], settings, calls, start, results))
        waiter.start()
        deadline = time.monotonic() + 60
        while blocked_lock_waiters(entry.path) == 0:
            assert waiter.is_alive(), "the waiting worker exited while the key was held"
            assert time.monotonic() < deadline, "the worker never blocked on the held key"
            time.sleep(0.05)
        entry.write(outcome)
    [out] = collect([waiter], results)

    assert out["stats"]["waited"] == 1 and out["stats"]["generated"] == 0
    assert paid_calls(calls) == []
    assert json.loads(out["answers"][record["id"]]) == outcome["answer"]


@pytest.mark.parametrize("content", [b"", b'{"status": "ok", "ans', b"\x00\x00\x00"], ids=["empty", "prefix", "zeros"])
def test_incomplete_records_read_as_missing(tmp_path, content):
    cache = ResponseCache(tmp_path / "cache")
    cache.path("ab" * 32).parent.mkdir(parents=True)
    cache.path("ab" * 32).write_bytes(content)
    assert cache.get("ab" * 32) is None
    assert cache.stored_keys() == []
    with cache.hold("ab" * 32) as entry:
        assert entry.read() is None
        entry.write({"status": "ok"})
    assert cache.get("ab" * 32) == {"status": "ok"}
    assert cache.stored_keys() == ["ab" * 32]
