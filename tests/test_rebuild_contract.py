"""The incremental-rebuild contract (docs/design.md, "How the rebuild contract holds"), one test per row.

A tiny but real five-task pipeline is built once (conftest.five_task_build: the tiny Llama as the
student, the schema teacher behind the command backend; every stage runs). Each row then applies its change to a copy
of that working directory (config, vault, prompts and Snakemake's metadata all live in it,
with relative paths, so the copy is an exact stand-in) and checks the exact set of jobs that
Snakemake plans. Rows that change what the teacher is asked also run the teacher jobs and
count the answers that had to be paid for again.

How a job is named: `snakemake -n` prints each job it plans, its rule and its outputs. A job is
(rule, task), the task read from its first output's path (`results/<task>/...`; None for the
shared `results/base/...` and `results/report.md`). The jobs are counted against the job-stats
table that the same dry run prints, so the parse misses none. One Snakemake call per plan: each
costs seconds, and a row asks for several.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import FIVE_TASK_EXAMPLES, default_config, snakemake, write_config, write_note

from vault_distill.track import read_trackio_run

pytestmark = pytest.mark.slow

TASKS = list(default_config()["tasks"])
EXAMPLES = FIVE_TASK_EXAMPLES
# A task's rules, in pipeline order; `report` and the base rules are shared by every task.
CHAIN = ("extract", "teach", "split", "train", "merge", "convert", "modelfile", "evaluate", "model_card")
# Beside the chain: the settings check that every teach job waits for.
PREFLIGHT = "preflight"
REPORT = {("report", None)}
QUALITY = {("quality", None)}
# Rules that only name targets: they have no output and are not jobs of the contract.
TARGET_RULES = {"all", "teacher", "sft", "gguf", *TASKS}


def chain(task: str, first: str) -> set[tuple[str, str]]:
    """`first` and every later job of `task`."""
    return {(rule, task) for rule in CHAIN[CHAIN.index(first) :]}


def every_task(first: str) -> set[tuple[str, str]]:
    return set().union(*(chain(task, first) for task in TASKS))


@pytest.fixture
def built(five_task_build) -> Path:
    """The shared five-task build (conftest.py): read here, never written."""
    return five_task_build


def read_config(workdir: Path) -> dict:
    return yaml.safe_load((workdir / "config" / "config.yaml").read_text(encoding="utf-8"))


def link_or_copy(src: str, dst: str) -> None:
    """Model files are hard-linked (no row writes to them: Snakemake deletes an output before
    its job rewrites it); small files, which rows edit in place, are copied. Both keep mtimes."""
    if os.stat(src).st_size > 2**20:
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


@pytest.fixture
def work(built, tmp_path) -> Path:
    """A private copy of the built working directory, Snakemake's metadata included."""
    workdir = tmp_path / "work"
    shutil.copytree(built, workdir, symlinks=True, copy_function=link_or_copy)
    return workdir


def summary_rows(workdir: Path, target: str = "all") -> list[dict]:
    """`snakemake --summary`: one row per output (output_file, date, rule, status, plan...)."""
    summary = snakemake(workdir, "--summary", target).stdout
    return list(csv.DictReader(io.StringIO(summary[summary.index("output_file\t") :]), delimiter="\t"))


def planned_jobs(workdir: Path, target: str = "all") -> set[tuple[str, str | None]]:
    dry_run = snakemake(workdir, "-n", target).stdout
    jobs = [job for job in dry_run_jobs(dry_run) if job[0] not in TARGET_RULES]
    assert Counter(rule for rule, _ in jobs) == dry_run_job_counts(dry_run), dry_run
    return set(jobs)


# A job as `snakemake -n` prints it: "rule train:" (or "localrule all:"), then indented fields.
DRY_RUN_JOB = re.compile(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n?)*)", re.M)


def dry_run_jobs(text: str) -> list[tuple[str, str | None]]:
    """(rule, task) of every job a dry run plans; target-only rules have no output line."""
    jobs = []
    for rule, fields in DRY_RUN_JOB.findall(text):
        output = re.search(r"^\s+output: ([^,\s]+)", fields, re.M)
        jobs.append((rule, task_of(output.group(1)) if output else None))
    return jobs


