"""Config checks that JSON Schema cannot express, and one-line error messages."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema
import yaml

from .layout import ships_adapter

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "config" / "schema.yaml"
# The schema sections whose settings declare an x-role, and where their properties live.
ROLE_SECTIONS = {"training": ("$defs", "training_values"), "teacher": ("properties", "teacher")}
ROLES = ("makes", "accepts", "runs")


class ConfigError(ValueError):
    """A bad config value; the message starts with the dotted key."""


def dotted(path) -> str:
    return ".".join(str(part) for part in path) or "<config>"


def explain_validation_error(error: jsonschema.ValidationError) -> str:
    """`config key 'teacher.backend': 'llamacpp' is not one of [...]` from a schema error."""
    best = jsonschema.exceptions.best_match([error]) or error
    path = list(best.absolute_path)
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        allowed = set(best.schema.get("properties", {}))
        unknown = sorted(set(best.instance) - allowed)
        if unknown:
            path = [*path, unknown[0]]
            return f"config key '{dotted(path)}': unknown key (allowed here: {', '.join(sorted(allowed))})"
    if best.validator == "propertyNames":
        return f"config key '{dotted(path)}': {best.message}; task names must match [a-z][a-z0-9_]*"
    if best.validator == "not" and list(best.schema_path)[-2:] == ["propertyNames", "not"]:
        name = best.instance
        return f"config key '{dotted(path)}': task name {name!r} is reserved (results/{name} holds shared files)"
    if best.validator == "pattern" and best.parent is not None and best.parent.validator == "propertyNames":
        return f"config key '{dotted(path)}': {best.message}"
    return f"config key '{dotted(path)}': {best.message}"


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))


def _filling_defaults(validator_class):
    """`validator_class` that also sets each missing property's schema default, as Snakemake's
    validate() does (the recipe in jsonschema's FAQ)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if "default" in subschema and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_config(path: str | Path) -> dict:
    """The config file validated against config/schema.yaml, with the schema's defaults filled in:
    what common.smk's validate() gives the rules, for code that runs without Snakemake (the
    benchmarks, and machines that have only the model stages' packages)."""
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    validator = _filling_defaults(jsonschema.Draft202012Validator)(_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise ConfigError(f"{path}: {explain_validation_error(error)}")
    return config


def setting_roles(section: str) -> dict[str, str]:
    """Each setting of `section` (training, teacher) and its declared x-role: `makes` (part of
    what a job makes, so a rerun trigger) or `runs` (only how the job runs)."""
    node = _schema()
    for part in ROLE_SECTIONS[section]:
        node = node[part]
    roles = {key: prop.get("x-role") for key, prop in node["properties"].items()}
    undeclared = [key for key, role in roles.items() if role not in ROLES]
    if undeclared:
        raise ConfigError(f"{SCHEMA_FILE}: {section}.{undeclared[0]} declares no x-role (one of {', '.join(ROLES)})")
    return roles


def keys_with_role(section: str, role: str) -> tuple[str, ...]:
    """The settings of `section` whose x-role is `role`, in the schema's order."""
    return tuple(key for key, declared in setting_roles(section).items() if declared == role)


def training_settings(config: dict, task: str) -> dict:
    """Training defaults overlaid with the task's own overrides."""
    return {**config["training"], **config["tasks"][task].get("training", {})}


def decoding_settings(config: dict, task: str) -> dict:
    """Decoding defaults overlaid with the task's own overrides: how its Modelfile serves it."""
    return {**config["decoding"], **config["tasks"][task].get("decoding", {})}


def check_task_decoding(config: dict) -> None:
    """repeat_last_n is a setting of the served model, and `serve` loads the base model once for
    every task: a task cannot have its own."""
    for task, settings in config["tasks"].items():
        if "repeat_last_n" in settings.get("decoding", {}):
            raise ConfigError(
                f"config key 'tasks.{task}.decoding.repeat_last_n': one server serves every task and the"
                " look-back is a setting of its model; set decoding.repeat_last_n for all tasks"
            )


def check_config_files(config: dict, root: Path) -> None:
    """Paths the schema can only type-check: they must exist, and schemas must be schemas."""
    vault = root / config["vault"]
    if not vault.is_dir():
        raise ConfigError(f"config key 'vault': folder not found: {vault}")
    for task, settings in config["tasks"].items():
        for key in ("system_prompt", "output_schema", "teacher_prompt"):
            if settings.get(key) is None:
                continue
            path = root / settings[key]
            if not path.is_file():
                raise ConfigError(f"config key 'tasks.{task}.{key}': file not found: {path}")
        schema_path = root / settings["output_schema"]
        try:
            schema = json.loads(schema_path.read_text(encoding="utf-8"))
            jsonschema.Draft202012Validator.check_schema(schema)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config key 'tasks.{task}.output_schema': {schema_path} is not JSON: {err}") from None
        except jsonschema.SchemaError as err:
            raise ConfigError(
                f"config key 'tasks.{task}.output_schema': {schema_path} is not a valid JSON Schema: {err.message}"
            ) from None
    check_adapter_deployment(config)
    check_task_decoding(config)
    check_teacher_sampling(config["teacher"])
    check_tracking(config)
    check_sweep_config(config)
    if config["teacher"]["backend"] == "command" and not config["teacher"].get("command"):
        raise ConfigError("config key 'teacher.command': the command backend needs an argv list")


def check_sweep_config(config: dict) -> None:
    from .sweep import check_sweep

    check_sweep(config["sweep"], list(config["tasks"]))


def check_tracking(config: dict) -> None:
    """training.report_to's backend must be installed: the train job would fail only at its end."""
    from .track import check_backend

    for task in config["tasks"]:
        where = f"tasks.{task}.training" if "report_to" in config["tasks"][task].get("training", {}) else "training"
        check_backend(training_settings(config, task)["report_to"], f"{where}.report_to")


# Modules whose LoRA llama.cpp's convert_lora_to_gguf.py cannot write as a GGUF adapter: it takes
# lora_A/lora_B pairs of linear layers, and the embedding is tied to lm_head in many small models.
NOT_ADAPTER_MODULES = ("embed_tokens", "lm_head", "wte", "tok_embeddings", "embed_in", "word_embeddings")


def check_adapter_deployment(config: dict) -> None:
    """gguf.deploy adapter/both: every task's target_modules must be ones a GGUF adapter carries."""
    if not ships_adapter(config["gguf"]["deploy"]):
        return
    for task in config["tasks"]:
        refused = [m for m in training_settings(config, task)["target_modules"] if m in NOT_ADAPTER_MODULES]
        if refused:
            where = (
                f"tasks.{task}.training"
                if "target_modules" in config["tasks"][task].get("training", {})
                else "training"
            )
            raise ConfigError(
                f"config key '{where}.target_modules': {', '.join(refused)} cannot be served as a llama.cpp LoRA "
                f"adapter (gguf.deploy: {config['gguf']['deploy']}); drop it or use gguf.deploy: merged"
            )


def check_teacher_sampling(teacher: dict) -> None:
    """Self-consistency needs answers that differ: several samples decoded greedily are one."""
    if teacher["samples"] > 1 and teacher["temperature"] == 0:
        raise ConfigError(
            f"config key 'teacher.samples': {teacher['samples']} samples at temperature 0 are one answer"
            f" {teacher['samples']} times; set teacher.temperature above 0 (e.g. 0.7) or samples: 1"
        )
