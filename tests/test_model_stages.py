"""The model half, for real on a tiny student: the tiny Llama (conftest.tiny_model_dir: SmolLM2's
tokenizer and template, 2 random layers) is materialized, quantized once with HQQ, trained with
TRL, merged into bf16, converted by llama.cpp's own converter and checked, then given an Ollama
Modelfile, evaluated against the base GGUF on held-out inputs, and reported. The teacher is the
schema teacher (tests/schema_teacher.py) behind the command backend. Only the weights are tiny:
every stage runs. The real SmolLM2 goes through the same chain in test_real_model.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from conftest import (
    ROOT,
    absolute_resources,
    default_config,
    kill_snakemake_when,
    make_workdir,
    snakemake,
    use_schema_teacher,
)

from vault_distill.hardware import resolve_dtype
from vault_distill.report import ReportError, build_report, format_mb, format_seconds
from vault_distill.train import last_checkpoint

pytestmark = pytest.mark.slow

TASK = "judge"
TRAIN_STEPS = 6
# The killed training's steps: a tiny step takes milliseconds, so enough for a kill to land part way.
KILLED_STEPS = 200
# A second task, only built for the report, so that the report has more than one row.
OTHER_TASK = "analyst"
EVAL_MAX_TOKENS = 128


def tiny_config(tmp_path: Path, model_dir: Path) -> dict:
    config = use_schema_teacher(absolute_resources(default_config()), tmp_path / "teacher-cache")
    config["base_model"] = str(model_dir)
    config["tasks"] = {TASK: config["tasks"][TASK], OTHER_TASK: config["tasks"][OTHER_TASK]}
    config["tasks"][TASK].update(examples=8, val_fraction=0.25)
    config["tasks"][OTHER_TASK].update(examples=5, val_fraction=0.25, training={"max_steps": 2})
    config["evaluation"] = {"samples": 2}
    config["decoding"]["max_tokens"] = EVAL_MAX_TOKENS
    config["training"].update(
        # A random student moves slowly at 1e-3: 1e-2 makes 6 steps change its greedy answer.
        max_length=256,
        max_steps=TRAIN_STEPS,
        batch_size=2,
        learning_rate=1e-2,
        lora_r=8,
        lora_alpha=16,
    )
    config["checkpoints"] = {"dir": str(tmp_path / "checkpoints"), "every_steps": 3}
    config["gguf"]["deploy"] = "both"  # the merged GGUF and the LoRA GGUF, checked and evaluated side by side
    return config


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir):
    """One real build of the judge model, from the vault to the Modelfile and its evaluation."""
    tmp_path = tmp_path_factory.mktemp("model_stages")
    config = tiny_config(tmp_path, tiny_model_dir)
    workdir = make_workdir(tmp_path, config)
    snakemake(workdir, "--cores", "2", TASK)
    return workdir, config


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def tensor_elements(folder: Path) -> int:
    return sum(tensor.numel() for tensor in load_safetensors(folder).values())


def assert_q8_0_of(gguf: Path, bf16_folder: Path) -> None:
    """Every matrix is Q8_0 (8.5 bits a weight; only the 1-D norms stay F32), and the tensors hold
    as many weights as the bf16 model: at this size the vocabulary metadata outweighs them."""
    from gguf import GGMLQuantizationType, GGUFReader

    tensors = GGUFReader(gguf).tensors
    assert {t.tensor_type for t in tensors if len(t.shape) > 1} == {GGMLQuantizationType.Q8_0}, gguf
    assert sum(int(t.n_elements) for t in tensors) == tensor_elements(bf16_folder), gguf


def test_build_writes_every_artifact_and_then_has_nothing_to_do(built, tokenizer):
    workdir, config = built
    results = workdir / "results"
    assert_q8_0_of(results / TASK / f"{TASK}.Q8_0.gguf", results / "base" / "model")
    assert (results / TASK / "adapter" / "adapter_model.safetensors").is_file()
    assert not (results / TASK / "merged").exists(), "the merged folder is temp() by default"
    assert (results / "base" / "hqq" / "qmodel.pt").is_file()
    for stage in ("base", "quantize", f"{TASK}/train", f"{TASK}/merge", f"{TASK}/convert"):
        assert (results / "benchmarks" / f"{stage}.tsv").is_file(), stage

    metrics = read_json(results / TASK / "train_metrics.json")
    assert metrics["steps"] == TRAIN_STEPS
    assert metrics["examples"] == 6 and metrics["val_examples"] == 2
    assert metrics["trained_tokens"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["eval_loss"] is not None and metrics["final_train_loss"] is not None
    assert metrics["device"] == "cpu" and metrics["peak_memory_kind"] == "max_rss"
    assert metrics["gradient_checkpointing"] is False  # 2x256 tokens fit easily
    assert metrics["dequantized_weight_cache"] is True  # a few MB of bf16 weights fit too
    history = (results / TASK / "train_log.csv").read_text().splitlines()
    assert history[0].startswith("step,epoch") and len(history) > TRAIN_STEPS
    # A finished run leaves no checkpoints behind.
    assert not any(Path(config["checkpoints"]["dir"]).rglob("checkpoint-*"))

    check = read_json(results / TASK / "gguf_check.json")
    assert check["template_prompts_equal"] == 3 and check["tokenization_equal"]
    # 8 tokens, or fewer when the merged model's greedy answer ends (on <|im_end|>) before that.
    assert check["compared_tokens"] == 8 or check["hf_greedy"][-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert check["agreed_tokens"] + check["near_tie_flips"] == check["compared_tokens"]
    assert check["agreed_tokens"] >= check["compared_tokens"] // 2
    assert 0 < check["max_relative_logit_error"] < 0.1

    again = snakemake(workdir, "-n", TASK)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_modelfile_points_at_the_gguf_with_its_own_template(built):
    workdir, config = built
    text = (workdir / "results" / TASK / "Modelfile").read_text(encoding="utf-8")
    assert text.startswith(f"FROM ./{TASK}.Q8_0.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "<|im_start|>" in text and "{{" in text
    system = Path(config["tasks"][TASK]["system_prompt"]).read_text(encoding="utf-8").strip()
    assert f'SYSTEM """{system}"""' in text
    assert "PARAMETER num_ctx 256" in text


def test_modelfile_states_the_very_sampling_settings_the_evaluation_used(built):
    from vault_distill.decoding import NAMES, read_modelfile_parameters

    workdir, config = built
    served = read_modelfile_parameters((workdir / "results" / TASK / "Modelfile").read_text(encoding="utf-8"))
    evaluated = read_json(workdir / "results" / TASK / "eval.json")["settings"]["decoding"]
    assert served == evaluated == config["decoding"]
    assert set(served) == set(NAMES)


def test_the_lora_gguf_is_checked_like_the_merged_one_and_ships_with_its_modelfile(built, tokenizer):
    """deploy: both. The LoRA GGUF on the base GGUF passes the merged GGUF's check against base +
    adapter, and its logits stay within what both files' rounding allows of the merged GGUF's."""
    workdir, _ = built
    results = workdir / "results"
    lora = results / TASK / f"{TASK}.lora.F16.gguf"
    # F16, two bytes a LoRA weight, and a fraction of the merged model.
    lora_bytes = 2 * tensor_elements(results / TASK / "adapter")
    assert lora_bytes <= lora.stat().st_size < (results / TASK / f"{TASK}.Q8_0.gguf").stat().st_size / 5
    check, merged = read_json(results / TASK / "lora_check.json"), read_json(results / TASK / "gguf_check.json")
    assert check["template_prompts_equal"] == 3 and check["tokenization_equal"]
    assert check["agreed_tokens"] + check["near_tie_flips"] == check["compared_tokens"] >= 1
    assert check["hf_greedy"] == merged["hf_greedy"]  # base + adapter in memory is the merged model
    assert 0 < check["max_relative_logit_error"] < 0.1
    # Both are measured along the same tokens, so the triangle inequality bounds their difference.
    assert 0 < check["max_logit_diff_vs_merged_gguf"] <= check["max_logit_error"] + merged["max_logit_error"] + 1e-3

    adapter_modelfile = (results / TASK / "adapter.Modelfile").read_text(encoding="utf-8")
    merged_modelfile = (results / TASK / "Modelfile").read_text(encoding="utf-8")
    assert adapter_modelfile.startswith(f"FROM ../base/base.Q8_0.gguf\nADAPTER ./{TASK}.lora.F16.gguf\nTEMPLATE ")
    assert adapter_modelfile.split("\n", 2)[2] == merged_modelfile.split("\n", 1)[1]  # same TEMPLATE, stops, params
    assert (results / "benchmarks" / TASK / "convert_adapter.tsv").is_file()

    evaluation = read_json(results / TASK / "eval.json")
    assert list(evaluation["models"]) == ["base", "tuned", "tuned_adapter"]
    assert (
        evaluation["settings"]["ggufs"]["tuned_adapter"] == f"results/base/base.Q8_0.gguf + {lora.relative_to(workdir)}"
    )
    assert evaluation["models"]["tuned_adapter"]["answers"] == evaluation["models"]["tuned"]["answers"]
    assert all(answer["tuned_adapter"]["finish_reason"] in ("stop", "length") for answer in evaluation["answers"])


def load_safetensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for path in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


@pytest.fixture(scope="module")
def merged(built, tmp_path_factory):
    from vault_distill.merge import merge_adapter

    workdir, _ = built
    out = tmp_path_factory.mktemp("merged") / "model"
    merge_adapter(workdir / "results/base/model", workdir / f"results/{TASK}/adapter", out)
    return out


def test_clean_merge_leaves_no_hqq_tensors_and_adds_the_lora_delta(built, merged):
    import torch

    workdir, _ = built
    names = list(load_safetensors(merged))
    assert not [n for n in names if any(part in n.split(".") for part in ("W_q", "meta", "scale", "zero"))]
    assert not [n for n in names if "lora_" in n or "base_layer" in n]

    base = load_safetensors(workdir / "results/base/model")
    adapter = load_safetensors(workdir / f"results/{TASK}/adapter")
    adapter_config = read_json(workdir / f"results/{TASK}/adapter/adapter_config.json")
    scaling = adapter_config["lora_alpha"] / adapter_config["r"]
    layer = "model.layers.0.self_attn.q_proj"
    lora_a = next(v for k, v in adapter.items() if f"{layer}.lora_A" in k).float()
    lora_b = next(v for k, v in adapter.items() if f"{layer}.lora_B" in k).float()
    delta = scaling * lora_b @ lora_a
    assert delta.abs().max() > 1e-4, "the adapter learned nothing: the check below would be vacuous"
    expected = (base[f"{layer}.weight"].float() + delta).to(torch.bfloat16).float()
    merged_weight = load_safetensors(merged)[f"{layer}.weight"].float()
    # One bf16 rounding of the sum: at most half an ulp, i.e. 2^-8 relative.
    torch.testing.assert_close(merged_weight, expected, rtol=2**-7, atol=1e-6)


def test_merged_model_answers_differently_from_the_base(built, merged):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, _ = built
    prompt = json.loads((workdir / f"results/{TASK}/sft/val.jsonl").read_text().splitlines()[0])["prompt"]
    tokenizer = AutoTokenizer.from_pretrained(str(merged))
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])

    def greedy(folder):
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        return out[0, ids.shape[1] :].tolist()

    assert greedy(merged) != greedy(workdir / "results/base/model")


def test_gguf_check_fails_on_a_different_chat_template(built, merged, tmp_path):
    import shutil

    from vault_distill.gguf_check import GgufCheckFailed, check_gguf

    workdir, _ = built
    altered = tmp_path / "altered"
    shutil.copytree(merged, altered)
    template_file = altered / "chat_template.jinja"  # where transformers 5 saves the template
    template = template_file.read_text(encoding="utf-8")
    template_file.write_text(template.replace("<|im_start|>", "<|im_start|> "), encoding="utf-8")
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    with pytest.raises(GgufCheckFailed, match="chat template renders a different prompt"):
        check_gguf(workdir / f"results/{TASK}/{TASK}.Q8_0.gguf", altered, [messages], prompt="hi", n_tokens=2)


def test_gguf_check_in_bf16_still_fails_on_a_model_that_differs(built):
    """The check's HF side runs in bf16 (2 bytes a weight, not fp32's 4). It still tells the tuned
    GGUF from the base model it was trained from: logits or greedy tokens differ beyond rounding."""
    from vault_distill.gguf_check import GgufCheckFailed, check_gguf

    workdir, _ = built
    prompt = json.loads((workdir / f"results/{TASK}/sft/val.jsonl").read_text().splitlines()[0])["prompt"]
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    with pytest.raises(GgufCheckFailed, match="differ"):
        check_gguf(workdir / f"results/{TASK}/{TASK}.Q8_0.gguf", workdir / "results/base/model", [messages], prompt, 8)
    check = read_json(workdir / f"results/{TASK}/gguf_check.json")
    assert check["max_relative_logit_error"] < 0.05  # the right model: Q8_0 rounding only


def test_evaluation_replays_the_held_out_prompts_through_both_ggufs(built, tokenizer):
    workdir, _ = built
    results = workdir / "results"
    assert_q8_0_of(results / "base" / "base.Q8_0.gguf", results / "base" / "model")
    base_check = read_json(results / "base" / "gguf_check.json")
    assert base_check["template_prompts_equal"] == 3 and base_check["tokenization_equal"]
    assert base_check["agreed_tokens"] + base_check["near_tie_flips"] == base_check["compared_tokens"]
    assert (results / "benchmarks" / TASK / "evaluate.tsv").is_file()

    val = [json.loads(line) for line in (results / TASK / "sft/val.jsonl").read_text().splitlines()]
    evaluation = read_json(results / TASK / "eval.json")
    assert evaluation["settings"]["max_tokens"] == EVAL_MAX_TOKENS
    assert evaluation["settings"]["n_ctx"] == 256 + EVAL_MAX_TOKENS
    assert [a["id"] for a in evaluation["answers"]] == [row["id"] for row in val]
    for answer, row in zip(evaluation["answers"], val, strict=True):
        # The GGUF's own chat template renders the very prompt the split held out.
        prompt_tokens = len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
        for model in ("base", "tuned"):
            scored = answer[model]
            assert scored["prompt_tokens"] == prompt_tokens
            assert scored["finish_reason"] in ("stop", "length")
            assert 0 < scored["tokens"] <= EVAL_MAX_TOKENS
            assert scored["compliant"] == (scored["outcome"] == "compliant")
        assert answer["base"]["text"] != answer["tuned"]["text"]
    for model in ("base", "tuned"):
        totals = evaluation["models"][model]
        assert totals["answers"] == len(val)
        assert totals["compliant"] == sum(a[model]["compliant"] for a in evaluation["answers"])
    samples = (results / TASK / "eval_samples.md").read_text(encoding="utf-8")
    assert samples.count("**base**") == min(2, len(val)) and evaluation["answers"][0]["id"] in samples


@pytest.fixture(scope="module")
def reported(built):
    """`all` over both tasks (building the second one and the report), and Snakemake's HTML report."""
    workdir, config = built
    snakemake(workdir, "--cores", "2", "all")
    snakemake(workdir, "--report", "results/report.html")
    return workdir, config


