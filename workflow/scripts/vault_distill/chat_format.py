"""Chat template families as data: what a base model's HF chat template renders, and the Ollama Go
TEMPLATE that renders the same.

The family is found by rendering probe conversations with the tokenizer and keeping the first family
whose Python twin (`render`) gives the same text on every probe, never by model name: a fine-tune may
keep or change its base's template under any name. The same data writes the Go TEMPLATE
(`go_template`, checked against HF through Go's own text/template in the tests), the Modelfile stops,
and the end-of-turn token that ends every SFT completion.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, replace

ROLES = ("system", "user", "assistant")

# The date the Llama 3.1 and 3.3 templates hard-code. Templates that read today's date (Llama 3.2
# and Mistral-Small-3.x call strftime_now) get this one instead: a prompt that changed every day
# would rebuild every task daily and serve a prompt the model was never trained on.
PINNED_DATE = datetime.date(2024, 7, 26)

# Plain ASCII markers without surrounding spaces: a template that rewrites content (case, escaping)
# shows up as a mismatch, and one that trims it is told apart by the "whitespace" probe.
_S = "vd-probe system text"
_U1 = "vd-probe user text 1"
_U2 = "vd-probe user text 2"
_A1 = "vd-probe assistant text"


def _chat(*turns: tuple[str, str]) -> tuple[dict, ...]:
    return tuple({"role": role, "content": content} for role, content in turns)


# Every shape the Go template handles differently, each checked against the HF rendering.
PROBES: dict[str, tuple[dict, ...]] = {
    "user": _chat(("user", _U1)),
    "system+user": _chat(("system", _S), ("user", _U1)),
    "user+assistant+user": _chat(("user", _U1), ("assistant", _A1), ("user", _U2)),
    "system+user+assistant+user": _chat(("system", _S), ("user", _U1), ("assistant", _A1), ("user", _U2)),
    "empty user": _chat(("user", "")),
    "whitespace": _chat(
        ("system", f"  {_S} \n"), ("user", f"\n  {_U1}  \n"), ("assistant", f" {_A1}\n"), ("user", f"{_U2} ")
    ),
    "user+system+user": _chat(("user", _U1), ("system", _S), ("user", _U2)),
}
# Gemma and Mistral refuse a system message after the first turn (raise_exception): there is then
# nothing to match, and the distilled tasks never send one. Every other probe must render.
MAY_REFUSE = frozenset({"user+system+user"})

# Which message contents a template strips (Jinja `| trim`), tried in this order.
TRIM_CHOICES = (
    frozenset(),
    frozenset({"assistant"}),
    frozenset({"user", "assistant"}),
    frozenset(ROLES),
)

# Between the system text and the user text when a family folds one into the other.
FOLD_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ChatFormat:
    family: str
    # role -> (text before the content, text after it), for the roles that have a turn.
    turns: dict[str, tuple[str, str]]
    # What add_generation_prompt appends; a last assistant message is continued after it.
    generation: str
    stops: tuple[str, ...]
    # Where a leading system message goes: "turn", a turn of its own; "first_user", its text and a
    # blank line open the first user turn (Gemma); "last_user", the same, but only in a user message
    # that is the last one (Mistral v0.3).
    first_system: str = "turn"
    trim: frozenset[str] = frozenset()
    # Text that opens the system turn before its content (Llama 3.1+: knowledge and today's date).
    system_prefix: str = ""
    # The system content when the conversation has none; None: no system turn then.
    default_system: str | None = None
    # The template's own text for bos_token; the tokenizer adds it, so renders are compared without it.
    bos: str = ""

    @property
    def end_of_turn(self) -> str:
        """The token that ends an assistant turn: the last special text after its content."""
        return self.turns["assistant"][1].rstrip("\n")

    def clean(self, role: str, content: str) -> str:
        return content.strip() if role in self.trim else content


def _families(eos: str) -> tuple[ChatFormat, ...]:
    """Every family a TEMPLATE can be written for, with the parts fitted by probing left at defaults."""

    def same(before, after) -> dict:
        return {role: (before.format(role=role), after) for role in ROLES}

    phi_stops = ("<|end|>", "<|user|>", "<|assistant|>")
    return (
        # <|im_start|> is a second guard: a small model that skips <|im_end|> and opens a new turn
        # would otherwise write the user's next message itself. Ollama's own templates stop on both.
        ChatFormat("ChatML", same("<|im_start|>{role}\n", "<|im_end|>\n"), "<|im_start|>assistant\n",
                   ("<|im_end|>", "<|im_start|>")),
        ChatFormat("Llama 3", same("<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>"),
                   "<|start_header_id|>assistant<|end_header_id|>\n\n", ("<|eot_id|>", "<|start_header_id|>")),
        ChatFormat("Gemma 3",
                   {"system": ("<start_of_turn>system\n", "<end_of_turn>\n"),
                    "user": ("<start_of_turn>user\n", "<end_of_turn>\n"),
                    "assistant": ("<start_of_turn>model\n", "<end_of_turn>\n")},
                   "<start_of_turn>model\n", ("<end_of_turn>", "<start_of_turn>"), first_system="first_user"),
        ChatFormat("Phi-3.5", same("<|{role}|>\n", "<|end|>\n"), "<|assistant|>\n", phi_stops),
        ChatFormat("Phi-4-mini", same("<|{role}|>", "<|end|>"), "<|assistant|>", phi_stops),
        ChatFormat("Mistral v0.3", {"user": ("[INST] ", "[/INST]"), "assistant": (" ", eos)}, "",
                   ("[INST]",), first_system="last_user"),
        ChatFormat("Mistral Nemo", {"user": ("[INST]", "[/INST]"), "assistant": ("", eos)}, "",
                   ("[INST]",), first_system="last_user"),
        ChatFormat("Mistral Small 3",
                   {"system": ("[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"), "user": ("[INST]", "[/INST]"),
                    "assistant": ("", eos)},
                   "", ("[INST]", "[SYSTEM_PROMPT]")),
    )  # fmt: skip


FAMILY_NAMES = (
    "ChatML (SmolLM2, Qwen2, Qwen2.5, Qwen3), Llama 3.x, Gemma 3, Mistral (v0.3, Nemo, Small 3), Phi-3.5, Phi-4-mini"
)


def render(fmt: ChatFormat, messages) -> str:
    """What `fmt`'s HF template renders with add_generation_prompt (without bos), in Python.

    A last assistant message is continued, not closed: Ollama sends one to be completed.
    """
    out, system, start = [], None, 0
    if messages and messages[0]["role"] == "system":
        system, start = messages[0]["content"], 1
    if fmt.first_system == "turn" and (system is not None or fmt.default_system is not None):
        before, after = fmt.turns["system"]
        text = fmt.clean("system", system) if system is not None else fmt.default_system
        out.append(before + fmt.system_prefix + text + after)
    for i in range(start, len(messages)):
        role, content, last = messages[i]["role"], messages[i]["content"], i == len(messages) - 1
        if last and role == "assistant":
            return "".join([*out, fmt.generation, content])
        if role not in fmt.turns:
            continue
        content = fmt.clean(role, content)
        if role == "user" and system is not None and _folds_here(fmt, i, last):
            content = system + FOLD_SEPARATOR + content
        before, after = fmt.turns[role]
        out.append(before + content + after)
    out.append(fmt.generation)
    return "".join(out)


def _folds_here(fmt: ChatFormat, index: int, last: bool) -> bool:
    return (fmt.first_system == "first_user" and index == 1) or (fmt.first_system == "last_user" and last)


def _go(text: str) -> str:
    """An action that emits `text` verbatim. Every literal is a quoted constant, so the template's own
    layout (newlines between actions, trimmed by `{{-`) can never leak into the output."""
    return "{{- " + json.dumps(text, ensure_ascii=False) + " }}" if text else ""


def go_template(fmt: ChatFormat) -> str:
    """A Go text/template for Ollama's {System, Messages, Tools} data that renders as `render` does,
    but for `trim`: Ollama's template functions cannot strip text, so contents pass as sent.

    .Tools is ignored: the distilled tasks never send tools, so the templates' tool branches are not
    reproduced.
    """
    lines = [
        '{{- $system := "" }}',
        "{{- $hasSystem := false }}",
        '{{- if .Messages }}{{- if eq (index .Messages 0).Role "system" }}'
        "{{- $system = (index .Messages 0).Content }}{{- $hasSystem = true }}{{- end }}{{- end }}",
    ]
    if fmt.first_system == "turn":
        before, after = fmt.turns["system"]
        lines.append("{{- if $hasSystem }}" + _go(before + fmt.system_prefix) + "{{- $system }}" + _go(after))
        if fmt.default_system is not None:
            lines.append("{{- else }}" + _go(before + fmt.system_prefix + fmt.default_system + after))
        lines.append("{{- end }}")
    lines += [
        "{{- range $i, $_ := .Messages }}",
        "{{- if not (and $hasSystem (eq $i 0)) }}",
        "{{- $last := eq (len (slice $.Messages $i)) 1 }}",
        '{{- if and $last (eq .Role "assistant") }}' + _go(fmt.generation) + "{{- .Content }}",
        *(_go_turn(fmt, role) for role in ROLES if role in fmt.turns),
        "{{- end }}",
        '{{- if and $last (ne .Role "assistant") }}' + _go(fmt.generation) + "{{- end }}",
        "{{- end }}",
        "{{- end }}",
    ]
    return "\n".join(lines)


def _go_turn(fmt: ChatFormat, role: str) -> str:
    before, after = fmt.turns[role]
    fold = ""
    if role == "user" and fmt.first_system != "turn":
        where = "(eq $i 1)" if fmt.first_system == "first_user" else "$last"
        fold = f"{{{{- if and $hasSystem {where} }}}}{{{{- $system }}}}{_go(FOLD_SEPARATOR)}{{{{- end }}}}"
    return f'{{{{- else if eq .Role "{role}" }}}}{_go(before)}{fold}{{{{- .Content }}}}{_go(after)}'


# --- Fitting a family to what the tokenizer renders -----------------------------------------------


class NoFamily(ValueError):
    """No family renders what the template renders; the message says what came closest."""


@dataclass(frozen=True)
class _Rendered:
    with_generation: dict[str, str]  # probe name -> HF text (bos removed); absent: the template refused
    refused: dict[str, str]  # probe name -> why


def render_hf(tokenizer, messages, add_generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def bos_text(tokenizer) -> str:
    """The bos text a template writes itself (`{{ bos_token }}`); a tokenizer that adds bos adds it again."""
    source = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    return tokenizer.bos_token or "" if "bos_token" in (source or "") else ""


def without_bos(tokenizer, text: str) -> str:
    """`text` rendered by `tokenizer`'s template, less the bos the template writes itself."""
    bos = bos_text(tokenizer)
    return text[len(bos) :] if bos and text.startswith(bos) else text


