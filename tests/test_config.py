"""The config is checked at parse time: a bad value fails before any job runs, with one
message that names the key."""

import copy
import json

import pytest
from conftest import ROOT, absolute_resources, default_config, make_workdir, snakemake


def _break(config, dotted, value):
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    node[leaf] = value


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("trainig", {"epochs": 1}, "config key 'trainig': unknown key"),
        ("teacher.temperature", "hot", "config key 'teacher.temperature': 'hot' is not of type 'number'"),
        ("teacher.backend", "llamacpp", "config key 'teacher.backend': 'llamacpp' is not one of"),
        ("training.lora_r", 0, "config key 'training.lora_r': 0 is less than the minimum of 1"),
        ("tasks.judge.select.group", "pairs", "config key 'tasks.judge.select.group': 'pairs' is not one of"),
        ("tasks.judge.training.epoch", 2, "config key 'tasks.judge.training.epoch': unknown key"),
        ("tasks.planner.examples", "many", "config key 'tasks.planner.examples': 'many' is not of type 'integer'"),
        ("teacher.api_key_env", "sk-live-123", "config key 'teacher.api_key_env'"),
        ("decoding.max_tokens", 8, "config key 'decoding.max_tokens': 8 is less than the minimum of 16"),
        ("decoding.top_k", 1.5, "config key 'decoding.top_k': 1.5 is not of type 'integer'"),
        ("ollama.temperature", 0.2, "config key 'ollama.temperature': unknown key"),
        ("quality.max_inputs", 0, "config key 'quality.max_inputs': 0 is less than the minimum of 1"),
        ("quantization.method", "gptq", "config key 'quantization.method': 'gptq' is not one of ['hqq', 'nf4']"),
        ("quantization.double_quant", "yes", "config key 'quantization.double_quant': 'yes' is not of type"),
        ("training.optimizer", "adamw_bnb", "config key 'training.optimizer': 'adamw_bnb' is not one of"),
        ("tasks.judge.training.optimizer", "sgd", "config key 'tasks.judge.training.optimizer': 'sgd' is not"),
    ],
)
def test_bad_value_fails_at_parse_time_naming_the_key(tmp_path, key, value, expected):
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    _break(config, key, value)
    done = snakemake(make_workdir(tmp_path, config), "-n", check=False)
    assert done.returncode != 0
    assert expected in done.stdout + done.stderr
    assert "Building DAG" not in done.stdout + done.stderr + done.stdout


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil", "does not match"),
        ("Judge", "does not match"),
        ("has space", "does not match"),
        ("a/b", "does not match"),
        ("", "does not match"),
        # results/base and results/quality hold the shared jobs' files.
        ("base", "task name 'base' is reserved"),
        ("quality", "task name 'quality' is reserved"),
    ],
)
def test_unsafe_task_name_is_refused(tmp_path, name, why):
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    config["tasks"][name] = copy.deepcopy(config["tasks"]["judge"])
    done = snakemake(make_workdir(tmp_path, config), "-n", check=False)
    assert done.returncode != 0
    assert "config key 'tasks'" in done.stdout + done.stderr
    assert why in done.stdout + done.stderr


def schema_defaults(node: dict) -> dict:
    """The defaults config/schema.yaml gives, as a config: every property with a `default`."""
    defaults = {}
    for key, prop in node.get("properties", {}).items():
        if "properties" in prop:
            nested = schema_defaults(prop)
            if nested:
                defaults[key] = nested
        elif "default" in prop:
            defaults[key] = prop["default"]
    return defaults


def test_schema_defaults_are_the_shipped_config():
    """One recipe: a key deleted from config/config.yaml falls back to the very value it had."""
    import yaml

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text(encoding="utf-8"))
    shipped = default_config()
    defaults = schema_defaults(schema)
    drift = [
        f"{section}.{key}: schema {value!r}, config.yaml {shipped[section].get(key)!r}"
        for section, values in defaults.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if shipped.get(section, {}).get(key, value) != value
    ]
    drift += [
        f"{key}: schema {value!r}"
        for key, value in defaults.items()
        if not isinstance(value, dict) and shipped[key] != value
    ]
    task_defaults = {
        key: prop["default"] for key, prop in schema["$defs"]["task"]["properties"].items() if "default" in prop
    }
    for task, settings in shipped["tasks"].items():
        drift += [
            f"tasks.{task}.{key}: schema {value!r}, config.yaml {settings[key]!r}"
            for key, value in task_defaults.items()
            if key in settings and key not in ("training", "decoding") and settings[key] != value
        ]
    assert not drift, drift
    # Every section the schema knows is spelled out in config.yaml, so that a user sees each knob.
    assert set(schema["properties"]) == set(shipped)


