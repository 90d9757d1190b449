"""Stage 8: does the tuned model follow its task's output format where the base does not?

Both GGUFs (the tuned one and the base converted to the same type) answer every held-out
input of the SFT split through llama-cpp-python's `create_chat_completion`, which renders
the GGUF's own chat template, as Ollama serves it: the production prompt only (the task's
system prompt and the input), no grammar, no few-shot, and the sampling settings that the
Modelfile states (config `decoding`, see decoding.py), fixed seed included.

An answer is *compliant* when the whole answer, apart from surrounding whitespace, is one
JSON object that validates against the task's output schema, and the model ended it with
its end-of-turn token. That is what a program consuming the output can use: it calls
`json.loads` on what it gets. A JSON object wrapped in prose or code fences is not
compliant; it is counted separately (`embedded_valid`) to show what a forgiving parser
would recover.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import jsonschema

from .decoding import llama_cpp_model_options, llama_cpp_sampling
from .format import schema_llama_grammar
from .hardware import describe_cpu
from .layout import EVALUATION_ARMS
from .teach import SchemaFailure, parse_answer

# Each answer gets exactly one outcome, checked in this order.
COMPLIANT = "compliant"
TRUNCATED = "ran to max_tokens"
PROSE_AROUND_JSON = "JSON inside prose"
NOT_JSON = "not JSON"
NOT_AN_OBJECT = "JSON, not an object"
SCHEMA_ERRORS = "schema errors"
OUTCOMES = (COMPLIANT, TRUNCATED, PROSE_AROUND_JSON, NOT_JSON, NOT_AN_OBJECT, SCHEMA_ERRORS)

# The arms, in the order they are shown: the base GGUF, the merged tuned GGUF, and the task's
# LoRA GGUF on the base GGUF (gguf.deploy says which tuned ones are built); with the prefer stage
# on, `sft`: the SFT adapter alone (before DPO) as a LoRA GGUF on the base GGUF.
MODELS = EVALUATION_ARMS
TUNED_MODELS = MODELS[1:]

COMPLIANCE_RULE = (
    "compliant: the whole answer (surrounding whitespace aside) is one JSON object that validates "
    "against the task's output schema, and the model ended it itself (finish_reason stop)"
)


class EvaluationError(ValueError):
    """Evaluation inputs that cannot be scored; the message names the file."""


class ServedModel(NamedTuple):
    """A GGUF as llama.cpp serves it: a whole model, or a base with a LoRA GGUF applied."""

    gguf: str | Path
    lora: str | Path | None = None


def tuned_model(models) -> str:
    """The tuned arm a headline figure is about: the merged model, or the adapter where it is
    the only deployment."""
    return next(model for model in TUNED_MODELS if model in models)


def _field(path: list, name: str | None = None) -> str:
    parts = [str(part) for part in path] + ([name] if name is not None else [])
    return "/".join(parts) or "<root>"


def failing_fields(errors: list[jsonschema.ValidationError]) -> list[str]:
    """The fields the errors are about, as JSON paths (`gaps/0`): a missing or unexpected
    property is named itself, not the object that lacks or carries it."""
    fields = set()
    for error in errors:
        path = list(error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            fields.update(_field(path, name) for name in error.validator_value if name not in error.instance)
        elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {})
            fields.update(_field(path, name) for name in error.instance if name not in declared)
        else:
            fields.add(_field(path))
    return sorted(fields)


def score_answer(text: str, finish_reason: str | None, validator: jsonschema.protocols.Validator) -> dict:
    """Score one answer (see the module docstring for what counts as compliant)."""
    score = {
        "finish_reason": finish_reason,
        "chars": len(text),
        "parses_json": False,
        "failing_fields": [],
        "errors": [],
    }
    try:
        value = json.loads(text)  # json.loads itself allows surrounding whitespace, nothing more
        score["parses_json"] = True
    except json.JSONDecodeError:
        value = None
    # What a forgiving consumer would dig out: the first JSON object, past prose or fences.
    embedded = value if isinstance(value, dict) else None
    if not score["parses_json"]:
        with contextlib.suppress(SchemaFailure):
            embedded = parse_answer(text)
    if score["parses_json"] and isinstance(value, dict):
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        score["failing_fields"] = failing_fields(errors)
        score["errors"] = [f"{_field(list(e.absolute_path))}: {e.message}" for e in errors[:10]]
    score["valid"] = score["parses_json"] and isinstance(value, dict) and not score["errors"]
    score["embedded_valid"] = embedded is not None and validator.is_valid(embedded)

    if finish_reason == "length":
        outcome = TRUNCATED
    elif score["valid"]:
        outcome = COMPLIANT
    elif score["parses_json"]:
        outcome = SCHEMA_ERRORS if isinstance(value, dict) else NOT_AN_OBJECT
    else:
        outcome = PROSE_AROUND_JSON if embedded is not None else NOT_JSON
    score["outcome"] = outcome
    score["compliant"] = outcome == COMPLIANT
    return score


def _describe(values: list[float]) -> dict:
    if not values:
        return {"mean": 0, "median": 0, "max": 0}
    return {"mean": round(statistics.fmean(values), 1), "median": statistics.median(values), "max": max(values)}


def aggregate(answers: list[dict]) -> dict:
    """Totals over one model's scored answers (each a score_answer dict plus tokens/seconds)."""
    n = len(answers)
    compliant = sum(a["compliant"] for a in answers)
    tokens = [a["tokens"] for a in answers]
    seconds = sum(a["seconds"] for a in answers)
    fields = Counter(field for a in answers for field in a["failing_fields"])
    outcomes = Counter(a["outcome"] for a in answers)
    return {
        "answers": n,
        "compliant": compliant,
        "compliance": round(compliant / n, 4) if n else 0.0,
        "parses_json": sum(a["parses_json"] for a in answers),
        "valid": sum(a["valid"] for a in answers),
        "embedded_valid": sum(a["embedded_valid"] for a in answers),
        "ended_with_end_of_turn": sum(a["finish_reason"] == "stop" for a in answers),
        "ran_to_max_tokens": sum(a["finish_reason"] == "length" for a in answers),
        "outcomes": {outcome: outcomes[outcome] for outcome in OUTCOMES if outcomes[outcome]},
        "failing_fields": dict(fields.most_common()),
        "tokens": _describe(tokens),
        "chars": _describe([a["chars"] for a in answers]),
        "seconds": round(seconds, 1),
        "tokens_per_s": round(sum(tokens) / seconds, 1) if seconds > 0 else None,
    }


