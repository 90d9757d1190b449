import functools
import re
import sys
from pathlib import Path

import jsonschema
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from vault_distill.config import (  # noqa: E402
    ConfigError,
    check_config_files,
    explain_validation_error,
    training_settings,
)
from vault_distill.gguf import gguf_suffix  # noqa: E402
from vault_distill.models import ModelNotFound, tokenizer_fingerprint  # noqa: E402
from vault_distill.report import base_files, task_files  # noqa: E402
from vault_distill.teacher import generation_identity  # noqa: E402
from vault_distill.train import LEARNING_KEYS  # noqa: E402
from vault_distill.vault import notes_read_by_task  # noqa: E402

try:
    validate(config, "../../config/schema.yaml")
except WorkflowError as err:
    # snakemake flattens the schema error into a long dump; name the key instead.
    if not isinstance(err.__context__, jsonschema.ValidationError):
        raise
    raise WorkflowError(explain_validation_error(err.__context__)) from None
try:
    check_config_files(config, Path.cwd())
except ConfigError as err:
    raise WorkflowError(str(err)) from None


TASKS = list(config["tasks"])
VAULT = Path(config["vault"])
GGUF_SUFFIX = gguf_suffix(config["gguf"]["outtype"])
# The training settings that are a rerun trigger: what shapes the adapter, and the device
# (its arithmetic differs). Gradient checkpointing and checkpoint cadence only trade memory
# or time for the same adapter, so the train script reads them from the config.
TRAINING_KEYS = (*LEARNING_KEYS, "device")
# Where tokenizer fingerprints are memoized (see base_tokenizer_fingerprint).
TOKENIZER_FINGERPRINTS = "cache/tokenizer-fingerprints"
# What changes a teacher answer (also the teacher cache's key): the teach jobs' rerun
# trigger. Endpoint, timeouts, retries and the cache's place only change how it is asked.
TEACHER_GENERATION = generation_identity(config["teacher"])


# Input functions ----------------------------------------------------------------


def task_notes(wildcards):
    """Only the notes this task reads, so an edit elsewhere never reruns it."""
    selector = config["tasks"][wildcards.task]["select"]
    return [str(VAULT / rel) for rel in notes_read_by_task(VAULT, selector)]


def task_setting(key):
    """A params/input function returning one key of the task's config."""

    def get(wildcards):
        return config["tasks"][wildcards.task][key]

    return get


def task_training(*keys):
    """A params function returning the task's effective training settings (defaults +
    overrides), restricted to `keys` so that a rule reruns only for what it uses.
    One key gives its value; several give a dict."""

    def get(wildcards):
        settings = training_settings(config, wildcards.task)
        if len(keys) == 1:
            return settings[keys[0]]
        return {key: settings[key] for key in keys} if keys else settings

    return get


@functools.cache
def _tokenizer_fingerprint(spec):
    try:
        return tokenizer_fingerprint(spec, TOKENIZER_FINGERPRINTS)
    except ModelNotFound as err:
        raise WorkflowError(str(err)) from None


def base_tokenizer_fingerprint(wildcards):
    """The tokenizer job's rerun trigger: what the base model's tokenizer is, not the
    model's name, so that a base model with the same tokenizer keeps every SFT set.
    A params function, so the tokenizer is only looked at when the job is in the DAG."""
    return _tokenizer_fingerprint(config["base_model"])


def per_task(pattern):
    return expand(pattern, task=TASKS)


def task_outputs(task):
    """Everything `all` builds for one task."""
    return [
        f"results/{task}/{task}.{GGUF_SUFFIX}.gguf",
        f"results/{task}/Modelfile",
        f"results/{task}/eval.json",
        f"results/{task}/eval_samples.md",
    ]


def evaluation_n_ctx(wildcards):
    """Room for a held-out prompt and its answer. The split cut every prompt to fit
    max_length together with the teacher's answer, so max_length bounds the prompt."""
    return (
        training_settings(config, wildcards.task)["max_length"] + config["evaluation"]["max_tokens"]
    )


def report_inputs():
    """Every file the report reads: each task's evaluation, training metrics, loss log and
    benchmark files, and the shared jobs' benchmark files."""
    files = [path for task in TASKS for path in task_files(task).values()]
    return files + list(base_files().values())


def task_num_ctx(wildcards):
    return config["ollama"]["num_ctx"] or training_settings(config, wildcards.task)["max_length"]


def ollama_model_name(wildcards):
    return config["ollama"]["model_prefix"] + wildcards.task


def gpu_count():
    """Model stages ask the scheduler for a GPU unless the config pins them to the CPU.
    Locally an undeclared resource is not limited, so a CPU-only machine still runs them."""
    return 0 if config["training"]["device"] == "cpu" else 1


def keep_or_temp(path):
    """The merged HF copy is a build intermediate unless gguf.keep_merged asks to keep it."""
    return path if config["gguf"]["keep_merged"] else temp(path)
