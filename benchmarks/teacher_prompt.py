"""Does a better-prompted teacher get more facts right? The teacher's gold accuracy on the quality
benchmark's held-out inputs, asked with each task's system prompt alone and with its
tasks.<task>.teacher_prompt too (resources/prompts/teacher/<task>.md), in a finished default build.

    .venv/bin/python benchmarks/teacher_prompt.py --out /tmp/default_build --save benchmarks/results/teacher_prompt.json

Both arms go through the build's own teacher cache: the plain prompt's answers are the ones the
build already paid for (its teach and quality_teach jobs asked with the same keys), and the
prompted answers are stored there too, so that a build with config/examples/teacher-prompts.yaml
never asks for them again. Prints the machine's matmul figures and how many answers were paid.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from machine import machine_record  # noqa: E402

from vault_distill.config import load_config  # noqa: E402
from vault_distill.gold import GOLD_RULES  # noqa: E402
from vault_distill.layout import quality_files  # noqa: E402
from vault_distill.quality import gold_accuracy  # noqa: E402
from vault_distill.runtime import read_jsonl  # noqa: E402
from vault_distill.teach import run_teacher, teacher_system  # noqa: E402

ARMS = ("plain", "prompted")


def heldout_inputs(out: Path, task: str) -> tuple[list[dict], dict[str, dict]]:
    """The held-out inputs as the teacher is asked them (the extract's text, by id), and their gold."""
    files = quality_files(task, str(out / "results"))
    gold = {row["id"]: row["gold"] for row in read_jsonl(files["gold"])}
    extracted = {row["id"]: row for row in read_jsonl(out / "results" / task / "inputs.jsonl")}
    inputs = [extracted[row["id"]] for row in read_jsonl(files["heldout"]) if row["id"] in gold]
    return inputs, gold


def worked_example(task: str) -> dict:
    """The answer the shipped teacher prompt shows (its `Answer:` line)."""
    text = (ROOT / "resources" / "prompts" / "teacher" / f"{task}.md").read_text(encoding="utf-8")
    return json.loads(next(line for line in text.splitlines() if line.startswith("Answer: "))[8:])


def strings(value) -> set[str]:
    if isinstance(value, dict):
        return {item for inner in value.values() for item in strings(inner)}
    if isinstance(value, list):
        return {item for inner in value for item in strings(inner)}
    # Phrases only: a one-word value ("rising", "lua") is as likely an answer as a copy.
    return {value.strip().lower()} if isinstance(value, str) and len(value.split()) >= 2 else set()


def copies(answers: dict[str, dict], example: dict) -> int:
    """Answers that repeat a phrase of the worked example word for word: copied, not answered."""
    shown = strings(example)
    return sum(bool(strings(answer) & shown) for answer in answers.values())


def ask(task: str, inputs: list[dict], config: dict, out: Path, prompted: bool) -> dict:
    """One arm's answers and gold accuracy, and what it paid."""
    settings = config["tasks"][task]
    system = (out / settings["system_prompt"]).read_text(encoding="utf-8").strip()
    addition = (ROOT / "resources" / "prompts" / "teacher" / f"{task}.md").read_text(encoding="utf-8")
    schema = json.loads((out / settings["output_schema"]).read_text(encoding="utf-8"))
    teacher = {**config["teacher"], "cache_dir": str(out / config["teacher"]["cache_dir"])}
    started = time.monotonic()
    run = run_teacher(
        inputs,
        system,
        schema,
        teacher,
        len(inputs),
        teacher_system=teacher_system(system, addition if prompted else None),
    )
    answers = {example["id"]: json.loads(example["messages"][2]["content"]) for example in run.examples}
    return {"answers": answers, "paid": run.stats["generated"], "seconds": round(time.monotonic() - started, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/default_build"), help="a finished default build")
    parser.add_argument("--tasks", nargs="+", default=list(GOLD_RULES), help="tasks with gold fields")
    parser.add_argument("--save", type=Path, help="write the results file here")
    args = parser.parse_args(argv)
    record = {"date": datetime.date.today().isoformat(), **machine_record(), "tasks": {}}
    print(json.dumps(record), flush=True)
    config = load_config(args.out / "config" / "config.yaml")
    for task in args.tasks:
        inputs, gold = heldout_inputs(args.out, task)
        result = {"n": len(inputs)}
        for arm in ARMS:
            asked = ask(task, inputs, config, args.out, arm == "prompted")
            result[arm] = {
                "gold": gold_accuracy(task, {row["id"]: asked["answers"].get(row["id"]) for row in inputs}, gold),
                "accepted": len(asked["answers"]),
                "example_copies": copies(asked["answers"], worked_example(task)),
                "paid": asked["paid"],
                "seconds": asked["seconds"],
            }
            cells = ", ".join(f"{field} {g['correct']}/{g['n']}" for field, g in result[arm]["gold"].items())
            print(f"{task} {arm}: {cells}; {asked['paid']} answers paid in {asked['seconds']} s", flush=True)
        record["tasks"][task] = result
    if args.save:
        args.save.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
