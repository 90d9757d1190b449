"""The quality benchmark: how often each model follows its task's format, and how close its
content comes to the teacher's, on enough held-out inputs to tell 50% from 90%.

Four arms answer the same held-out inputs, all decoded as the Modelfile says (decoding.py):
- `base`: the base GGUF, prompted only;
- `base_grammar`: the base GGUF constrained to the task's JSON schema, as Ollama's `format` does;
- `tuned` and `tuned_grammar`: the same for the task's tuned GGUF;
- `tuned_adapter` (when gguf.deploy ships adapters): the task's LoRA GGUF on the base GGUF, prompted only;
- `sft` (when the prefer stage is on): the SFT adapter before DPO, on the base GGUF, prompted only.

Held-out inputs are every extracted input the train split did not use: the val split first
(they have a teacher answer), then the inputs no split used, in the split's hash order.
Format compliance needs no label; content agreement needs the teacher's answer, which the
`quality.teacher_labels` setting asks for on the inputs that have none.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import string
from collections import Counter
from pathlib import Path

import jsonschema

from .evaluate import COMPLIANCE_RULE, OUTCOMES, answer_chats, load_gguf, reference_answer, score_model_answers
from .failure_modes import CONTENT_DEFECTS, PATTERNS, failure_patterns
from .gold import GOLD_RULES, TITLE_F1, normalized_language
from .layout import ALL_QUALITY_ARMS, QUALITY_ADAPTER_ARMS, QUALITY_ARMS, QUALITY_SFT_ARMS, quality_files
from .report import _pyplot, markdown_table
from .runtime import read_jsonl
from .split import DroppedExample, build_example, split_order

ARMS = QUALITY_ARMS
BASE_ARMS = ("base", "base_grammar")
TUNED_ARMS = ("tuned", "tuned_grammar")
# With gguf.deploy adapter or both: the task's LoRA GGUF on the base GGUF, prompted only.
ADAPTER_ARMS = QUALITY_ADAPTER_ARMS
# With the prefer stage on: the SFT adapter alone, before DPO, as a LoRA GGUF on the base GGUF.
SFT_ARMS = QUALITY_SFT_ARMS
ALL_ARMS = ALL_QUALITY_ARMS
# 97.5th percentile of the standard normal: a two-sided 95% interval.
Z95 = 1.959963984540054
# A schema-valid answer whose mean field agreement with the teacher is below this is counted
# "valid but wrong": it parses, and a consumer would act on content the teacher did not give.
WRONG_BELOW = 0.5

AGREEMENT_RULE = (
    "field agreement: each field of a schema-valid answer against the teacher's answer, by the "
    "schema's type: enums, booleans and integers exact match (integers on a bounded scale also "
    "within ±1, reported apart); strings and arrays of strings SQuAD token F1 (lower-cased, "
    "punctuation and articles removed; an array's items pooled); anything else exact JSON equality. "
    f"An answer's agreement is the mean over its fields; below {WRONG_BELOW} it counts as valid but wrong."
)


class QualityError(ValueError):
    """Benchmark inputs that cannot be used; the message names the file."""


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalized_tokens(text: str) -> list[str]:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, split on space."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(predicted: list[str], reference: list[str]) -> float:
    """Token-overlap F1 of two token lists; two empty lists agree fully."""
    if not predicted and not reference:
        return 1.0
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def field_kind(subschema: dict) -> str:
    """How a field is compared: exact, scale (a bounded integer), text, text_list or json."""
    kind = subschema.get("type")
    if "enum" in subschema or "const" in subschema or kind == "boolean":
        return "exact"
    if kind == "integer":
        return "scale" if "minimum" in subschema and "maximum" in subschema else "exact"
    if kind == "string":
        return "text"
    if kind == "array" and subschema.get("items", {}).get("type") == "string":
        return "text_list"
    return "json"


def _text_tokens(value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [token for item in items if isinstance(item, str) for token in normalized_tokens(item)]


def compare_field(kind: str, answer, reference) -> dict:
    """{score, within_1 for a scale}: one field of an answer against the teacher's."""
    if kind in ("text", "text_list"):
        return {"score": round(token_f1(_text_tokens(answer), _text_tokens(reference)), 4)}
    same = json.dumps(answer, sort_keys=True) == json.dumps(reference, sort_keys=True)
    result = {"score": float(same)}
    if kind == "scale":
        close = isinstance(answer, int) and isinstance(reference, int) and abs(answer - reference) <= 1
        result["within_1"] = close
    return result