def benchmark_seconds(path: Path) -> float:
    import csv

    with open(path, newline="") as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def table_rows(report: str) -> dict[str, list[str]]:
    lines = report.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| task | examples |")))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0]] = cells
    return rows


def test_report_reads_real_benchmark_and_metrics_files(reported):
    workdir, config = reported
    results = workdir / "results"
    report = (results / "report.md").read_text(encoding="utf-8")
    rows = table_rows(report)
    assert list(rows) == list(config["tasks"]), "one row per configured task, in config order"
    for task, cells in rows.items():
        metrics = read_json(results / task / "train_metrics.json")
        evaluation = read_json(results / task / "eval.json")
        base, tuned = evaluation["models"]["base"], evaluation["models"]["tuned"]
        # 8 and 5 SFT examples, under the default meaningful_examples (20): flagged.
        assert cells[1] == f"{metrics['examples']} (+{metrics['val_examples']} held out) ⚠ too few: not meaningful"
        assert f"{task}: trained on {metrics['examples']} examples and evaluated on" in report
        assert cells[2] == "256"
        assert cells[3] == format_seconds(benchmark_seconds(results / "benchmarks" / task / "train.tsv"))
        assert cells[4] == f"{format_mb(metrics['peak_memory_mb'])} RSS"
        assert cells[5] == f"{metrics['final_train_loss']:.3f}" and cells[6] == f"{metrics['eval_loss']:.3f}"
        assert cells[7].startswith(f"{base['compliant']}/{base['answers']} (") and "→" in cells[7]
        assert cells[7].split("→")[1].strip().startswith(f"{tuned['compliant']}/{tuned['answers']} (")
    assert read_json(results / OTHER_TASK / "train_metrics.json")["steps"] == 2
    hardware = read_json(results / TASK / "train_metrics.json")["hardware"]
    assert f"{hardware['cpu']} ({hardware['cpu_cores']} cores)" in report and hardware["torch"] in report
    assert f"Base model: `{config['base_model']}`" in report
    assert "| base_gguf |" in report and "All jobs together:" in report  # the shared jobs are timed too
    for plot in ["compliance.png", *(f"{task}_loss.png" for task in config["tasks"])]:
        data = (results / "plots" / plot).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, plot
        assert f"](plots/{plot})" in report
    assert "<table>" in (results / "report_tables.html").read_text(encoding="utf-8")
    # Bytes on disk of both deployments: a merged file per task, against one base and small adapters.
    disk = report[report.index("## On disk") : report.index("## Where the time went")]
    assert "| task | merged GGUF | LoRA GGUF on the shared base |" in disk
    base_mb = (results / "base" / "base.Q8_0.gguf").stat().st_size / 2**20
    assert f"(base {format_mb(base_mb)} once)" in disk and "| all 2 tasks |" in disk
    assert "(as adapter: " in rows[TASK][7]

    again = snakemake(workdir, "-n", "all")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_snakemake_html_report_embeds_the_plots_and_tables(reported):
    workdir, config = reported
    page = (workdir / "results" / "report.html").read_text(encoding="utf-8")
    for name in ["report.md", "report_tables.html", "compliance.png", *(f"{t}_loss.png" for t in config["tasks"])]:
        assert name in page, name
    assert "eval_samples.md" in page
    assert "Format compliance on held-out inputs" in page  # a caption