@pytest.mark.slow  # starts Snakemake
def test_missing_vault_names_the_key(tmp_path):
    config = absolute_resources(default_config())
    done = snakemake(make_workdir(tmp_path, config, vault=tmp_path / "no-such-vault"), "-n", check=False)
    assert done.returncode != 0
    assert "config key 'vault': folder not found" in done.stdout + done.stderr


def test_a_missing_teacher_prompt_names_the_task_key(tmp_path):
    from vault_distill.config import ConfigError, check_config_files

    config = default_config()
    check_config_files(config, ROOT)  # teacher_prompt null: nothing to find
    config["tasks"]["planner"]["teacher_prompt"] = str(tmp_path / "nope.md")
    with pytest.raises(ConfigError, match=r"^config key 'tasks.planner.teacher_prompt': file not found: .*nope.md"):
        check_config_files(config, ROOT)


@pytest.mark.slow  # starts Snakemake
def test_missing_prompt_and_invalid_schema_name_the_task_key(tmp_path):
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    config["tasks"]["seeder"]["system_prompt"] = str(tmp_path / "nope.md")
    done = snakemake(make_workdir(tmp_path, config), "-n", check=False)
    assert "config key 'tasks.seeder.system_prompt': file not found" in done.stdout + done.stderr

    bad_schema = tmp_path / "bad.schema.json"
    bad_schema.write_text(json.dumps({"type": "objekt"}))
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    config["tasks"]["analyst"]["output_schema"] = str(bad_schema)
    done = snakemake(make_workdir(tmp_path / "2", config), "-n", check=False)
    assert done.returncode != 0
    assert "config key 'tasks.analyst.output_schema'" in done.stdout + done.stderr
    assert "not a valid JSON Schema" in done.stdout + done.stderr


@pytest.mark.slow  # starts Snakemake
def test_minimal_config_gets_schema_defaults(tmp_path):
    """Only the required task keys: everything else comes from config/schema.yaml."""
    config = {
        "vault": str(ROOT / "resources" / "vault"),
        "tasks": {
            "judge": {
                "system_prompt": str(ROOT / "resources/prompts/judge.md"),
                "header": "=== J ===",
                "select": {"folders": ["topics"]},
                "output_schema": str(ROOT / "resources/schemas/judge.schema.json"),
            }
        },
    }
    workdir = make_workdir(tmp_path, config)
    done = snakemake(workdir, "-n", "--printshellcmds", "--verbose", "results/judge/teacher.jsonl")
    assert "teacher" in done.stdout
    assert "planner" not in done.stdout


def test_every_training_and_teacher_setting_declares_its_role_once():
    from vault_distill.config import keys_with_role, setting_roles
    from vault_distill.teach import generation_identity
    from vault_distill.train import LEARNING_KEYS, RUN_KEYS

    shipped = default_config()
    assert set(setting_roles("training")) == set(shipped["training"])
    assert set(setting_roles("teacher")) == set(shipped["teacher"])
    assert set(LEARNING_KEYS) | set(RUN_KEYS) == set(shipped["training"])
    assert RUN_KEYS == ("gradient_checkpointing", "cache_dequantized_weights", "report_to", "experiment")
    # The teacher cache's keys are built from this: the same set as before roles were declared,
    # so that no cached answer is paid for again; a penalty added since counts only when it is on.
    assert set(generation_identity(shipped["teacher"])) == {
        "backend", "model", "command", "response_format", "temperature", "max_tokens", "seed", "n_ctx",
        "schema_retries",
    }  # fmt: skip
    assert generation_identity(shipped["teacher"] | {"presence_penalty": 1.0})["presence_penalty"] == 1.0
    assert keys_with_role("teacher", "accepts") == ("reject_defects", "dedupe_items", "samples")
    assert keys_with_role("teacher", "runs") == ("base_url", "api_key_env", "timeout_s", "max_retries", "cache_dir")