def field_agreement(answer: dict, reference: dict, schema: dict) -> dict[str, dict]:
    """Every top-level property of the schema, compared (a field missing on either side scores 0)."""
    fields = {}
    for name, subschema in schema.get("properties", {}).items():
        kind = field_kind(subschema)
        if name in answer and name in reference:
            fields[name] = {"kind": kind, **compare_field(kind, answer[name], reference[name])}
        elif name not in answer and name not in reference:
            continue
        else:
            fields[name] = {"kind": kind, "score": 0.0, **({"within_1": False} if kind == "scale" else {})}
    return fields


def answer_agreement(fields: dict[str, dict]) -> float | None:
    scores = [field["score"] for field in fields.values()]
    return round(statistics.fmean(scores), 4) if scores else None


# Held-out inputs -------------------------------------------------------------------------


def fitted_user(tokenizer, system: str, user: str, max_length: int) -> str:
    """The input as the split would have cut it: middle-truncated so that the prompt fits
    max_length (with room for the end-of-turn token only; the answer is not known)."""
    try:
        return build_example(tokenizer, system, user, "", max_length).user
    except DroppedExample as reason:
        raise QualityError(f"a held-out input cannot fit max_length {max_length}: {reason}") from None


def select_heldout(
    inputs: list[dict], train: list[dict], val: list[dict], max_inputs: int
) -> tuple[list[dict], list[dict]]:
    """(val rows, unseen input rows): the val split first, then the extracted inputs that no
    split used, in the split's hash order, up to max_inputs in all."""
    used = {row["id"] for row in train} | {row["id"] for row in val}
    unseen = sorted((row for row in inputs if row["id"] not in used), key=lambda row: split_order(row["id"]))
    chosen_val = val[:max_inputs]
    return chosen_val, unseen[: max(0, max_inputs - len(chosen_val))]


def heldout_rows(val: list[dict], unseen: list[dict], system: str, tokenizer, max_length: int) -> list[dict]:
    """One chat per held-out input: id, where it came from, the messages, the teacher's answer
    (val rows only; None for unseen inputs until the teacher labels them)."""
    rows = [
        {
            "id": row["id"],
            "source": "val",
            "messages": row["prompt_messages"],
            "reference": reference_answer(row["completion"]),
        }
        for row in val
    ]
    for row in unseen:
        user = fitted_user(tokenizer, system, row["user"], max_length)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        rows.append({"id": row["id"], "source": "unseen", "messages": messages, "reference": None})
    return rows


def build_heldout(
    inputs: list[dict], train: list[dict], val: list[dict], system: str, tokenizer, max_length: int, max_inputs: int
) -> tuple[list[dict], list[dict]]:
    """(held-out chats, the unseen inputs as extracted): the quality_heldout job's outputs."""
    chosen_val, unseen = select_heldout(inputs, train, val, max_inputs)
    return heldout_rows(chosen_val, unseen, system, tokenizer, max_length), unseen


def teacher_references(teacher_rows: list[dict]) -> dict[str, str]:
    """id -> the teacher's answer, from a teach job's examples file."""
    return {row["id"]: row["messages"][-1]["content"] for row in teacher_rows}


# Answers ---------------------------------------------------------------------------------