def _render_probes(tokenizer) -> _Rendered:
    texts, refused = {}, {}
    for name, messages in PROBES.items():
        try:
            text = render_hf(tokenizer, messages)
        except Exception as err:  # jinja2 errors, raise_exception(), or no template at all
            refused[name] = f"{type(err).__name__}: {err}"
            continue
        texts[name] = without_bos(tokenizer, text)
    return _Rendered(texts, refused)


def _fit(family: ChatFormat, trim: frozenset[str], got: dict[str, str]) -> ChatFormat | None:
    """`family` with its generation text, system prefix and default system read off the probes."""
    fmt = replace(family, trim=trim)
    user_turn = "".join(fmt.turns["user"][0] + _U1 + fmt.turns["user"][1])
    rendered = got["user"]
    if user_turn not in rendered:
        return None
    cut = rendered.rindex(user_turn)
    head, generation = rendered[:cut], rendered[cut + len(user_turn) :]
    if not generation.startswith(family.generation):
        return None
    fmt = replace(fmt, generation=generation)
    if fmt.first_system != "turn":
        return fmt if head == "" else None
    before, after = fmt.turns["system"]
    tail = after + user_turn + generation
    with_system = got["system+user"]
    if not (with_system.startswith(before) and with_system.endswith(tail) and with_system[: -len(tail)].endswith(_S)):
        return None
    prefix = with_system[len(before) : -len(tail) - len(_S)]
    if head == "":
        return replace(fmt, system_prefix=prefix)
    if not (head.startswith(before + prefix) and head.endswith(after)):
        return None
    return replace(fmt, system_prefix=prefix, default_system=head[len(before + prefix) : -len(after)])