def task_of(output: str) -> str | None:
    """The task of results/<task>/... and of results/{quality,holdout}/<task>/...; None for shared files."""
    parts = Path(output).parts
    if parts[:2] in (("results", "quality"), ("results", "holdout"), ("results", "sweep")):
        parts = ("results", *parts[2:])
    return parts[1] if len(parts) > 2 and parts[0] == "results" and parts[1] in TASKS else None


def dry_run_job_counts(text: str) -> Counter:
    """The job-stats table of `snakemake -n`, without the target-only rules."""
    if "Nothing to be done" in text:
        return Counter()
    table = text[text.index("Job stats:") :].split("total", 1)[0]
    counts = Counter({rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)})
    for rule in TARGET_RULES:
        counts.pop(rule, None)
    return counts


def assert_plan(workdir: Path, expected: set, target: str = "all") -> None:
    planned = planned_jobs(workdir, target)
    assert planned == expected, f"unexpected: {sorted(planned - expected)}, missing: {sorted(expected - planned)}"


def run_teachers(workdir: Path) -> dict[str, dict]:
    """Run every teacher job that is out of date; the teacher stats of every task."""
    snakemake(workdir, "--cores", "2", "teacher")
    return {task: json.loads((workdir / f"results/{task}/teacher_stats.json").read_text()) for task in TASKS}


def rewrite(path: Path, text: str) -> None:
    """Replace a file's content without writing through a hard link into the build."""
    path.unlink()
    path.write_text(text, encoding="utf-8")


def append(path: Path, text: str) -> None:
    rewrite(path, path.read_text(encoding="utf-8") + text)


def test_nothing_changed_nothing_reruns(built):
    dry_run = snakemake(built, "-n", "all")
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr
    assert planned_jobs(built) == set()
    assert planned_jobs(built, "quality") == set()
    stats = {task: json.loads((built / f"results/{task}/teacher_stats.json").read_text()) for task in TASKS}
    assert all(s["asked"] == EXAMPLES and s["generated"] == EXAMPLES for s in stats.values()), stats


@pytest.mark.parametrize(
    ("key", "value"),
    [("learning_rate", 1.5e-3), ("epochs", 3), ("lora_r", 8), ("optimizer", "adamw_8bit"), ("end_of_turn_weight", 5.0)],
)
def test_one_task_training_setting_retrains_that_task_only(work, key, value):
    config = read_config(work)
    inherited = {**config["training"], **config["tasks"]["planner"]["training"]}.get(key)
    assert value != inherited, f"{key}={value} is what planner already uses: not a change"
    config["tasks"]["planner"]["training"][key] = value
    write_config(work, config)
    assert_plan(work, chain("planner", "train") | REPORT)
    # The benchmark reruns the retrained model's arms, never the base arms or the held-out set.
    assert_plan(
        work, {(rule, "planner") for rule in ("train", "merge", "convert", "quality_tuned")} | QUALITY, "quality"
    )

    # Snakemake says why: the dry run gives each job's reason (with the params before and
    # now), and the summary's status names the outputs whose own params changed.
    dry_run = snakemake(work, "-n", "all").stdout
    train_job = dry_run[dry_run.index("output: results/planner/adapter") :]
    reason = re.search(r"^\s+reason: (.*)$", train_job, re.M).group(1)
    assert reason.startswith("Params have changed since last execution")
    assert f"'{key}': {value!r}" in reason.split(" now: ")[1]
    changed = {row["output_file"] for row in summary_rows(work) if row["status"] == "params changed"}
    # The model card states the training settings, so its params changed too.
    trained = ("adapter", "train_metrics.json", "train_log.csv", "MODEL_CARD.md")
    assert changed == {f"results/planner/{name}" for name in trained}


def test_one_task_system_prompt_asks_that_teacher_again(work):
    append(work / "prompts/judge.md", "\nAlways name the note's weakest section.\n")
    assert_plan(work, {(PREFLIGHT, "judge")} | chain("judge", "teach") | REPORT)
    stats = run_teachers(work)
    assert stats["judge"]["generated"] == EXAMPLES and stats["judge"]["cached"] == 0


