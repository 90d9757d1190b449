"""vault_distill.layout: the one place that decides what gguf.deploy and preference.enabled put in
a build, and where each result lives."""

import pytest

from vault_distill import layout


@pytest.mark.parametrize(
    ("deploy", "merged", "adapter"), [("merged", True, False), ("adapter", False, True), ("both", True, True)]
)
def test_each_deployment_ships_what_its_name_says(deploy, merged, adapter):
    assert (layout.ships_merged(deploy), layout.ships_adapter(deploy)) == (merged, adapter)


def test_an_unknown_deployment_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"gguf.deploy: 'lora' is not one of merged, adapter, both"):
        layout.ships_merged("lora")


@pytest.mark.parametrize(
    ("deploy", "preference", "stages"),
    [
        ("merged", False, ("teach", "train", "merge", "convert", "evaluate")),
        ("adapter", False, ("teach", "train", "convert_adapter", "evaluate")),
        ("both", True, layout.TASK_STAGES),
    ],
)
def test_task_stages_follow_the_deployment_and_the_prefer_stage(deploy, preference, stages):
    assert layout.task_stages(deploy, preference) == stages


def test_evaluation_and_quality_arms_agree_on_the_deployed_models():
    for deploy in layout.DEPLOYS:
        for preference in (False, True):
            evaluated = set(layout.evaluation_arms(deploy, preference))
            scored = set(layout.quality_arms(deploy, preference))
            # The quality benchmark adds the grammar arms and always scores the merged model.
            assert evaluated - {"tuned"} <= scored
            assert scored - evaluated <= {"base_grammar", "tuned", "tuned_grammar"}
    assert layout.evaluation_arms("adapter", True) == ("base", "tuned_adapter", "sft")


def test_task_outputs_are_the_deployed_files_and_the_evaluation():
    assert layout.task_outputs("judge", "merged", "Q8_0") == [
        "results/judge/judge.Q8_0.gguf",
        "results/judge/Modelfile",
        "results/judge/format.json",
        "results/judge/eval.json",
        "results/judge/eval_samples.md",
        "results/judge/MODEL_CARD.md",
    ]
    adapter = layout.task_outputs("judge", "adapter", "Q8_0", results="out")
    assert adapter[:2] == ["out/judge/judge.lora.F16.gguf", "out/judge/adapter.Modelfile"]
    assert len(layout.task_outputs("judge", "both", "Q8_0")) == 8


def test_every_arm_has_its_gguf_and_its_answer_file():
    for arm in layout.EVALUATION_ARMS:
        assert layout.evaluated_gguf(arm, "judge", "Q8_0").endswith(".gguf")
    files = layout.quality_files("judge")
    assert all(files[arm] == f"results/quality/judge/answers/{arm}.json" for arm in layout.ALL_QUALITY_ARMS)
    assert layout.sft_lora_gguf_path("judge") == "results/judge/preference/sft.lora.F16.gguf"
