"""benchmarks/serve_memory.py on the tiny model: it starts both kinds of server, asks each of
them, and prints the ratio line (the figures themselves mean nothing at this size)."""

import json
import re
import subprocess
import sys

import yaml
from conftest import ROOT, TINY_TASKS, default_config


def test_serve_memory_benchmark_runs_on_a_tiny_build(tiny_loras, tiny_model_dir, tmp_path):
    from vault_distill.convert import convert_to_gguf
    from vault_distill.merge import merge_adapter

    results = tmp_path / "results"
    (results / "base").mkdir(parents=True)
    (results / "base" / "base.Q8_0.gguf").symlink_to(tiny_loras["base_gguf"])
    for task in TINY_TASKS:
        (results / task / "sft").mkdir(parents=True)
        chat = [{"role": "system", "content": f"You are the {task}."}, {"role": "user", "content": "A note."}]
        (results / task / "sft" / "val.jsonl").write_text(json.dumps({"prompt_messages": chat}) + "\n")
        (results / task / f"{task}.lora.F16.gguf").symlink_to(tiny_loras["loras"][task])
        merge_adapter(tiny_model_dir, tiny_loras["adapters"][task], tmp_path / task / "merged")
        convert_to_gguf(tmp_path / task / "merged", results / task / f"{task}.Q8_0.gguf", "f16", tmp_path / "log")
    config = default_config()
    config["tasks"] = {task: config["tasks"][task] for task in TINY_TASKS}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    argv = [sys.executable, str(ROOT / "benchmarks" / "serve_memory.py"), "--config", str(tmp_path / "config.yaml")]
    argv += ["--results", str(results), "--threads", "1", "--max-tokens", "4", "--n-ctx", "512"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"one_over_separate_rss=[\d.]+ one_rss_mb=\d+ separate_rss_mb=\d+ one_over_separate_tok_s=[\d.]+", last
    )
    assert "bf16 matmul:" in done.stdout and f"{len(TINY_TASKS)} servers, merged" in done.stdout
