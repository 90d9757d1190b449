"""The small pure parts of the benchmarks that write results files: the runner kind every figure
names, the job and test counts read from Snakemake's and pytest's output, and what default_build
keeps of quality.json."""

import json

import pytest
from conftest import load_benchmark

machine, default_build, suite_time = (load_benchmark(name) for name in ("machine", "default_build", "suite_time"))


@pytest.mark.parametrize(
    ("flags", "model", "kind"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, "AMD EPYC", "AMD EPYC, Zen 4 (AVX512, AVX512_BF16)"),
        ({"avx2"}, "AMD EPYC 7B13", "AMD EPYC 7B13, Zen 3 (AVX2, no AVX512, no native bf16)"),
        ({"avx2", "avx512f", "amx_tile"}, "Intel(R) Xeon(R) Platinum", "Intel(R) Xeon(R) Platinum (AVX512, AMX)"),
        ({"avx2"}, "Some CPU", "Some CPU (AVX2)"),
    ],
)
def test_runner_kind_names_what_sets_runners_apart(flags, model, kind):
    assert machine.runner_kind(flags, model) == kind


def test_jobs_done_reads_snakemakes_last_count(tmp_path):
    log = tmp_path / "all.log"
    log.write_text("1 of 51 steps (2%) done\n51 of 51 steps (100%) done\n", encoding="utf-8")
    assert default_build.jobs_done(log) == 51
    log.write_text("12 of 51 steps (24%) done\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="did the build finish"):
        default_build.jobs_done(log)


def test_quality_figures_keep_what_the_docs_show_per_task_and_arm():
    arm = {"n": 40, "compliant": 31, "ci95": [0.63, 0.88], "field_agreement": 0.4, "valid_but_wrong": 3}
    arm |= {"ran_to_max_tokens": 1, "fields": {"score": {}}, "outcomes": {"compliant": 31}}
    quality = {"arms": ["tuned"], "teacher_is_base": True, "tasks": {"judge": {"tuned": arm, "inputs": {}}}}
    kept = default_build.quality_figures(quality)["tasks"]["judge"]["tuned"]
    assert set(kept) == set(default_build.ARM_FIGURES) - {"gold"} and kept["compliant"] == 31  # no gold: none here


def test_passed_count_reads_pytests_summary():
    assert suite_time.passed_count("...\n== 731 passed, 2 skipped in 1672.10s ==\n") == 731
    with pytest.raises(SystemExit):
        suite_time.passed_count("no summary")


def test_the_scale_vault_has_duplicate_names_dangling_links_windows_notes_and_daily_notes(tmp_path):
    from vault_distill.extract import extract_task_inputs
    from vault_distill.vault import LinkIndex, read_note, wiki_links

    vault_scale = load_benchmark("vault_scale")
    paths = vault_scale.generate_vault(tmp_path, 400, seed=1)
    stems = [path.rsplit("/", 1)[1] for path in paths]
    assert len(paths) == len(set(paths)) and len(set(stems)) < len(stems)  # duplicate names
    assert sum(path.startswith("daily/") for path in paths) == 40
    raw = [(tmp_path / path).read_bytes() for path in paths]
    assert any(data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data for data in raw)
    index = LinkIndex(paths)
    links = [(path, link) for path in paths for link in wiki_links(read_note(tmp_path, path).body)]
    assert any(index.resolve(link, path).target is None for path, link in links)
    assert any(index.resolve(link, path).ambiguous for path, link in links)
    seeder = extract_task_inputs(tmp_path, "H", {"folders": ["topics", "tech"], "group": "linked"})
    assert seeder.stats()["ambiguous_links"] > 0 and seeder.stats()["repaired"]["line endings"] > 0


def test_quality_figures_keep_each_arms_gold_and_the_teachers():
    arm = {
        "n": 2,
        "compliant": 1,
        "ci95": [0.1, 0.9],
        "field_agreement": 0.5,
        "valid_but_wrong": 0,
        "ran_to_max_tokens": 0,
    }
    gold = {"goal": {"n": 2, "correct": 1, "rate": 0.5, "ci95": [0.1, 0.9]}}
    quality = {
        "arms": ["tuned"],
        "teacher_is_base": True,
        "tasks": {
            "planner": {"tuned": {**arm, "gold": gold, "outcomes": {}}, "teacher_gold": gold},
            "judge": {"tuned": {**arm, "outcomes": {}}},
        },
    }
    figures = default_build.quality_figures(quality)
    assert figures["tasks"]["planner"] == {"tuned": {**arm, "gold": gold}, "teacher_gold": gold}
    assert figures["tasks"]["judge"] == {"tuned": arm}


def test_the_holdout_benchmark_points_the_recipe_at_the_repositorys_vault(tmp_path):
    import yaml
    from conftest import ROOT

    holdout_quality = load_benchmark("holdout_quality")
    recipe = yaml.safe_load(holdout_quality.holdout_recipe(tmp_path).read_text(encoding="utf-8"))
    assert recipe["quality"]["holdout"]["vault"] == str(ROOT / "resources" / "vault_holdout")
    assert set(recipe["quality"]["holdout"]["select"]) == {"judge", "planner", "seeder", "analyst", "reflector"}


def test_the_teacher_prompt_benchmark_asks_the_extracts_text_of_each_gold_input(tmp_path):
    """The teacher is asked what the teach and quality_teach jobs asked (inputs.jsonl's text, by
    id), so the plain arm is the build's cache; held-out inputs without gold are left out."""
    from vault_distill.runtime import write_jsonl

    teacher_prompt = load_benchmark("teacher_prompt")
    quality = tmp_path / "results" / "quality" / "planner"
    quality.mkdir(parents=True)
    write_jsonl(quality / "heldout.jsonl", [{"id": "b", "messages": []}, {"id": "a", "messages": []}, {"id": "c"}])
    write_jsonl(quality / "gold.jsonl", [{"id": "a", "gold": {"goal": "A"}}, {"id": "b", "gold": {"goal": "B"}}])
    extracted = [{"id": key, "sources": [f"{key}.md"], "user": f"note {key}"} for key in "abc"]
    write_jsonl(tmp_path / "results" / "planner" / "inputs.jsonl", extracted)
    inputs, gold = teacher_prompt.heldout_inputs(tmp_path, "planner")
    assert [row["user"] for row in inputs] == ["note b", "note a"]
    assert gold == {"a": {"goal": "A"}, "b": {"goal": "B"}}


def test_an_answer_that_repeats_a_phrase_of_the_worked_example_is_a_copy():
    teacher_prompt = load_benchmark("teacher_prompt")
    example = teacher_prompt.worked_example("seeder")
    assert example["topic"] == "Coptic stitch binding"
    copied = {"topic": "Coptic Stitch Binding ", "questions": ["Why?", "How?"], "search_queries": ["raft"]}
    own = {"topic": "Raft consensus", "questions": ["Why?", "How?"], "search_queries": ["raft paper"]}
    assert teacher_prompt.copies({"a": copied, "b": own}, example) == 1
    # One word is no copy: an enum value or a language is as likely the answer itself.
    assert teacher_prompt.copies({"c": {"energy_trend": "rising"}}, {"energy_trend": "rising"}) == 0


def _sweep_run(commit: str, variants: dict[str, tuple[int, bool]], grid: dict, seeds: list[int]) -> dict:
    """A run record as sweep_quality.py saves it: planner's variants (pattern -> compliant, build model)."""
    scored = [
        {"variant": pattern, "build_model": own, "n": 40, "compliant": compliant, "ci95": [0, 1], "gold_rate": 0.5}
        for pattern, (compliant, own) in variants.items()
    ]
    return {
        "date": "2026-12-08",
        "runner": "AMD EPYC, Zen 4",
        "cpus": 2,
        "commit": commit,
        "bf16_matmul_gflops_2048": 400.0,
        "grid": grid,
        "seeds": seeds,
        "wall_s": 1.0,
        "jobs": 1,
        "variant_seconds": {"sweep_train": 100.0},
        "tasks": {"planner": {"summary": [], "variants": scored}},
    }


def test_sweep_runs_merge_into_one_grid_summarized_over_every_seed(tmp_path):
    sweep_quality = load_benchmark("sweep_quality")
    assert sweep_quality.pattern_settings("lora_r~16/seed~0") == {"lora_r": 16, "seed": 0}
    first = _sweep_run(
        "aaa", {"lora_r~16/seed~0": (39, True), "lora_r~64/seed~0": (37, False)}, {"lora_r": [16, 64]}, [0]
    )
    second = _sweep_run(
        "bbb", {"lora_r~16/seed~1": (36, False), "lora_r~4/seed~1": (30, False)}, {"lora_r": [4, 16]}, [1]
    )
    old = tmp_path / "old.json"
    old.write_text(json.dumps(first), encoding="utf-8")  # a file from before runs: one run
    new = tmp_path / "new.json"
    new.write_text(json.dumps(sweep_quality.merge_runs([second])), encoding="utf-8")
    merged = sweep_quality.merged_files(old, [new], beside=None)
    assert [run["commit"] for run in merged["runs"]] == ["aaa", "bbb"]
    assert [run["trained"] for run in merged["runs"]] == [1, 2]
    assert merged["grid"] == {"lora_r": [4, 16, 64]} and merged["seeds"] == [0, 1] and merged["commit"] == "bbb"
    summary = {group["settings"]["lora_r"]: group for group in merged["tasks"]["planner"]["summary"]}
    assert list(summary) == [4, 16, 64]  # numbers in number order
    assert summary[16]["seeds"] == [0, 1] and summary[16]["compliant"]["mean"] == 37.5
    assert (summary[16]["pooled"]["compliant"], summary[16]["pooled"]["n"]) == (75, 80)
    # Merged again onto itself plus nothing new: the same sweep, each variant keeping its run.
    again = tmp_path / "again.json"
    again.write_text(json.dumps(merged), encoding="utf-8")
    assert sweep_quality.merged_files(again, [], beside=None) == merged
    with pytest.raises(SystemExit, match="is --save itself"):
        sweep_quality.merged_files(again, [again], beside=None)


def test_a_later_run_that_scores_a_variant_again_replaces_the_earlier_score():
    sweep_quality = load_benchmark("sweep_quality")
    first = _sweep_run("aaa", {"lora_r~4/seed~0": (20, False)}, {"lora_r": [4]}, [0])
    second = _sweep_run("bbb", {"lora_r~4/seed~0": (22, False)}, {"lora_r": [4]}, [0])
    variants = sweep_quality.merge_runs([first, second])["tasks"]["planner"]["variants"]
    assert [(v["compliant"], v["run"]) for v in variants] == [(22, 1)]


def test_a_run_beside_a_default_build_keeps_that_builds_wall_time(tmp_path):
    sweep_quality = load_benchmark("sweep_quality")
    build = tmp_path / "default_build.json"
    build.write_text(json.dumps({"date": "d", "commit": "c", "all": {"wall_s": 1500.0, "jobs": 51}}), encoding="utf-8")
    assert sweep_quality.beside_build(build) == {"date": "d", "commit": "c", "wall_s": 1500.0, "jobs": 51}
