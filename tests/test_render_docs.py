"""benchmarks/render_docs.py: every figure the README and docs/quality.md show is written from
benchmarks/results/, and a figure that disagrees with its results file fails here."""

import copy
import json
import re

import pytest
from conftest import ROOT, load_benchmark

render_docs = load_benchmark("render_docs")


def build_record() -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / "default_build.json").read_text(encoding="utf-8"))


def test_committed_docs_match_their_results_files():
    assert render_docs.render_all(check=True) == []


def test_every_results_file_shown_names_its_date_commit_runner_and_matmul_figure():
    for name in ("default_build.json", "test_suite.json", "holdout.json", "sweep.json"):
        record = json.loads((ROOT / "benchmarks" / "results" / name).read_text(encoding="utf-8"))
        for part in [record, *record.get("runs", [])]:
            assert {"date", "commit", "runner", "cpus", "bf16_matmul_gflops_2048"} <= set(part), name
            assert render_docs.provenance(part).count(part["commit"]) == 1


def test_a_changed_figure_changes_the_rendered_block():
    record = build_record()
    changed = copy.deepcopy(record)
    changed["quality"]["figures"]["tasks"]["judge"]["tuned"]["compliant"] -= 1
    assert render_docs.quality_block(changed) != render_docs.quality_block(record)
    total, n = render_docs.compliance(changed["quality"]["figures"], "tuned")
    assert f"**{total} of {n}**" in render_docs.quality_block(changed)[0]


def test_a_hand_edit_inside_a_block_is_found_stale(tmp_path):
    text = "intro\n<!-- figures:quality (generated) -->\nold figure\n<!-- /figures:quality -->\noutro\n"
    body = ["new figure"]
    new = render_docs.rendered(text, "quality", body, tmp_path / "README.md")
    assert new == "intro\n<!-- figures:quality (generated) -->\nnew figure\n<!-- /figures:quality -->\noutro\n"
    assert render_docs.rendered(new, "quality", body, tmp_path / "README.md") == new


def test_a_missing_marker_is_an_error_naming_the_file_and_block(tmp_path):
    with pytest.raises(SystemExit, match=r"README.md: needs one '<!-- figures:quality"):
        render_docs.rendered("no markers here\n", "quality", ["x"], tmp_path / "README.md")


def test_the_readme_stays_a_users_guide():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert not re.search(r"issue [0-9]", readme), "the README speaks of the product, not its tracker"
    assert readme.startswith("# vault-distill\n\n```bash\nmake all")


def test_gold_totals_add_every_field_of_every_task_and_name_when_they_were_scored():
    record = build_record()
    figures = record["quality"]["figures"]
    fields = render_docs.gold_fields(figures)
    assert fields and all(task != "judge" for task, _ in fields)
    right = sum(figures["tasks"][task]["tuned_grammar"]["gold"][field]["correct"] for task, field in fields)
    n = sum(figures["tasks"][task]["teacher_gold"][field]["n"] for task, field in fields)
    assert render_docs.gold_total(figures, "tuned_grammar") == f"{right} of {n}"
    changed = copy.deepcopy(record)
    task, field = fields[0]
    changed["quality"]["figures"]["tasks"][task]["teacher_gold"][field]["correct"] += 1
    assert render_docs.quality_block(changed)[-1] != render_docs.quality_block(record)[-1]
    scored_at = f"scored at commit {record['quality']['rescored']['commit']}"
    assert any(line.startswith("Gold") and scored_at in line for line in render_docs.quality_table_block(record))


def test_the_holdout_table_puts_each_task_s_two_vaults_side_by_side():
    record = json.loads((ROOT / "benchmarks" / "results" / "holdout.json").read_text(encoding="utf-8"))
    block = render_docs.holdout_block(record)
    rows = [line for line in block if line.startswith("| ") and not line.startswith("| task")]
    assert [row.split(" | ")[:2] for row in rows] == [
        [f"| {task}", vault] for task in record["sample"]["tasks"] for vault in ("sample", "holdout")
    ]
    changed = copy.deepcopy(record)
    changed["holdout"]["tasks"]["seeder"]["tuned"]["compliant"] -= 1
    tuned, n = render_docs.compliance(changed["holdout"], "tuned")
    assert f"holdout {tuned} of {n}" in render_docs.holdout_block(changed)[-1]


def test_the_sweep_block_has_a_row_per_task_and_setting_and_a_line_per_run():
    sweep = json.loads((ROOT / "benchmarks" / "results" / "sweep.json").read_text(encoding="utf-8"))
    block = render_docs.sweep_block(sweep)
    rows = [line for line in block if line.startswith("| ") and not line.startswith("| task")]
    assert len(rows) == sum(len(result["summary"]) for result in sweep["tasks"].values())
    built = sum(not v["build_model"] for result in sweep["tasks"].values() for v in result["variants"])
    assert f"{built} variants trained" in block[0] and f"in {len(sweep['runs'])} runs" in block[0]
    run_lines = [line for line in block if line.startswith("- ")]
    assert all(run["commit"] in line for run, line in zip(sweep["runs"], run_lines, strict=True))
    changed = copy.deepcopy(sweep)
    changed["tasks"]["judge"]["summary"][0]["compliant"]["mean"] -= 1
    assert render_docs.sweep_block(changed) != block


def test_a_run_measured_beside_a_default_build_gives_its_cost_against_it():
    run = {
        "date": "2026-12-08",
        "runner": "AMD EPYC, Zen 4",
        "cpus": 2,
        "commit": "abc1234",
        "bf16_matmul_gflops_2048": 400.0,
        "grid": {"lora_r": [4, 64]},
        "seeds": [1],
        "variant_seconds": {"sweep_train": 2000.0, "sweep_answers": 1000.0},
        "trained": 10,
    }
    assert render_docs.sweep_run_line(run).endswith("10 variants trained (50 min 0 s of jobs).")
    beside = {"date": "2026-12-08", "commit": "abc1234", "wall_s": 1500.0, "jobs": 51}
    line = render_docs.sweep_run_line({**run, "beside_build": beside})
    assert "5 min 0 s a variant: 0.20x the default build's 25 min 0 s measured beside it at abc1234" in line
