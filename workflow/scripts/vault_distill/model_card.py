"""Stage model_card: results/{task}/MODEL_CARD.md, laid out as the Hugging Face hub's model card
convention has it (https://huggingface.co/docs/hub/model-cards): YAML metadata (base_model,
library_name, license, tags, pipeline_tag), then the model, its training data's provenance, the
training settings, the evaluation, how to run it and its limits. Every figure comes from the
task's own result files; nothing is written by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from .format import ollama_chat_request
from .models import BUNDLED, bundled_gguf
from .report import markdown_table

# The hub ids of the bundled models: the card's base_model, which the hub links to.
BUNDLED_HUB_IDS = {"bundled:smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
UNKNOWN_LICENSE = "unknown"
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def base_model_id(spec: str) -> str | None:
    """The base as the hub names it: a bundled model's hub id, a hub id itself, none for a local path."""
    if spec in BUNDLED:
        return BUNDLED_HUB_IDS.get(spec)
    if Path(spec).expanduser().exists() or spec.startswith((".", "/", "~")):
        return None
    return spec


def base_license(spec: str) -> str:
    """The base's own license: a GGUF's general.license, else the `license:` in the front matter of
    the model's README.md (its hub model card: the local folder's, or the hub cache's), else "unknown"."""
    if spec in BUNDLED:
        return gguf_license(bundled_gguf(spec, "base_model"))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return gguf_license(path)
    readme = path / "README.md" if path.is_dir() else cached_hub_readme(spec)
    found = readme_license(readme) if readme and Path(readme).is_file() else None
    return found or UNKNOWN_LICENSE


