"""Stage 2: a teacher model writes one schema-valid answer per task input.

Every backend answers `complete(system, user, schema, attempt) -> str`. Transport
failures (timeouts, 429, 5xx) are retried with exponential backoff by tenacity;
answers that fail the output schema are re-asked a bounded number of times, then
rejected. Every final outcome, accepted or rejected, is cached by content before
the next input is asked, so no call is ever paid twice.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from dataclasses import dataclass, field

import jsonschema
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from tqdm import tqdm

from .cache import ResponseCache, cache_key
from .config import keys_with_role
from .failure_modes import COPIED_PROMPT, ENUM_AS_LIST, LOOP, REPEATED_ITEMS, content_defects, normalized_item
from .teach_backends import (
    BACKENDS,
    PENALTIES,
    Backend,
    SchemaFailure,
    TransientError,
)

log = logging.getLogger(__name__)


def parse_answer(text: str) -> dict:
    """The first JSON object in `text`, tolerating code fences and prose around it."""
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError:
        start = stripped.find("{")
        if start < 0:
            raise SchemaFailure("no JSON object in the answer") from None
        try:
            value, _ = json.JSONDecoder().raw_decode(stripped[start:])
        except json.JSONDecodeError as err:
            raise SchemaFailure(f"invalid JSON: {err.msg} at char {err.pos}") from None
    if not isinstance(value, dict):
        raise SchemaFailure("the answer is JSON but not an object")
    return value


def validate_answer(text: str, schema: dict) -> dict:
    value = parse_answer(text)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        details = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:5])
        raise SchemaFailure(details)
    return value


def canonical_answer(value: dict) -> str:
    """The exact text the student learns to write: compact JSON, key order kept."""
    return json.dumps(value, ensure_ascii=False)


@dataclass
class TeacherRun:
    examples: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


# Content defects a schema lets through (teacher.reject_defects names them): an answer that
# has one is re-asked like a schema failure, then rejected.
DEFECTS = {
    "looping_string": LOOP,
    "repeated_items": REPEATED_ITEMS,
    "copied_prompt": COPIED_PROMPT,
    "enum_as_list": ENUM_AS_LIST,
}
# The penalties were added after caches were written: off (0), they are left out of the cache key,
# so that every answer cached before they existed is still found (and never paid for again).
IDENTITY_WHEN_ADDED = dict.fromkeys(PENALTIES, 0.0)


def generation_identity(settings: dict) -> dict:
    """Everything that changes an answer (x-role `makes` in config/schema.yaml): the teach
    rule's rerun trigger and part of every cache key. Endpoint, timeouts and retries do not."""
    identity = {key: settings.get(key) for key in keys_with_role("teacher", "makes")}
    return {key: value for key, value in identity.items() if IDENTITY_WHEN_ADDED.get(key, ...) != value}


# teacher.samples was added after builds existed: at 1 (off) it is left out of the teach rule's
# params, so that those builds do not rerun for a setting that changes nothing.
ACCEPTANCE_WHEN_ADDED = {"samples": 1}
# Sample j of an input is asked with seed + j * SAMPLE_SEED_STRIDE: apart from the retries'
# seed + attempt, and sample 0 is the answer a single-sample run asks for (its cache entry).
SAMPLE_SEED_STRIDE = 1000


def acceptance_settings(settings: dict) -> dict:
    """Which answers are kept (x-role `accepts`): the teach rule's rerun trigger, never a cache key."""
    accepted = {key: settings.get(key) for key in keys_with_role("teacher", "accepts")}
    return {key: value for key, value in accepted.items() if ACCEPTANCE_WHEN_ADDED.get(key, ...) != value}


def sample_settings(settings: dict, sample: int) -> dict:
    return {**settings, "seed": settings["seed"] + sample * SAMPLE_SEED_STRIDE}


