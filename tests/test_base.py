"""Stage base: the configured model saved once as a bf16 HF folder with its tokenizer; a model
without a chat template is refused by name before anything is written."""

import pytest
import torch

from vault_distill.base import materialize_base


def test_a_local_folder_is_materialized_as_bf16_with_its_tokenizer(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = materialize_base(str(tiny_model_dir), tmp_path / "out")
    assert info["architecture"] == "LlamaForCausalLM" and info["base_model"] == str(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert next(model.parameters()).dtype == torch.bfloat16
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert AutoTokenizer.from_pretrained(str(tmp_path / "out")).chat_template


def test_a_model_without_a_chat_template_is_refused(tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    tokenizer = AutoTokenizer.from_pretrained(str(plain))
    tokenizer.chat_template = None
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tokenizer.save_pretrained(plain)
    with pytest.raises(ValueError, match="has no chat template"):
        materialize_base(str(plain), tmp_path / "out")
    assert not (tmp_path / "out").exists()