def cached_hub_readme(repo_id: str) -> str | None:
    """The hub model card of `repo_id` where the hub cache holds it (nothing is downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "README.md")
    except ValueError:  # not a repo id
        return None
    return found if isinstance(found, str) else None


def gguf_license(path: str | Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields.get("general.license")
    return str(field.contents()) if field is not None else UNKNOWN_LICENSE


def readme_license(readme: Path) -> str | None:
    match = FRONT_MATTER.match(readme.read_text(encoding="utf-8").replace("\r\n", "\n"))
    metadata = yaml.safe_load(match.group(1)) if match else None
    return str(metadata["license"]) if isinstance(metadata, dict) and metadata.get("license") else None


def card_metadata(task: str, base_model: str, license_id: str, quantization: str, adapter: bool) -> dict:
    metadata = {"base_model": base_model_id(base_model), "library_name": "gguf", "license": license_id}
    tags = ["vault-distill", task, "gguf", "ollama", "lora", "qlora", quantization]
    metadata |= {"pipeline_tag": "text-generation", "tags": tags + ["adapter"] * adapter}
    return {key: value for key, value in metadata.items() if value is not None}


def _table(rows: list[tuple[str, object]], head=("setting", "value")) -> list[str]:
    return markdown_table(head, [{head[0]: key, head[1]: _cell(value)} for key, value in rows])


def _cell(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def provenance_section(facts: dict) -> list[str]:
    extract, teacher = facts["extract_stats"], facts["teacher_stats"]
    counts = facts["train_metrics"]
    rows = [
        ("vault", facts["vault"]),
        ("task selector", facts["select"]),
        ("inputs extracted", extract["inputs"]),
        ("teacher", f"{facts['teacher']['backend']}: {facts['teacher']['model']}"),
        ("teacher settings", {k: v for k, v in facts["teacher"].items() if k not in ("backend", "model")}),
        ("teacher prompt", facts.get("teacher_prompt") or "none: the task's system prompt alone"),
        *(
            [("teacher samples", f"{teacher['samples']} per input, the most agreed-on kept")]
            if "samples" in teacher
            else []
        ),
        ("teacher answers accepted", f"{teacher['accepted']} of {teacher['asked']} asked"),
        ("training examples", counts["examples"]),
        ("held-out examples", counts["val_examples"]),
    ]
    intro = "Inputs come from the notes vault below; the teacher wrote every target answer."
    return ["## Training data", "", intro, "", *_table(rows), ""]


def training_section(facts: dict) -> list[str]:
    metrics = facts["train_metrics"]
    merge = "" if facts["adapter"] else ", then merged into the bf16 base"
    rows = [(key, value) for key, value in facts["training"].items()]
    rows += [(f"quantization.{key}", value) for key, value in facts["quantization"].items()]
    done = (
        f"{metrics['steps']} steps on {metrics['device']} in {metrics['dtype']}, {metrics['wall_time_s']} s; "
        f"final train loss {metrics['final_train_loss']:.4f}"
        + (f", eval loss {metrics['eval_loss']:.4f}" if metrics.get("eval_loss") is not None else "")
    )
    return [
        "## Training procedure",
        "",
        f"QLoRA: a LoRA adapter trained on the 4-bit base{merge}. {done}.",
        "",
        *_table(rows),
        "",
    ]


def evaluation_section(facts: dict) -> list[str]:
    evaluation = facts["evaluation"]
    rows = [
        (arm, f"{scores['compliant']}/{scores['answers']} compliant ({scores['compliance']:.0%})")
        for arm, scores in evaluation["models"].items()
    ]
    rule = evaluation.get("compliance_rule", "")
    lines = ["## Evaluation", "", f"On the task's held-out examples, {rule}.", "", *_table(rows, ("model", "result"))]
    check = facts.get("gguf_check")
    if check:
        lines += [
            "",
            f"GGUF check: HF and GGUF greedy tokens agree on {check['agreed_tokens']} of "
            f"{check['compared_tokens']}; tokenization equal: {check['tokenization_equal']}.",
        ]
    lines += [
        "",
        "The quality benchmark (`snakemake quality`, results/quality/quality.md) adds gold accuracy and"
        " Wilson intervals on more inputs.",
        "",
    ]
    return lines


def usage_section(task: str, model_name: str, modelfile: str, answer_format: dict) -> list[str]:
    request = ollama_chat_request(model_name, answer_format, "...")
    return [
        "## How to use",
        "",
        f"`ollama create {model_name} -f {modelfile}` (the Modelfile's TEMPLATE is the base's own chat",
        "template, checked; it sets the system prompt and the sampling settings). Send `format.json` as",
        "Ollama's `format` with each request, so every answer is held to the task's schema:",
        "",
        "```json",
        json.dumps(request, indent=1),
        "```",
        "",
    ]


def limits_section(facts: dict) -> list[str]:
    lines = [
        "## Limitations",
        "",
        "- Trained on one person's notes for one task: it is not a general assistant.",
        f"- It learnt the teacher's answers: its content is only as right as {facts['teacher']['model']}'s.",
        "- Without `format` an answer may not follow the schema; the evaluation above gives how often.",
    ]
    if facts["train_metrics"]["examples"] < facts["meaningful_examples"]:
        lines.append(f"- {facts['train_metrics']['examples']} training examples: too few for its figures to mean much.")
    return [*lines, ""]


def render_model_card(facts: dict) -> str:
    """MODEL_CARD.md from the task's facts (see write_model_card for the keys)."""
    task = facts["task"]
    metadata = card_metadata(
        task, facts["base_model"], facts["license"], facts["quantization"]["method"], facts["adapter"]
    )
    base = base_model_id(facts["base_model"]) or facts["base_model"]
    shipped = f"a LoRA adapter on {base}" if facts["adapter"] else f"{base} fine-tuned (its QLoRA adapter merged in)"
    intro = (
        f"`{facts['model_name']}`: the {task} task of vault-distill, {shipped}, trained on a teacher's"
        " answers to inputs from a notes vault and shipped as a GGUF for llama.cpp and Ollama."
    )
    body = [f"# {facts['model_name']}", "", intro, "", f"License: {facts['license']} (the base model's).", ""]
    body += provenance_section(facts) + training_section(facts) + evaluation_section(facts)
    body += usage_section(task, facts["model_name"], facts["modelfile"], facts["format"]) + limits_section(facts)
    return "---\n" + yaml.safe_dump(metadata, sort_keys=False) + "---\n\n" + "\n".join(body)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_model_card(out: str | Path, files: dict, settings: dict) -> str:
    """Reads the task's result files (`files`: train_metrics, teacher_stats, extract_stats,
    evaluation, format, gguf_check, modelfile) and writes its card; returns the license found."""
    facts = {key: read_json(files[key]) for key in ("train_metrics", "teacher_stats", "extract_stats", "evaluation")}
    facts |= {"format": read_json(files["format"]), "modelfile": Path(files["modelfile"]).name}
    facts["gguf_check"] = read_json(files["gguf_check"]) if files.get("gguf_check") else None
    facts |= settings
    facts["license"] = base_license(settings["base_model"])
    Path(out).write_text(render_model_card(facts), encoding="utf-8")
    return facts["license"]
