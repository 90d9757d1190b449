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
    assert not QUANTIZED_TENSOR.search("model.layers.0.self_attn.q_proj.weight")