def answer_arms(
    gguf_file: str | Path,
    heldout: list[dict],
    schema: dict,
    arms: tuple[str, ...],
    decoding: dict,
    n_ctx: int,
    threads: int = 1,
    progress_factory=None,
    lora_file: str | Path | None = None,
) -> dict[str, dict]:
    """Each arm's answers from one loaded GGUF (with `lora_file` applied, if given):
    `<model>_grammar` arms decode under the schema."""
    if not heldout:
        raise QualityError("no held-out inputs: every extracted input went into the train split")
    jsonschema.Draft202012Validator.check_schema(schema)
    llm = load_gguf(gguf_file, n_ctx, decoding, threads, lora_file)
    records = {}
    for arm in arms:
        grammar = arm.endswith("_grammar")
        progress = progress_factory(arm, len(heldout)) if progress_factory else None
        answers = answer_chats(llm, heldout, decoding, schema if grammar else None, progress)
        if progress is not None:
            progress.close()
        records[arm] = {
            "arm": arm,
            "gguf": str(gguf_file),
            "lora": str(lora_file) if lora_file else None,
            "grammar": grammar,
            "decoding": decoding,
            "n_ctx": n_ctx,
            "answers": [{"id": row["id"], **answer} for row, answer in zip(heldout, answers, strict=True)],
        }
    return records


# Scoring ---------------------------------------------------------------------------------


def score_arm(answers: list[dict], heldout: list[dict], references: dict[str, str], schema: dict) -> list[dict]:
    """Each answer scored for format (evaluate.score_answer) and, where the teacher answered
    that input and the answer is valid, for content."""
    if [a["id"] for a in answers] != [row["id"] for row in heldout]:
        raise QualityError("the arm's answers are not for the held-out inputs (rerun the quality target)")
    scored = []
    for score, row in zip(score_model_answers(answers, schema), heldout, strict=True):
        system, user = (message["content"] for message in row["messages"][:2])
        score["patterns"] = failure_patterns(score["text"], schema, system, user)
        reference = references.get(score["id"])
        score["labelled"] = reference is not None
        score["fields"] = None
        if reference is not None and score["valid"]:
            score["fields"] = field_agreement(json.loads(score["text"]), json.loads(reference), schema)
        score["agreement"] = answer_agreement(score["fields"]) if score["fields"] else None
        scored.append(score)
    return scored


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def field_summary(scored: list[dict]) -> dict[str, dict]:
    """Per field: its kind, mean score, and the within-±1 rate of a bounded integer."""
    by_field: dict[str, list[dict]] = {}
    for answer in scored:
        for name, field in (answer["fields"] or {}).items():
            by_field.setdefault(name, []).append(field)
    summary = {}
    for name, fields in by_field.items():
        summary[name] = {"kind": fields[0]["kind"], "n": len(fields), "mean": _mean([f["score"] for f in fields])}
        if fields[0]["kind"] == "scale":
            summary[name]["within_1"] = _mean([float(f["within_1"]) for f in fields])
    return summary


def pattern_counts(scored: list[dict]) -> dict[str, dict[str, int]]:
    """What happens in the text (failure_modes.PATTERNS): over the non-compliant answers, and the
    content defects that compliant answers still carry."""
    failing = Counter(p for a in scored if not a["compliant"] for p in a["patterns"])
    passing = Counter(p for a in scored if a["compliant"] for p in a["patterns"] if p in CONTENT_DEFECTS)
    return {
        "failure_patterns": {p: failing[p] for p in PATTERNS if failing[p]},
        "compliant_with_defects": {p: passing[p] for p in CONTENT_DEFECTS if passing[p]},
    }


