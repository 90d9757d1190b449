import functools
import re
import sys
from pathlib import Path

import jsonschema
import pandas
from snakemake.exceptions import WorkflowError
from snakemake.utils import Paramspace, validate

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from vault_distill.config import (  # noqa: E402
    ConfigError,
    check_config_files,
    decoding_settings,
    explain_validation_error,
    keys_with_role,
    training_settings,
)
from vault_distill import layout  # noqa: E402
from vault_distill.layout import (  # noqa: E402
    QUALITY_ADAPTER_ARMS as ADAPTER_ARMS,
    QUALITY_ARMS,
    QUALITY_SFT_ARMS as SFT_ARMS,
    base_gguf_path,
    eval_json,
    eval_samples,
    evaluated_gguf,
    evaluation_arms,
    format_path,
    gguf_suffix,
    lora_gguf_path,
    merged_gguf_path,
    model_card_path,
    quality_arms,
    quality_files,
    ships_adapter,
    ships_merged,
    sft_lora_gguf_path,
    tracked_json,
)
from vault_distill.models import ModelNotFound, tokenizer_fingerprint  # noqa: E402
from vault_distill.quantize import method_settings  # noqa: E402
from vault_distill.quality import BASE_ARMS, TUNED_ARMS  # noqa: E402
from vault_distill.report import base_files, task_files  # noqa: E402
from vault_distill.rule_resources import RuleResources  # noqa: E402
from vault_distill.sweep import (
    sweep_answers,
    sweep_dir,
    sweep_variants,
    variant_answers,
)  # noqa: E402
from vault_distill.teach import acceptance_settings, generation_identity  # noqa: E402
from vault_distill.extract import extract_task_inputs, too_few_inputs  # noqa: E402
from vault_distill.vault import VaultCache  # noqa: E402

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
# The DAG extracts every task from the same notes: scanned and parsed once for all of them.
VAULT_CACHE = VaultCache(VAULT)
# The second vault, for evaluation only (quality.holdout), and the tasks it has a selector for.
HOLDOUT = config["quality"]["holdout"]
HOLDOUT_VAULT = Path(HOLDOUT["vault"]) if HOLDOUT["vault"] else None
HOLDOUT_TASKS = [task for task in TASKS if task in HOLDOUT["select"]]
HOLDOUT_CACHE = VaultCache(HOLDOUT_VAULT) if HOLDOUT_VAULT else None
GGUF_SUFFIX = gguf_suffix(config["gguf"]["outtype"])
MERGED_GGUF = merged_gguf_path("{task}", GGUF_SUFFIX)
BASE_GGUF = base_gguf_path(GGUF_SUFFIX)
LORA_GGUF = lora_gguf_path("{task}")
# The task's schema as Ollama's `format` takes it; `serve` holds answers to it.
FORMAT_JSON = format_path("{task}")
# Where the track job records the task's run (training.report_to).
TRACKED_JSON = tracked_json("{task}")
# preference.enabled: the prefer stage's DPO adapter is what merge and convert_adapter ship; the
# SFT adapter, as a LoRA GGUF on the base GGUF, answers the training inputs and is the `sft` arm.
PREFERENCE = config["preference"]["enabled"]
SFT_ADAPTER = "results/{task}/adapter"
TUNED_ADAPTER = "results/{task}/preference/adapter" if PREFERENCE else SFT_ADAPTER
SFT_LORA_GGUF = sft_lora_gguf_path("{task}")
# DPO's settings: the prefer job's rerun trigger (on/off is which adapter ships, not how it trains).
PREFERENCE_TRAINING = {
    key: value for key, value in config["preference"].items() if key != "enabled"
}
# What each task ships (gguf.deploy): the merged GGUF, the LoRA GGUF on the base GGUF, or both.
DEPLOY = config["gguf"]["deploy"]
DEPLOYS_MERGED = ships_merged(DEPLOY)
DEPLOYS_ADAPTER = ships_adapter(DEPLOY)
# The quality benchmark's arms for this deployment (vault_distill.layout decides them).
QUALITY_ARMS_BUILT = list(quality_arms(DEPLOY, PREFERENCE))
# The training settings that are a rerun trigger: those that shape the adapter (x-role: makes in
# config/schema.yaml). The memory trades (x-role: runs) are read by the train script itself.
TRAINING_KEYS = keys_with_role("training", "makes")
# One folder per method, so that switching back finds the other one's base still built.
QUANTIZED_BASE = f"results/base/{config['quantization']['method']}"
# Where tokenizer fingerprints are memoized (see base_tokenizer_fingerprint).
TOKENIZER_FINGERPRINTS = "cache/tokenizer-fingerprints"
# What changes a teacher answer (also the teacher cache's key): the teach jobs' rerun
# trigger. Endpoint, timeouts, retries and the cache's place only change how it is asked.
TEACHER_GENERATION = generation_identity(config["teacher"])
# Which answers are kept (teacher.reject_defects): a rerun trigger, never part of the cache key,
# so that a changed check re-judges the cached answers instead of paying for them again.
TEACHER_ACCEPTANCE = acceptance_settings(config["teacher"])
# The sweep target's variants (config `sweep`): a Paramspace over training settings and seeds, one
# {variant} wildcard (e.g. lora_r~16/seed~0) per variant, with the settings it overrides.
SWEEP = config["sweep"]
SWEEP_TASKS = SWEEP["tasks"] or TASKS
_SWEPT = sweep_variants(SWEEP) if SWEEP["grid"] or SWEEP["table"] else []
SWEEP_SPACE = (
    Paramspace(pandas.DataFrame(_SWEPT, dtype=object), single_wildcard="variant")
    if _SWEPT
    else None
)
SWEEP_VARIANTS = dict(zip(SWEEP_SPACE.instance_patterns, _SWEPT)) if _SWEPT else {}
SWEEP_PATTERN = "|".join(re.escape(pattern) for pattern in SWEEP_VARIANTS) or "(?!)"
# What each job asks a scheduler for (Slurm: --mem, --time, --gpus): the rules' resources.
sizing = RuleResources(config)