def test_a_setting_without_a_role_is_named(monkeypatch):
    from vault_distill import config as config_module

    schema = config_module._schema()
    broken = {**schema, "properties": {**schema["properties"], "teacher": {"properties": {"colour": {}}}}}
    monkeypatch.setattr(config_module, "_schema", lambda: broken)
    with pytest.raises(config_module.ConfigError, match=r"teacher\.colour declares no x-role"):
        config_module.setting_roles("teacher")


def test_config_readme_documents_every_section_of_the_schema():
    import re

    import yaml

    schema = yaml.safe_load((ROOT / "config" / "schema.yaml").read_text(encoding="utf-8"))
    readme = (ROOT / "config" / "README.md").read_text(encoding="utf-8")
    sections_table = readme.split("| section | what | a change reruns |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_.<>]+)` \|", sections_table, re.M))
    sections = set(schema["properties"]) - {"tasks"} | {"tasks.<name>"}
    assert documented == sections, f"undocumented: {sections - documented}, unknown: {documented - sections}"


@pytest.mark.slow  # starts Snakemake
@pytest.mark.parametrize(
    ("deploy", "where", "modules", "expected"),
    [
        (
            "adapter",
            "training",
            ["q_proj", "lm_head"],
            "config key 'training.target_modules': lm_head cannot be served",
        ),
        ("both", "tasks.seeder.training", ["embed_tokens"], "config key 'tasks.seeder.training.target_modules'"),
    ],
)
def test_an_adapter_deployment_refuses_modules_a_gguf_adapter_cannot_carry(tmp_path, deploy, where, modules, expected):
    """convert_lora_to_gguf.py takes the LoRA of linear layers only: refused before any job runs,
    and only when adapters are deployed."""
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    config["tasks"]["seeder"].setdefault("training", {})
    _break(config, f"{where}.target_modules", modules)
    config["gguf"]["deploy"] = deploy
    done = snakemake(make_workdir(tmp_path, config), "-n", check=False)
    assert done.returncode != 0 and expected in done.stdout + done.stderr
    assert "gguf.deploy: merged" in done.stdout + done.stderr

    config["gguf"]["deploy"] = "merged"
    assert snakemake(make_workdir(tmp_path / "merged", config), "-n", check=False).returncode == 0


@pytest.mark.parametrize("sparse", [False, True], ids=["shipped", "sparse"])
def test_load_config_fills_defaults_as_snakemake_validate_does(tmp_path, sparse):
    """The benchmarks' loader (no Snakemake needed) gives the very dict the rules get, defaults
    and all: on the shipped config, and on one that leaves whole sections to the schema."""
    import yaml
    from snakemake.utils import validate

    from vault_distill.config import load_config

    config = default_config()
    if sparse:
        config = {"tasks": {"judge": config["tasks"]["judge"]}, "vault": config["vault"]}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    expected = copy.deepcopy(config)
    validate(expected, str(ROOT / "config" / "schema.yaml"))
    assert load_config(path) == expected


def test_load_config_names_the_bad_key(tmp_path):
    from vault_distill.config import ConfigError, load_config

    config = default_config()
    config["training"]["lora_r"] = 0
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.yaml: config key 'training.lora_r': 0 is less than"):
        load_config(path)


def test_a_tasks_decoding_overrides_the_defaults_key_by_key():
    from vault_distill.config import decoding_settings

    config = default_config()
    config["tasks"]["judge"]["decoding"] = {"temperature": 0.0}
    judge, planner = decoding_settings(config, "judge"), decoding_settings(config, "planner")
    assert judge == {**config["decoding"], "temperature": 0.0}
    assert planner == {**config["decoding"], **config["tasks"]["planner"].get("decoding", {})}


def test_a_tasks_own_repeat_last_n_is_refused_by_name(tmp_path):
    """One server serves every task: the look-back belongs to its model, not to a request."""
    config = absolute_resources(default_config())
    config["vault"] = str(ROOT / "resources" / "vault")
    config["tasks"]["judge"]["decoding"] = {"repeat_last_n": 32}
    done = snakemake(make_workdir(tmp_path, config), "-n", check=False)
    assert done.returncode != 0
    assert "config key 'tasks.judge.decoding.repeat_last_n': one server serves every task" in done.stdout + done.stderr
