"""Stage sweep: a declarative grid of training settings (config `sweep`), built with Snakemake's
Paramspace as `results/sweep/<task>/<key>~<value>/.../seed~<n>/`.

Every variant trains on the task's own SFT data, on the shared 4-bit base, then is merged,
converted and checked as the shipped model is, and answers the quality benchmark's held-out
inputs without a grammar. The teacher is never asked again: the SFT data and the held-out labels
are the build's own. A variant already built is never rebuilt, so adding a value to the grid
builds only that value. sweep.json, sweep.md and sweep.png give, for each value, compliance
(Wilson 95%) and gold accuracy, as a mean and spread over the seeds.
"""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from .config import ConfigError, keys_with_role
from .layout import quality_files
from .quality import (
    arm_statistics,
    gold_accuracy,
    heldout_labels,
    read_arm,
    score_arm,
    teacher_references,
    valid_answers,
    wilson_interval,
)
from .report import _pyplot, markdown_table
from .runtime import read_jsonl

# Training settings that a sweep cannot vary: max_length also reshapes the SFT data (the split's
# cut), device and dtype are the machine's; the seed is sweep.seeds.
NOT_SWEPT = ("max_length", "device", "dtype", "seed")


def sweepable_keys() -> tuple[str, ...]:
    return tuple(key for key in keys_with_role("training", "makes") if key not in NOT_SWEPT)


def sweep_variants(sweep: dict) -> list[dict]:
    """Every variant of the grid (or the table's rows), once per seed: [{key: value, ..., seed}]."""
    if sweep["table"]:
        rows = read_table(sweep["table"])
    else:
        keys = list(sweep["grid"])
        rows = [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep["grid"].values())]
    return [{**row, "seed": seed} for row in rows for seed in sweep["seeds"]]


def read_table(path: str | Path) -> list[dict]:
    """A TSV with one training key per column and one variant per row; cells are YAML scalars."""
    lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) < 2:
        raise ConfigError(f"config key 'sweep.table': {path} needs a header and at least one row")
    header = lines[0].split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            raise ConfigError(
                f"config key 'sweep.table': {path} line {number} has {len(cells)} cells, not {len(header)}"
            )
        rows.append({key: cell_value(cell) for key, cell in zip(header, cells, strict=True)})
    return rows


def cell_value(cell: str):
    """A TSV cell as YAML reads it, and a number YAML 1.1 leaves a string (`2e-4`) as a number."""
    import yaml

    value = yaml.safe_load(cell)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_sweep(sweep: dict, tasks: list[str]) -> None:
    """The sweep's keys must be training settings that shape the adapter and leave the SFT data alone."""
    if sweep["grid"] and sweep["table"]:
        raise ConfigError("config key 'sweep': give `grid` or `table`, not both")
    unknown = [task for task in sweep["tasks"] if task not in tasks]
    if unknown:
        raise ConfigError(f"config key 'sweep.tasks': {unknown[0]!r} is not a configured task")
    where = "sweep.table" if sweep["table"] else "sweep.grid"
    keys = list(read_table(sweep["table"])[0]) if sweep["table"] else list(sweep["grid"])
    for key in keys:
        if key not in sweepable_keys():
            why = "is not swept (see sweep.seeds)" if key == "seed" else "cannot be swept"
            raise ConfigError(f"config key '{where}.{key}': {why}; sweepable: {', '.join(sweepable_keys())}")


def score_variant(task: str, answers: list[dict], heldout: list[dict], labels: dict, schema: dict, gold: dict) -> dict:
    """One variant's held-out answers (no grammar): compliance with its Wilson interval, and gold."""
    scored = score_arm(answers, heldout, labels, schema)
    arm = arm_statistics(scored)
    accuracy = gold_accuracy(task, valid_answers(scored), gold)
    gold_n = sum(field["n"] for field in accuracy.values())
    gold_correct = sum(field["correct"] for field in accuracy.values())
    return {
        **{key: arm[key] for key in ("n", "compliant", "rate", "ci95")},
        "gold": accuracy,
        "gold_correct": gold_correct,
        "gold_n": gold_n,
        "gold_rate": round(gold_correct / gold_n, 4) if gold_n else None,
    }


def _spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def _pooled(scores: list[dict]) -> dict:
    """Every seed's answers taken together: compliant of all, with its Wilson 95% interval."""
    compliant, n = sum(score["compliant"] for score in scores), sum(score["n"] for score in scores)
    return {"compliant": compliant, "n": n, "ci95": [round(end, 4) for end in wilson_interval(compliant, n)]}


def summarize(task_variants: list[dict]) -> list[dict]:
    """Each setting's variants (one per seed) as mean and spread of compliant answers and gold
    rate, and all its seeds' answers pooled (compliant of all, Wilson 95%)."""
    groups: dict[str, list[dict]] = {}
    for variant in task_variants:
        setting = {key: value for key, value in variant["settings"].items() if key != "seed"}
        groups.setdefault(json.dumps(setting, sort_keys=True), []).append(variant)
    summary = []
    for key, members in groups.items():
        compliant = [member["score"]["compliant"] for member in members]
        gold = [member["score"]["gold_rate"] for member in members if member["score"]["gold_rate"] is not None]
        summary.append(
            {
                "settings": json.loads(key),
                "seeds": [member["settings"]["seed"] for member in members],
                "n": members[0]["score"]["n"],
                "compliant": _spread(compliant),
                "pooled": _pooled([member["score"] for member in members]),
                "gold_rate": _spread(gold) if gold else None,
            }
        )
    return summary


