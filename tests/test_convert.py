"""The convert stage: llama.cpp's converters run for real, and a file that fails its check is
never left behind."""

from __future__ import annotations

import pytest

from vault_distill.convert import ConversionError, record_check, run_converter
from vault_distill.gguf_check import GgufCheckFailed


def test_a_file_that_fails_its_check_is_deleted_and_no_check_is_recorded(tmp_path):
    out, check_file = tmp_path / "judge.Q8_0.gguf", tmp_path / "gguf_check.json"
    out.write_bytes(b"GGUF")

    def failing_check(path):
        raise GgufCheckFailed(f"{path.name}: greedy token 0 differs")

    with pytest.raises(GgufCheckFailed, match=r"judge\.Q8_0\.gguf"):
        record_check(out, check_file, failing_check)
    assert not out.exists() and not check_file.exists()


def test_a_missing_converter_names_where_it_looked_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("VAULT_DISTILL_CONVERTER", str(tmp_path))
    with pytest.raises(ConversionError, match=rf"{tmp_path}/convert_hf_to_gguf.py.*make setup"):
        run_converter("convert_hf_to_gguf.py", [], tmp_path / "out.gguf", tmp_path / "log")


def test_an_adapter_that_trained_the_end_of_turn_row_is_refused_before_conversion(tiny_model_dir, tokenizer, tmp_path):
    """PEFT's trainable tokens (train.py trains the end-of-turn row of a base that never learned
    it) are not LoRA pairs: no llama.cpp adapter can carry them, and the message says what to do."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vault_distill.convert import AdapterNotServable, convert_adapter_to_gguf

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    lora = LoraConfig(r=4, target_modules=["q_proj"], trainable_token_indices=[end_of_turn])
    get_peft_model(model, lora).save_pretrained(str(tmp_path / "adapter"))
    with pytest.raises(AdapterNotServable, match=r"end_of_turn_row_trained.*gguf\.deploy: merged"):
        convert_adapter_to_gguf(tmp_path / "adapter", tiny_model_dir, tmp_path / "out.gguf", tmp_path / "log")
    assert not (tmp_path / "out.gguf").exists()
