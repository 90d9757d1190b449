"""Every recipe under config/examples/ is a config a user copies as it is: laid over the shipped
config as `--configfile` does, it validates against the schema, and Snakemake plans a build of
all five tasks from it (`snakemake -n`). The README shows each one."""

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, absolute_resources, default_config, make_workdir, snakemake
from snakemake.utils import update_config

from vault_distill.config import load_config

EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))

# The obsidian recipe's folders, filled from the sample vault's (sample folder -> recipe folder).
OBSIDIAN_LAYOUT = {"topics": "Areas", "goals": "Projects", "tech": "Resources/Tech", "daily": "Journal/Daily"}


def overlaid(example: Path) -> dict:
    """The shipped config with the example laid over it, key by key, as Snakemake does."""
    config = default_config()
    update_config(config, yaml.safe_load(example.read_text(encoding="utf-8")))
    return config


def test_there_is_a_recipe_for_each_setup_the_readme_promises():
    names = {path.stem for path in EXAMPLES}
    assert names == {
        "obsidian",
        "teacher-openai",
        "teacher-anthropic",
        "teacher-claude-cli",
        "teacher-prompts",
        "student-gpu",
        "holdout",
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in names if f"config/examples/{name}.yaml" not in readme]
    assert not missing, f"the README shows no {missing}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_recipe_validates_against_the_schema(example, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(overlaid(example)), encoding="utf-8")
    load_config(path)  # raises ConfigError, naming the key


def test_a_recipe_key_the_schema_does_not_know_is_refused(tmp_path):
    config = overlaid(ROOT / "config" / "examples" / "teacher-openai.yaml")
    config["teacher"]["base_uri"] = "http://localhost:11434/v1"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(Exception, match=r"teacher\.base_uri"):
        load_config(path)


def obsidian_vault(root: Path) -> Path:
    """The sample vault's notes, in the folders the obsidian recipe names."""
    for source, target in OBSIDIAN_LAYOUT.items():
        shutil.copytree(ROOT / "resources" / "vault" / source, root / target)
    return root


@pytest.mark.slow  # starts Snakemake
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_recipe_dry_runs_all_five_tasks(example, tmp_path, tiny_model_dir):
    """Nothing here reaches a hub or a teacher, so two keys are pointed at what this machine has:
    the obsidian recipe's vault at the sample notes laid out as it expects, and the GPU recipe's
    hub id at the tiny local model (a dry run reads the student's tokenizer)."""
    workdir = make_workdir(tmp_path, absolute_resources(default_config()))
    overrides = []
    if example.stem == "obsidian":
        overrides.append(f"vault={obsidian_vault(tmp_path / 'Obsidian')}")
    if example.stem == "student-gpu":
        overrides.append(f"base_model={tiny_model_dir}")
    target = "all"
    if example.stem in ("holdout", "teacher-prompts"):  # the files it names, from the workdir
        shipped = {"holdout": "vault_holdout", "teacher-prompts": "prompts"}[example.stem]
        (workdir / "resources").mkdir()
        (workdir / "resources" / shipped).symlink_to(ROOT / "resources" / shipped)
        target = "quality_holdout" if example.stem == "holdout" else target
    # As the README runs it: the Snakefile loads config/config.yaml, the recipe is laid over it.
    # The target first: --configfile and --config take every word after them.
    args = ["-n", target, "--configfile", str(example)]
    done = snakemake(workdir, *args, *(["--config", *overrides] if overrides else []))
    plan = done.stdout
    for task in ("judge", "planner", "seeder", "analyst", "reflector"):
        assert f"wildcards: task={task}" in plan, f"{example.name}: no job planned for {task}"
    assert "extract" in plan and "teach" in plan and "convert" in plan
    if target == "quality_holdout":
        assert "quality_holdout_extract" in plan and "quality_holdout_tuned" in plan
