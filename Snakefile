# vault-distill: a notes vault -> five small task-specific models for Ollama.
# The config is validated in workflow/rules/common.smk; each stage has its own rules file.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/teacher.smk"
include: "workflow/rules/base.smk"
include: "workflow/rules/sft.smk"


rule all:
    default_target: True
    input:
        per_task("results/{task}/sft/train.jsonl"),
        per_task("results/{task}/sft/val.jsonl"),
