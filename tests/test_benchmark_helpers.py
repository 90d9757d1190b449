"""The small pure parts of the benchmarks that write results files: the runner kind every figure
names, the job and test counts read from Snakemake's and pytest's output, and what default_build
keeps of quality.json."""

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
    assert set(kept) == set(default_build.ARM_FIGURES) and kept["compliant"] == 31


def test_passed_count_reads_pytests_summary():
    assert suite_time.passed_count("...\n== 731 passed, 2 skipped in 1672.10s ==\n") == 731
    with pytest.raises(SystemExit):
        suite_time.passed_count("no summary")
