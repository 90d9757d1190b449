"""benchmarks/build_side_by_side.py's own logic: the changes that make each build, the config each
build validates, and the stage sums it reads. Its builds are whole pipelines, benchmarks, not CI."""

import sys

import pytest
from conftest import ROOT, default_config

from vault_distill.config import ConfigError

sys.path.insert(0, str(ROOT / "benchmarks"))
from build_side_by_side import changed, prepare, stage_seconds

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_changes_set_nested_keys_with_yaml_values_and_leave_the_shipped_config_alone():
    shipped = default_config()
    changes = ["teacher.reject_defects=[]", "training.neftune_alpha=null", "tasks.reflector.decoding={}"]
    baseline = changed(shipped, changes)
    assert baseline["teacher"]["reject_defects"] == []
    assert baseline["training"]["neftune_alpha"] is None
    assert baseline["tasks"]["reflector"]["decoding"] == {}
    assert shipped["teacher"]["reject_defects"] == ["looping_string"]
    assert shipped["tasks"]["reflector"]["decoding"] == {"repeat_penalty": 1.05}


def test_a_change_under_a_missing_section_names_it():
    with pytest.raises(SystemExit, match=r"no section 'tasks\.nosuchtask'"):
        changed(default_config(), ["tasks.nosuchtask.examples=3"])


def test_each_build_gets_a_valid_config_with_its_own_caches(tmp_path):
    prepare(tmp_path / "baseline", changed(default_config(), ["training.neftune_alpha=null"]))
    written = (tmp_path / "baseline" / "config" / "config.yaml").read_text(encoding="utf-8")
    assert "neftune_alpha: null" in written
    assert f"vault: {ROOT / 'resources' / 'vault'}" in written
    assert "cache_dir: cache/teacher" in written  # relative: the build's own, empty
    with pytest.raises(SystemExit, match="exists"):
        prepare(tmp_path / "baseline", default_config())


def test_an_invalid_change_is_refused_by_the_key_before_any_build(tmp_path):
    with pytest.raises(ConfigError, match="neftune_alpha"):
        prepare(tmp_path / "bad", changed(default_config(), ["training.neftune_alpha=loud"]))


def test_stage_seconds_sum_each_rule_over_tasks(tmp_path):
    rows = {"base.tsv": "12.5", "judge/train.tsv": "100.0", "reflector/train.tsv": "50.5", "judge/teach.tsv": "NA"}
    for name, seconds in rows.items():
        path = tmp_path / "benchmarks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(HEADER + f"{seconds}\t0:00:01\t100\t1\t1\t1\t0\t0\t1\t1\n", encoding="utf-8")
    assert stage_seconds(tmp_path) == {"base": 12.5, "teach": 0.0, "train": 150.5}
