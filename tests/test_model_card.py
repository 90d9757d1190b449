"""MODEL_CARD.md: HF hub metadata that parses, the base's own license, and figures from the task's files."""

from __future__ import annotations

import json

import yaml

from vault_distill.model_card import UNKNOWN_LICENSE, base_license, base_model_id, write_model_card

FILES = {
    "train_metrics": {
        "examples": 18,
        "val_examples": 6,
        "steps": 20,
        "device": "cpu",
        "dtype": "bfloat16",
        "wall_time_s": 41.5,
        "final_train_loss": 0.4321,
        "eval_loss": 0.9876,
    },
    "teacher_stats": {"inputs": 65, "asked": 24, "accepted": 23},
    "extract_stats": {"inputs": 65},
    "evaluation": {
        "compliance_rule": "compliant: the answer validates against the schema",
        "models": {
            "base": {"answers": 6, "compliant": 0, "compliance": 0.0},
            "tuned": {"answers": 6, "compliant": 5, "compliance": 5 / 6},
        },
    },
    "format": {"type": "object", "required": ["score"], "properties": {"score": {"type": "integer"}}},
    "gguf_check": {"agreed_tokens": 7, "compared_tokens": 8, "tokenization_equal": True},
}
SETTINGS = {
    "task": "judge",
    "base_model": "bundled:smollm2",
    "vault": "resources/vault",
    "select": {"folders": ["topics"]},
    "teacher": {"backend": "llama_cpp", "model": "bundled:smollm2", "temperature": 0.0},
    "training": {"lora_r": 16, "epochs": 4},
    "quantization": {"method": "hqq", "nbits": 4},
    "meaningful_examples": 20,
    "model_name": "vault-judge",
    "adapter": False,
}


def written_card(tmp_path, results: dict | None = None, **changes) -> tuple[dict, str]:
    """The card of FILES (with `results` over them) and SETTINGS (with `changes`): metadata, body."""
    files = {}
    for key, value in (FILES | (results or {})).items():
        files[key] = tmp_path / f"{key}.json"
        files[key].write_text(json.dumps(value), encoding="utf-8")
    files["modelfile"] = tmp_path / "Modelfile"
    card = tmp_path / "MODEL_CARD.md"
    write_model_card(card, files, {**SETTINGS, **changes})
    text = card.read_text(encoding="utf-8")
    front, body = text.removeprefix("---\n").split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_the_card_s_metadata_is_the_hub_s_with_the_base_s_license(tmp_path):
    metadata, body = written_card(tmp_path)
    assert metadata["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert metadata["license"] == "apache-2.0"  # general.license of the bundled GGUF
    assert metadata["library_name"] == "gguf" and metadata["pipeline_tag"] == "text-generation"
    assert {"vault-distill", "judge", "hqq", "qlora"} <= set(metadata["tags"])
    assert body.lstrip().startswith("# vault-judge")


def test_the_card_gives_provenance_settings_evaluation_usage_and_limits(tmp_path):
    _, body = written_card(tmp_path)
    for heading in ("## Training data", "## Training procedure", "## Evaluation", "## How to use", "## Limitations"):
        assert heading in body
    assert "| inputs extracted | 65 |" in body and "| teacher answers accepted | 23 of 24 asked |" in body
    assert '| task selector | {"folders": ["topics"]} |' in body
    assert "| lora_r | 16 |" in body and "| quantization.method | hqq |" in body
    assert "20 steps on cpu in bfloat16" in body and "final train loss 0.4321, eval loss 0.9876" in body
    assert "| tuned | 5/6 compliant (83%) |" in body and "| base | 0/6 compliant (0%) |" in body
    assert "agree on 7 of 8" in body
    request = json.loads(body.split("```json\n", 1)[1].split("```", 1)[0])
    assert request["model"] == "vault-judge" and request["format"] == FILES["format"]
    assert "ollama create vault-judge -f Modelfile" in body
    assert "18 training examples: too few" in body
    assert "| teacher prompt | none: the task's system prompt alone |" in body and "teacher samples" not in body


def test_the_card_names_the_teachers_own_prompt_and_its_samples(tmp_path):
    stats = {**FILES["teacher_stats"], "samples": 3}
    _, body = written_card(tmp_path, {"teacher_stats": stats}, teacher_prompt="resources/prompts/teacher/judge.md")
    assert "| teacher prompt | resources/prompts/teacher/judge.md |" in body
    assert "| teacher samples | 3 per input, the most agreed-on kept |" in body


def test_a_local_base_s_license_comes_from_its_model_card_else_unknown(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert base_license(str(folder)) == UNKNOWN_LICENSE
    (folder / "README.md").write_text("---\r\nlicense: gemma\r\ntags: [x]\r\n---\r\n# My model\r\n", encoding="utf-8")
    assert base_license(str(folder)) == "gemma"
    assert (
        base_model_id(str(folder)) is None and base_model_id("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    )
    assert base_license("Qwen/Qwen2.5-7B-Instruct") == UNKNOWN_LICENSE  # not in the hub cache here
    metadata, body = written_card(tmp_path, base_model=str(folder))
    assert "base_model" not in metadata and metadata["license"] == "gemma"
    assert str(folder) in body