def arm_statistics(scored: list[dict]) -> dict:
    """What quality.json holds per arm: n, compliant, rate, ci95, field_agreement and the rest."""
    n = len(scored)
    compliant = sum(a["compliant"] for a in scored)
    low, high = wilson_interval(compliant, n)
    labelled = [a for a in scored if a["labelled"]]
    agreeing = [a["agreement"] for a in labelled if a["agreement"] is not None]
    outcomes = Counter(a["outcome"] for a in scored)
    return {
        "n": n,
        "compliant": compliant,
        "rate": round(compliant / n, 4) if n else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "field_agreement": _mean(agreeing),
        "labelled": len(labelled),
        "labelled_valid": len(agreeing),
        "valid_but_wrong": sum(score < WRONG_BELOW for score in agreeing),
        "fields": field_summary(labelled),
        "outcomes": {outcome: outcomes[outcome] for outcome in OUTCOMES if outcomes[outcome]},
        **pattern_counts(scored),
        "mean_answer_tokens": _mean([a["tokens"] for a in scored]),
        "ran_to_max_tokens": sum(a["finish_reason"] == "length" for a in scored),
        "seconds": round(sum(a["seconds"] for a in scored), 1),
    }


def gold_correct(match: str, answer, gold) -> bool:
    """One field of a valid answer against its gold value, by the gold rule's `match`."""
    if match == "title":
        return isinstance(answer, str) and token_f1(normalized_tokens(answer), normalized_tokens(gold)) >= TITLE_F1
    if match == "language":
        return isinstance(answer, str) and normalized_language(answer) == gold
    return answer == gold


def gold_accuracy(task: str, answers: dict[str, dict | None], gold: dict[str, dict]) -> dict[str, dict]:
    """Per gold field of the task: n (held-out inputs with a gold value), correct (valid answers
    that match it; an invalid answer, None here, is wrong), rate and Wilson 95% interval."""
    accuracy = {}
    for field, rule in GOLD_RULES.get(task, {}).items():
        ids = [row_id for row_id, values in gold.items() if field in values]
        correct = sum(
            answers.get(row_id) is not None
            and gold_correct(rule.match, answers[row_id].get(field), gold[row_id][field])
            for row_id in ids
        )
        low, high = wilson_interval(correct, len(ids))
        rate = round(correct / len(ids), 4) if ids else None
        accuracy[field] = {"n": len(ids), "correct": correct, "rate": rate, "ci95": [round(low, 4), round(high, 4)]}
    return accuracy


def valid_answers(scored: list[dict]) -> dict[str, dict | None]:
    """id -> the parsed answer where it is schema-valid, else None."""
    return {score["id"]: json.loads(score["text"]) if score["valid"] else None for score in scored}


def teacher_answers(labels: dict[str, str], schema: dict) -> dict[str, dict | None]:
    """id -> the teacher's parsed answer where it is schema-valid, else None."""
    validator = jsonschema.Draft202012Validator(schema)
    parsed = {}
    for row_id, text in labels.items():
        try:
            answer = json.loads(text)
        except json.JSONDecodeError:
            answer = None
        parsed[row_id] = answer if isinstance(answer, dict) and validator.is_valid(answer) else None
    return parsed


def fidelity(student: dict[str, dict], teacher: dict[str, dict]) -> dict[str, float | None]:
    """Per gold field: the student's gold accuracy over the teacher's (None where the teacher has none)."""
    return {
        field: round(student[field]["rate"] / teacher[field]["rate"], 4) if teacher[field]["rate"] else None
        for field in student
    }


def add_gold(summary: dict, task: str, scored: dict[str, list[dict]], labels: dict[str, str], gold, schema) -> None:
    """Gold accuracy for every arm and for the teacher, and each arm's fidelity to the teacher."""
    heldout_ids = {score["id"] for scores in scored.values() for score in scores}
    gold = {row_id: values for row_id, values in gold.items() if row_id in heldout_ids}
    teacher = gold_accuracy(task, {i: a for i, a in teacher_answers(labels, schema).items() if i in gold}, gold)
    summary["teacher_gold"] = teacher
    for arm, scores in scored.items():
        summary[arm]["gold"] = gold_accuracy(task, valid_answers(scores), gold)
        summary[arm]["fidelity"] = fidelity(summary[arm]["gold"], teacher)


