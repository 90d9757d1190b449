"""Where every result lives, and what `gguf.deploy` and `preference.enabled` put in a build.

The rules (common.smk), the report and the quality benchmark all ask this one module: which task
stages run, which models the evaluation and the quality benchmark compare, and the path of each
file. A decision made here once cannot drift between the DAG and the code that reads its files.
"""

from __future__ import annotations

RESULTS = "results"
DEPLOYS = ("merged", "adapter", "both")
# llama.cpp's converter writes LoRA GGUFs in f16 (its adapters carry no Q8_0 option).
LORA_OUTTYPE = "f16"

# Stages, in the order a task's build runs them; which of them run depends on the deployment.
TASK_STAGES = ("teach", "train", "prefer_pairs", "prefer", "merge", "convert", "convert_adapter", "evaluate")
MERGED_STAGES = ("merge", "convert")
ADAPTER_STAGES = ("convert_adapter",)
PREFER_STAGES = ("prefer_pairs", "prefer")
BASE_STAGES = ("base", "quantize", "base_gguf")

# The evaluation's models, in the order they are shown: the base GGUF, the merged tuned GGUF, the
# task's LoRA GGUF on the base GGUF, and, with the prefer stage on, the SFT adapter before DPO.
EVALUATION_ARMS = ("base", "tuned", "tuned_adapter", "sft")
# The quality benchmark's arms: each prompted model above, and base and tuned under the schema.
QUALITY_ARMS = ("base", "base_grammar", "tuned", "tuned_grammar")
QUALITY_ADAPTER_ARMS = ("tuned_adapter",)
QUALITY_SFT_ARMS = ("sft",)
ALL_QUALITY_ARMS = QUALITY_ARMS + QUALITY_ADAPTER_ARMS + QUALITY_SFT_ARMS


def ships_merged(deploy: str) -> bool:
    """gguf.deploy merged or both: each task ships a whole merged GGUF."""
    return _known(deploy) in ("merged", "both")


def ships_adapter(deploy: str) -> bool:
    """gguf.deploy adapter or both: each task ships a LoRA GGUF on the shared base GGUF."""
    return _known(deploy) in ("adapter", "both")


def _known(deploy: str) -> str:
    if deploy not in DEPLOYS:
        raise ValueError(f"gguf.deploy: {deploy!r} is not one of {', '.join(DEPLOYS)}")
    return deploy


def task_stages(deploy: str = "merged", preference: bool = False) -> tuple[str, ...]:
    """The task stages that run for what gguf.deploy ships, with the prefer stage or without."""
    skipped = (() if ships_adapter(deploy) else ADAPTER_STAGES) + (() if ships_merged(deploy) else MERGED_STAGES)
    skipped += () if preference else PREFER_STAGES
    return tuple(stage for stage in TASK_STAGES if stage not in skipped)


def evaluation_arms(deploy: str = "merged", preference: bool = False) -> tuple[str, ...]:
    """The models the evaluation answers with (eval.json's keys): the base, each deployment of the
    tuned model, and SFT alone when the prefer stage is on (`tuned` is then SFT + preference)."""
    arms = ("base",) + ("tuned",) * ships_merged(deploy) + ("tuned_adapter",) * ships_adapter(deploy)
    return arms + ("sft",) * preference


def quality_arms(deploy: str = "merged", preference: bool = False) -> tuple[str, ...]:
    """The quality benchmark's arms: base and merged tuned with and without the schema always, the
    adapter where it is deployed, and SFT alone beside SFT + preference when the prefer stage is on."""
    return QUALITY_ARMS + QUALITY_ADAPTER_ARMS * ships_adapter(deploy) + QUALITY_SFT_ARMS * preference


# Paths --------------------------------------------------------------------------------------


def gguf_suffix(outtype: str) -> str:
    """`q8_0` -> `Q8_0`, the naming used on the hub and by Ollama's library."""
    return outtype.upper()


def task_dir(task: str, results: str = RESULTS) -> str:
    return f"{results}/{task}"


def merged_gguf_path(task: str, gguf_type: str, results: str = RESULTS) -> str:
    return f"{results}/{task}/{task}.{gguf_type}.gguf"