def build_sweep(
    tasks: dict[str, str],
    variants: dict[str, dict],
    teacher_labels: bool = True,
    results: str = "results",
    answers: dict[str, dict[str, str]] | None = None,
) -> dict:
    """sweep.json: `tasks` (task -> its output schema file) scored over every variant (pattern ->
    settings), from `answers` (task -> pattern -> file; default results/sweep/<task>/<pattern>/answers.json)."""
    answers = answers or {task: {p: sweep_answers(task, p, results) for p in variants} for task in tasks}
    out = {"variants": list(variants.values()), "tasks": {}}
    for task, schema_file in tasks.items():
        files = quality_files(task, results)
        heldout = read_jsonl(files["heldout"])
        references = teacher_references(read_jsonl(files["teacher"])) if teacher_labels else {}
        labels = heldout_labels(heldout, references)
        gold = {row["id"]: row["gold"] for row in read_jsonl(files["gold"])}
        schema = json.loads(Path(schema_file).read_text(encoding="utf-8"))
        scored = []
        for pattern, settings in variants.items():
            path = answers[task][pattern]
            scored.append(
                {
                    "variant": pattern,
                    "settings": settings,
                    "build_model": path != sweep_answers(task, pattern, results),
                    "score": score_variant(task, read_arm(path)["answers"], heldout, labels, schema, gold),
                }
            )
        out["tasks"][task] = {"variants": scored, "summary": summarize(scored)}
    return out


def sweep_dir(task: str, pattern: str, results: str = "results") -> str:
    return f"{results}/sweep/{task}/{pattern}"


def sweep_answers(task: str, pattern: str, results: str = "results") -> str:
    return f"{sweep_dir(task, pattern, results)}/answers.json"


def variant_answers(task: str, pattern: str, settings: dict, own: dict | None, results: str = "results") -> str:
    """Where a variant's answers are. A variant whose every setting (seed included) is the task's
    own (`own`: its training settings; None where the shipped model is not the SFT model alone)
    is the build's tuned model: its quality answers without a grammar, so it is never trained twice."""
    if own is not None and all(key in own and own[key] == value for key, value in settings.items()):
        return quality_files(task, results)["tuned"]
    return sweep_answers(task, pattern, results)


def _setting_label(settings: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in settings.items()) or "(defaults)"


def _range(spread: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if spread is None:
        return "n/a"
    mean, low, high = (spread[key] * scale for key in ("mean", "min", "max"))
    return f"{mean:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def _pooled_label(pooled: dict) -> str:
    low, high = pooled["ci95"]
    return f"{pooled['compliant']} of {pooled['n']} ({low:.2f}–{high:.2f})"


def render_sweep_markdown(sweep: dict) -> str:
    lines = [
        "# Sweep",
        "",
        "Tuned, no grammar, on the quality benchmark's held-out inputs: mean (min–max) over"
        " the seeds, and every seed's answers pooled. Per variant, results/sweep/sweep.json gives"
        " each seed's Wilson 95% interval.",
        "",
    ]
    return "\n".join(lines + sweep_table(sweep) + [""])


def sweep_table(sweep: dict) -> list[str]:
    """A markdown row per task and setting: seeds, compliant answers and gold accuracy (mean, range)."""
    rows = []
    for task, result in sweep["tasks"].items():
        for group in result["summary"]:
            rows.append(
                {
                    "task": task,
                    "setting": _setting_label(group["settings"]),
                    "seeds": str(len(group["seeds"])),
                    "compliant": f"{_range(group['compliant'])} of {group['n']}",
                    "all seeds (Wilson 95%)": _pooled_label(group["pooled"]),
                    "gold %": _range(group["gold_rate"], 100),
                }
            )
    return markdown_table(list(rows[0]), rows) if rows else []


def plot_sweep(sweep: dict, out: str | Path) -> None:
    """Compliance and gold accuracy against each setting, one line per task, seeds as error bars."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for task, result in sweep["tasks"].items():
        labels = [_setting_label(group["settings"]) for group in result["summary"]]
        for ax, key, scale in ((left, "compliant", 1 / result["summary"][0]["n"]), (right, "gold_rate", 1.0)):
            groups = [group for group in result["summary"] if group[key]]
            means = [group[key]["mean"] * scale for group in groups]
            errors = [
                [(g[key]["mean"] - g[key]["min"]) * scale for g in groups],
                [(g[key]["max"] - g[key]["mean"]) * scale for g in groups],
            ]
            ax.errorbar(labels[: len(groups)], means, yerr=errors, marker="o", capsize=3, label=task)
    left.set_ylabel("compliant share (no grammar)")
    right.set_ylabel("gold accuracy")
    for ax in (left, right):
        ax.set_ylim(0, 1.05)
        ax.tick_params(axis="x", rotation=30)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