def test_one_task_teacher_prompt_asks_that_teacher_again_and_the_student_keeps_the_plain_prompt(work):
    (work / "prompts/judge_teacher.md").write_text("Grade strictly: a note without sources scores 2 at most.\n")
    config = read_config(work)
    config["tasks"]["judge"]["teacher_prompt"] = "prompts/judge_teacher.md"
    write_config(work, config)
    # The settings check reads only the student's prompt: it does not rerun.
    assert_plan(work, chain("judge", "teach") | REPORT)
    stats = run_teachers(work)
    assert stats["judge"]["generated"] == EXAMPLES and stats["judge"]["cached"] == 0
    plain = (work / "prompts/judge.md").read_text(encoding="utf-8").strip()
    examples = [json.loads(line) for line in (work / "results/judge/teacher.jsonl").read_text().splitlines()]
    assert examples and all(example["messages"][0]["content"] == plain for example in examples)
    # The quality benchmark's teacher labels are asked with the same prompt: judge's again, no other's.
    assert ("quality_teach", "judge") in planned_jobs(work, "quality")
    assert not any(rule == "quality_teach" and task != "judge" for rule, task in planned_jobs(work, "quality"))


def test_one_task_max_length_rechecks_and_resplits_that_task_but_pays_no_teacher(work):
    config = read_config(work)
    config["tasks"]["seeder"]["training"]["max_length"] = 320
    write_config(work, config)
    # The teach job waits for the check, so it reruns after it: every answer from the cache.
    assert_plan(work, {(PREFLIGHT, "seeder")} | chain("seeder", "teach") | REPORT)
    stats = run_teachers(work)
    assert (stats["seeder"]["generated"], stats["seeder"]["cached"]) == (0, EXAMPLES)


def test_one_task_note_selector_reextracts_that_task(work):
    config = read_config(work)
    config["tasks"]["analyst"]["select"]["exclude_globs"] = ["tech/Bash*"]
    write_config(work, config)
    assert_plan(work, chain("analyst", "extract") | REPORT)


def test_note_read_by_one_task_pays_only_for_changed_inputs(work):
    # Daily notes are read by the reflector only; 2026-09-01 opens the first 7-day window alone.
    append(work / "vault/daily/2026-09-01.md", "\nLong walk in the evening, slept well.\n")
    assert_plan(work, chain("reflector", "extract") | REPORT)
    stats = run_teachers(work)
    assert stats["reflector"]["generated"] == 1 and stats["reflector"]["cached"] == EXAMPLES - 1


def test_new_note_in_a_shared_folder_reruns_the_two_tasks_that_read_it(work):
    # tech/ is read by the seeder (with topics/) and the analyst; the name sorts first, so the
    # note becomes the first input of both, and only its answer is new.
    (work / "vault/tech/Aardvark profiling.md").write_text(
        "---\ntags: [python, performance]\n---\n"
        "py-spy showed 60% of the time in json.loads; switching to orjson halved the request latency.\n",
        encoding="utf-8",
    )
    assert_plan(work, chain("seeder", "extract") | chain("analyst", "extract") | REPORT)
    stats = run_teachers(work)
    for task in ("seeder", "analyst"):
        assert stats[task]["generated"] == 1 and stats[task]["cached"] == EXAMPLES - 1, stats[task]


def copy_base_model(work: Path) -> Path:
    """A local HF folder holding the very same model and tokenizer: a new base model by name."""
    folder = work / "models/tiny-copy"
    shutil.copytree(work / "results/base/model", folder, copy_function=link_or_copy)
    return folder


def test_new_base_model_with_the_same_tokenizer_retrains_but_keeps_the_sft_data(work):
    copy_base_model(work)
    config = read_config(work)
    config["base_model"] = "models/tiny-copy"
    write_config(work, config)
    assert_plan(work, {("base", None), ("quantize", None), ("base_gguf", None)} | every_task("train") | REPORT)