def test_report_names_the_missing_eval_json(reported, tmp_path):
    import shutil

    workdir, config = reported
    copy = tmp_path / "results"
    shutil.copytree(
        workdir / "results", copy, ignore=shutil.ignore_patterns("hqq", "model", "adapter"), copy_function=os.link
    )
    (copy / OTHER_TASK / "eval.json").unlink()
    with pytest.raises(ReportError, match="^" + re.escape(f"{copy}/{OTHER_TASK}/eval.json: missing")):
        build_report(
            list(config["tasks"]),
            base_model="bundled:smollm2",
            gguf_type="Q8_0",
            report_md=tmp_path / "report.md",
            tables_html=tmp_path / "tables.html",
            compliance_png=tmp_path / "compliance.png",
            loss_pngs={task: tmp_path / f"{task}.png" for task in config["tasks"]},
            results_dir=str(copy),
            deploy="both",
        )
    assert not (tmp_path / "report.md").exists()


def test_snakemake_serve_answers_every_task_from_one_process(reported):
    """The `serve` target as a user starts it: one process, the real tuned adapters, one request
    per task with no response_format; each answer is schema-valid JSON (serve.enforce_schema, on
    by default) and is what that task's adapter gives on the base GGUF alone under format.json."""
    from llama_cpp import Llama

    from vault_distill.format import schema_llama_grammar
    from vault_distill.serve import free_port, request_sampling, wait_for_server

    workdir, config = reported
    # Room for a whole answer under the schema (the build's 128 tokens cut a tiny model's strings).
    decoding = {**config["decoding"], "temperature": 0, "max_tokens": 1024}
    sampling = request_sampling(decoding)
    port = free_port()
    config_file = workdir / "config" / "config.yaml"
    built_config = config_file.read_text(encoding="utf-8")
    config = {**config, "decoding": decoding, "serve": {"host": "127.0.0.1", "port": port}}
    config_file.write_text(json.dumps(config), encoding="utf-8")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    process = subprocess.Popen(
        [*command, "--cores", "2", "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        models = wait_for_server(f"http://127.0.0.1:{port}/v1/models", process, timeout_s=300)
        assert [model["id"] for model in models["data"]] == list(config["tasks"])
        val = {
            task: json.loads((workdir / f"results/{task}/sft/val.jsonl").read_text().splitlines()[0])
            for task in config["tasks"]
        }
        for task, row in val.items():
            messages = row["prompt_messages"]
            body = json.dumps({"model": task, "messages": messages, **sampling}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/chat/completions", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=300) as response:
                served = json.loads(response.read())["choices"][0]["message"]["content"]
            answer_format = json.loads((workdir / f"results/{task}/format.json").read_text(encoding="utf-8"))
            jsonschema.validate(json.loads(served), answer_format)
            alone = Llama(
                model_path=str(workdir / "results/base/base.Q8_0.gguf"),
                lora_path=str(workdir / f"results/{task}/{task}.lora.F16.gguf"),
                n_ctx=2048,
                n_threads=2,
                n_threads_batch=2,
                verbose=False,
            )
            grammar = schema_llama_grammar(answer_format)
            expected = alone.create_chat_completion(messages=messages, grammar=grammar, **sampling)
            alone.close()
            assert served == expected["choices"][0]["message"]["content"], task
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # snakemake and the server it runs
        process.wait(timeout=60)
        config_file.write_text(built_config, encoding="utf-8")
        snakemake(workdir, "--unlock")  # as a user would after stopping it: later tests build here


def saved_steps(checkpoints: Path) -> list[int]:
    """The step of each run's newest checkpoint saved to the end, as the resume will pick it."""
    newest = [last_checkpoint(run) for run in checkpoints.glob("*")] if checkpoints.is_dir() else []
    return [int(Path(path).name.split("-")[1]) for path in newest if path]


def test_killed_training_resumes_from_a_checkpoint_taken_by_time(built):
    """every_steps alone would write none in KILLED_STEPS steps: the checkpoints are every_minutes'
    own. It retrains the shared build's judge with other settings, so the tests that need that
    build as `all` left it (the report, serve) come before it in this file."""
    workdir, config = built
    config["training"].update(max_steps=KILLED_STEPS, learning_rate=5e-4)
    config["checkpoints"].update(every_steps=10 * KILLED_STEPS, every_minutes=0.01)
    (workdir / "config" / "config.yaml").write_text(json.dumps(config), encoding="utf-8")
    target = f"results/{TASK}/train_metrics.json"
    checkpoints = Path(config["checkpoints"]["dir"]) / TASK
    # A real SIGKILL part way through the run, wherever the trainer is then: in a step, or in the
    # middle of the next save (that half-written checkpoint is skipped on resume).
    kill_at = KILLED_STEPS // 10
    kill_snakemake_when(
        workdir, target, lambda: any(step >= kill_at for step in saved_steps(checkpoints)), timeout_s=600
    )
    assert not (workdir / target).exists() or read_json(workdir / target)["steps"] == TRAIN_STEPS
    assert any(kill_at <= step < KILLED_STEPS for step in saved_steps(checkpoints))

    snakemake(workdir, "--cores", "2", "--rerun-incomplete", target)
    metrics = read_json(workdir / target)
    assert metrics["steps"] == KILLED_STEPS
    assert metrics["resumed_from_step"] is not None and metrics["resumed_from_step"] >= kill_at
    assert "resuming from" in (workdir / f"results/logs/{TASK}/train.log").read_text()
    assert not any(checkpoints.rglob("checkpoint-*"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", "base_model: cannot load 'Qwen/Qwen2.5-7B-Instruct' as an HF hub id"),
        ("./no/such/model", "base_model: local model folder not found: ./no/such/model"),
        ("bundled:llama3", "base_model: unknown bundled model 'bundled:llama3'"),
    ],
)
def test_unreachable_base_model_names_the_setting(tmp_path, spec, message):
    """No network here: a hub id fails with a message naming base_model. HF_HUB_OFFLINE takes the
    same path as a failed connection without its minute of retries."""
    code = (
        "import sys\n"
        "from vault_distill.base import materialize_base\n"
        "from vault_distill.models import ModelNotFound\n"
        "try:\n"
        f"    materialize_base({spec!r}, {str(tmp_path / 'out')!r})\n"
        "except ModelNotFound as err:\n"
        "    print(err)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 3, done.stderr[-2000:]
    assert message in done.stdout
    assert not (tmp_path / "out").exists()


def test_train_throughput_benchmark_runs(built):
    """CI only proves that the benchmark runs and prints its line; it asserts no timing."""
    workdir, _config = built
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "train_throughput.py"),
            "--tiny",
            "--task",
            TASK,
            "--results",
            str(workdir / "results"),
            "--config",
            str(workdir / "config" / "config.yaml"),
            "--threads",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    assert re.fullmatch(r"speedup_vs_seed=\d+\.\d\d mfu=\d+\.\d\d tok_s=\d+ seed_tok_s=\d+", lines[-1]), lines[-1]
    # mfu's ceiling is a matmul in the dtype the step computes in (fp32 on a CPU without native
    # bf16), and the bf16 figure is printed beside it either way.
    header = re.fullmatch(
        r"device=cpu dtype=torch\.(\w+) threads=2 bf16_matmul_2048=\d+\.\d GFLOP/s "
        r"ceiling_(\w+)_matmul_2048=\d+\.\d GFLOP/s",
        lines[0],
    )
    assert header and header[1] == header[2] == str(resolve_dtype("auto", "cpu")).removeprefix("torch."), lines[0]
