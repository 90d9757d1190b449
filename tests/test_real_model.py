"""The one end-to-end build on the real model: judge alone, the bundled SmolLM2-135M-Instruct as
the student and as the teacher (llama.cpp, schema-constrained), through teach, HQQ QLoRA, the clean
merge, llama.cpp's conversion and check, the Modelfile and the evaluation against the base GGUF.

The mechanics (what reruns, what Slurm receives, every artifact's shape) are checked on the tiny
builds (test_model_stages.py, test_rebuild_contract.py, test_slurm.py). This build keeps CI honest
about the real thing: the real weights convert, pass their check and answer. It also shows that
the check has teeth: a tuned GGUF with one corrupted tensor fails it, and a converter that writes
such a file fails the build and leaves no GGUF behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, absolute_resources, default_config, make_workdir, snakemake

pytestmark = pytest.mark.slow

TASK = "judge"
# 4 answers to train on, 2 held out (one checks the GGUF, both are evaluated).
EXAMPLES = 6
STEPS = 4
EVAL_MAX_TOKENS = 64
GGUF = f"results/{TASK}/{TASK}.Q8_0.gguf"
# The tensors a corrupted file gets wrong: every layer's MLP output projection, zeroed.
CORRUPTED = ".ffn_down.weight"


def real_config(tmp_path: Path) -> dict:
    config = absolute_resources(default_config())
    config["tasks"] = {TASK: config["tasks"][TASK]}
    config["tasks"][TASK].update(examples=EXAMPLES, val_fraction=0.34)
    config["teacher"].update(cache_dir=str(tmp_path / "teacher-cache"), max_tokens=160, n_ctx=2048)
    config["training"].update(max_length=256, max_steps=STEPS, batch_size=2, lora_r=8, lora_alpha=16)
    config["checkpoints"]["dir"] = str(tmp_path / "checkpoints")
    config["decoding"]["max_tokens"] = EVAL_MAX_TOKENS
    config["evaluation"]["samples"] = 2
    config["gguf"]["keep_merged"] = True  # the corrupted file is checked against it
    return config


@pytest.fixture(scope="module")
def real_build(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("real_model")
    workdir = make_workdir(tmp_path, real_config(tmp_path))
    snakemake(workdir, "--cores", "2", TASK, timeout=2400)
    return workdir


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_the_real_judge_passes_its_gguf_check_and_is_evaluated(real_build):
    results = real_build / "results"
    stats = read_json(results / TASK / "teacher_stats.json")
    assert stats["generated"] == stats["asked"] == EXAMPLES  # the bundled teacher answered every input

    bf16_bytes = sum(path.stat().st_size for path in (results / "base" / "model").glob("*.safetensors"))
    assert bf16_bytes > 200 * 2**20, "not the 135M model"
    assert 0.45 < (real_build / GGUF).stat().st_size / bf16_bytes < 0.65  # Q8_0: 8.5 bits a weight
    for check in (read_json(results / TASK / "gguf_check.json"), read_json(results / "base" / "gguf_check.json")):
        assert check["template_prompts_equal"] == 3 and check["tokenization_equal"]
        assert check["compared_tokens"] >= 1
        assert check["agreed_tokens"] + check["near_tie_flips"] == check["compared_tokens"]
        assert check["agreed_tokens"] >= check["compared_tokens"] // 2
        assert 0 < check["max_relative_logit_error"] < 0.1

    modelfile = (results / TASK / "Modelfile").read_text(encoding="utf-8")
    assert modelfile.startswith(f"FROM ./{TASK}.Q8_0.gguf\nTEMPLATE ") and 'PARAMETER stop "<|im_end|>"' in modelfile

    val = read_jsonl(results / TASK / "sft" / "val.jsonl")
    evaluation = read_json(results / TASK / "eval.json")
    assert [answer["id"] for answer in evaluation["answers"]] == [row["id"] for row in val] and val
    for answer in evaluation["answers"]:
        for model in ("base", "tuned"):
            assert answer[model]["finish_reason"] in ("stop", "length")
            assert 0 < answer[model]["tokens"] <= EVAL_MAX_TOKENS
    for model in ("base", "tuned"):
        assert evaluation["models"][model]["answers"] == len(val)

    again = snakemake(real_build, "-n", TASK)
    assert "Nothing to be done" in again.stdout + again.stderr


def corrupt(gguf: Path) -> int:
    """Zero the data of every CORRUPTED tensor in place; how many there were."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf, "r+")
    tensors = [tensor for tensor in reader.tensors if tensor.name.endswith(CORRUPTED)]
    for tensor in tensors:
        tensor.data[...] = 0
    reader.data.flush()
    return len(tensors)


def test_a_corrupted_tuned_gguf_fails_its_check(real_build, tmp_path):
    from vault_distill.gguf_check import GgufCheckFailed, check_task_gguf

    results = real_build / "results" / TASK
    broken = tmp_path / "broken.gguf"
    shutil.copyfile(real_build / GGUF, broken)
    assert corrupt(broken) == 30  # SmolLM2-135M's 30 layers
    examples, held_out = read_jsonl(results / "teacher.jsonl"), read_jsonl(results / "sft" / "val.jsonl")
    with pytest.raises(GgufCheckFailed, match="differ"):
        check_task_gguf(broken, results / "merged", examples, held_out, n_tokens=8, threads=2)


# A converter that runs llama.cpp's own, then corrupts what it wrote (see corrupt()).
BROKEN_CONVERTER = """\
import runpy, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_real_model import corrupt
real = {real!r}
sys.argv[0] = real
try:
    runpy.run_path(real, run_name="__main__")
except SystemExit as done:
    if done.code:
        raise
out = Path(sys.argv[sys.argv.index("--outfile") + 1])
print("corrupted", corrupt(out), "tensors of", out)
"""


def test_a_converter_that_breaks_the_gguf_fails_the_build_and_leaves_none(real_build, tmp_path):
    """Last in this file: it takes the build's tuned GGUF away."""
    from vault_distill.convert import converter_dir

    real = converter_dir()
    broken = tmp_path / "converter"
    broken.mkdir()
    for name in ("gguf-py", "conversion"):
        (broken / name).symlink_to(real / name)
    script = BROKEN_CONVERTER.format(tests=str(ROOT / "tests"), real=str(real / "convert_hf_to_gguf.py"))
    (broken / "convert_hf_to_gguf.py").write_text(script, encoding="utf-8")
    (real_build / GGUF).unlink()

    done = snakemake(real_build, "--cores", "2", GGUF, check=False, env={"VAULT_DISTILL_CONVERTER": str(broken)})
    assert done.returncode != 0
    log = (real_build / f"results/logs/{TASK}/convert.log").read_text(encoding="utf-8")
    assert "corrupted 30 tensors" in log and "GgufCheckFailed" in done.stderr + log
    assert not (real_build / GGUF).exists()
