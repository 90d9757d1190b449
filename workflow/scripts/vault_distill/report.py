"""Stage 9: one report over every task, built only from files the pipeline wrote.

Timings come from the rules' `benchmark:` files, memory and losses from each training's
train_metrics.json and train_log.csv, format compliance from each task's eval.json, the
hardware from what the training and evaluation jobs recorded about the machine they ran on.
No number is typed in.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .decoding import describe_task_decodings
from .evaluate import tuned_model
from .layout import (
    BASE_STAGES,
    base_gguf_path,
    eval_json,
    evaluation_arms,
    lora_gguf_path,
    merged_gguf_path,
    task_stages,
)

# The per-task and shared stages whose benchmark files the report reads, in pipeline order. A
# stage's rule, log and benchmark file share its name. Which of them ran depends on gguf.deploy
# and preference.enabled.

TABLE_COLUMNS = (
    "task",
    "examples",
    "max_length",
    "train time",
    "peak memory",
    "final train loss",
    "eval loss",
    "format compliance base → tuned",
)


class ReportError(ValueError):
    """A result file the report needs is missing or unreadable; the message names it."""


def task_files(
    task: str, results: str = "results", deploy: str = "merged", gguf_type: str = "Q8_0", preference: bool = False
) -> dict[str, str]:
    """Every file the report reads for one task (also the report rule's inputs): the deployed
    GGUFs are read for their size on disk."""
    files = {
        "evaluation": eval_json(task, results),
        "metrics": f"{results}/{task}/train_metrics.json",
        "history": f"{results}/{task}/train_log.csv",
        "sft_stats": f"{results}/{task}/sft/stats.json",
    }
    stages = task_stages(deploy, preference)
    files.update({f"benchmark_{stage}": f"{results}/benchmarks/{task}/{stage}.tsv" for stage in stages})
    if "convert" in stages:
        files["gguf_merged"] = merged_gguf_path(task, gguf_type, results)
    if "convert_adapter" in stages:
        files["gguf_adapter"] = lora_gguf_path(task, results)
    return files


def base_files(results: str = "results", gguf_type: str = "Q8_0") -> dict[str, str]:
    files = {f"benchmark_{stage}": f"{results}/benchmarks/{stage}.tsv" for stage in BASE_STAGES}
    return {**files, "gguf_base": base_gguf_path(gguf_type, results)}


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: missing; the report needs it (build it first, e.g. `snakemake --cores 1 all`)")
    return path


def read_json_file(path: str | Path) -> dict:
    try:
        return json.loads(_existing(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not JSON: {err}") from None


def _number(value: str | None) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None  # snakemake writes NA where it could not measure
    return number if math.isfinite(number) else None


def read_benchmark(path: str | Path) -> dict:
    """Wall seconds and peak RSS (MB) of one job, from its snakemake benchmark TSV (the mean
    over its rows, when the rule is benchmarked repeatedly)."""
    with open(_existing(path), encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ReportError(f"{path}: not a snakemake benchmark file (no `s` column)")
    seconds = [s for s in (_number(row["s"]) for row in rows) if s is not None]
    rss = [m for m in (_number(row.get("max_rss")) for row in rows) if m is not None]
    return {
        "seconds": sum(seconds) / len(seconds) if seconds else None,
        "max_rss_mb": max(rss) if rss else None,
    }


def read_history(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """(step, loss) pairs for training and evaluation, from a train_log.csv."""
    curves = {"train": [], "eval": []}
    with open(_existing(path), encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            step = _number(row.get("step"))
            if step is None:
                continue
            for curve, column in (("train", "loss"), ("eval", "eval_loss")):
                loss = _number(row.get(column))
                if loss is not None:
                    curves[curve].append((step, loss))
    if not curves["train"]:
        raise ReportError(f"{path}: no training loss logged")
    return curves


@dataclass
class TaskResult:
    task: str
    evaluation: dict
    metrics: dict
    history: dict
    max_length: int
    benchmarks: dict[str, dict]
    # tasks.<task>.meaningful_examples: fewer SFT examples than this flags the task's figures.
    meaningful_examples: int = 0
    # Bytes on disk of each deployed GGUF: merged, adapter (the LoRA file alone).
    disk_bytes: dict[str, int] | None = None

    def compliance(self, model: str) -> dict:
        return self.evaluation["models"][model]

    @property
    def tuned(self) -> str:
        """The tuned arm of the headline figures (tuned, or tuned_adapter when only it is built)."""
        return tuned_model(self.evaluation["models"])

    @property
    def sft_examples(self) -> int:
        return self.metrics["examples"] + self.metrics["val_examples"]

    @property
    def too_few_examples(self) -> bool:
        return self.sft_examples < self.meaningful_examples


def load_task(
    task: str, results: str = "results", deploy: str = "merged", gguf_type: str = "Q8_0", preference: bool = False
) -> TaskResult:
    files = task_files(task, results, deploy, gguf_type, preference)
    evaluation = read_json_file(files["evaluation"])
    metrics = read_json_file(files["metrics"])
    models = evaluation.get("models", {})
    for key in evaluation_arms(deploy, preference):
        if key not in models:
            raise ReportError(f"{files['evaluation']}: no results for the {key} model")
    if "hardware" not in metrics:
        raise ReportError(
            f"{files['metrics']}: no `hardware` record (written by an older train); rerun it with --forcerun train"
        )
    return TaskResult(
        task=task,
        evaluation=evaluation,
        metrics=metrics,
        history=read_history(files["history"]),
        max_length=read_json_file(files["sft_stats"])["max_length"],
        benchmarks={stage: read_benchmark(files[f"benchmark_{stage}"]) for stage in task_stages(deploy, preference)},
        disk_bytes={
            kind: _existing(files[f"gguf_{kind}"]).stat().st_size
            for kind in ("merged", "adapter")
            if f"gguf_{kind}" in files
        },
    )


def load_base_benchmarks(results: str = "results") -> dict[str, dict]:
    return {
        stage: read_benchmark(path) for stage, path in ((s, base_files(results)[f"benchmark_{s}"]) for s in BASE_STAGES)
    }


def base_gguf_bytes(results: str, gguf_type: str) -> int:
    return _existing(base_gguf_path(gguf_type, results)).stat().st_size


# Formatting ------------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_mb(mb: float | None) -> str:
    if mb is None:
        return "n/a"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def format_loss(loss: float | None) -> str:
    return "n/a" if loss is None else f"{loss:.3f}"


def format_compliance(summary: dict) -> str:
    return f"{summary['compliant']}/{summary['answers']} ({summary['compliance']:.0%})"


def peak_memory(result: TaskResult) -> str:
    """GPU peak allocation on a GPU, the process's peak RSS on the CPU, as training measured it."""
    kind = "GPU" if result.metrics["peak_memory_kind"] == "cuda_max_allocated" else "RSS"
    return f"{format_mb(result.metrics['peak_memory_mb'])} {kind}"


def table_row(result: TaskResult) -> dict[str, str]:
    metrics = result.metrics
    return {
        "task": result.task,
        "examples": f"{metrics['examples']} (+{metrics['val_examples']} held out)"
        + (" ⚠ too few: not meaningful" if result.too_few_examples else ""),
        "max_length": str(result.max_length),
        "train time": format_seconds(result.benchmarks["train"]["seconds"]),
        "peak memory": peak_memory(result),
        "final train loss": format_loss(metrics["final_train_loss"]),
        "eval loss": format_loss(metrics["eval_loss"]),
        "format compliance base → tuned": (
            f"{format_compliance(result.compliance('base'))} → {format_compliance(result.compliance(result.tuned))}"
            + adapter_note(result)
            + sft_note(result)
        ),
    }


def adapter_note(result: TaskResult) -> str:
    """Beside the merged model's figure, the same model served as base + LoRA adapter."""
    models = result.evaluation["models"]
    if result.tuned == "tuned_adapter" or "tuned_adapter" not in models:
        return ""
    return f" (as adapter: {format_compliance(models['tuned_adapter'])})"


def sft_note(result: TaskResult) -> str:
    """With the prefer stage on, the tuned figure is SFT + preference: SFT alone beside it."""
    models = result.evaluation["models"]
    return f" (SFT alone: {format_compliance(models['sft'])})" if "sft" in models else ""


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns: tuple[str, ...] | list[str], rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_md_cell(row[column]) for column in columns) + " |" for row in rows]
    return lines


