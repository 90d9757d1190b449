"""The figures the README and docs/quality.md show, written from the results files they come from
(benchmarks/results/*.json), so that no figure is typed by hand:

    .venv/bin/python benchmarks/render_docs.py           # rewrite every generated block (make docs)
    .venv/bin/python benchmarks/render_docs.py --check   # exit 1, naming each block that is stale

A generated block sits between `<!-- figures:NAME ... -->` and `<!-- /figures:NAME -->`; the text
outside the markers is the docs' own. tests/test_render_docs.py runs --check: a results file
updated without `make docs`, or a figure edited by hand, fails the suite.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from vault_distill.sweep import plot_sweep, sweep_table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# The sweep's plot, drawn from benchmarks/results/sweep.json beside the table (not compared by --check:
# a PNG's bytes vary with the plotting library; its data is the table's).
SWEEP_PLOT = ROOT / "docs" / "img" / "sweep.png"
ARM_NAMES = {"base": "base", "base_grammar": "base + grammar", "tuned": "tuned", "tuned_grammar": "tuned + grammar"}


def minutes(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def provenance(record: dict) -> str:
    """Date, runner kind, matmul figures and commit: what every shown figure comes with."""
    matmul = f"bf16 matmul {record['bf16_matmul_gflops_2048']:.0f} GFLOP/s"
    if "fp32_matmul_gflops_2048" in record:
        matmul += f", fp32 {record['fp32_matmul_gflops_2048']:.0f}"
    return f"{record['date']}, {record['cpus']}-core {record['runner']}, {matmul}, commit {record['commit']}"


def commands_block(build: dict, suite: dict) -> list[str]:
    return [
        f"Measured {provenance(build)}: `make all` builds {build['all']['jobs']} jobs in "
        f"**{minutes(build['all']['wall_s'])}** after setup. Setup from {suite['setup_from']} took "
        f"{minutes(suite['setup_s'])}, and `make test` {minutes(suite['test_s'])} ({suite['tests']} tests; "
        f"{provenance(suite)}). Runner kinds differ by 2× and more: [docs/performance.md](docs/performance.md).",
    ]


def compliance(figures: dict, arm: str) -> tuple[int, int]:
    rows = [arms[arm] for arms in figures["tasks"].values()]
    return sum(row["compliant"] for row in rows), sum(row["n"] for row in rows)


def total(figures: dict, arm: str) -> str:
    """'151 of 200': an arm's compliant answers over all tasks."""
    return "{} of {}".format(*compliance(figures, arm))


def per_task(figures: dict, arm: str) -> str:
    return ", ".join(f"{task} {arms[arm]['compliant']}/{arms[arm]['n']}" for task, arms in figures["tasks"].items())


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def quality_block(build: dict) -> list[str]:
    figures = build["quality"]["figures"]
    n = next(iter(figures["tasks"].values()))["tuned"]["n"]
    lines = [
        f"The default demo, {n} held-out inputs a task ({provenance(build)}), answers that are one "
        f"schema-valid JSON object: tuned, served without a grammar: {per_task(figures, 'tuned')} "
        f"(**{total(figures, 'tuned')}**); tuned with the schema as a grammar "
        f"(Ollama's `format`): **{total(figures, 'tuned_grammar')}**; the base "
        f"model prompted alone: {total(figures, 'base')}.",
    ]
    agreement = ", ".join(
        f"{task} {percent(arms['tuned']['field_agreement'])}" for task, arms in figures["tasks"].items()
    )
    teacher = "the 135M teacher, not correctness" if figures["teacher_is_base"] else "the teacher"
    lines.append(f"Field agreement with the teacher's answers (tuned): {agreement}; it measures fidelity to {teacher}.")
    if gold_fields(figures):
        lines.append(
            f"Against the truth in the notes themselves (gold, {gold_provenance(build)}): the teacher is right on "
            f"{gold_total(figures, 'teacher_gold')}, tuned + grammar on {gold_total(figures, 'tuned_grammar')} and "
            f"tuned alone on {gold_total(figures, 'tuned')}; judge has no gold field."
        )
    return lines