def test_new_base_model_with_another_tokenizer_also_redoes_the_sft_data(work):
    template = copy_base_model(work) / "chat_template.jinja"
    # Still ChatML (base_tokenizer refuses a template no Modelfile can be written for), but its
    # default system prompt differs: another tokenizer, and other SFT prompts.
    text = template.read_text(encoding="utf-8")
    assert "named SmolLM," in text
    rewrite(template, text.replace("named SmolLM,", "named SmolLM (a copy),"))
    config = read_config(work)
    config["base_model"] = "models/tiny-copy"
    write_config(work, config)
    expected = {("base_tokenizer", None), ("base", None), ("quantize", None), ("base_gguf", None)}
    preflights = {(PREFLIGHT, task) for task in TASKS}
    assert_plan(work, expected | preflights | every_task("teach") | REPORT)
    stats = run_teachers(work)
    assert {task: (s["generated"], s["cached"]) for task, s in stats.items()} == dict.fromkeys(TASKS, (0, EXAMPLES))


def test_quantization_setting_requantizes_and_retrains_every_task(work):
    config = read_config(work)
    config["quantization"]["group_size"] = 32
    write_config(work, config)
    assert_plan(work, {("quantize", None)} | every_task("train") | REPORT)


def test_quantization_method_requantizes_and_retrains_every_task_and_nothing_before(work):
    config = read_config(work)
    config["quantization"]["method"] = "nf4"
    write_config(work, config)
    assert_plan(work, {("quantize", None)} | every_task("train") | REPORT)
    dry_run = snakemake(work, "-n", "all").stdout
    assert "output: results/base/nf4" in dry_run  # beside results/base/hqq, which is kept
    assert (work / "results/base/hqq").is_dir()


def test_a_setting_of_the_method_not_in_use_reruns_nothing(work):
    """double_quant is NF4's; the HQQ base (the default) never reads it."""
    config = read_config(work)
    assert config["quantization"]["method"] == "hqq"
    config["quantization"]["double_quant"] = not config["quantization"]["double_quant"]
    write_config(work, config)
    assert planned_jobs(work) == set()


def test_teacher_model_asks_every_teacher_again(work):
    config = read_config(work)
    config["teacher"]["model"] = config["teacher"]["model"] + "-v2"
    write_config(work, config)
    assert_plan(work, every_task("teach") | REPORT)
    # One task's teacher is enough to see the answers paid again (the plan above covers all five).
    snakemake(work, "--cores", "2", "results/judge/teacher.jsonl")
    stats = json.loads((work / "results/judge/teacher_stats.json").read_text())
    assert (stats["generated"], stats["cached"]) == (EXAMPLES, 0)


def test_teacher_backend_asks_every_teacher_again(work):
    """From the schema teacher to the bundled SmolLM2 in llama.cpp: a real model answers."""
    before = (work / "results/judge/teacher.jsonl").read_text(encoding="utf-8")
    config = read_config(work)
    config["teacher"].update(
        backend="llama_cpp", model="bundled:smollm2", command=None, response_format="json_schema", max_tokens=160
    )
    write_config(work, config)
    assert_plan(work, every_task("teach") | REPORT)
    snakemake(work, "--cores", "2", "results/judge/teacher.jsonl")
    stats = json.loads((work / "results/judge/teacher_stats.json").read_text())
    assert (stats["generated"], stats["cached"]) == (EXAMPLES, 0)
    assert stats["accepted"] + stats["rejected"] == EXAMPLES and stats["accepted"] >= 1
    assert (work / "results/judge/teacher.jsonl").read_text(encoding="utf-8") != before


def test_dedupe_items_rejudges_every_teacher_for_free_and_resplits_the_tasks_it_changed(work):
    def kept_answers() -> dict[str, str]:
        return {task: (work / f"results/{task}/teacher.jsonl").read_text(encoding="utf-8") for task in TASKS}

    before = kept_answers()
    config = read_config(work)
    config["teacher"]["dedupe_items"] = not config["teacher"]["dedupe_items"]
    write_config(work, config)
    assert_plan(work, every_task("teach") | REPORT)
    stats = run_teachers(work)
    assert all(s["generated"] == 0 and s["cached"] == EXAMPLES for s in stats.values()), stats
    changed = [task for task, text in kept_answers().items() if text != before[task]]
    assert changed, "the tiny build's teacher repeats no array item: the test shows nothing"
    # A card shows its task's teacher stats, which every re-judging teach job rewrote.
    restated = {
        ("model_card", task)
        for task in TASKS
        if (work / f"results/{task}/teacher_stats.json").stat().st_mtime
        > (work / f"results/{task}/MODEL_CARD.md").stat().st_mtime
    }
    assert_plan(work, set().union(*(chain(task, "split") for task in changed)) | restated | REPORT)