def html_table(columns: tuple[str, ...] | list[str], rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[column]))}</td>" for column in columns) + "</tr>" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def verdict(results: list[TaskResult]) -> tuple[str, list[str]]:
    """Whether the tuned models beat their bases on format compliance, and every task where
    one does not, with its numbers."""
    worse = [r for r in results if r.compliance(r.tuned)["compliance"] <= r.compliance("base")["compliance"]]
    better = len(results) - len(worse)
    summary = f"The tuned model is more often format-compliant than its base in {better} of {len(results)} tasks."
    shortfalls = [
        f"{r.task}: the tuned model is not better than its base "
        f"({format_compliance(r.compliance('base'))} → {format_compliance(r.compliance(r.tuned))})."
        for r in worse
    ]
    shortfalls += [
        f"{r.task}: trained on {r.metrics['examples']} examples and evaluated on {r.metrics['val_examples']}, "
        f"fewer than tasks.{r.task}.meaningful_examples ({r.meaningful_examples}) in all: its figures are not "
        "meaningful. Add notes to the vault, or raise `examples`."
        for r in results
        if r.too_few_examples
    ]
    return summary, shortfalls


def outcome_rows(results: list[TaskResult]) -> tuple[list[str], list[dict]]:
    columns = [
        "task",
        "model",
        "compliant",
        "ran to max_tokens",
        "mean answer tokens",
        "answers by outcome",
        "most failing fields",
    ]
    rows = []
    for result in results:
        for model in result.evaluation["models"]:
            summary = result.compliance(model)
            outcomes = ", ".join(f"{name}: {count}" for name, count in summary["outcomes"].items())
            fields = ", ".join(f"{name} ({count})" for name, count in list(summary["failing_fields"].items())[:3])
            rows.append(
                {
                    "task": result.task,
                    "model": model,
                    "compliant": format_compliance(summary),
                    "ran to max_tokens": str(summary["ran_to_max_tokens"]),
                    "mean answer tokens": f"{summary['tokens']['mean']:.0f}",
                    "answers by outcome": outcomes or "none",
                    "most failing fields": fields or "none",
                }
            )
    return columns, rows