def gold_fields(figures: dict) -> list[tuple[str, str]]:
    """(task, field) of every gold field the results file scores."""
    return [(task, field) for task, arms in figures["tasks"].items() for field in arms.get("teacher_gold", {})]


def gold_of(figures: dict, task: str, arm: str) -> dict:
    arms = figures["tasks"][task]
    return arms["teacher_gold"] if arm == "teacher_gold" else arms[arm]["gold"]


def gold_total(figures: dict, arm: str) -> str:
    """'84 of 140': right answers over every gold field of every task, for an arm or the teacher."""
    cells = [gold_of(figures, task, arm)[field] for task, field in gold_fields(figures)]
    return f"{sum(cell['correct'] for cell in cells)} of {sum(cell['n'] for cell in cells)}"


def gold_provenance(build: dict) -> str:
    rescored = build["quality"].get("rescored")
    return f"scored at commit {rescored['commit']} on {rescored['date']}" if rescored else "scored with the build"


def gold_table(figures: dict, arms: list[str]) -> list[str]:
    columns = ["teacher_gold", *arms]
    names = {"teacher_gold": "teacher", **ARM_NAMES}
    lines = ["| task | field | " + " | ".join(names[column] for column in columns) + " | tuned / teacher |"]
    lines.append("|---" * (len(columns) + 3) + "|")
    for task, field in gold_fields(figures):
        cells = []
        for column in columns:
            cell = gold_of(figures, task, column)[field]
            low, high = (round(100 * bound) for bound in cell["ci95"])
            cells.append(f"{cell['correct']}/{cell['n']} ({low}–{high}%)")
        teacher, tuned = gold_of(figures, task, "teacher_gold")[field], gold_of(figures, task, "tuned")[field]
        ratio = f"{tuned['rate'] / teacher['rate']:.2f}" if teacher["rate"] else "–"
        lines.append(f"| {task} | {field} | " + " | ".join(cells) + f" | {ratio} |")
    lines.append("| all | | " + " | ".join(gold_total(figures, column) for column in columns) + " | |")
    return lines


def quality_table_block(build: dict) -> list[str]:
    figures = build["quality"]["figures"]
    arms = [arm for arm in ARM_NAMES if arm in figures["arms"]]
    lines = [f"Measured {provenance(build)}, after the default build, by `benchmarks/default_build.py`.", ""]
    lines.append("| task | " + " | ".join(f"{ARM_NAMES[arm]}: compliant (95% CI), agreement" for arm in arms) + " |")
    lines.append("|---" * (len(arms) + 1) + "|")
    for task, task_arms in figures["tasks"].items():
        cells = []
        for arm in arms:
            row = task_arms[arm]
            low, high = (round(100 * bound) for bound in row["ci95"])
            cells.append(f"{row['compliant']}/{row['n']} ({low}–{high}%), {percent(row['field_agreement'])}")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    totals = [total(figures, arm) for arm in arms]
    lines.append("| all five | " + " | ".join(totals) + " |")
    if gold_fields(figures):
        lines += [
            "",
            f"Gold, right against the notes themselves ({gold_provenance(build)}, from this build's answers); "
            "an answer that is not schema-valid counts as wrong:",
            "",
            *gold_table(figures, arms),
        ]
    return lines


def _gold_cells(arms: dict, arm: str) -> str:
    gold = arms["teacher_gold"] if arm == "teacher_gold" else arms[arm]["gold"]
    return ", ".join(f"{field} {cell['correct']}/{cell['n']}" for field, cell in gold.items()) or "–"