def heldout_labels(heldout: list[dict], references: dict[str, str]) -> dict[str, str]:
    """Each held-out input's label: a val row's reference is the answer the split holds; the
    teacher's labels fill in the rest."""
    return {**references, **{row["id"]: row["reference"] for row in heldout if row["reference"] is not None}}


def task_quality(
    heldout: list[dict],
    references: dict[str, str],
    arms: dict[str, list[dict]],
    schema: dict,
    gold: dict[str, dict] | None = None,
    task: str = "",
) -> dict:
    """One task's arms (ARMS, and ADAPTER_ARMS where given), scored and summarised; with `gold`
    (id -> gold values, see gold.py), each arm's and the teacher's gold accuracy too."""
    missing = [arm for arm in ARMS if arm not in arms]
    if missing:
        raise QualityError(f"no answers for the arm(s) {', '.join(missing)}")
    labels = heldout_labels(heldout, references)
    scored = {arm: score_arm(arms[arm], heldout, labels, schema) for arm in ALL_ARMS if arm in arms}
    summary = {arm: arm_statistics(scores) for arm, scores in scored.items()}
    if gold is not None:
        add_gold(summary, task, scored, labels, gold, schema)
    summary["inputs"] = {
        "heldout": len(heldout),
        "val": sum(row["source"] == "val" for row in heldout),
        "unseen": sum(row["source"] == "unseen" for row in heldout),
        "labelled": sum(row["id"] in labels for row in heldout),
    }
    return summary


def deployed_arm(enforce_schema: bool) -> str:
    """The arm a user's requests get: `snakemake serve` holds answers to format.json when
    serve.enforce_schema is on, as Ollama does with format.json in the request."""
    return "tuned_grammar" if enforce_schema else "tuned"


def as_deployed(task_arms: dict, enforce_schema: bool) -> dict:
    """The headline figure: compliance as deployed, and without the format for a caller who
    sends none (Ollama without `format`, or serve with response_format text)."""
    arm = deployed_arm(enforce_schema)
    keys = ("n", "compliant", "rate", "ci95", "field_agreement", "gold")
    deployed = {key: task_arms[arm][key] for key in keys if key in task_arms[arm]}
    return {"arm": arm, **deployed, "without_format": task_arms["tuned"]["compliant"]}


