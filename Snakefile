# vault-distill: a notes vault -> five small task-specific models for Ollama.
# The config is validated in workflow/rules/common.smk. Each stage goes by one name: its rule, its
# rules file, its entry script, its package module, its log and its benchmark file.
import re

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# Only configured task names match {task}, so no path can be mistaken for a task.
wildcard_constraints:
    task="|".join(re.escape(task) for task in TASKS),


include: "workflow/rules/extract.smk"
include: "workflow/rules/teach.smk"
include: "workflow/rules/base_tokenizer.smk"
include: "workflow/rules/preflight.smk"
include: "workflow/rules/base.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/prefer.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/modelfile.smk"
include: "workflow/rules/format.smk"
include: "workflow/rules/ollama_create.smk"
include: "workflow/rules/base_gguf.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/model_card.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/quality.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/serve.smk"
include: "workflow/rules/targets.smk"


rule all:
    default_target: True
    input:
        [task_outputs(task) for task in TASKS],
        "results/report.md",
