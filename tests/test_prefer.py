"""Stage prefer: the pair builder on hand-made answers, then the real thing on the tiny Llama: its
LoRA GGUF answering training inputs through llama.cpp, and TRL's DPOTrainer from a PEFT adapter
on the HQQ-quantized base."""

import json

import pytest
from conftest import ROOT

from vault_distill.prefer import (
    NO_PAIRS,
    PreferenceError,
    answer_training_inputs,
    end_of_turn,
    pairs_summary,
    preference_pairs,
    train_preference,
)

SCHEMA = json.loads((ROOT / "resources" / "schemas" / "judge.schema.json").read_text(encoding="utf-8"))
TEACHER = '{"score": 4, "verdict": "keep", "strengths": ["clear"], "gaps": ["no sources"]}'
DECODING = {
    "temperature": 0.0,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "repeat_last_n": 64,
    "seed": 0,
    "max_tokens": 12,
}


def train_row(row_id: str) -> dict:
    messages = [{"role": "system", "content": "Judge the note."}, {"role": "user", "content": f"# Note {row_id}"}]
    prompt = f"<|im_start|>system\nJudge the note.<|im_end|>\n<|im_start|>user\n# Note {row_id}<|im_end|>\n"
    return {
        "id": row_id,
        "prompt": prompt + "<|im_start|>assistant\n",
        "completion": TEACHER + "<|im_end|>",
        "prompt_messages": messages,
    }


def answer(row_id: str, text: str, finish_reason: str = "stop") -> dict:
    return {"id": row_id, "text": text, "finish_reason": finish_reason, "tokens": 10, "seconds": 0.1}


def test_only_non_compliant_answers_become_rejected_ones_and_the_teachers_is_chosen():
    rows = [train_row(name) for name in ("ok", "cut", "prose")]
    answers = [
        answer("ok", TEACHER),
        answer("cut", '{"score": 4, "verdict": "keep", "strengths": ["1.1.1.1', finish_reason="length"),
        answer("prose", "Sure! " + TEACHER),
    ]
    pairs = preference_pairs(rows, answers, SCHEMA)
    assert [pair["id"] for pair in pairs] == ["cut", "prose"]
    assert all(pair["chosen"] == TEACHER + "<|im_end|>" for pair in pairs)
    assert pairs[1]["rejected"] == "Sure! " + TEACHER + "<|im_end|>"
    assert pairs[0]["prompt"] == rows[1]["prompt"]
    assert pairs[0]["outcome"] == "ran to max_tokens" and "string never closed" in pairs[0]["patterns"]
    assert pairs_summary(rows, pairs) == {
        "training_inputs": 3,
        "failing": 2,
        "outcomes": {"ran to max_tokens": 1, "JSON inside prose": 1},
    }


def test_a_task_with_no_failures_yields_no_pairs_and_keeps_the_sft_adapter(tmp_path):
    rows = [train_row("a"), train_row("b")]
    assert preference_pairs(rows, [answer("a", TEACHER), answer("b", TEACHER)], SCHEMA) == []
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "adapter_config.json").write_text("{}", encoding="utf-8")
    metrics = train_preference([], tmp_path / "q", sft, tmp_path / "tok", tmp_path / "out", {}, {})
    assert metrics == {"pairs": 0, "trained": False, "note": NO_PAIRS}
    assert (tmp_path / "out" / "adapter_config.json").read_text(encoding="utf-8") == "{}"


def test_answers_for_other_inputs_are_refused():
    with pytest.raises(PreferenceError, match="not for the training inputs"):
        preference_pairs([train_row("a")], [answer("b", TEACHER)], SCHEMA)


@pytest.mark.parametrize(("suffix"), ["<|im_end|>", "<end_of_turn>\n", ""])
def test_the_end_of_turn_is_what_follows_the_teachers_json(suffix):
    assert end_of_turn(TEACHER + suffix) == suffix


@pytest.mark.slow
def test_dpo_from_the_sft_adapter_on_the_quantized_tiny_llama(tmp_path, tiny_model_dir, tiny_loras):
    """The whole stage, for real: llama.cpp answers with the LoRA GGUF (the random tiny model
    fails the format), the failures become pairs, and DPO moves the adapter it started from."""
    import torch
    from safetensors.torch import load_file

    from vault_distill.quantize import quantize_base

    rows = [train_row(name) for name in ("a", "b")]
    answers = answer_training_inputs(tiny_loras["base_gguf"], tiny_loras["loras"]["judge"], rows, DECODING, 256)
    assert [a["id"] for a in answers] == ["a", "b"] and all(a["tokens"] > 0 for a in answers)
    pairs = preference_pairs(rows, answers, SCHEMA)
    assert len(pairs) == 2  # a random model does not write the judge's JSON

    quantized = tmp_path / "hqq"
    quantize_base(tiny_model_dir, quantized, {"method": "hqq", "nbits": 4, "group_size": 64, "optimize": False},
                  "cpu", torch.bfloat16)  # fmt: skip
    out = tmp_path / "preferred"
    preference = {"epochs": 1, "batch_size": 2, "learning_rate": 1e-3, "beta": 0.1}
    settings = {"seed": 0, "device": "cpu", "dtype": "bfloat16"}
    sft = tiny_loras["adapters"]["judge"]
    metrics = train_preference(pairs, quantized, sft, tiny_model_dir, out, preference, settings)
    assert metrics["trained"] and metrics["pairs"] == 2 and metrics["steps"] == 1
    assert metrics["rewards_margins"] is not None and metrics["final_loss"] == pytest.approx(metrics["first_loss"])
    assert not (out / "ref").exists()  # TRL's frozen reference copy is not saved with the adapter
    before, after = load_file(sft / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before)