def held_out_chats(val_rows: list[dict], val_file: str | Path) -> list[dict]:
    """The held-out chats of the split: id, system + user messages, and the teacher's answer."""
    if not val_rows:
        raise EvaluationError(
            f"{val_file}: no held-out examples; evaluation needs the task's val_fraction to leave at least one"
        )
    chats = []
    for row in val_rows:
        if "prompt_messages" not in row:
            raise EvaluationError(
                f"{val_file}: row {row.get('id')!r} has no prompt_messages (written by an older split); "
                "rerun the split, e.g. with --forcerun split"
            )
        chats.append({"id": row["id"], "messages": row["prompt_messages"], "reference": row["completion"]})
    return chats


def load_gguf(gguf_file: str | Path, n_ctx: int, decoding: dict, threads: int = 1, lora_file=None):
    """A llama.cpp model set up to decode as `decoding` says, with `lora_file` applied if given."""
    from llama_cpp import Llama

    return Llama(
        model_path=str(gguf_file),
        lora_path=str(lora_file) if lora_file else None,
        n_ctx=n_ctx,
        n_threads=max(1, threads),
        n_threads_batch=max(1, threads),
        seed=decoding["seed"],
        verbose=False,
        **llama_cpp_model_options(decoding),
    )


def answer_chats(llm, chats: list[dict], decoding: dict, constrain_to: dict | None = None, progress=None) -> list[dict]:
    """One answer per chat, with the GGUF's own chat template and the `decoding` settings.

    `constrain_to` (a JSON schema) constrains decoding to its grammar, as Ollama's `format` does."""
    from .gguf_check import gguf_chat_prompt

    sampling = llama_cpp_sampling(decoding)
    grammar = None
    if constrain_to is not None:
        grammar = schema_llama_grammar(constrain_to)
    n_ctx, max_tokens = llm.n_ctx(), decoding["max_tokens"]
    answers = []
    for chat in chats:
        prompt = gguf_chat_prompt(llm, chat["messages"])
        prompt_tokens = len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))
        if prompt_tokens + max_tokens > n_ctx:
            raise EvaluationError(
                f"{chat['id']}: {prompt_tokens} prompt tokens + max_tokens {max_tokens} exceed the context of {n_ctx}"
            )
        started = time.monotonic()
        response = llm.create_chat_completion(messages=chat["messages"], grammar=grammar, **sampling)
        seconds = time.monotonic() - started
        choice = response["choices"][0]
        answers.append(
            {
                "text": choice["message"]["content"] or "",
                "finish_reason": choice["finish_reason"],
                "tokens": response["usage"]["completion_tokens"],
                "prompt_tokens": response["usage"]["prompt_tokens"],
                "seconds": round(seconds, 2),
            }
        )
        if progress is not None:
            progress.update()
    return answers


