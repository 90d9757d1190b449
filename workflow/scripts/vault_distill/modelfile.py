"""Ollama Modelfiles whose TEMPLATE renders exactly what the base model's HF chat template renders.

`ollama create` guesses a template from the GGUF's Jinja only when it is close to one it knows,
and Qwen2.5's is not, so the Modelfile always carries an explicit TEMPLATE and stops, derived by
probing the tokenizer's own template (chat_format.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .chat_format import FAMILY_NAMES, NoFamily, chat_format, go_template
from .decoding import modelfile_parameters

# Markers that name a chat template family in an error message. Only naming: the TEMPLATE itself
# is derived and verified by probing (chat_format.py), never from these.
FAMILY_MARKERS = (
    ("Llama 3", "<|start_header_id|>"),
    ("Gemma", "<start_of_turn>"),
    ("Mistral", "[INST]"),
    ("Mistral", "[SYSTEM_PROMPT]"),
    ("Phi-3/Phi-4", "<|end|>"),
    ("ChatML", "<|im_start|>"),
    ("Alpaca", "### Instruction"),
)


def family_seen(tokenizer) -> str:
    """The family a chat template looks like, as a clause of an error message."""
    source = tokenizer.chat_template
    if isinstance(source, dict):  # several named templates: the default one is used
        source = source.get("default", next(iter(source.values()), None))
    if not source:
        return "it has no chat template"
    names = dict.fromkeys(name for name, marker in FAMILY_MARKERS if marker in source)
    return f"its template looks like {' or '.join(names)}" if names else "its template is of no family known here"


class UnsupportedTemplate(ValueError):
    """The base model's chat template cannot be expressed as a verified Ollama TEMPLATE."""


@dataclass(frozen=True)
class OllamaTemplate:
    family: str
    template: str
    stops: tuple[str, ...]
    default_system: str | None
    # Roles whose content the HF template strips and Ollama's Go template cannot: send those stripped.
    trim: frozenset[str] = frozenset()


def ollama_template(tokenizer, key: str = "base_model") -> OllamaTemplate:
    """The Ollama TEMPLATE and stops for `tokenizer`'s chat template, verified on every probe.

    Raises UnsupportedTemplate (its message starts with `key`) when no family renders what it renders.
    """
    try:
        fmt = chat_format(tokenizer)
    except NoFamily as err:
        raise UnsupportedTemplate(
            f"{key}: chat template family not supported for Ollama: {family_seen(tokenizer)} "
            f"(supported: {FAMILY_NAMES}); {err}"
        ) from None
    return OllamaTemplate(
        family=fmt.family,
        template=go_template(fmt),
        stops=fmt.stops,
        default_system=fmt.default_system,
        trim=fmt.trim,
    )


def _check_value(what: str, value: str) -> None:
    if '"""' in value:
        raise ValueError(f'{what} contains """, which cannot be quoted in an Ollama Modelfile')
    # Ollama's Modelfile parser keeps only runes that Go's strconv.IsPrint accepts (plus space, tab
    # and newlines inside a value); Python's isprintable() draws the same line.
    for char in value:
        if not (char.isprintable() or char in "\t\n\r"):
            raise ValueError(f"{what} contains U+{ord(char):04X}, which Ollama's Modelfile parser would drop")


def _relative(what: str, path: str) -> str:
    """`path` as Ollama reads a file next to the Modelfile: ./name, or ../folder/name."""
    if not path or path.startswith("/") or any(c in path for c in "\r\n"):
        raise ValueError(f"{what} must be a path relative to the Modelfile on one line, got {path!r}")
    _check_value(what, path)
    return path if path.startswith("../") else f"./{path}"


def render_modelfile(
    gguf_file: str,
    template: OllamaTemplate,
    system_prompt: str,
    num_ctx: int,
    decoding: dict,
    adapter_file: str | None = None,
) -> str:
    """Modelfile text for a GGUF at `gguf_file` relative to it (with `adapter_file`: the base GGUF,
    and the task's LoRA GGUF on it), with every sampling setting of `decoding` stated (see
    decoding.py). Raises ValueError for values Ollama cannot read back."""
    model_lines = [f"FROM {_relative('gguf_file', gguf_file)}"]
    if adapter_file is not None:
        model_lines.append(f"ADAPTER {_relative('adapter_file', adapter_file)}")
    _check_value("TEMPLATE", template.template)
    _check_value("SYSTEM", system_prompt)
    for stop in template.stops:
        _check_value("stop", stop)
        if not stop or any(c in stop for c in '"\r\n'):
            raise ValueError(f"stop {stop!r} cannot be written as a quoted Modelfile parameter")
    if isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx <= 0:
        raise ValueError(f"num_ctx must be a positive integer, got {num_ctx!r}")

    lines = [
        *model_lines,
        f'TEMPLATE """{template.template}"""',
        *(f'PARAMETER stop "{stop}"' for stop in template.stops),
        f'SYSTEM """{system_prompt}"""',
        f"PARAMETER num_ctx {num_ctx}",
        *modelfile_parameters(decoding),
    ]
    return "\n".join(lines) + "\n"
