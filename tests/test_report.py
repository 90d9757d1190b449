"""The report's readers and wording. The report over a real build is tested in
test_model_stages.py (real benchmark, metrics and evaluation files)."""

import re

import pytest

from vault_distill.report import (
    ReportError,
    TaskResult,
    build_report,
    evaluation_arms,
    format_seconds,
    read_benchmark,
    read_history,
    verdict,
)


def test_a_missing_result_file_is_named(tmp_path):
    with pytest.raises(ReportError, match="^" + re.escape(f"{tmp_path}/judge/eval.json: missing")):
        build_report(
            ["judge", "planner"],
            base_model="bundled:smollm2",
            gguf_type="Q8_0",
            report_md=tmp_path / "report.md",
            tables_html=tmp_path / "tables.html",
            compliance_png=tmp_path / "compliance.png",
            loss_pngs={"judge": tmp_path / "j.png", "planner": tmp_path / "p.png"},
            results_dir=str(tmp_path),
        )


def test_every_task_needs_a_loss_plot(tmp_path):
    with pytest.raises(ReportError, match="no loss plot path for planner"):
        build_report(["judge", "planner"], "m", "Q8_0", "r.md", "t.html", "c.png", {"judge": "j.png"}, str(tmp_path))


def test_benchmark_reader_takes_the_mean_and_skips_what_snakemake_could_not_measure(tmp_path):
    path = tmp_path / "train.tsv"
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    path.write_text(
        header + "100.5\t0:01:40\tNA\tNA\tNA\tNA\tNA\tNA\t0\t0\n99.5\t0:01:39\t812.3\t1\t1\t1\t0\t0\t0\t0\n"
    )
    assert read_benchmark(path) == {"seconds": 100.0, "max_rss_mb": 812.3}
    (tmp_path / "bad.tsv").write_text("step\tloss\n1\t2\n")
    with pytest.raises(ReportError, match=r"bad\.tsv: not a snakemake benchmark file"):
        read_benchmark(tmp_path / "bad.tsv")


def test_history_splits_train_and_eval_losses(tmp_path):
    path = tmp_path / "train_log.csv"
    path.write_text(
        "step,epoch,eval_loss,loss,train_runtime\n1,0.5,,2.5,\n2,1.0,,2.0,\n2,1.0,2.2,,\n2,1.0,,,30.1\n",
        encoding="utf-8",
    )
    assert read_history(path) == {"train": [(1.0, 2.5), (2.0, 2.0)], "eval": [(2.0, 2.2)]}
    (tmp_path / "empty.csv").write_text("step,epoch\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"empty\.csv: no training loss logged"):
        read_history(tmp_path / "empty.csv")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "n/a"), (4.4, "4 s"), (59.6, "60 s"), (61, "1 min 01 s"), (3725, "1 h 02 min")],
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def result(task, base, tuned, answers=8, examples=18, meaningful_examples=0):
    models = {
        name: {"compliant": count, "answers": answers, "compliance": count / answers}
        for name, count in (("base", base), ("tuned", tuned))
    }
    metrics = {"examples": examples, "val_examples": answers}
    return TaskResult(task, {"models": models}, metrics, {}, 256, {}, meaningful_examples)


def test_a_task_with_too_few_examples_is_flagged_not_meaningful():
    small = result("judge", 0, 1, answers=1, examples=1, meaningful_examples=20)
    enough = result("planner", 0, 5, answers=6, examples=14, meaningful_examples=20)
    _, shortfalls = verdict([small, enough])
    assert shortfalls == [
        "judge: trained on 1 examples and evaluated on 1, fewer than tasks.judge.meaningful_examples (20) in all: "
        "its figures are not meaningful. Add notes to the vault, or raise `examples`."
    ]
    assert small.too_few_examples and not enough.too_few_examples


def test_verdict_states_every_task_where_tuning_did_not_help():
    summary, shortfalls = verdict([result("judge", 0, 7), result("planner", 2, 2), result("seeder", 3, 1)])
    assert summary == "The tuned model is more often format-compliant than its base in 1 of 3 tasks."
    assert shortfalls == [
        "planner: the tuned model is not better than its base (2/8 (25%) → 2/8 (25%)).",
        "seeder: the tuned model is not better than its base (3/8 (38%) → 1/8 (12%)).",
    ]


def test_with_the_prefer_stage_the_tuned_figure_has_sft_alone_beside_it_and_its_stages_are_read():
    from vault_distill.report import sft_note, task_files, task_stages

    preferred = result("judge", 0, 7)
    preferred.evaluation["models"]["sft"] = {"compliant": 5, "answers": 8, "compliance": 5 / 8}
    assert sft_note(preferred) == " (SFT alone: 5/8 (62%))"
    assert sft_note(result("judge", 0, 7)) == ""
    assert task_stages() == ("teach", "train", "merge", "convert", "evaluate")
    assert task_stages("merged", preference=True) == (
        "teach",
        "train",
        "prefer_pairs",
        "prefer",
        "merge",
        "convert",
        "evaluate",
    )
    assert "benchmark_prefer" in task_files("judge", preference=True) and "benchmark_prefer" not in task_files("judge")


@pytest.mark.parametrize(
    ("deploy", "preference", "arms"),
    [
        ("merged", False, ("base", "tuned")),
        ("adapter", False, ("base", "tuned_adapter")),
        ("both", False, ("base", "tuned", "tuned_adapter")),
        ("merged", True, ("base", "tuned", "sft")),
        ("adapter", True, ("base", "tuned_adapter", "sft")),
        ("both", True, ("base", "tuned", "tuned_adapter", "sft")),
    ],
)
def test_the_evaluation_arms_follow_the_deployment_and_the_prefer_stage(deploy, preference, arms):
    assert evaluation_arms(deploy, preference) == arms