def timing_rows(results: list[TaskResult]) -> tuple[list[str], list[dict]]:
    """Wall time of each task's jobs, columns named by the rules that ran them."""
    columns = ["task", *results[0].benchmarks, "total"]
    rows = []
    for result in results:
        seconds = {stage: result.benchmarks[stage]["seconds"] for stage in result.benchmarks}
        total = sum(s for s in seconds.values() if s is not None)
        rows.append(
            {
                "task": result.task,
                **{rule: format_seconds(s) for rule, s in seconds.items()},
                "total": format_seconds(total),
            }
        )
    return columns, rows


def shared_timing_rows(base: dict[str, dict]) -> tuple[list[str], list[dict]]:
    columns = ["shared job (once per build)", "wall time"]
    rows = [
        {"shared job (once per build)": stage, "wall time": format_seconds(base[stage]["seconds"])}
        for stage in BASE_STAGES
    ]
    return columns, rows


def total_job_seconds(results: list[TaskResult], base: dict[str, dict]) -> float:
    measured = [b["seconds"] for b in base.values()]
    measured += [b["seconds"] for r in results for b in r.benchmarks.values()]
    return sum(s for s in measured if s is not None)


def disk_rows(results: list[TaskResult], base_bytes: int) -> tuple[list[str], list[dict]]:
    """Bytes on disk of each deployment, per task and for all tasks: a merged GGUF is the whole
    model each time; adapters share one base GGUF."""
    kinds = [kind for kind in ("merged", "adapter") if kind in results[0].disk_bytes]
    names = {"merged": "merged GGUF", "adapter": "LoRA GGUF on the shared base"}
    columns = ["task", *(names[kind] for kind in kinds)]
    rows = [{"task": r.task, **{names[k]: format_mb(r.disk_bytes[k] / 2**20) for k in kinds}} for r in results]
    totals = {kind: sum(r.disk_bytes[kind] for r in results) for kind in kinds}
    total_row = {"task": f"all {len(results)} tasks"}
    if "merged" in totals:
        total_row[names["merged"]] = format_mb(totals["merged"] / 2**20)
    if "adapter" in totals:
        whole = (base_bytes + totals["adapter"]) / 2**20
        total_row[names["adapter"]] = f"{format_mb(whole)} (base {format_mb(base_bytes / 2**20)} once)"
    return columns, [*rows, total_row]


