"""Stage quantize: the base made 4-bit once, with HQQ (hqq's own format) or bitsandbytes NF4 (its
4-bit safetensors serialization), and loaded back as every training loads it."""

import json

import pytest
import torch

from vault_distill.quantize import (
    QUANT_SETTINGS_FILE,
    bits_per_weight,
    dequantize,
    keep_nf4_weights_trainable,
    load_quantized,
    method_settings,
    quantize_base,
    quantized_layers,
    weight_shape,
)

HQQ = {"method": "hqq", "nbits": 4, "group_size": 64, "optimize": False, "double_quant": True}
NF4 = {**HQQ, "method": "nf4"}
# Tensors only bitsandbytes' 4-bit serialization writes, beside each packed uint8 weight.
BNB_STATE = ("absmax", "quant_map", "nested_absmax", "nested_quant_map", "quant_state.bitsandbytes__nf4")


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.float()


def test_quantize_saves_a_4bit_model_that_loads_back_close_to_the_original(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "hqq"
    info = quantize_base(tiny_model_dir, out, HQQ, device="cpu", dtype=torch.bfloat16)
    assert info["quantized_layers"] == 2 * 7  # every attention and MLP projection of both layers
    saved = json.loads((out / QUANT_SETTINGS_FILE).read_text())
    assert (saved["method"], saved["nbits"]) == ("hqq", 4) and "double_quant" not in saved
    assert (out / "qmodel.pt").is_file()

    quantized = load_quantized(out, "cpu", torch.bfloat16)
    assert quantized.hqq_quantized  # so that PEFT does not upcast it to fp32
    assert sum(type(m).__name__ == "HQQLinear" for m in quantized.modules()) == 14
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    ids = torch.tensor([[1, 200, 3000, 42, 7]])
    got, want = logits(quantized, ids), logits(original, ids)
    # 4 bits per weight move the logits a little, never to another model.
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.95
    assert not torch.equal(got, want)


@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_saved_with_bitsandbytes_reloads_with_identical_logits(tiny_model_dir, tmp_path, double_quant):
    """The NF4 base is quantized once and saved; what every training loads back computes exactly
    what the freshly quantized model computes, and is close to the bf16 original."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    out = tmp_path / "nf4"
    info = quantize_base(tiny_model_dir, out, {**NF4, "double_quant": double_quant}, "cpu", torch.bfloat16)
    assert info["quantized_layers"] == 14
    assert json.loads((out / QUANT_SETTINGS_FILE).read_text())["double_quant"] is double_quant
    with safe_open(str(out / "model.safetensors"), "pt") as saved:
        names = [name for name in saved.keys() if ".layers.0.self_attn.q_proj." in name]  # noqa: SIM118
        packed = saved.get_tensor("model.layers.0.self_attn.q_proj.weight")
    state = BNB_STATE if double_quant else ("absmax", "quant_map", "quant_state.bitsandbytes__nf4")
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert set(names) == {q_proj, *(f"{q_proj}.{key}" for key in state)}
    assert packed.dtype == torch.uint8 and packed.numel() == 64 * 64 // 2  # two 4-bit codes a byte

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    fresh = AutoModelForCausalLM.from_pretrained(
        str(tiny_model_dir), quantization_config=config, dtype=torch.bfloat16, device_map={"": "cpu"}
    )
    keep_nf4_weights_trainable(fresh)  # the same matmul path as the reloaded model (see below)
    reloaded = load_quantized(out, "cpu", torch.bfloat16)
    assert reloaded.is_loaded_in_4bit and len(quantized_layers(reloaded)) == 14
    ids = torch.tensor([[1, 200, 3000, 42, 7, 9]])
    torch.testing.assert_close(logits(reloaded, ids), logits(fresh, ids), rtol=0, atol=0)
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    got, want = logits(reloaded, ids), logits(original, ids)
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.95
    assert not torch.equal(got, want)


def test_each_method_reads_only_its_own_settings():
    assert method_settings(HQQ) == {"method": "hqq", "nbits": 4, "group_size": 64, "optimize": False}
    assert method_settings(NF4) == {"method": "nf4", "double_quant": True}
    assert bits_per_weight({**HQQ, "nbits": 3}) == 3
    assert bits_per_weight({**NF4, "nbits": 3}) == 4  # NF4 is 4-bit whatever HQQ's nbits says


@pytest.mark.parametrize("settings", [HQQ, NF4], ids=["hqq", "nf4"])
def test_dequantize_gives_the_weight_each_method_computes_with(tiny_model_dir, tmp_path, settings):
    """`dequantize` is the weight the 4-bit layer's own forward multiplies by: x @ W.t() on it
    gives the layer's output (bitwise for HQQ; within bf16 rounding of NF4's fused kernel)."""
    from transformers import AutoModelForCausalLM

    quantize_base(tiny_model_dir, tmp_path / "q", settings, "cpu", torch.bfloat16)
    model = load_quantized(tmp_path / "q", "cpu", torch.bfloat16)
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    layer = model.model.layers[1].mlp.down_proj
    weight = dequantize(layer)
    assert weight_shape(layer) == (64, 128) and weight.shape == (64, 128) and weight.dtype == torch.bfloat16
    x = torch.randn(2, 3, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        exact = settings["method"] == "hqq"
        torch.testing.assert_close(x @ weight.t(), layer(x), rtol=0 if exact else 0.02, atol=0 if exact else 0.02)
    error = (weight.float() - original.model.layers[1].mlp.down_proj.weight.float()).abs()
    assert 0 < error.max() < 0.5 * original.model.layers[1].mlp.down_proj.weight.float().abs().max()


def test_an_eval_pass_never_changes_the_gradients_of_nf4_training(tiny_model_dir, tmp_path):
    """The eval loss between epochs runs the NF4 model in eval mode without gradients. On AVX512-BF16
    CPUs bitsandbytes then repacks the weights into a layout its matmul cannot backpropagate
    through, and the next training step silently loses gradients. The model load_quantized returns
    keeps them exactly what they were."""
    from bitsandbytes.functional import has_avx512bf16

    quantize_base(tiny_model_dir, tmp_path / "nf4", NF4, "cpu", torch.bfloat16)
    ids = torch.tensor([[1, 200, 3000, 42, 7, 9]])

    def gradients_before_and_after_an_eval_pass(model):
        def input_gradient():
            model.train()
            inputs = model.get_input_embeddings()(ids).detach().requires_grad_(True)
            model(inputs_embeds=inputs).logits.float().square().mean().backward()
            return inputs.grad

        before = input_gradient()
        model.eval()
        with torch.no_grad():
            model(ids)
        return before, input_gradient()

    before, after = gradients_before_and_after_an_eval_pass(load_quantized(tmp_path / "nf4", "cpu", torch.bfloat16))
    assert after is not None and torch.equal(after, before)
    if has_avx512bf16():  # this CPU is one where bitsandbytes repacks: without the guard, it breaks
        unguarded = load_quantized(tmp_path / "nf4", "cpu", torch.bfloat16)
        for layer in quantized_layers(unguarded):
            layer.support_avx512bf16_for_cpu = True
        before, after = gradients_before_and_after_an_eval_pass(unguarded)
        assert all(layer.weight.quant_state.packing_format_for_cpu for layer in quantized_layers(unguarded))
        assert after is None or not torch.allclose(after, before, rtol=0.05, atol=1e-6)