def score_model_answers(answers: list[dict], schema: dict) -> list[dict]:
    validator = jsonschema.Draft202012Validator(schema)
    return [{**answer, **score_answer(answer["text"], answer["finish_reason"], validator)} for answer in answers]


def reference_answer(completion: str) -> str:
    """The teacher's JSON out of a split completion, without the template's end-of-turn token."""
    start = completion.find("{")
    if start < 0:
        return completion
    try:
        _, end = json.JSONDecoder().raw_decode(completion[start:])
    except json.JSONDecodeError:
        return completion
    return completion[start : start + end]


def build_evaluation(task: str, chats: list[dict], scored: dict[str, list[dict]], settings: dict) -> dict:
    """eval.json: settings, per-model totals and every answer side by side."""
    if "base" not in scored or not any(model in scored for model in TUNED_MODELS):
        raise EvaluationError(f"no answers for base and a tuned model (got: {', '.join(scored) or 'none'})")
    models = [model for model in MODELS if model in scored]
    answers = []
    for index, chat in enumerate(chats):
        answers.append(
            {
                "id": chat["id"],
                "input": chat["messages"][-1]["content"],
                "reference": reference_answer(chat["reference"]),
                **{model: scored[model][index] for model in models},
            }
        )
    return {
        "task": task,
        "compliance_rule": COMPLIANCE_RULE,
        "settings": settings,
        "models": {model: aggregate(scored[model]) for model in models},
        "answers": answers,
    }


def evaluate_task(
    task: str,
    val_rows: list[dict],
    val_file: str | Path,
    schema: dict,
    ggufs: dict[str, ServedModel],
    decoding: dict,
    n_ctx: int,
    threads: int = 1,
    progress_factory=None,
) -> dict:
    """Every model on every held-out input, scored. `ggufs` maps base and the tuned arms
    (MODELS) to what llama.cpp serves."""
    jsonschema.Draft202012Validator.check_schema(schema)
    chats = held_out_chats(val_rows, val_file)
    scored = {}
    for model, served in ggufs.items():
        progress = progress_factory(model, len(chats)) if progress_factory else None
        llm = load_gguf(served.gguf, n_ctx, decoding, threads, served.lora)
        answers = answer_chats(llm, chats, decoding, progress=progress)
        llm.close()
        if progress is not None:
            progress.close()
        scored[model] = score_model_answers(answers, schema)
    settings = {
        "max_tokens": decoding["max_tokens"],
        "n_ctx": n_ctx,
        "decoding": decoding,
        "grammar": None,
        "threads": threads,
        "ggufs": {model: " + ".join(str(path) for path in served if path) for model, served in ggufs.items()},
    }
    from llama_cpp import __version__ as llama_cpp_version

    evaluation = build_evaluation(task, chats, scored, settings)
    evaluation["hardware"] = {**describe_cpu(), "gpu": None, "runtime": f"llama-cpp-python {llama_cpp_version}"}
    return evaluation


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in the text, so no answer can close it."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _block(text: str) -> str:
    fence = _fence(text)
    return f"{fence}text\n{text}\n{fence}"


def _verdict(score: dict) -> str:
    detail = f"{score['tokens']} tokens, finish_reason {score['finish_reason']}"
    if score["failing_fields"]:
        detail += ", failing: " + ", ".join(score["failing_fields"])
    return f"{score['outcome']} ({detail})"


def render_samples(evaluation: dict, samples: int, input_chars: int = 600) -> str:
    """eval_samples.md: the first `samples` held-out inputs, base and tuned answers side by side."""
    models = evaluation["models"]
    answers = evaluation["answers"][:samples]
    tuned = " and ".join(
        f"{model} {models[model]['compliant']}/{models[model]['answers']}" for model in TUNED_MODELS if model in models
    )
    lines = [
        f"# {evaluation['task']}: base vs tuned on held-out inputs",
        "",
        f"Format compliance: base {models['base']['compliant']}/{models['base']['answers']} → {tuned}. "
        f"Showing {len(answers)} of {len(evaluation['answers'])} inputs.",
        "",
        f"{COMPLIANCE_RULE[0].upper()}{COMPLIANCE_RULE[1:]}.",
    ]
    for number, answer in enumerate(answers, 1):
        shown = answer["input"]
        if len(shown) > input_chars:
            shown = shown[:input_chars] + f"\n[... {len(answer['input']) - input_chars} more characters]"
        lines += ["", f"## {number}. `{answer['id']}`", "", "Input:", "", _block(shown)]
        for model in models:
            lines += ["", f"**{model}**: {_verdict(answer[model])}", "", _block(answer[model]["text"])]
        lines += ["", "**teacher** (the reference the tuned model learned from):", "", _block(answer["reference"])]
    return "\n".join(lines) + "\n"