def describe_machine(record: dict) -> str:
    text = f"{record['cpu']} ({record['cpu_cores']} cores)"
    if record.get("gpu"):
        text += f", GPU {record['gpu']}"
    if record.get("torch"):
        text += f", torch {record['torch']}"
    if record.get("runtime"):
        text += f", {record['runtime']}"
    return text


def hardware_lines(results: list[TaskResult]) -> list[str]:
    """Each distinct machine, with the tasks it trained or evaluated: on a cluster they differ."""
    lines = []
    for job, records in (
        (
            "training",
            [
                (
                    r.task,
                    r.metrics["hardware"],
                    f"{r.metrics['device']}, {r.metrics['dtype']}, {r.metrics['threads']} threads",
                )
                for r in results
            ],
        ),
        (
            "evaluation",
            [(r.task, r.evaluation["hardware"], f"{r.evaluation['settings']['threads']} threads") for r in results],
        ),
    ):
        machines: dict[str, list[str]] = {}
        for task, record, how in records:
            machines.setdefault(f"{describe_machine(record)}; {how}", []).append(task)
        for machine, tasks in machines.items():
            lines.append(f"- {job} of {', '.join(tasks)}: {machine}")
    return lines


def render_report(
    results: list[TaskResult], base: dict[str, dict], base_model: str, gguf_type: str, plots: dict, disk: tuple
) -> str:
    """results/report.md. `plots` maps `compliance` and each task to an image path relative to
    it; `disk` is disk_rows' table."""
    summary, shortfalls = verdict(results)
    outcome_columns, outcomes = outcome_rows(results)
    timing_columns, timings = timing_rows(results)
    shared_columns, shared = shared_timing_rows(base)
    decoding = describe_task_decodings({r.task: r.evaluation["settings"]["decoding"] for r in results})
    lines = [
        "# vault-distill: results",
        "",
        f"Base model: `{base_model}`. Every model, base and tuned alike, is served as a {gguf_type} GGUF.",
        "",
        *markdown_table(TABLE_COLUMNS, [table_row(r) for r in results]),
        "",
        summary,
        *(["", *(f"- **{line}**" for line in shortfalls)] if shortfalls else []),
        "",
        "Format compliance: each model answers every held-out input of its task (never trained on) through "
        "llama.cpp with the GGUF's own chat template, as Ollama serves it: the task's system prompt and the "
        f"input only, no grammar, decoded as the Modelfile says ({decoding}). An answer is compliant when "
        "the whole answer is one JSON object that validates against the task's output schema and the model "
        "ended it itself. Train time is the train job's wall time; peak memory is the training process's.",
        "",
        "## Hardware",
        "",
        *hardware_lines(results),
        "",
        "## Answers by outcome",
        "",
        *markdown_table(outcome_columns, outcomes),
        "",
        "Per-answer detail: `results/<task>/eval.json`; side by side: `results/<task>/eval_samples.md`.",
        "",
        "## On disk",
        "",
        "Bytes of what each task ships, for each deployment built (`gguf.deploy`).",
        "",
        *markdown_table(*disk),
        "",
        "## Where the time went",
        "",
        "Job wall times, from each job's benchmark file.",
        "",
        *markdown_table(timing_columns, timings),
        "",
        *markdown_table(shared_columns, shared),
        "",
        f"All jobs together: {format_seconds(total_job_seconds(results, base))} (jobs that ran in parallel "
        "overlapped, so the build itself can take less).",
        "",
        "## Plots",
        "",
        f"![format compliance]({plots['compliance']})",
        *(line for r in results for line in ("", f"![{r.task} loss]({plots[r.task]})")),
    ]
    return "\n".join(lines) + "\n"


