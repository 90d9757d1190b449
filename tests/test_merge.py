"""Stage merge: a LoRA adapter folded into the bf16 base gives plain HF weights, W + (alpha/r) B A,
and no quantized or adapter tensors."""

import torch

from vault_distill.merge import QUANTIZED_TENSOR, merge_adapter


def test_merge_folds_the_lora_delta_into_the_bf16_weights(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    reference = base.model.layers[0].self_attn.q_proj.weight.detach().float().clone()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, lora)
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight).float() * (8 / 4)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)

    info = merge_adapter(tiny_model_dir, adapter, tmp_path / "merged")
    assert info["dtype"] == "torch.bfloat16"
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "merged"), dtype=torch.bfloat16)
    assert not [name for name in merged.state_dict() if QUANTIZED_TENSOR.search(name)]
    got = merged.model.layers[0].self_attn.q_proj.weight.float()
    torch.testing.assert_close(got, (reference + delta).to(torch.bfloat16).float(), rtol=0, atol=1e-2)
    assert (tmp_path / "merged" / "tokenizer.json").is_file()


def test_quantized_tensor_names_are_recognised():
    assert QUANTIZED_TENSOR.search("model.layers.0.self_attn.q_proj.W_q")
    assert QUANTIZED_TENSOR.search("model.layers.0.mlp.up_proj.lora_A.weight")
    for bnb in ("absmax", "quant_map", "nested_absmax", "nested_quant_map", "quant_state.bitsandbytes__nf4"):
        assert QUANTIZED_TENSOR.search(f"model.layers.0.self_attn.q_proj.weight.{bnb}")
    assert not QUANTIZED_TENSOR.search("model.layers.0.self_attn.q_proj.weight")
    assert not QUANTIZED_TENSOR.search("model.layers.0.input_layernorm.weight")


def test_an_adapter_trained_on_the_nf4_base_merges_into_bf16_with_no_bitsandbytes_tensor(tiny_model_dir, tmp_path):
    """quantization.method nf4, for real on the CPU: bitsandbytes quantizes and saves the base, TRL
    trains a LoRA adapter on it with bitsandbytes' 8-bit AdamW, and the merge into the bf16 base
    gives plain weights only (no absmax, quant_map or quant_state tensor reaches the converter)."""
    from conftest import tiny_sft_rows, tiny_training_settings
    from safetensors import safe_open

    from vault_distill.quantize import quantize_base
    from vault_distill.runtime import write_jsonl
    from vault_distill.train import train_adapter

    quant = tmp_path / "nf4"
    quantize_base(tiny_model_dir, quant, {"method": "nf4", "double_quant": True}, "cpu", torch.bfloat16)
    settings = tiny_training_settings(max_steps=3, optimizer="adamw_8bit")
    rows = tiny_sft_rows(4)
    write_jsonl(tmp_path / "train.jsonl", rows)
    result = train_adapter(
        rows,
        rows[:1],
        quant,
        tiny_model_dir,
        tmp_path / "adapter",
        settings,
        tmp_path / "ckpt",
        100,
        tmp_path / "train.jsonl",
    )
    metrics = result.metrics
    assert metrics["steps"] == 3 and metrics["quantization"]["method"] == "nf4"
    assert metrics["optimizer"] == "adamw_8bit" and metrics["optimizer_fallback"] is None
    assert metrics["final_train_loss"] > 0 and metrics["eval_loss"] > 0

    merge_adapter(tiny_model_dir, tmp_path / "adapter", tmp_path / "merged")
    with safe_open(str(tmp_path / "merged" / "model.safetensors"), "pt") as merged:
        names = set(merged.keys())
        q_proj = merged.get_tensor("model.layers.0.self_attn.q_proj.weight")
    with safe_open(str(tiny_model_dir / "model.safetensors"), "pt") as base:
        assert names == set(base.keys())  # the converter sees the base's own tensor names
        original = base.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert not [name for name in names if QUANTIZED_TENSOR.search(name)]
    assert q_proj.dtype == torch.bfloat16 and q_proj.shape == original.shape
    assert not torch.equal(q_proj, original)  # the trained delta is in it