def test_deleted_gguf_is_rebuilt_from_the_kept_adapter(work):
    (work / "results/judge/judge.Q8_0.gguf").unlink()
    assert_plan(work, chain("judge", "merge") | REPORT)


@pytest.mark.parametrize(
    "change",
    [
        {"teacher": {"timeout_s": 30, "max_retries": 1, "cache_dir": "cache/teacher-moved", "base_url": "http://x"}},
        {"checkpoints": {"dir": "cache/ckpt", "every_steps": 5}},
        {"training": {"gradient_checkpointing": True, "cache_dequantized_weights": False}},
    ],
    ids=["teacher-transport", "checkpoints", "memory-trades"],
)
def test_operational_settings_rerun_nothing(work, change):
    config = read_config(work)
    for section, values in change.items():
        config[section].update(values)
    write_config(work, config)
    assert planned_jobs(work) == set()


def test_decoding_settings_rerun_every_evaluation_modelfile_and_arm_but_no_training(work):
    config = read_config(work)
    config["decoding"]["temperature"] = 0.0
    write_config(work, config)
    per_task = {(rule, task) for task in TASKS for rule in ("modelfile", "evaluate", "model_card")}
    assert_plan(work, per_task | REPORT)
    arms = {(rule, task) for task in TASKS for rule in ("quality_base", "quality_tuned")}
    assert_plan(work, arms | QUALITY, "quality")


def test_a_tasks_own_decoding_reruns_its_modelfile_evaluation_and_arms_only(work):
    config = read_config(work)
    config["tasks"]["reflector"].setdefault("decoding", {})["repeat_penalty"] = 1.2
    write_config(work, config)
    assert_plan(work, {(rule, "reflector") for rule in ("modelfile", "evaluate", "model_card")} | REPORT)
    arms = {("quality_base", "reflector"), ("quality_tuned", "reflector")}
    assert_plan(work, arms | QUALITY, "quality")


def test_quality_inputs_setting_reselects_the_held_out_inputs_only(work):
    config = read_config(work)
    config["quality"]["max_inputs"] = 3
    write_config(work, config)
    assert planned_jobs(work) == set()
    rules = ("quality_heldout", "quality_gold", "quality_teach", "quality_base", "quality_tuned")
    assert_plan(work, {(rule, task) for task in TASKS for rule in rules} | QUALITY, "quality")


def test_quality_without_teacher_labels_only_rescores(work):
    config = read_config(work)
    config["quality"]["teacher_labels"] = False
    write_config(work, config)
    assert_plan(work, QUALITY, "quality")


def test_serving_unconstrained_rebuilds_nothing_and_only_rescores_as_deployed(work):
    """serve.enforce_schema changes what `serve` does and which arm is quality's as-deployed row:
    no model, no format.json, no answer."""
    config = read_config(work)
    config["serve"]["enforce_schema"] = False
    write_config(work, config)
    assert planned_jobs(work, "all") == set()
    assert_plan(work, QUALITY, "quality")


ADAPTER_JOBS = ("convert_adapter", "modelfile_adapter", "evaluate", "model_card")


def test_deploying_adapters_too_builds_only_the_adapters_and_reevaluates_then_a_retrain_stays_in_its_task(work):
    """gguf.deploy merged -> both adds each task's LoRA GGUF, its Modelfile and the tuned_adapter
    arm, and touches no training, merged GGUF or base GGUF. Once built, retraining one task
    rebuilds that task's two GGUFs, two Modelfiles and evaluation, and never the base GGUF."""
    config = read_config(work)
    config["gguf"]["deploy"] = "both"
    write_config(work, config)
    assert_plan(work, {(rule, task) for task in TASKS for rule in ADAPTER_JOBS} | REPORT)

    snakemake(work, "--cores", "2", "all", timeout=1800)
    assert planned_jobs(work) == set()
    # After `all`, the benchmark adds only the adapter arm (before it, it would convert the adapters too).
    assert_plan(work, {("quality_tuned_adapter", task) for task in TASKS} | QUALITY, "quality")
    config["tasks"]["planner"]["training"]["learning_rate"] = 1.5e-3
    write_config(work, config)
    assert_plan(work, chain("planner", "train") | {(rule, "planner") for rule in ADAPTER_JOBS} | REPORT)


