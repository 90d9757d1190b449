"""A slice of the pipeline on a real Slurm cluster, through profiles/slurm, against a local run.

The cluster is one node on this machine (tests/servers/slurm_cluster.py), installed with
apt-get when missing and skipped, loudly, where that is impossible. Two tasks go from extract to
GGUF on small settings: every job is a Slurm job, started by snakemake-executor-plugin-slurm.
The same slice then runs locally, and the two are compared. The student is the tiny Llama
(conftest.tiny_model_dir) and the teacher the schema teacher (tests/schema_teacher.py): what is
checked is what Slurm receives and runs, not what the model learns.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import ROOT, absolute_resources, default_config, make_workdir, snakemake, use_schema_teacher
from servers.slurm_cluster import SlurmCluster, SlurmUnavailable, ensure_installed

from vault_distill.cache import ResponseCache

pytestmark = pytest.mark.slow

TASKS = ("judge", "analyst")
# Teacher answers per task: 3 to train on, 1 held out.
EXAMPLES = 4
TARGETS = [f"results/{task}/{task}.Q8_0.gguf" for task in TASKS]
# The test cluster has no slurmdbd, so job states come from squeue; it answers at once, so
# there is no need to wait the default 40 s before the first status query.
SLURM_FLAGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-no-account",
)  # fmt: skip
# The Slurm jobs one run of the slice needs, by rule.
EXPECTED_JOBS = {
    "extract": 2,
    "preflight": 2,
    "teach": 2,
    "base_tokenizer": 1,
    "base": 1,
    "split": 2,
    "quantize": 1,
    "train": 2,
    "merge": 2,
    "convert": 2,
}
GPU_RULES = {"quantize", "train", "merge"}
# Where each benchmarked rule writes its benchmark (the peak memory it really used).
BENCHMARKS = {
    "base": "base",
    "quantize": "quantize",
    "teach": "{task}/teach",
    "train": "{task}/train",
    "merge": "{task}/merge",
    "convert": "{task}/convert",
}
# Files that a deterministic pipeline must reproduce byte for byte.
DATA_FILES = ("inputs.jsonl", "teacher.jsonl", "teacher_rejects.jsonl", "sft/train.jsonl", "sft/val.jsonl")


def slice_config(tmp_path: Path, model_dir: Path) -> dict:
    # The teacher cache must be on a path every node sees: with one node, any local folder.
    config = use_schema_teacher(absolute_resources(default_config()), tmp_path / "teacher-cache")
    config["base_model"] = str(model_dir)
    config["tasks"] = {task: config["tasks"][task] for task in TASKS}
    for task in TASKS:
        config["tasks"][task].update(examples=EXAMPLES, val_fraction=0.25)
    config["training"].update(
        max_length=256, max_steps=2, batch_size=2, learning_rate=1e-3, lora_r=8, lora_alpha=16, seed=0
    )
    config["checkpoints"] = {"dir": str(tmp_path / "checkpoints"), "every_steps": 1}
    config["gguf"]["check_tokens"] = 4
    return config


def machine_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory, request):
    try:
        ensure_installed(tmp_path_factory.mktemp("slurm-install") / "apt.log")
    except SlurmUnavailable as err:
        message = f"SKIPPING the Slurm integration test: {err}"
        warnings.warn(message, stacklevel=1)
        print(f"\n{'!' * 80}\n{message}\n{'!' * 80}", file=sys.stderr)
        pytest.skip(message)
    # Two CPUs, like this machine; memory below the machine's, as slurmd requires.
    cluster = SlurmCluster(cpus=2, real_memory_mb=machine_memory_mb() * 8 // 10)
    # Slurm's commands find this cluster in /etc/slurm, not in conftest's no-controller config.
    environment = pytest.MonkeyPatch()
    environment.delenv("SLURM_CONF", raising=False)
    request.addfinalizer(environment.undo)
    request.addfinalizer(cluster.stop)
    try:
        cluster.start()
    except SlurmUnavailable as err:
        if "not overwriting" not in str(err):
            raise
        pytest.skip(f"SKIPPING the Slurm integration test: {err}")
    return cluster


def start_line(job_id: str, node: str) -> str:
    """The slurmctld 22.05 line that starts a job, from either scheduler. Both forms were seen in
    one run: "sched: Allocate JobId=4 NodeList=vm #CPUs=1 Partition=main" and, for a job that
    waited while others ran, "sched/backfill: _start_job: Started JobId=7 in main on vm"."""
    main = rf"sched: Allocate JobId={job_id} NodeList={node} "
    backfill = rf"backfill: (?:_start_job: )?Started JobId={job_id} in \S+ on {node}$"
    return rf"(?m){main}|{backfill}"


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def peak_rss_mb(benchmark: Path) -> float:
    header, values = benchmark.read_text(encoding="utf-8").splitlines()[:2]
    return float(dict(zip(header.split("\t"), values.split("\t"), strict=True))["max_rss"])


def differing_files(task: str, one: Path, other: Path, names) -> list[str]:
    results = f"results/{task}"
    return [name for name in names if (one / results / name).read_bytes() != (other / results / name).read_bytes()]


def test_pipeline_slice_runs_on_slurm_and_matches_a_local_run(slurm, tmp_path, tiny_model_dir):
    on_slurm = make_workdir(tmp_path / "slurm", slice_config(tmp_path / "slurm", tiny_model_dir))
    started = time.monotonic()
    profile = str(ROOT / "profiles" / "slurm")
    run = snakemake(on_slurm, "--profile", profile, *SLURM_FLAGS, *TARGETS, timeout=3000)
    slurm_wall_s = time.monotonic() - started
    log = run.stdout + run.stderr

    # Every job was submitted to Slurm, ran there to completion, and asked for what its rule declares.
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    jobs = {job_id: slurm.scontrol_job(job_id) for job_id in job_ids}
    controller_log = slurm.slurmctld_log.read_text(encoding="utf-8")
    rules = collections.Counter()
    for job_id, job in jobs.items():
        rule, _, task = job["Comment"].removeprefix("rule_").partition("_wildcards_")
        rules[rule] += 1
        assert job["JobState"] == "COMPLETED", (job_id, rule, job["JobState"])
        assert job["NodeList"] == slurm.node
        gpus = job.get("TresPerJob", "")
        assert (gpus == "gres:gpu:1") == (rule in GPU_RULES), f"{rule} (Slurm job {job_id}): TresPerJob={gpus}"
        requested_mb = int(re.search(r"mem=(\d+)M", job["TRES"]).group(1))
        if rule in BENCHMARKS:
            assert job["NumCPUs"] == ("1" if rule == "teach" else "2"), (rule, job["NumCPUs"])
            used_mb = peak_rss_mb(on_slurm / "results/benchmarks" / f"{BENCHMARKS[rule].format(task=task)}.tsv")
            assert used_mb < requested_mb, f"{rule} {task}: peak {used_mb:.0f} MB, requested {requested_mb} MB"
        # The controller's own log: it started the job on the node (from its main or backfill
        # scheduler), and the job's batch script exited 0.
        assert re.search(start_line(job_id, slurm.node), controller_log), f"no start of job {job_id} in slurmctld.log"
        assert f"_job_complete: JobId={job_id} WEXITSTATUS 0" in controller_log, job_id
    assert rules == EXPECTED_JOBS, rules

    # The same slice, locally.
    local = make_workdir(tmp_path / "local", slice_config(tmp_path / "local", tiny_model_dir))
    started = time.monotonic()
    snakemake(local, "--cores", "2", *TARGETS, timeout=3000)
    local_wall_s = time.monotonic() - started
    print(
        f"\nSlurm run: {len(job_ids)} Slurm jobs in {slurm_wall_s:.0f} s; the same slice locally: {local_wall_s:.0f} s",
        file=sys.stderr,
    )

    for task in TASKS:
        # Each run paid for its own teacher answers, in its own cache, and got the same ones.
        for workdir in (on_slurm, local):
            stats = read_json(workdir / f"results/{task}/teacher_stats.json")
            assert stats["generated"] == stats["asked"] == EXAMPLES, stats
        assert differing_files(task, on_slurm, local, DATA_FILES) == []
        # Training on the CPU with the same seed and thread count is bit-reproducible here, so
        # the adapters, the GGUFs and their checks are identical too.
        trained = ("adapter/adapter_model.safetensors", f"{task}.Q8_0.gguf", "gguf_check.json")
        assert differing_files(task, on_slurm, local, trained) == []
        slurm_metrics = read_json(on_slurm / f"results/{task}/train_metrics.json")
        local_metrics = read_json(local / f"results/{task}/train_metrics.json")
        assert slurm_metrics["final_train_loss"] == local_metrics["final_train_loss"]
        assert slurm_metrics["eval_loss"] == local_metrics["eval_loss"]
    cache = ResponseCache(Path(slice_config(tmp_path / "slurm", tiny_model_dir)["teacher"]["cache_dir"]))
    assert len(cache.stored_keys()) == EXAMPLES * len(TASKS)