def render_html_tables(
    results: list[TaskResult], base: dict[str, dict], base_model: str, gguf_type: str, disk: tuple
) -> str:
    """The report's tables as one HTML page, which `snakemake --report` shows inline."""
    summary, shortfalls = verdict(results)
    outcome_columns, outcomes = outcome_rows(results)
    timing_columns, timings = timing_rows(results)
    shared_columns, shared = shared_timing_rows(base)
    items = "".join(f"<li><strong>{html.escape(line)}</strong></li>" for line in shortfalls)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>vault-distill results</title>"
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px}</style></head><body>\n"
        f"<p>Base model: <code>{html.escape(base_model)}</code>, served as {html.escape(gguf_type)} GGUF.</p>\n"
        f"{html_table(TABLE_COLUMNS, [table_row(r) for r in results])}\n"
        f"<p>{html.escape(summary)}</p>{f'<ul>{items}</ul>' if items else ''}\n"
        f"<h3>Answers by outcome</h3>\n{html_table(outcome_columns, outcomes)}\n"
        f"<h3>On disk</h3>\n{html_table(*disk)}\n"
        f"<h3>Job wall times</h3>\n{html_table(timing_columns, timings)}\n{html_table(shared_columns, shared)}\n"
        f"<p>All jobs together: {format_seconds(total_job_seconds(results, base))}.</p>\n</body></html>\n"
    )


# Plots -----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines
    import matplotlib.pyplot as plt

    return plt


def plot_loss(result: TaskResult, out: str | Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    train = result.history["train"]
    ax.plot([s for s, _ in train], [loss for _, loss in train], label="train loss", linewidth=1.2)
    evals = result.history["eval"]
    if evals:
        ax.plot([s for s, _ in evals], [loss for _, loss in evals], "o-", label="eval loss (held out)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(f"{result.task}: {result.metrics['examples']} examples, max_length {result.max_length}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_compliance(results: list[TaskResult], out: str | Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(results) + 1.5), 3.6))
    width = 0.38
    for offset, model, color in ((-width / 2, "base", "#999999"), (width / 2, None, "#2a7ab0")):
        summaries = [r.compliance(model or r.tuned) for r in results]
        values = [100 * summary["compliance"] for summary in summaries]
        positions = [i + offset for i in range(len(results))]
        bars = ax.bar(positions, values, width, label=model or "tuned", color=color)
        labels = [f"{summary['compliant']}/{summary['answers']}" for summary in summaries]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
    ax.set_xticks(range(len(results)), [r.task for r in results])
    ax.set_ylim(0, 115)
    ax.set_ylabel("compliant answers (%)")
    ax.set_title("Format compliance on held-out inputs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def build_report(
    tasks: list[str],
    base_model: str,
    gguf_type: str,
    report_md: str | Path,
    tables_html: str | Path,
    compliance_png: str | Path,
    loss_pngs: dict[str, str | Path],
    results_dir: str = "results",
    meaningful_examples: dict[str, int] | None = None,
    deploy: str = "merged",
    preference: bool = False,
) -> list[TaskResult]:
    """Read every task's results and write the report, its HTML tables and its plots."""
    if not tasks:
        raise ReportError("no tasks configured")
    missing_plots = [task for task in tasks if task not in loss_pngs]
    if missing_plots:
        raise ReportError(f"no loss plot path for {', '.join(missing_plots)}")
    results = [load_task(task, results_dir, deploy, gguf_type, preference) for task in tasks]
    for result in results:
        result.meaningful_examples = (meaningful_examples or {}).get(result.task, 0)
    base = load_base_benchmarks(results_dir)
    report_md = Path(report_md)
    for result in results:
        Path(loss_pngs[result.task]).parent.mkdir(parents=True, exist_ok=True)
        plot_loss(result, loss_pngs[result.task])
    Path(compliance_png).parent.mkdir(parents=True, exist_ok=True)
    plot_compliance(results, compliance_png)

    def relative(path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), report_md.resolve().parent)).as_posix()

    plots = {"compliance": relative(compliance_png), **{task: relative(loss_pngs[task]) for task in tasks}}
    disk = disk_rows(results, base_gguf_bytes(results_dir, gguf_type))
    report_md.write_text(render_report(results, base, base_model, gguf_type, plots, disk), encoding="utf-8")
    Path(tables_html).write_text(render_html_tables(results, base, base_model, gguf_type, disk), encoding="utf-8")
    return results
