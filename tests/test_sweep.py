"""config `sweep`: the variants of a grid or a table, the keys it refuses, and each variant's scores
over seeds (the Snakemake side is a row of test_rebuild_contract.py)."""

from __future__ import annotations

import json

import pytest

from vault_distill.config import ConfigError
from vault_distill.sweep import (
    check_sweep,
    plot_sweep,
    render_sweep_markdown,
    score_variant,
    summarize,
    sweep_answers,
    sweep_variants,
    variant_answers,
)

TASKS = ["judge", "planner"]
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["goal"],
    "properties": {"goal": {"type": "string"}},
}


def sweep(**values) -> dict:
    return {"tasks": [], "grid": {}, "table": None, "seeds": [0], **values}


def test_a_grid_is_every_combination_once_per_seed():
    variants = sweep_variants(sweep(grid={"lora_r": [4, 16], "neftune_alpha": [None, 5]}, seeds=[0, 1]))
    assert len(variants) == 8
    assert variants[0] == {"lora_r": 4, "neftune_alpha": None, "seed": 0}
    assert variants[-1] == {"lora_r": 16, "neftune_alpha": 5, "seed": 1}


def test_a_table_is_its_rows_with_yaml_cells(tmp_path):
    table = tmp_path / "sweep.tsv"
    table.write_text("lora_r\tlearning_rate\tpacking\n4\t1.0e-3\ttrue\n64\t2e-4\tfalse\n", encoding="utf-8")
    variants = sweep_variants(sweep(table=str(table), seeds=[3]))
    assert variants == [
        {"lora_r": 4, "learning_rate": 0.001, "packing": True, "seed": 3},
        {"lora_r": 64, "learning_rate": 0.0002, "packing": False, "seed": 3},
    ]
    table.write_text("lora_r\tepochs\n4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'sweep.table': .* line 2 has 1 cells, not 2"):
        sweep_variants(sweep(table=str(table)))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"grid": {"max_length": [256]}}, r"'sweep.grid.max_length': cannot be swept; sweepable: epochs"),
        ({"grid": {"seed": [1, 2]}}, r"'sweep.grid.seed': is not swept \(see sweep.seeds\)"),
        ({"grid": {"lora_rank": [4]}}, r"'sweep.grid.lora_rank': cannot be swept"),
        ({"tasks": ["judge", "writer"]}, r"'sweep.tasks': 'writer' is not a configured task"),
    ],
)
def test_a_key_that_cannot_be_swept_is_named(values, message):
    with pytest.raises(ConfigError, match=message):
        check_sweep(sweep(**values), TASKS)


def test_grid_and_table_together_are_refused(tmp_path):
    table = tmp_path / "t.tsv"
    table.write_text("lora_r\n4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"give `grid` or `table`, not both"):
        check_sweep(sweep(grid={"lora_r": [4]}, table=str(table)), TASKS)
    check_sweep(sweep(table=str(table)), TASKS)


def heldout(n: int) -> list[dict]:
    return [
        {
            "id": f"i{i}",
            "messages": [{"role": "system", "content": "Plan."}, {"role": "user", "content": f"goal {i}"}],
            "reference": None,
            "source": "unseen",
        }
        for i in range(n)
    ]


def answers(texts: list[str]) -> list[dict]:
    return [
        {"id": f"i{i}", "text": text, "finish_reason": "stop", "tokens": 9, "seconds": 0.1}
        for i, text in enumerate(texts)
    ]


def test_a_variant_is_scored_for_format_and_gold_and_seeds_give_a_spread():
    gold = {f"i{i}": {"goal": f"Run a marathon {i}"} for i in range(4)}
    texts = [json.dumps({"goal": "Run a marathon 0"}), "not json", json.dumps({"goal": "bake bread"}), "{}"]
    score = score_variant("planner", answers(texts), heldout(4), {}, SCHEMA, gold)
    assert (score["n"], score["compliant"], score["gold_correct"], score["gold_n"]) == (4, 2, 1, 4)
    assert score["ci95"][0] < 0.5 < score["ci95"][1]
    other = score_variant("planner", answers([texts[0]] * 4), heldout(4), {}, SCHEMA, gold)
    summary = summarize(
        [
            {"variant": "lora_r~4/seed~0", "settings": {"lora_r": 4, "seed": 0}, "score": score},
            {"variant": "lora_r~4/seed~1", "settings": {"lora_r": 4, "seed": 1}, "score": other},
        ]
    )
    assert len(summary) == 1 and summary[0]["settings"] == {"lora_r": 4} and summary[0]["seeds"] == [0, 1]
    assert summary[0]["compliant"] == {"mean": 3.0, "sd": pytest.approx(1.4142, abs=1e-4), "min": 2, "max": 4}
    pooled = summary[0]["pooled"]
    assert (pooled["compliant"], pooled["n"]) == (6, 8) and pooled["ci95"][0] < 0.75 < pooled["ci95"][1]
    # "Run a marathon 0" is within the title rule (token F1 >= 0.5) of every "Run a marathon N".
    assert summary[0]["gold_rate"]["min"] == 0.25 and summary[0]["gold_rate"]["max"] == 1.0


def test_the_report_has_a_row_per_setting_and_a_plot(tmp_path):
    group = {
        "settings": {"lora_r": 16},
        "seeds": [0, 1, 2],
        "n": 40,
        "compliant": {"mean": 35.0, "sd": 1.0, "min": 34, "max": 36},
        "pooled": {"compliant": 105, "n": 120, "ci95": [0.8047, 0.9225]},
        "gold_rate": {"mean": 0.5, "sd": 0.1, "min": 0.4, "max": 0.6},
    }
    result = {"tasks": {"planner": {"variants": [], "summary": [group]}}}
    markdown = render_sweep_markdown(result)
    assert (
        "| planner | lora_r=16 | 3 | 35.0 (34.0–36.0) of 40 | 105 of 120 (0.80–0.92) | 50.0 (40.0–60.0) |" in markdown
    )
    plot_sweep(result, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_a_variant_with_the_tasks_own_settings_is_the_builds_own_model():
    own = {"lora_r": 16, "learning_rate": 0.001, "seed": 0}
    built = "results/quality/judge/answers/tuned.json"
    assert variant_answers("judge", "lora_r~16/seed~0", {"lora_r": 16, "seed": 0}, own) == built
    for settings in ({"lora_r": 16, "seed": 1}, {"lora_r": 4, "seed": 0}, {"lora_alpha": 8, "seed": 0}):
        pattern = "/".join(f"{key}~{value}" for key, value in settings.items())
        assert variant_answers("judge", pattern, settings, own) == sweep_answers("judge", pattern)
    # With the prefer stage on, the shipped model is SFT + DPO: nothing is the SFT variant.
    assert variant_answers("judge", "lora_r~16/seed~0", {"lora_r": 16, "seed": 0}, None) != built
