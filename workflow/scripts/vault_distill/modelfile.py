"""Ollama Modelfiles whose TEMPLATE renders exactly what the base model's HF chat template renders.

`ollama create` guesses a template from the GGUF's Jinja only when it is close to one it knows,
and Qwen2.5's is not, so the Modelfile always carries an explicit TEMPLATE and stops. The family is
found by rendering probe conversations with the tokenizer, never by model name: a fine-tune may
keep or change its base's template under any name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .decoding import modelfile_parameters

SUPPORTED = "ChatML: SmolLM2, Qwen2, Qwen2.5, plain ChatML"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# <|im_end|> ends every turn. <|im_start|> is a second guard: a small distilled model that skips
# <|im_end|> and opens a new turn would otherwise write the user's next message itself. Ollama's own
# chatml and qwen2.5 templates stop on both.
CHATML_STOPS = (IM_END, IM_START)

# Plain ASCII markers: a template that rewrites content (trim, case, escaping) shows up as a mismatch.
_S = "vd-probe system text"
_U1 = "vd-probe user text 1"
_U2 = "vd-probe user text 2"
_A1 = "vd-probe assistant text"

# Every shape the Go template handles differently, each checked against the HF rendering.
PROBES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("user", (("user", _U1),)),
    ("system+user", (("system", _S), ("user", _U1))),
    ("user+assistant+user", (("user", _U1), ("assistant", _A1), ("user", _U2))),
    ("system+user+assistant+user", (("system", _S), ("user", _U1), ("assistant", _A1), ("user", _U2))),
    ("empty user", (("user", ""),)),
    ("whitespace", (("system", f"  {_S} \n"), ("user", f"\n  {_U1}  \n"))),
    ("user+system+user", (("user", _U1), ("system", _S), ("user", _U2))),
)

_DEFAULT_SYSTEM = re.compile(rf"{re.escape(IM_START)}system\n(.*){re.escape(IM_END)}\n", re.DOTALL)


# Markers that name a chat template family in an error message. Only naming: the TEMPLATE itself
# is derived and verified by probing, never from these.
FAMILY_MARKERS = (
    ("Llama 3", "<|start_header_id|>"),
    ("Gemma", "<start_of_turn>"),
    ("Mistral", "[INST]"),
    ("Mistral", "[SYSTEM_PROMPT]"),
    ("Phi-3/Phi-4", "<|end|>"),
    ("ChatML", IM_START),
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


def _turn(role: str, content: str) -> str:
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def render_chatml(messages, default_system: str | None) -> str:
    """What the ChatML TEMPLATE renders for a list that does not end with an assistant message.

    The Python twin of `chatml_go_template`; `ollama_template` checks the HF template against it.
    """
    out = []
    if messages and default_system is not None and messages[0]["role"] != "system":
        out.append(_turn("system", default_system))
    out.extend(_turn(m["role"], m["content"]) for m in messages)
    out.append(f"{IM_START}assistant\n")
    return "".join(out)


def _go_text(text: str) -> str:
    """`text` as it must appear in a Go template to be emitted verbatim."""
    if "{{" not in text:
        return text
    # Literal text cannot contain the action delimiter; a quoted string constant can.
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '{{ "' + escaped.replace("\t", "\\t") + '" }}'


def chatml_go_template(default_system: str | None) -> str:
    """A Go text/template for Ollama's {System, Messages, Tools} data, rendering ChatML.

    Ollama does not add a generation prompt: the template opens the assistant turn after a last
    user/system message, and leaves a last assistant message open so Ollama continues it.
    .Tools is ignored: the distilled tasks never send tools, so Qwen2.5's tool branches (not probed)
    are not reproduced.
    """
    default = ""
    if default_system is not None:
        default = (
            '{{- if and (eq $i 0) (ne .Role "system") }}'
            f"{IM_START}system\n{_go_text(default_system)}{IM_END}\n"
            "{{ end }}\n"
        )
    return (
        "{{- range $i, $_ := .Messages }}\n"
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
        f"{default}"
        '{{- if and $last (eq .Role "assistant") }}'
        f"{IM_START}assistant\n"
        "{{ .Content }}\n"
        "{{- else }}"
        f"{IM_START}{{{{ .Role }}}}\n"
        f"{{{{ .Content }}}}{IM_END}\n"
        f"{{{{ if $last }}}}{IM_START}assistant\n"
        "{{ end }}\n"
        "{{- end }}\n"
        "{{- end }}"
    )


def _render_hf(tokenizer, messages) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _unsupported(key: str, seen: str, detail: str) -> UnsupportedTemplate:
    return UnsupportedTemplate(
        f"{key}: chat template family not supported for Ollama: {seen} (supported: {SUPPORTED}); {detail}"
    )


def ollama_template(tokenizer, key: str = "base_model") -> OllamaTemplate:
    """The Ollama TEMPLATE and stops for `tokenizer`'s chat template, verified on every probe.

    Raises UnsupportedTemplate (its message starts with `key`) when any probe differs.
    """
    rendered, seen = {}, family_seen(tokenizer)
    for name, turns in PROBES:
        messages = [{"role": role, "content": content} for role, content in turns]
        try:
            rendered[name] = (messages, _render_hf(tokenizer, messages))
        except Exception as err:  # jinja2 errors, raise_exception(), or no template at all
            raise _unsupported(key, seen, f"probe {name!r} failed to render: {type(err).__name__}: {err}") from None

    # The user turn is the same in every ChatML variant; anything before it is a default system turn.
    messages, got = rendered["user"]
    tail = render_chatml(messages, None)
    head = got[: -len(tail)] if got.endswith(tail) else None
    match = _DEFAULT_SYSTEM.fullmatch(head) if head else None
    if head is None or (head and match is None):
        want = f"{tail!r}, optionally after a default {_turn('system', '...')!r}"
        raise _unsupported(key, seen, f"probe 'user' rendered {got!r}, expected {want}")
    default_system = match.group(1) if match else None

    for name, (messages, got) in rendered.items():
        want = render_chatml(messages, default_system)
        if got != want:
            raise _unsupported(key, seen, f"probe {name!r} rendered {got!r}, expected {want!r}")

    return OllamaTemplate(
        family="chatml",
        template=chatml_go_template(default_system),
        stops=CHATML_STOPS,
        default_system=default_system,
    )


def _check_value(what: str, value: str) -> None:
    if '"""' in value:
        raise ValueError(f'{what} contains """, which cannot be quoted in an Ollama Modelfile')
    # Ollama's Modelfile parser keeps only runes that Go's strconv.IsPrint accepts (plus space, tab
    # and newlines inside a value); Python's isprintable() draws the same line.
    for char in value:
        if not (char.isprintable() or char in "\t\n\r"):
            raise ValueError(f"{what} contains U+{ord(char):04X}, which Ollama's Modelfile parser would drop")


