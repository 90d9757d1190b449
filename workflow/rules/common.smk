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
from vault_distill.vault import notes_read_by_task  # noqa: E402

try:
    validate(config, "../../config/schema.yaml")
except WorkflowError as err:
    cause = next((arg for arg in err.args if isinstance(arg, jsonschema.ValidationError)), None)
    if cause is None:
        raise
    raise WorkflowError(explain_validation_error(cause)) from None
try:
    check_config_files(config, Path.cwd())
except ConfigError as err:
    raise WorkflowError(str(err)) from None


TASKS = list(config["tasks"])
VAULT = Path(config["vault"])


wildcard_constraints:
    task="|".join(re.escape(task) for task in TASKS),


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


def per_task(pattern):
    return expand(pattern, task=TASKS)