# Input functions ----------------------------------------------------------------


def task_notes(wildcards):
    """Only the notes this task reads, so an edit elsewhere never reruns it. A task whose notes
    give fewer usable inputs than its min_examples stops here, before any job runs."""
    settings = config["tasks"][wildcards.task]
    result = task_extraction(wildcards.task)
    shortfall = too_few_inputs(result, VAULT, settings["select"], settings["min_examples"])
    if shortfall:
        raise WorkflowError(f"tasks.{wildcards.task}.min_examples: {shortfall}")
    return [str(VAULT / rel) for rel in result.notes_read]


@functools.cache
def task_extraction(task):
    """The task's extraction, run once when the DAG is built: it is cheap (0.1 s for all five
    tasks on the sample vault), and it names both the notes the extract job reads and how many
    usable inputs they give, exactly as that job will find them."""
    settings = config["tasks"][task]
    return extract_task_inputs(VAULT, settings["header"], settings["select"], VAULT_CACHE)


@functools.cache
def holdout_extraction(task):
    """The task's extraction from the holdout vault, as quality_holdout_extract will run it."""
    if HOLDOUT_VAULT is None:
        raise WorkflowError(
            "quality.holdout.vault: not set; quality_holdout needs a vault to score on"
        )
    if task not in HOLDOUT["select"]:
        raise WorkflowError(
            f"quality.holdout.select.{task}: no selector for this task in the holdout vault"
        )
    header = config["tasks"][task]["header"]
    return extract_task_inputs(HOLDOUT_VAULT, header, HOLDOUT["select"][task], HOLDOUT_CACHE)


def holdout_notes(wildcards):
    """The holdout notes this task reads; none usable stops the DAG, naming the selector."""
    result = holdout_extraction(wildcards.task)
    shortfall = too_few_inputs(result, HOLDOUT_VAULT, HOLDOUT["select"][wildcards.task], 1)
    if shortfall:
        raise WorkflowError(f"quality.holdout.select.{wildcards.task}: {shortfall}")
    return [str(HOLDOUT_VAULT / rel) for rel in result.notes_read]


def holdout_selector(wildcards):
    return HOLDOUT["select"][wildcards.task]


def holdout_inputs():
    """Everything the holdout report reads: each holdout task's files, and the sample's report."""
    keys = ["heldout", "gold", *QUALITY_ARMS] + ["teacher"] * config["quality"]["teacher_labels"]
    files = [quality_files(task, bench="holdout")[key] for task in HOLDOUT_TASKS for key in keys]
    return files + list(task_schemas(HOLDOUT_TASKS).values())


def sweep_training(wildcards):
    """A sweep variant's training settings: the task's, with the variant's values over them."""
    settings = training_settings(config, wildcards.task)
    return {key: settings[key] for key in TRAINING_KEYS} | SWEEP_VARIANTS[wildcards.variant]


def sweep_inputs(wildcards):
    """Every variant's answers for every swept task, and the held-out sets they are scored on."""
    if not SWEEP_VARIANTS:
        raise WorkflowError(
            "sweep.grid: empty (and no sweep.table); name training keys and values to sweep"
        )
    keys = ["heldout", "gold"] + ["teacher"] * config["quality"]["teacher_labels"]
    files = [quality_files(task)[key] for task in SWEEP_TASKS for key in keys]
    answers = [path for variants in sweep_answer_files().values() for path in variants.values()]
    return files + answers + list(task_schemas(SWEEP_TASKS).values())


def sweep_answer_files():
    """{task: {variant: its answers}}: a variant with the task's own settings is the build's own
    model (its quality answers, without a grammar), never trained twice."""
    own = {task: None if PREFERENCE else training_settings(config, task) for task in SWEEP_TASKS}
    return {
        task: {
            pattern: variant_answers(task, pattern, variant, own[task])
            for pattern, variant in SWEEP_VARIANTS.items()
        }
        for task in SWEEP_TASKS
    }


def task_setting(key):
    """A params/input function returning one key of the task's config."""

    def get(wildcards):
        return config["tasks"][wildcards.task][key]

    return get