def render_modelfile(gguf_file: str, template: OllamaTemplate, system_prompt: str, num_ctx: int, decoding: dict) -> str:
    """Modelfile text for a GGUF that sits next to it, with every sampling setting of `decoding`
    stated (see decoding.py). Raises ValueError for values Ollama cannot read back."""
    if not gguf_file or gguf_file.startswith("/") or any(c in gguf_file for c in "\r\n"):
        raise ValueError(f"gguf_file must be a path relative to the Modelfile on one line, got {gguf_file!r}")
    _check_value("gguf_file", gguf_file)
    _check_value("TEMPLATE", template.template)
    _check_value("SYSTEM", system_prompt)
    for stop in template.stops:
        _check_value("stop", stop)
        if not stop or any(c in stop for c in '"\r\n'):
            raise ValueError(f"stop {stop!r} cannot be written as a quoted Modelfile parameter")
    if isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx <= 0:
        raise ValueError(f"num_ctx must be a positive integer, got {num_ctx!r}")

    lines = [
        f"FROM ./{gguf_file}",
        f'TEMPLATE """{template.template}"""',
        *(f'PARAMETER stop "{stop}"' for stop in template.stops),
        f'SYSTEM """{system_prompt}"""',
        f"PARAMETER num_ctx {num_ctx}",
        *modelfile_parameters(decoding),
    ]
    return "\n".join(lines) + "\n"