def read_arm(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise QualityError(f"{path}: cannot read the arm's answers ({err})") from None


# Report ----------------------------------------------------------------------------------


def teacher_is_base(teacher: dict, base_model: str) -> bool:
    """The embedded default: the local teacher is the very model being distilled."""
    return teacher.get("backend") == "llama_cpp" and teacher.get("model") == base_model


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _interval(ci: list[float]) -> str:
    return f"{100 * ci[0]:.0f}–{100 * ci[1]:.0f}%"


def summary_rows(quality: dict) -> list[dict[str, str]]:
    rows = []
    for task, arms in quality["tasks"].items():
        for arm in quality["arms"]:
            stats = arms[arm]
            agreement = _percent(stats["field_agreement"])
            rows.append(
                {
                    "task": task,
                    "arm": arm,
                    "n": str(stats["n"]),
                    "compliant": f"{stats['compliant']}/{stats['n']}",
                    "rate (95% CI)": f"{_percent(stats['rate'])} ({_interval(stats['ci95'])})",
                    "field agreement (n)": f"{agreement} ({stats['labelled_valid']})",
                    "valid but wrong": f"{stats['valid_but_wrong']}/{stats['labelled_valid']}",
                    "mean tokens": "–" if stats["mean_answer_tokens"] is None else f"{stats['mean_answer_tokens']:.0f}",
                    "ran to max_tokens": str(stats["ran_to_max_tokens"]),
                }
            )
    return rows


def outcome_table_rows(quality: dict) -> list[dict[str, str]]:
    return [
        {"task": task, "arm": arm, **{o: str(arms[arm]["outcomes"].get(o, 0)) for o in OUTCOMES}}
        for task, arms in quality["tasks"].items()
        for arm in quality["arms"]
    ]


def pattern_table_rows(quality: dict, key: str = "failure_patterns") -> list[dict[str, str]]:
    """Task x arm rows, one column per pattern found anywhere (an answer may show several)."""
    cells = [(task, arm, arms[arm][key]) for task, arms in quality["tasks"].items() for arm in quality["arms"]]
    columns = [p for p in PATTERNS if any(p in counts for _, _, counts in cells)]
    return [{"task": task, "arm": arm, **{p: str(counts.get(p, 0)) for p in columns}} for task, arm, counts in cells]


def field_table_rows(quality: dict) -> list[dict[str, str]]:
    rows = []
    for task, arms in quality["tasks"].items():
        names = sorted({name for arm in quality["arms"] for name in arms[arm]["fields"]})
        for name in names:
            row = {"task": task, "field": name}
            for arm in quality["arms"]:
                field = arms[arm]["fields"].get(name)
                cell = "–" if field is None else _percent(field["mean"])
                if field is not None and "within_1" in field:
                    cell += f" (±1: {_percent(field['within_1'])})"
                row[arm] = cell
            rows.append(row)
    return rows


def deployed_line(quality: dict) -> str:
    """One line: compliance as a user's requests get it, and without the format."""
    figures = [quality["tasks"][task]["as_deployed"] for task in quality["tasks"]]
    per_task = ", ".join(f"{task} {f['compliant']}/{f['n']}" for task, f in zip(quality["tasks"], figures, strict=True))
    compliant, n = sum(f["compliant"] for f in figures), sum(f["n"] for f in figures)
    without = sum(f["without_format"] for f in figures)
    how = (
        "tuned, held to format.json (snakemake serve with serve.enforce_schema; Ollama with format.json in the request)"
        if quality["as_deployed_arm"] == "tuned_grammar"
        else "tuned, unconstrained (serve.enforce_schema is off)"
    )
    return f"{how}: {per_task}: **{compliant} of {n}** compliant; without the format, {without} of {n}."


def _gold_cell(accuracy: dict) -> str:
    return f"{accuracy['correct']}/{accuracy['n']} ({_interval(accuracy['ci95'])})" if accuracy["n"] else "–"


def gold_table_rows(quality: dict) -> list[dict[str, str]]:
    """Task x gold field rows: the rule, the teacher's accuracy, each arm's, and tuned's fidelity."""
    rows = []
    for task, arms in quality["tasks"].items():
        for field, teacher in arms.get("teacher_gold", {}).items():
            row = {"task": task, "field": field, "truth": GOLD_RULES[task][field].rule, "teacher": _gold_cell(teacher)}
            row |= {arm: _gold_cell(arms[arm]["gold"][field]) for arm in quality["arms"]}
            ratio = arms["tuned"]["fidelity"][field]
            row["tuned / teacher"] = "–" if ratio is None else f"{ratio:.2f}"
            rows.append(row)
    return rows


def _markdown_table(rows: list[dict[str, str]]) -> list[str]:
    return markdown_table(list(rows[0]) if rows else [], rows)


def render_quality_markdown(quality: dict) -> str:
    """results/quality/quality.md: the tables, and how to read them."""
    lines = [
        "# vault-distill: quality benchmark",
        "",
        f"Base model `{quality['base_model']}`; teacher `{quality['teacher']['model']}` "
        f"({quality['teacher']['backend']}). Every arm decodes as the Modelfile says: {quality['decoding_line']}.",
        "",
        "Arms: `base` and `tuned` are prompted only (the task's system prompt and the input), as Ollama "
        "serves them; `base_grammar` and `tuned_grammar` are constrained to the task's JSON schema as a "
        "llama.cpp grammar, which is what Ollama's `format` does; `tuned_adapter`, where built, is the "
        "task's LoRA GGUF on the base GGUF, prompted only, as `snakemake serve` and an Ollama ADAPTER serve it; "
        "`sft`, where the prefer stage is on, is the SFT adapter before DPO, on the base GGUF, prompted only: "
        "beside `tuned_adapter` (SFT + preference, served the same way: gguf.deploy adapter or both) it shows "
        "what the preference stage changed. Beside the merged `tuned` the serving path differs too, and its "
        "rounding alone can move a small model's compliance by several answers in 40.",
        "",
        f"{quality['compliance_rule'][0].upper()}{quality['compliance_rule'][1:]}. The interval is Wilson's, 95%.",
        "",
        f"{quality['agreement_rule'][0].upper()}{quality['agreement_rule'][1:]}",
    ]
    if quality["teacher_is_base"]:
        lines += [
            "",
            "**The teacher is the base model itself** (the embedded default). Field agreement then measures "
            "distillation fidelity only, not correctness, and `base_grammar` is nearly the teacher's own "
            "decoding: the same model under a grammar of the same schema, with other sampling settings "
            "(the teacher decodes at teacher.temperature, through llama-cpp-python's own schema grammar).",
        ]
    lines += ["", "## As deployed", "", deployed_line(quality)]
    lines += ["", "## Compliance and agreement", "", *_markdown_table(summary_rows(quality))]
    lines += ["", "## Answers by outcome", "", *_markdown_table(outcome_table_rows(quality))]
    lines += [
        "",
        "## Failures by what happens in the text",
        "",
        "Over the answers that are not compliant; one answer may show several patterns.",
        "",
        *_markdown_table(pattern_table_rows(quality)),
        "",
        "Compliant answers that still carry a content defect:",
        "",
        *_markdown_table(pattern_table_rows(quality, "compliant_with_defects")),
    ]
    lines += [
        "",
        "## Gold: right against the notes themselves",
        "",
        "Fields whose truth is in the input's notes, derived by a rule (see gold.py), on the held-out "
        "inputs that have one; an answer that is not schema-valid counts as wrong. Judge has no such field.",
        "",
        *_markdown_table(gold_table_rows(quality)),
    ]
    lines += ["", "## Agreement with the teacher, per field", "", *_markdown_table(field_table_rows(quality))]
    inputs = [f"{task} {arms['inputs']['heldout']}" for task, arms in quality["tasks"].items()]
    lines += ["", f"Held-out inputs per task: {', '.join(inputs)}."]
    return "\n".join(lines) + "\n"


def _bars(ax, groups: list[str], series: dict[str, list[dict]], ylabel: str) -> None:
    """One bar per series in each group, at its rate, with its Wilson 95% interval."""
    width = 0.8 / len(series)
    for index, (name, stats) in enumerate(series.items()):
        rates = [s["rate"] or 0.0 for s in stats]
        low = [rate - s["ci95"][0] for rate, s in zip(rates, stats, strict=True)]
        high = [s["ci95"][1] - rate for rate, s in zip(rates, stats, strict=True)]
        errors = [low, high]
        positions = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(positions, rates, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small", ncols=len(series), frameon=False)


def _compliance_cell(stats: dict) -> str:
    return f"{stats['compliant']}/{stats['n']} ({_interval(stats['ci95'])})"


def comparison_rows(sample: dict, holdout: dict) -> list[dict[str, str]]:
    """Per holdout task, the sample vault's row, then the holdout vault's: compliance with its
    Wilson interval per arm, tuned's field agreement, and tuned + grammar's gold per field."""
    rows = []
    for task in holdout["tasks"]:
        for name, quality in (("sample (held out)", sample), ("holdout", holdout)):
            arms = quality["tasks"].get(task)
            if arms is None:
                continue
            row = {"task": task, "vault": name, "n": str(arms["tuned"]["n"])}
            row |= {arm: _compliance_cell(arms[arm]) for arm in ("tuned", "tuned_grammar", "base_grammar")}
            row["tuned agreement"] = _percent(arms["tuned"]["field_agreement"])
            gold = arms["tuned_grammar"].get("gold", {})
            row["gold (tuned_grammar)"] = (
                ", ".join(f"{field} {_gold_cell(cell)}" for field, cell in gold.items()) or "–"
            )
            rows.append(row)
    return rows


def render_vault_comparison(sample: dict, holdout: dict) -> str:
    """The holdout report's head: both vaults side by side, task by task."""
    lines = [
        "# vault-distill: the holdout vault beside the sample vault",
        "",
        f"The models trained on the sample vault answer inputs from `{holdout.get('vault')}`, which none of "
        "them learnt from, with the same arms, decoding, teacher and gold rules. Compliance is one schema-valid "
        "JSON object (Wilson 95% interval); agreement is with the teacher's answer to the same input.",
        "",
        *_markdown_table(comparison_rows(sample, holdout)),
    ]
    return "\n".join(lines) + "\n"


def plot_quality(quality: dict, out: str | Path) -> None:
    """Compliance rate per task and arm; below it, where there are gold fields, the gold accuracy
    of the teacher and each arm per field; each with Wilson 95% interval bars."""
    plt = _pyplot()
    tasks, arms = list(quality["tasks"]), quality["arms"]
    fields = [(task, field) for task in tasks for field in quality["tasks"][task].get("teacher_gold", {})]
    fig, axes = plt.subplots(
        2 if fields else 1, 1, figsize=(max(6, 1.6 * len(tasks)), 8 if fields else 4), squeeze=False
    )
    compliance = {arm: [quality["tasks"][task][arm] for task in tasks] for arm in arms}
    _bars(axes[0][0], tasks, compliance, "format compliance (Wilson 95% CI)")
    if fields:
        gold = {"teacher": [quality["tasks"][task]["teacher_gold"][field] for task, field in fields]}
        gold |= {arm: [quality["tasks"][task][arm]["gold"][field] for task, field in fields] for arm in arms}
        _bars(axes[1][0], [f"{task}\n{field}" for task, field in fields], gold, "gold accuracy (Wilson 95% CI)")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


# The whole benchmark ---------------------------------------------------------------------


def build_quality(
    schemas: dict[str, str | Path],
    teacher: dict,
    base_model: str,
    decoding_line: str,
    teacher_labels: bool,
    results: str = "results",
    arms: tuple[str, ...] = ARMS,
    enforce_schema: bool = True,
    bench: str = "quality",
) -> dict:
    """quality.json over every task in `schemas` (task -> its output schema file), for `arms`
    (ARMS, and ADAPTER_ARMS where gguf.deploy ships adapters). `enforce_schema` (serve's) says
    which arm each task's `as_deployed` figure is: see as_deployed."""
    tasks = {}
    for task, schema_file in schemas.items():
        files = quality_files(task, results, bench)
        heldout = read_jsonl(files["heldout"])
        references = teacher_references(read_jsonl(files["teacher"])) if teacher_labels else {}
        answers = {arm: read_arm(files[arm])["answers"] for arm in arms}
        schema = json.loads(Path(schema_file).read_text(encoding="utf-8"))
        gold = {row["id"]: row["gold"] for row in read_jsonl(files["gold"])}
        tasks[task] = task_quality(heldout, references, answers, schema, gold, task)
        tasks[task]["as_deployed"] = as_deployed(tasks[task], enforce_schema)
    return {
        "arms": list(arms),
        "as_deployed_arm": deployed_arm(enforce_schema),
        "tasks": tasks,
        "base_model": base_model,
        "teacher": {"backend": teacher["backend"], "model": teacher["model"]},
        "teacher_is_base": teacher_is_base(teacher, base_model),
        "teacher_labels": teacher_labels,
        "decoding_line": decoding_line,
        "compliance_rule": COMPLIANCE_RULE,
        "agreement_rule": AGREEMENT_RULE,
    }