def holdout_rows(figures: dict, vault: str) -> list[str]:
    rows = []
    for task, arms in figures["tasks"].items():
        cells = [f"{arms[arm]['compliant']}/{arms[arm]['n']} ({_interval(arms[arm]['ci95'])})" for arm in HOLDOUT_ARMS]
        cells.append(percent(arms["tuned"]["field_agreement"]))
        cells += [_gold_cells(arms, arm) for arm in ("teacher_gold", "tuned", "tuned_grammar")]
        rows.append(f"| {task} | {vault} | {arms['tuned']['n']} | " + " | ".join(cells) + " |")
    return rows


def _interval(ci: list[float]) -> str:
    low, high = (round(100 * bound) for bound in ci)
    return f"{low}–{high}%"


HOLDOUT_ARMS = ("tuned", "tuned_grammar")


def holdout_block(holdout: dict) -> list[str]:
    """Both vaults side by side: the same models, on held-out notes and on a vault none learnt from."""
    head = (
        "| task | vault | n | tuned | tuned + grammar | tuned agreement "
        "| gold: teacher | gold: tuned | gold: tuned + grammar |"
    )
    sample, other = holdout["sample"], holdout["holdout"]
    return [
        f"Measured {provenance(holdout)}, by `benchmarks/holdout_quality.py` ({minutes(holdout['wall_s'])}, "
        f"{holdout['jobs']} jobs): the default build's models, unchanged, on `resources/vault_holdout` "
        "(another person's notes, other folders, keys and daily-note format), every input of a task up to "
        "`quality.max_inputs`. Compliance with its Wilson 95% interval; agreement is with the teacher.",
        "",
        head,
        "|---" * 9 + "|",
        *[
            row
            for pair in zip(holdout_rows(sample, "sample"), holdout_rows(other, "holdout"), strict=True)
            for row in pair
        ],
        "",
        f"All five, tuned without a grammar: sample {total(sample, 'tuned')}, holdout {total(other, 'tuned')}; "
        f"with the grammar: {total(sample, 'tuned_grammar')} and {total(other, 'tuned_grammar')}.",
    ]


def _values(values: list) -> str:
    return "/".join(map(str, values))


def sweep_run_line(run: dict) -> str:
    """One run of the sweep: where and when, what it trained, and its jobs' seconds (against the
    default build measured beside it, where there is one)."""
    grid = ", ".join(f"{key} {_values(values)}" for key, values in run["grid"].items())
    seconds = sum(run["variant_seconds"].values())
    line = (
        f"- {provenance(run)}: {grid} x seeds {_values(run['seeds'])}, {run['trained']} variants trained"
        f" ({minutes(seconds)} of jobs"
    )
    beside = run.get("beside_build")
    if beside and run["trained"]:
        per_variant = seconds / run["trained"]
        line += (
            f", {minutes(per_variant)} a variant: {per_variant / beside['wall_s']:.2f}x the default build's"
            f" {minutes(beside['wall_s'])} measured beside it at {beside['commit']}"
        )
    return line + ")."


def sweep_block(sweep: dict) -> list[str]:
    """The sweep's table: each setting's compliance (no grammar) and gold accuracy over the seeds,
    after a line per run that measured its variants."""
    runs = sweep["runs"]
    trained = sum(run["trained"] for run in runs)
    return [
        f"Measured by `benchmarks/sweep_quality.py` on the default build, {trained} variants trained, merged,"
        f" converted and scored without a grammar on the held-out inputs, in {len(runs)} runs:",
        "",
        *map(sweep_run_line, runs),
        "",
        "The build's own setting with seed 0 is the build's own model. Mean (min–max) over the seeds:",
        "",
        *sweep_table(sweep),
        "",
        "![Compliance and gold accuracy against the swept setting, one line per task](img/sweep.png)",
    ]