def consensus(outcomes: list[dict], schema: dict) -> tuple[dict, int]:
    """Self-consistency: of one input's sampled outcomes, the accepted answer that agrees most with
    the other accepted ones, field by field (quality.field_agreement: enums exact, text token F1);
    the first such on a tie. No accepted sample: the first outcome. Returns it and its index."""
    from .quality import answer_agreement, field_agreement

    accepted = [index for index, outcome in enumerate(outcomes) if outcome["status"] == "ok"]
    if not accepted:
        return outcomes[0], 0

    def support(index: int) -> float:
        answer = outcomes[index]["answer"]
        others = [outcomes[other]["answer"] for other in accepted if other != index]
        return sum(answer_agreement(field_agreement(answer, other, schema)) or 0.0 for other in others)

    best = max(accepted, key=lambda index: (support(index), -index))
    return outcomes[best], best


def deduplicated(value, schema: dict):
    """`value` with each array's repeated string items dropped (the first kept, compared as
    failure_modes compares them), wherever the schema's minItems still holds; nothing else changes."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {key: deduplicated(item, properties.get(key, {})) for key, item in value.items()}
    if not isinstance(value, list):
        return value
    items = [deduplicated(item, schema.get("items", {})) for item in value]
    seen, kept = set(), []
    for item in items:
        key = normalized_item(item) if isinstance(item, str) else None
        if key is None or key not in seen:
            kept.append(item)
            seen.add(key)
    return kept if len(kept) >= schema.get("minItems", 0) else items


def kept_answer(answer: dict, settings: dict, schema: dict) -> dict:
    """The answer as it is judged and trained on: deduplicated when teacher.dedupe_items."""
    return deduplicated(answer, schema) if settings.get("dedupe_items") else answer


def answer_defects(answer: dict, settings: dict, system: str, user: str, schema: dict) -> list[str]:
    """The teacher.reject_defects names that `answer` has (failure_modes.content_defects), as kept."""
    found = content_defects(canonical_answer(kept_answer(answer, settings, schema)), schema, system, user)
    return [name for name in settings.get("reject_defects") or () if DEFECTS[name] in found]


def rejudged(stored: dict, settings: dict, system: str, user: str, schema: dict) -> dict:
    """A cached outcome as today's teacher.reject_defects judge it, without paying: an accepted
    answer that now has a defect is refused; an answer refused before that now passes is taken."""
    outcome = stored
    if stored["status"] == "ok":
        if not (defects := answer_defects(stored["answer"], settings, system, user, schema)):
            return stored
        outcome = refused_answer(stored, stored["answer"], defects)
    refused = outcome.get("defective", [])
    for index, item in enumerate(refused):
        if not answer_defects(item["answer"], settings, system, user, schema):
            others = refused[:index] + refused[index + 1 :]
            return {**outcome, "status": "ok", "answer": item["answer"], "defective": others}
    return outcome


def needs_asking(outcome: dict | None, settings: dict) -> bool:
    """No outcome yet, or a refusal with schema retries left (new attempts, never paid before)."""
    return outcome is None or (outcome["status"] != "ok" and outcome["attempts"] <= settings["schema_retries"])


def refused_answer(outcome: dict, answer: dict, defects: list[str]) -> dict:
    """`outcome` with `answer` refused for `defects`: kept, so that other checks may accept it later."""
    return {
        **outcome,
        "status": "rejected",
        "errors": [*outcome.get("errors", []), f"content: {', '.join(defects)}"],
        "defective": [*outcome.get("defective", []), {"answer": answer, "defects": defects}],
    }


def ask_with_retries(
    backend: Backend, settings: dict, system: str, user: str, schema: dict, earlier: dict | None = None
) -> dict:
    """One input's final outcome: accepted answer or rejection, after all retries. `earlier`: a
    cached outcome whose attempts were already paid for; asking goes on from the next attempt."""
    transport = Retrying(
        retry=retry_if_exception(lambda err: isinstance(err, TransientError)),
        stop=stop_after_attempt(settings["max_retries"] + 1),
        wait=wait_exponential_jitter(initial=1, max=30),
        before_sleep=lambda state: log.warning(
            "teacher: retrying after %s (attempt %d)", state.outcome.exception(), state.attempt_number
        ),
        reraise=True,
    )
    outcome = earlier or {"status": "rejected", "errors": [], "raw": "", "attempts": 0}
    for attempt in range(outcome["attempts"], settings["schema_retries"] + 1):
        outcome = {**outcome, "attempts": attempt + 1}
        try:
            raw = transport(backend.complete, system, user, schema, attempt)
            outcome["raw"] = raw[:2000]
            answer = validate_answer(raw, schema)
        except SchemaFailure as err:
            outcome["errors"] = [*outcome["errors"], str(err)]
            continue
        if defects := answer_defects(answer, settings, system, user, schema):
            outcome = refused_answer(outcome, answer, defects)
            continue
        return {**outcome, "status": "ok", "answer": answer}
    return outcome


def collect_outcomes(cache: ResponseCache, keys: list[str], answer, progress_file=None) -> tuple[dict, dict]:
    """Every key's outcome, `answer(entry, index)` giving (outcome, paid) for one held entry, and
    how many were cached, generated (paid here) or waited for (paid by a concurrent worker)."""
    counts = {"cached": 0, "generated": 0, "waited": 0}
    outcomes: dict[int, dict] = {}
    deferred = []
    bar = tqdm(total=len(keys), desc="teacher", unit="input", file=progress_file, mininterval=1.0)
    for index, key in enumerate(keys):
        with cache.hold(key, wait=False) as entry:
            if entry is None:
                deferred.append(index)  # another worker is paying for it; collect it at the end
                continue
            outcomes[index], paid = answer(entry, index)
        counts["generated" if paid else "cached"] += 1
        bar.update()
    for index in deferred:
        # Waits for the other worker; pays only if it died or failed before it answered.
        with cache.hold(keys[index]) as entry:
            outcomes[index], paid = answer(entry, index)
        counts["generated" if paid else "waited"] += 1
        bar.update()
    bar.close()
    return outcomes, counts


def defect_stats(run: TeacherRun, outcomes: dict, schema: dict) -> dict:
    """teacher_stats.json's defect counts: answers refused for each defect (re-asked or, last,
    rejected), inputs rejected with a refused answer among their attempts, and the defects the
    accepted answers still carry (every DEFECTS kind, whether it is rejected or not)."""
    refused = Counter(
        name for outcome in outcomes.values() for item in outcome.get("defective", []) for name in item["defects"]
    )
    accepted = Counter()
    for example in run.examples:
        system, user, answer = (message["content"] for message in example["messages"])
        found = content_defects(answer, schema, system, user)
        accepted.update(name for name, pattern in DEFECTS.items() if pattern in found)
    return {
        "refused_for_defects": dict(sorted(refused.items())),
        "rejected_with_defects": sum(bool(reject.get("defective")) for reject in run.rejects),
        "accepted_with_defects": {name: accepted[name] for name in DEFECTS},
    }


def teacher_run(
    inputs: list[dict], chosen: list[dict], outcomes: dict, counts: dict, system: str, schema: dict
) -> TeacherRun:
    """Accepted answers as chat examples, rejections with their reasons, and the counts."""
    run = TeacherRun()
    for index, record in enumerate(chosen):
        outcome = outcomes[index]
        if outcome["status"] == "ok":
            run.examples.append(
                {
                    "id": record["id"],
                    "sources": record["sources"],
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": record["user"]},
                        {"role": "assistant", "content": canonical_answer(outcome["answer"])},
                    ],
                }
            )
        else:
            run.rejects.append({"id": record["id"], "sources": record["sources"], **outcome})
    run.stats = {
        "inputs": len(inputs),
        "asked": len(chosen),
        **counts,
        "accepted": len(run.examples),
        "rejected": len(run.rejects),
        **defect_stats(run, outcomes, schema),
    }
    return run


def teacher_system(system: str, addition: str | None) -> str:
    """The system prompt the teacher is asked with: the task's, then tasks.<task>.teacher_prompt
    (a fuller instruction, worked examples) where there is one."""
    return f"{system}\n\n{addition.strip()}" if addition and addition.strip() else system


def run_teacher(
    inputs: list[dict],
    system: str,
    schema: dict,
    settings: dict,
    max_examples: int,
    backend_factory=None,
    threads: int = 1,
    progress_file=None,
    teacher_system: str | None = None,
) -> TeacherRun:
    """Answer the first `max_examples` inputs, from the cache where possible. The teacher is asked
    with `teacher_system` (default: `system`); the examples carry `system`, as the student is served."""
    jsonschema.Draft202012Validator.check_schema(schema)
    chosen = inputs[:max_examples]
    samples = settings.get("samples", 1)
    asked = teacher_system or system
    # One cache entry per input and sample, each keyed by its own seed: (input, sample) in order.
    pairs = [(index, sample) for index in range(len(chosen)) for sample in range(samples)]
    keys = [sample_key(settings, j, asked, chosen[i]["user"], schema) for i, j in pairs]
    backend = None

    def answer(entry, flat: int) -> tuple[dict, bool]:
        """The stored outcome for this input and sample, or a new one, paid for and stored; and whether it was paid."""
        nonlocal backend
        index, sample = pairs[flat]
        user = chosen[index]["user"]
        outcome = None if (stored := entry.read()) is None else rejudged(stored, settings, asked, user, schema)
        if not needs_asking(outcome, settings):
            return outcome, False
        if backend is None:
            factory = backend_factory or BACKENDS[settings["backend"]]
            backend = factory(settings, threads=threads)
        seeded = with_settings(backend, sample_settings(backend.settings, sample)) if sample else backend
        outcome = ask_with_retries(seeded, settings, asked, user, schema, outcome)
        entry.write(outcome)
        return outcome, True

    sampled, counts = collect_outcomes(ResponseCache(settings["cache_dir"]), keys, answer, progress_file)
    by_input: dict[int, list[dict]] = {}
    for flat, (index, _) in enumerate(pairs):  # `sampled` is keyed by position in `keys`, i.e. in `pairs`
        by_input.setdefault(index, []).append(sampled[flat])
    outcomes, picks = {}, []
    for index, answers in by_input.items():
        outcomes[index], pick = consensus(answers, schema)
        picks.append(pick)
    if samples > 1:
        counts |= {"samples": samples, "consensus_not_first": sum(pick > 0 for pick in picks)}
    kept = {index: kept_outcome(outcome, settings, schema) for index, outcome in outcomes.items()}
    counts["deduplicated"] = sum(kept[index] is not outcomes[index] for index in outcomes)
    return teacher_run(inputs, chosen, kept, counts, system, schema)


def sample_key(settings: dict, sample: int, system: str, user: str, schema: dict) -> str:
    """The cache key of one sample of one input: sample j is asked with its own seed."""
    return cache_key(
        {**generation_identity(sample_settings(settings, sample)), "system": system, "user": user, "schema": schema}
    )


def with_settings(backend, settings: dict):
    """The same backend (its loaded model, its client) asking with `settings` (another seed)."""
    seeded = copy.copy(backend)
    seeded.settings = settings
    return seeded


def kept_outcome(outcome: dict, settings: dict, schema: dict) -> dict:
    """An accepted outcome with its answer as kept; the same object when that changes nothing."""
    if outcome["status"] != "ok" or (answer := kept_answer(outcome["answer"], settings, schema)) == outcome["answer"]:
        return outcome
    return {**outcome, "answer": answer}
