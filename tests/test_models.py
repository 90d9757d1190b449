"""The tokenizer job's rerun trigger: a fingerprint of what the tokenizer is, not of the
base model's name, memoized so that a DAG evaluation does not load a tokenizer."""

from __future__ import annotations

import json
import os

from vault_distill.models import folder_digest, tokenizer_fingerprint


def saved(tokenizer, folder):
    tokenizer.save_pretrained(folder)
    return folder


def test_same_tokenizer_from_another_source_has_the_same_fingerprint(tokenizer, tmp_path):
    folder = saved(tokenizer, tmp_path / "copy")
    bundled = tokenizer_fingerprint("bundled:smollm2", tmp_path / "memo")
    assert bundled == tokenizer_fingerprint(str(folder), tmp_path / "memo")
    assert bundled == folder_digest(folder)  # what the tokenizer job writes, and then checks


def test_another_chat_template_is_another_tokenizer(tokenizer, tmp_path):
    folder = saved(tokenizer, tmp_path / "copy")
    before = tokenizer_fingerprint(str(folder), tmp_path / "memo")
    template = folder / "chat_template.jinja"
    template.write_text(template.read_text(encoding="utf-8").replace("<|im_start|>", "<|im_start|> "))
    assert tokenizer_fingerprint(str(folder), tmp_path / "memo") != before


def test_the_memo_is_used_until_a_tokenizer_file_changes(tokenizer, tmp_path):
    folder = saved(tokenizer, tmp_path / "copy")
    memo_dir = tmp_path / "memo"
    real = tokenizer_fingerprint(str(folder), memo_dir)
    (memo,) = memo_dir.glob("*.json")
    memo.write_text(json.dumps({"fingerprint": "from-the-memo"}))
    assert tokenizer_fingerprint(str(folder), memo_dir) == "from-the-memo"

    weights = folder / "model.safetensors"  # weights never change a tokenizer: still the memo
    weights.write_bytes(b"new weights")
    assert tokenizer_fingerprint(str(folder), memo_dir) == "from-the-memo"

    config = folder / "tokenizer_config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    assert tokenizer_fingerprint(str(folder), memo_dir) == real


def test_dotfiles_do_not_count(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    before = folder_digest(tmp_path)
    (tmp_path / ".snakemake_timestamp").write_text("")
    assert folder_digest(tmp_path) == before
    (tmp_path / "b.json").write_text("{}")
    assert folder_digest(tmp_path) != before