def teacher_prompt_block(record: dict) -> list[str]:
    """The teacher's gold accuracy asked with the system prompt alone, and with its teacher_prompt."""
    rows = []
    for task, result in record["tasks"].items():
        for field, plain in result["plain"]["gold"].items():
            prompted = result["prompted"]["gold"][field]
            cells = [f"{arm['correct']}/{arm['n']} ({_interval(arm['ci95'])})" for arm in (plain, prompted)]
            copied = f"{result['prompted']['example_copies']} of {result['prompted']['accepted']}"
            rows.append(f"| {task} | {field} | " + " | ".join(cells) + f" | {copied} |")
    tasks = record["tasks"].values()
    plain, prompted = (
        sum(g["correct"] for r in tasks for g in r[arm]["gold"].values()) for arm in ("plain", "prompted")
    )
    n = sum(g["n"] for r in tasks for g in r["plain"]["gold"].values())
    paid = sum(r["prompted"]["paid"] for r in tasks)
    return [
        f"Measured {provenance(record)}, by `benchmarks/teacher_prompt.py`: the bundled teacher on the held-out "
        f"inputs with a gold value, {paid} prompted answers paid (the plain ones are the build's own, from its "
        "cache). Correct of n, with the Wilson 95% interval; copied: prompted answers that repeat a phrase of "
        "the worked example word for word.",
        "",
        "| task | field | system prompt alone | with teacher_prompt | copied |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"All fields: {plain} of {n} right with the system prompt alone, {prompted} of {n} with the teacher prompt.",
    ]


def blocks() -> dict[Path, dict[str, list[str]]]:
    """Each generated file, and its blocks' text, from the results files."""
    build = json.loads((RESULTS / "default_build.json").read_text(encoding="utf-8"))
    suite = json.loads((RESULTS / "test_suite.json").read_text(encoding="utf-8"))
    holdout = json.loads((RESULTS / "holdout.json").read_text(encoding="utf-8"))
    sweep = json.loads((RESULTS / "sweep.json").read_text(encoding="utf-8"))
    prompted = json.loads((RESULTS / "teacher_prompt.json").read_text(encoding="utf-8"))
    return {
        ROOT / "README.md": {"commands": commands_block(build, suite), "quality": quality_block(build)},
        ROOT / "docs" / "quality.md": {
            "quality-table": quality_table_block(build),
            "holdout-table": holdout_block(holdout),
            "sweep-table": sweep_block(sweep),
            "teacher-prompt-table": teacher_prompt_block(prompted),
        },
    }


def rendered(text: str, name: str, body: list[str], path: Path) -> str:
    """`text` with block `name` holding `body`; its markers must be there, once."""
    marker = re.escape(name)
    pattern = re.compile(rf"(<!-- figures:{marker}\b[^>]*-->\n)(.*?)(<!-- /figures:{marker} -->)", re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{path}: needs one '<!-- figures:{name} ... -->' ... '<!-- /figures:{name} -->' pair")
    return pattern.sub(lambda match: match.group(1) + "".join(line + "\n" for line in body) + match.group(3), text)


def render_all(check: bool) -> list[str]:
    """Rewrite (or, with `check`, only compare) every generated file; the stale blocks' names."""
    stale = []
    for path, named in blocks().items():
        text = path.read_text(encoding="utf-8")
        new = text
        for name, body in named.items():
            updated = rendered(new, name, body, path)
            if updated != new:
                stale.append(f"{path.relative_to(ROOT)}: figures:{name}")
            new = updated
        if not check and new != text:
            path.write_text(new, encoding="utf-8")
    if not check:
        SWEEP_PLOT.parent.mkdir(exist_ok=True)
        plot_sweep(json.loads((RESULTS / "sweep.json").read_text(encoding="utf-8")), SWEEP_PLOT)
    elif not SWEEP_PLOT.exists():
        stale.append(f"{SWEEP_PLOT.relative_to(ROOT)}: missing")
    return stale


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    stale = render_all(args.check)
    if args.check and stale:
        sys.exit("stale generated figures (run `make docs`):\n" + "\n".join(stale))
    print("\n".join(f"{'stale' if args.check else 'written'}: {block}" for block in stale) or "up to date")


if __name__ == "__main__":
    main()
