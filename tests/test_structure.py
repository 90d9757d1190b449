"""The codebase's own conventions, checked so that they hold as it grows: one name per stage
(rule, rules file, entry script, log, benchmark), a test file beside every package module, and
short functions."""

import ast
import re

import pytest
from conftest import ROOT

PACKAGE = ROOT / "workflow" / "scripts" / "vault_distill"
RULES = ROOT / "workflow" / "rules"
# Target rules only name files; they run nothing, so they have no log or script.
TARGETS_FILE = "targets.smk"
# Entry scripts that serve more than one rule of a stage: the answer generation of both quality
# arms, and the teacher, which the quality stage asks about held-out inputs too.
SHARED_SCRIPTS = {
    "quality_base": "quality_answers",
    "quality_tuned": "quality_answers",
    "quality_tuned_adapter": "quality_answers",
    "quality_sft": "quality_answers",
    "quality_teach": "teach",
    "quality_holdout_extract": "extract",
    "quality_holdout_heldout": "quality_heldout",
    "quality_holdout": "quality",
    "quality_holdout_teach": "teach",
    "quality_holdout_gold": "quality_gold",
    "quality_holdout_base": "quality_answers",
    "quality_holdout_tuned": "quality_answers",
    "sweep_train": "train",
    "sweep_merge": "merge",
    "sweep_convert": "convert",
    "sweep_answers": "quality_answers",
}
MAX_FUNCTION_LINES = 60


# A rule, or one made from another by `use rule PARENT as NAME with:` (its own sections first).
RULE_START = re.compile(r"^(?:rule (\w+):|use rule (\w+) as (\w+) with:)", re.M)


def rules():
    """(rules file stem, rule name, rule body) for every rule that runs a job. A rule made with
    `use rule` gets its own sections, then its parent's, which it keeps where it sets none."""
    found = []
    for path in sorted(RULES.glob("*.smk")):
        if path.name in (TARGETS_FILE, "common.smk"):
            continue
        text = path.read_text(encoding="utf-8")
        starts = list(RULE_START.finditer(text))
        for index, match in enumerate(starts):
            end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
            found.append((path.stem, match.group(1) or match.group(3), text[match.start() : end], match.group(2)))
    # A parent may live in another rules file (sweep.smk reuses train, merge, convert, quality_base).
    own = {name: body for _, name, body, _ in found}

    def resolved(name, parent):
        return own[name] if parent is None else own[name] + "\n" + resolved(parent, parents[parent])

    parents = {name: parent for _, name, _, parent in found}
    return [(stem, name, resolved(name, parent)) for stem, name, _, parent in found]


@pytest.mark.parametrize(("stem", "name", "body"), rules(), ids=[rule[1] for rule in rules()])
def test_each_stage_goes_by_one_name(stem, name, body):
    assert name == stem or name.startswith(stem + "_"), f"rule {name} lives in {stem}.smk"
    log = re.search(r'log:\s*\n\s*"([^"]+)"', body)
    assert log, f"rule {name} has no log"
    assert log.group(1).endswith(f"/{name}.log"), log.group(1)
    benchmark = re.search(r'benchmark:\s*\n\s*"([^"]+)"', body)
    if benchmark:
        assert benchmark.group(1).endswith(f"/{name}.tsv"), benchmark.group(1)
    script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', body)
    assert script, f"rule {name} runs no entry script"
    assert script.group(1) == SHARED_SCRIPTS.get(name, name), f"rule {name} runs {script.group(1)}.py"
    assert (ROOT / "workflow" / "scripts" / f"{script.group(1)}.py").is_file()


def test_heavy_rules_declare_benchmark_threads_and_resources():
    for _, name, body in rules():
        if "benchmark:" in body:
            assert "threads:" in body and "resources:" in body, name


def test_every_package_module_has_a_test_file():
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    missing = [module for module in modules if not (ROOT / "tests" / f"test_{module}.py").is_file()]
    assert not missing, f"modules without tests/test_<module>.py: {missing}"


def test_no_package_function_is_longer_than_the_limit():
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long, long
