"""Stage quantize: the base made 4-bit once with HQQ, saved in hqq's own format, and loaded
back as every training loads it."""

import json

import torch

from vault_distill.quantize import QUANT_SETTINGS_FILE, load_quantized, quantize_base


def test_quantize_saves_a_4bit_model_that_loads_back_close_to_the_original(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "hqq"
    info = quantize_base(
        tiny_model_dir, out, nbits=4, group_size=64, optimize=False, device="cpu", dtype=torch.bfloat16
    )
    assert info["quantized_layers"] == 2 * 7  # every attention and MLP projection of both layers
    assert json.loads((out / QUANT_SETTINGS_FILE).read_text())["nbits"] == 4
    assert (out / "qmodel.pt").is_file()

    quantized = load_quantized(out, "cpu", torch.bfloat16)
    assert quantized.hqq_quantized  # so that PEFT does not upcast it to fp32
    assert sum(type(m).__name__ == "HQQLinear" for m in quantized.modules()) == 14
    original = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    ids = torch.tensor([[1, 200, 3000, 42, 7]])
    with torch.no_grad():
        got, want = quantized(ids).logits.float(), original(ids).logits.float()
    # 4 bits per weight move the logits a little, never to another model.
    assert torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0) > 0.95
    assert not torch.equal(got, want)