def _mismatches(fmt: ChatFormat, got: dict[str, str]) -> list[tuple[str, str, str]]:
    """(probe, what HF rendered, what `fmt` renders) for every probe where the two differ."""
    wants = {name: render(fmt, PROBES[name]) for name in got}
    return [(name, text, wants[name]) for name, text in got.items() if text != wants[name]]


_FITTED: dict[tuple, ChatFormat] = {}


def chat_format(tokenizer) -> ChatFormat:
    """The family of `tokenizer`'s chat template, verified on every probe. Raises NoFamily.

    Memoized per tokenizer object and template: the SFT split asks once per example."""
    key = (id(tokenizer), str(tokenizer.chat_template), tokenizer.eos_token, tokenizer.bos_token)
    if key not in _FITTED:
        _FITTED[key] = _fit_family(tokenizer)
    return _FITTED[key]


def _fit_family(tokenizer) -> ChatFormat:
    rendered = _render_probes(tokenizer)
    required = [name for name in rendered.refused if name not in MAY_REFUSE]
    if required:
        name = required[0]
        raise NoFamily(f"probe {name!r} failed to render: {rendered.refused[name]}")
    closest = None  # (mismatch count, family, first mismatch)
    for family in _families(tokenizer.eos_token or ""):
        for trim in TRIM_CHOICES:
            fmt = _fit(family, trim, rendered.with_generation)
            if fmt is None:
                continue
            mismatches = _mismatches(fmt, rendered.with_generation)
            if not mismatches:
                return replace(fmt, bos=bos_text(tokenizer))
            if closest is None or len(mismatches) < closest[0]:
                closest = (len(mismatches), fmt.family, mismatches[0])
    if closest:
        _, family, (name, text, want) = closest
        raise NoFamily(f"closest family {family}: probe {name!r} rendered {text!r}, {family} renders {want!r}")
    raise NoFamily(f"probe 'user' rendered {rendered.with_generation['user']!r}, which opens no known family's turn")