def lora_gguf_path(task: str, results: str = RESULTS) -> str:
    return f"{results}/{task}/{task}.lora.{gguf_suffix(LORA_OUTTYPE)}.gguf"


def sft_lora_gguf_path(task: str, results: str = RESULTS) -> str:
    """The SFT adapter before DPO, as a LoRA GGUF: the `sft` arm, with the prefer stage on."""
    return f"{results}/{task}/preference/sft.lora.{gguf_suffix(LORA_OUTTYPE)}.gguf"


def base_gguf_path(gguf_type: str, results: str = RESULTS) -> str:
    return f"{results}/base/base.{gguf_type}.gguf"


def modelfile_path(task: str, adapter: bool = False, results: str = RESULTS) -> str:
    return f"{results}/{task}/{'adapter.Modelfile' if adapter else 'Modelfile'}"


def format_path(task: str, results: str = RESULTS) -> str:
    """The task's answer schema as Ollama's `format` takes it (see format.py)."""
    return f"{results}/{task}/format.json"


def runs_dir(task: str, results: str = RESULTS) -> str:
    """Where TensorBoard writes the task's tracked runs (training.report_to)."""
    return f"{results}/{task}/runs"


def tracked_json(task: str, results: str = RESULTS) -> str:
    """The track job's record of where the task's run is, and what it added to it."""
    return f"{results}/{task}/tracked.json"


def model_card_path(task: str, results: str = RESULTS) -> str:
    """The task's model card, as the HF hub lays one out (model_card.py)."""
    return f"{results}/{task}/MODEL_CARD.md"


def eval_json(task: str, results: str = RESULTS) -> str:
    return f"{results}/{task}/eval.json"


def eval_samples(task: str, results: str = RESULTS) -> str:
    return f"{results}/{task}/eval_samples.md"


def evaluated_gguf(arm: str, task: str, gguf_type: str, results: str = RESULTS) -> str:
    """The GGUF an evaluation arm answers with (a LoRA arm's base is base_gguf_path)."""
    paths = {
        "base": base_gguf_path(gguf_type, results),
        "tuned": merged_gguf_path(task, gguf_type, results),
        "tuned_adapter": lora_gguf_path(task, results),
        "sft": sft_lora_gguf_path(task, results),
    }
    return paths[arm]


def task_outputs(task: str, deploy: str, gguf_type: str, results: str = RESULTS) -> list[str]:
    """Everything `all` builds for one task, for what gguf.deploy ships."""
    merged = [merged_gguf_path(task, gguf_type, results), modelfile_path(task, False, results)]
    adapter = [lora_gguf_path(task, results), modelfile_path(task, True, results)]
    shipped = merged * ships_merged(deploy) + adapter * ships_adapter(deploy)
    evaluation = [eval_json(task, results), eval_samples(task, results)]
    return [*shipped, format_path(task, results), *evaluation, model_card_path(task, results)]


# The quality benchmark's two vaults: the one the models learnt from (its held-out inputs), and a
# second one that no model ever learnt from (quality.holdout).
BENCHES = ("quality", "holdout")


def quality_files(task: str, results: str = RESULTS, bench: str = "quality") -> dict[str, str]:
    """Where each job of the quality benchmark writes for one task, on the sample vault's held-out
    inputs (`quality`) or on the holdout vault (`holdout`)."""
    if bench not in BENCHES:
        raise ValueError(f"no quality benchmark {bench!r}: {', '.join(BENCHES)}")
    folder = f"{results}/{bench}/{task}"
    return {
        "inputs": f"{results}/{task}/inputs.jsonl" if bench == "quality" else f"{folder}/inputs.jsonl",
        "heldout": f"{folder}/heldout.jsonl",
        "unseen_inputs": f"{folder}/unseen_inputs.jsonl",
        "teacher": f"{folder}/teacher.jsonl",
        "gold": f"{folder}/gold.jsonl",
        **{arm: f"{folder}/answers/{arm}.json" for arm in ALL_QUALITY_ARMS},
    }