def test_deploying_adapters_only_needs_no_merge_and_no_merged_gguf(work):
    """gguf.deploy: adapter. The adapter's check merges in memory, so nothing merged is built."""
    config = read_config(work)
    config["gguf"]["deploy"] = "adapter"
    write_config(work, config)
    (work / "results/judge/judge.Q8_0.gguf").unlink()  # no longer shipped: not rebuilt either
    assert_plan(work, {(rule, task) for task in TASKS for rule in ADAPTER_JOBS} | REPORT)


PREFER_JOBS = ("prefer_pairs", "prefer")
AFTER_PREFER = ("merge", "convert", "modelfile", "evaluate", "model_card")


def test_the_prefer_stage_on_then_its_settings_then_off(work):
    """preference.enabled adds prefer_pairs and prefer to every task and rebuilds what ships from
    the DPO adapter; the SFT data, training and base are kept. Once built, a DPO setting reruns
    prefer and after, never prefer_pairs; turned off, the SFT adapter ships again, from the kept
    adapter: only merge and after rerun."""
    config = read_config(work)
    config["preference"]["enabled"] = True
    write_config(work, config)
    after = {(rule, task) for task in TASKS for rule in (*PREFER_JOBS, *AFTER_PREFER)}
    assert_plan(work, after | REPORT)
    # The benchmark adds the SFT-alone arm and answers with the new tuned GGUFs (no Modelfile or gate).
    rules = (*PREFER_JOBS, "merge", "convert", "quality_sft", "quality_tuned")
    assert_plan(work, {(rule, task) for task in TASKS for rule in rules} | QUALITY, "quality")

    snakemake(work, "--cores", "2", "judge", timeout=1800)
    assert planned_jobs(work, "judge") == set()
    pairs = (work / "results/judge/preference/pairs.jsonl").read_text(encoding="utf-8").splitlines()
    answers = json.loads((work / "results/judge/preference/sft_answers.json").read_text(encoding="utf-8"))
    metrics = json.loads((work / "results/judge/preference/metrics.json").read_text(encoding="utf-8"))
    assert len(pairs) == answers["failing"] == metrics["pairs"]
    assert metrics["trained"] == bool(pairs)
    evaluation = json.loads((work / "results/judge/eval.json").read_text(encoding="utf-8"))
    assert {"base", "tuned", "sft"} <= set(evaluation["models"])

    config["preference"]["beta"] = 0.2
    write_config(work, config)
    assert_plan(work, {(rule, "judge") for rule in ("prefer", *AFTER_PREFER)}, "judge")
    config["preference"] = {"enabled": False}
    write_config(work, config)
    assert_plan(work, {(rule, "judge") for rule in AFTER_PREFER}, "judge")


HOLDOUT_JOBS = ("quality_holdout_extract", "quality_holdout_heldout", "quality_holdout_teach", "quality_holdout_gold")
HOLDOUT_ARMS = ("quality_holdout_base", "quality_holdout_tuned")


def write_holdout_vault(vault: Path) -> None:
    """Another person's vault: other folders, other front matter keys, Windows line endings."""
    for n in range(4):
        write_note(
            vault,
            f"Objectives/Finish the walnut table {n}.md",
            f"---\nkind: objective\ntarget: 2025-0{n + 3}-01\n---\nSand, oil. See [[Oiling walnut]], [[Missing]].\n",
        )
        fence = "```r" if n % 2 else "```vba"
        write_note(
            vault, f"Bench/Stock sheet fix {n}.md", f"---\nkind: bench\n---\nThe macro broke.\n{fence}\nx <- 1\n```\n"
        )
    write_note(vault, "Wiki/Oiling walnut.md", b"---\r\nkind: concept\r\n---\r\nThree thin coats.\r\n")