def teacher_prompt_file(wildcards):
    """tasks.<task>.teacher_prompt, the teacher's addition to the system prompt; [] where none."""
    path = config["tasks"][wildcards.task]["teacher_prompt"]
    return [path] if path else []


def task_decoding(wildcards):
    """The task's decoding settings (defaults + its overrides): how its Modelfile serves it."""
    return decoding_settings(config, wildcards.task)


def task_decodings():
    """Every task's decoding settings, by task (the quality report names each task's own)."""
    return {task: decoding_settings(config, task) for task in TASKS}


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
    """Everything `all` builds for one task, for what gguf.deploy ships, and its tracked run
    where training.report_to records one."""
    return layout.task_outputs(task, DEPLOY, GGUF_SUFFIX) + tracked_runs([task])


def tracked_runs(tasks=TASKS):
    """The track jobs' run references of the tasks whose training.report_to records runs: the
    quality reports add their figures to those runs."""
    return [
        TRACKED_JSON.format(task=task)
        for task in tasks
        if training_settings(config, task)["report_to"] != "none"
    ]


def deployed_ggufs():
    """The per-task GGUF patterns that gguf.deploy ships."""
    return [MERGED_GGUF] * DEPLOYS_MERGED + [LORA_GGUF] * DEPLOYS_ADAPTER


def ollama_inputs(wildcards):
    """What `ollama create` reads: the merged model's Modelfile, or the adapter's with its base."""
    task = wildcards.task
    answer_format = FORMAT_JSON.format(task=task)
    if DEPLOYS_MERGED:
        return {
            "modelfile": f"results/{task}/Modelfile",
            "gguf": MERGED_GGUF.format(task=task),
            "format": answer_format,
        }
    return {
        "format": answer_format,
        "modelfile": f"results/{task}/adapter.Modelfile",
        "gguf": LORA_GGUF.format(task=task),
        "base_gguf": BASE_GGUF,
    }


def model_card_inputs(wildcards):
    """The Modelfile the card shows, and the merged GGUF's check where a merged model ships."""
    task = wildcards.task
    if DEPLOYS_MERGED:
        return {
            "modelfile": f"results/{task}/Modelfile",
            "gguf_check": f"results/{task}/gguf_check.json",
        }
    return {"modelfile": f"results/{task}/adapter.Modelfile"}


def lora_check_inputs(wildcards):
    """With both deployments, the adapter's check also measures it against the merged GGUF."""
    return {"merged_gguf": MERGED_GGUF.format(task=wildcards.task)} if DEPLOYS_MERGED else {}


def evaluated_models(wildcards):
    """The evaluation's arms: the base GGUF, and each deployment of the tuned model."""
    return {
        arm: evaluated_gguf(arm, wildcards.task, GGUF_SUFFIX)
        for arm in evaluation_arms(DEPLOY, PREFERENCE)
    }


def evaluation_n_ctx(wildcards):
    """Room for a held-out prompt and its answer. The split cut every prompt to fit
    max_length together with the teacher's answer, so max_length bounds the prompt."""
    return (
        training_settings(config, wildcards.task)["max_length"]
        + decoding_settings(config, wildcards.task)["max_tokens"]
    )


def serve_n_ctx():
    """Room for the longest task's prompt and answer (see evaluation_n_ctx)."""
    return max(
        training_settings(config, task)["max_length"]
        + decoding_settings(config, task)["max_tokens"]
        for task in TASKS
    )


def report_inputs():
    """Every file the report reads: each task's evaluation, training metrics, loss log and
    benchmark files, and the shared jobs' benchmark files."""
    files = [
        path
        for task in TASKS
        for path in task_files(
            task, deploy=DEPLOY, gguf_type=GGUF_SUFFIX, preference=PREFERENCE
        ).values()
    ]
    return files + list(base_files(gguf_type=GGUF_SUFFIX).values())


def quality_arm_outputs(arms, bench="quality"):
    """The answer files of `arms` for the {task} wildcard, named by arm."""
    return {arm: quality_files("{task}", bench=bench)[arm] for arm in arms}


def quality_inputs():
    """Everything the quality report reads: every task's held-out inputs and arms, the teacher's
    answers to the unseen inputs when quality.teacher_labels asks for them, and the schemas."""
    keys = ["heldout", "gold", *QUALITY_ARMS_BUILT]
    if config["quality"]["teacher_labels"]:
        keys.append("teacher")
    files = [quality_files(task)[key] for task in TASKS for key in keys]
    return files + list(task_schemas().values())


def task_thresholds(key):
    """{task: tasks.<task>.<key>} for every task (a shared job's params)."""
    return {task: config["tasks"][task][key] for task in TASKS}


def task_schemas(tasks=TASKS):
    return {task: config["tasks"][task]["output_schema"] for task in tasks}


def task_num_ctx(wildcards):
    return config["ollama"]["num_ctx"] or training_settings(config, wildcards.task)["max_length"]


def ollama_model_name(wildcards):
    return config["ollama"]["model_prefix"] + wildcards.task


def keep_or_temp(path):
    """The merged HF copy is a build intermediate unless gguf.keep_merged asks to keep it."""
    return path if config["gguf"]["keep_merged"] else temp(path)