# --- Pinning what a template would read from the clock or leave to the caller ----------------------

_STRFTIME_CALL = re.compile(r"""strftime_now\(\s*(["'])(.*?)\1\s*\)""")


def pin_chat_template(template: str) -> str:
    """`template` with today's date and the reasoning mode fixed, rendering the same on any day.

    - strftime_now(...) and date_string give PINNED_DATE (Llama 3.2, Mistral-Small-3.x read the clock).
    - enable_thinking is false (Qwen3): the tasks answer with JSON, and the model is trained and
      served in that one mode, with the empty think block the template then opens the answer with.

    A template that reads none of them is returned unchanged.
    """
    pins = []
    formats = dict.fromkeys(match.group(2) for match in _STRFTIME_CALL.finditer(template))
    if formats:
        table = ", ".join(f"{json.dumps(f)}: {json.dumps(PINNED_DATE.strftime(f))}" for f in formats)
        pins.append(f"{{%- macro strftime_now(format) -%}}{{{{ {{{table}}}[format] }}}}{{%- endmacro %}}")
    if "date_string" in template:
        pins.append(f'{{%- set date_string = "{PINNED_DATE.strftime("%d %b %Y")}" %}}')
    if "enable_thinking" in template:
        pins.append("{%- set enable_thinking = false %}")
    if not pins or template.startswith("".join(pins)):
        return template
    return "".join(pins) + template


def pin_tokenizer_template(tokenizer):
    """Pin `tokenizer`'s chat template(s) in place (see pin_chat_template); returns the tokenizer."""
    source = tokenizer.chat_template
    if isinstance(source, str):
        tokenizer.chat_template = pin_chat_template(source)
    elif isinstance(source, dict):
        tokenizer.chat_template = {name: pin_chat_template(text) for name, text in source.items()}
    return tokenizer