def test_the_holdout_vault_is_scored_by_the_trained_models_and_trains_nothing(work):
    """quality.holdout: planner and analyst read a second vault. quality_holdout extracts, asks the
    teacher through the cache, derives gold and answers with the built GGUFs: no job of `all` runs,
    and the report puts both vaults side by side."""
    write_holdout_vault(work / "holdout")
    config = read_config(work)
    config["quality"]["holdout"] = {
        "vault": "holdout",
        "select": {"planner": {"folders": ["Objectives"], "group": "linked"}, "analyst": {"folders": ["Bench"]}},
    }
    write_config(work, config)
    assert planned_jobs(work, "all") == set()
    per_task = {(rule, task) for task in ("planner", "analyst") for rule in (*HOLDOUT_JOBS, *HOLDOUT_ARMS)}
    assert_plan(work, per_task | {("quality_holdout", None)}, "quality_holdout")
    snakemake(work, "--cores", "2", "quality_holdout", timeout=1800)
    holdout = json.loads((work / "results/holdout/quality.json").read_text(encoding="utf-8"))
    assert list(holdout["tasks"]) == ["planner", "analyst"] and holdout["vault"] == "holdout"
    # quality.max_inputs (2 in this build) of the 4 inputs each task finds there.
    assert all(holdout["tasks"][task]["tuned"]["n"] == 2 for task in holdout["tasks"])
    heldout = [json.loads(line) for line in (work / "results/holdout/planner/heldout.jsonl").read_text().splitlines()]
    assert {row["source"] for row in heldout} == {"unseen"} and all(
        "\r" not in row["messages"][1]["content"] for row in heldout
    )
    assert "Oiling walnut" in heldout[0]["messages"][1]["content"]  # the linked note, read as LF
    gold = [json.loads(line)["gold"] for line in (work / "results/holdout/analyst/gold.jsonl").read_text().splitlines()]
    assert len(gold) == 2 and {row["language"] for row in gold} <= {"r", "vba"}
    assert holdout["tasks"]["analyst"]["teacher_gold"]["language"]["n"] == 2
    markdown = (work / "results/holdout/quality.md").read_text(encoding="utf-8")
    assert "| planner | sample (held out) |" in markdown and "| planner | holdout | 2 |" in markdown
    assert planned_jobs(work, "quality_holdout") == set() and planned_jobs(work, "all") == set()


def tracked_figures(backend: str, tracked: dict, work: Path) -> dict[str, list[float]]:
    """Every figure of one tracked run, as its backend's own reader gives it back."""
    if backend == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(work / tracked["log_dir"]))
        events.Reload()
        return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    if backend == "mlflow":
        from mlflow.tracking import MlflowClient

        assert tracked["tracking_uri"] == f"sqlite:///{work / 'results/mlflow.db'}"
        client = MlflowClient(tracked["tracking_uri"])
        names = client.get_run(tracked["run_id"]).data.metrics
        return {name: [m.value for m in client.get_metric_history(tracked["run_id"], name)] for name in names}
    assert tracked["log_dir"] == str(work / "results/trackio")
    run = read_trackio_run(tracked["experiment"], tracked["run_name"], tracked["log_dir"])
    assert run["config"]["vault_distill.training.lora_r"] == "4"
    return {name: [value for _, value in values] for name, values in run["metrics"].items()}


@pytest.mark.parametrize("backend", ["tensorboard", "mlflow", "trackio"])
def test_tracking_turned_on_after_a_build_retrains_nothing_and_records_every_task(work, backend):
    """training.report_to is a `runs` setting: only each task's track job runs. It opens a run per
    task from the training's loss log and adds the evaluation's figures; the quality report then
    adds its own (only its summary job reruns); then nothing is left."""
    config = read_config(work)
    config["training"]["report_to"] = backend
    write_config(work, config)
    assert_plan(work, {("track", task) for task in TASKS})
    snakemake(work, "--cores", "2", "all")
    assert_plan(work, {("quality", None)}, "quality")
    snakemake(work, "--cores", "2", "quality")
    quality = json.loads((work / "results/quality/quality.json").read_text(encoding="utf-8"))
    loss = "loss" if backend == "mlflow" else "train/loss"
    for task in TASKS:
        tracked = json.loads((work / f"results/{task}/tracked.json").read_text(encoding="utf-8"))
        assert tracked["backend"] == backend and tracked["replayed_history"] is True
        assert quality["tracked"][task]["backend"] == backend
        history = [
            row
            for row in csv.DictReader(io.StringIO((work / f"results/{task}/train_log.csv").read_text()))
            if row["loss"]
        ]
        compliance = json.loads((work / f"results/{task}/eval.json").read_text())["models"]["tuned"]["compliance"]
        figures = tracked_figures(backend, tracked, work)
        assert len(figures[loss]) == len(history)
        assert figures["eval/tuned/compliance"] == [pytest.approx(compliance)]
        arms = quality["tasks"][task]
        assert figures["quality/tuned/compliance"] == [pytest.approx(arms["tuned"]["rate"])]
        assert figures["quality/as_deployed/compliance"] == [pytest.approx(arms["as_deployed"]["rate"])]
    assert planned_jobs(work) == set() and planned_jobs(work, "quality") == set()


SWEEP_JOBS = ("sweep_train", "sweep_merge", "sweep_convert", "sweep_answers")


def test_a_sweep_builds_each_variant_once_and_a_new_value_builds_only_that_value(work):
    """sweep: lora_r 2 and 4, seeds 0 and 1, on judge: four variants trained on judge's own SFT data
    and scored without a grammar; `all` is untouched. lora_r 4 with seed 0 is the build's own
    setting: its model is the build's, not trained again. Adding lora_r 8 plans only its two seeds."""
    config = read_config(work)
    assert (config["training"]["lora_r"], config["training"]["seed"]) == (4, 0)
    config["sweep"] = {"tasks": ["judge"], "grid": {"lora_r": [2, 4]}, "seeds": [0, 1]}
    write_config(work, config)
    # The shared build already holds the quality held-out set, its labels, gold and tuned answers.
    assert_plan(work, {(rule, "judge") for rule in SWEEP_JOBS} | {("sweep", None)}, "sweep")
    dry_run = snakemake(work, "-n", "sweep").stdout
    assert dry_run.count("rule sweep_train:") == 3 and "lora_r~4/seed~0" not in dry_run
    snakemake(work, "--cores", "2", "sweep", timeout=1800)
    sweep = json.loads((work / "results/sweep/sweep.json").read_text(encoding="utf-8"))
    variants = {variant["variant"]: variant for variant in sweep["tasks"]["judge"]["variants"]}
    assert list(variants) == ["lora_r~2/seed~0", "lora_r~2/seed~1", "lora_r~4/seed~0", "lora_r~4/seed~1"]
    assert [pattern for pattern, variant in variants.items() if variant["build_model"]] == ["lora_r~4/seed~0"]
    quality = json.loads((work / "results/quality/quality.json").read_text(encoding="utf-8"))
    assert variants["lora_r~4/seed~0"]["score"]["compliant"] == quality["tasks"]["judge"]["tuned"]["compliant"]
    summary = sweep["tasks"]["judge"]["summary"]
    assert [group["settings"] for group in summary] == [{"lora_r": 2}, {"lora_r": 4}]
    assert all(group["seeds"] == [0, 1] and group["n"] == 2 for group in summary)
    metrics = json.loads((work / "results/sweep/judge/lora_r~2/seed~1/train_metrics.json").read_text())
    assert (
        metrics["trainable_parameters"]
        < json.loads((work / "results/judge/train_metrics.json").read_text())["trainable_parameters"]
    )  # rank 2 against the build's own rank
    assert "| judge | lora_r=2 | 2 |" in (work / "results/sweep/sweep.md").read_text(encoding="utf-8")
    assert planned_jobs(work, "sweep") == set() and planned_jobs(work, "all") == set()

    config["sweep"]["grid"]["lora_r"].append(8)
    write_config(work, config)
    assert_plan(work, {(rule, "judge") for rule in SWEEP_JOBS} | {("sweep", None)}, "sweep")
    dry_run = snakemake(work, "-n", "sweep").stdout
    outputs = re.findall(r"^\s+output: (results/sweep/judge/\S+)", dry_run, re.M)
    assert dry_run.count("rule sweep_train:") == 2 and outputs
    assert all(
        output.startswith(("results/sweep/judge/lora_r~8/seed~0/", "results/sweep/judge/lora_r~8/seed~1/"))
        for output in outputs
    )
