"""The Modelfile TEMPLATE, executed by Go's own text/template the way Ollama executes it, must give
byte for byte what the base model's HF chat template gives."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vault_distill.modelfile import (
    CHATML_STOPS,
    OllamaTemplate,
    UnsupportedTemplate,
    ollama_template,
    render_modelfile,
)

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "go" / "ollama_render"
CHAT_TEMPLATES = ROOT / "tests" / "data" / "chat_templates"

# teknium/OpenHermes-2.5-Mistral-7B's template, one of the "chatml" entries of Ollama's template/index.json.
PLAIN_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DEFAULT_SYSTEMS = {
    "smollm2": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "qwen2": "You are a helpful assistant.",
    "qwen2.5": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "chatml": None,
}

UNSUPPORTED = {
    # meta-llama/Meta-Llama-3-8B-Instruct (Ollama's index.json "llama3-instruct").
    "llama3": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>'"
        " + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "alpaca": (
        "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + message['content'] + '\n\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    # ChatML lookalikes that a name- or marker-based check would accept.
    "chatml that trims content": PLAIN_CHATML.replace("message['content']", "message['content'] | trim"),
    "chatml without generation prompt": PLAIN_CHATML.split("{% if add_generation_prompt %}")[0],
    "mistral (rejects system role)": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
        "{{ message['content'] + eos_token }}{% else %}"
        "{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
    ),
}


def s(text: str) -> dict:
    return {"role": "system", "content": text}


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


CONVERSATIONS = {
    "user": [u("Which notes link to [[Project Atlas]]?")],
    "system+user": [s("Answer with JSON only."), u("List the tags of this note.")],
    "user/assistant/user": [u("Summarise note A."), a('{"summary": "A is about B."}'), u("And note C?")],
    "system+user/assistant/user": [s("Be terse."), u("First?"), a("One."), u("Second?")],
    "empty user": [u("")],
    "unicode, braces, newlines": [
        s("Système : réponds {{ en JSON }}.\n{% raw %}"),
        u("Ünïcödé 日本語 🙂 — “quotes”\n{{ .Content }} {{- end }} {{ $.System }}\n\n  trailing  \n"),
        a('{"ok": true}\n'),
        u("}}{{\r\nCRLF\tand tab"),
    ],
    "leading and trailing newlines": [u("\n\nindented\n    code\n\n")],
}

# What a task's Modelfile SYSTEM would hold: several lines, quotes, braces.
DECODING = {
    "temperature": 0.2,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
    "seed": 7,
    "max_tokens": 256,
}
MODELFILE_SYSTEM = 'You turn vault notes into JSON.\nNever invent links; use "[[...]]" only for {{real}} notes.'


def ollama_messages(conversation: list[dict], modelfile_system: str | None) -> list[dict]:
    """The message list Ollama's ChatHandler (server/routes.go) passes to the template."""
    if modelfile_system and conversation[0]["role"] != "system":
        return [s(modelfile_system), *conversation]
    return list(conversation)


def hf_render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def go_render(go_binary: str, template: str, messages: list[dict]) -> str:
    done = subprocess.run(
        [go_binary],
        input=json.dumps({"template": template, "messages": messages}).encode("utf-8"),
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise AssertionError(f"ollama_render failed ({done.returncode}): {done.stderr.decode('utf-8', 'replace')}")
    return done.stdout.decode("utf-8")


def _find_go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/lib/go/bin/go", "/usr/local/go/bin/go"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_go() -> str:
    """Debian's golang-go, when we may install it; returns why not otherwise."""
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "not root on Debian, so golang-go was not installed"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "golang-go"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if done.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-1000:]}"
    return "golang-go was installed but no go binary was found"


@pytest.fixture(scope="session")
def go_binary(tmp_path_factory) -> str:
    """tests/go/ollama_render, built once per session."""
    go = _find_go()
    if go is None:
        why = _install_go()
        go = _find_go()
        if go is None:
            reason = f"no Go toolchain ({why}); the Ollama TEMPLATE is NOT checked against Go's text/template"
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(f"!!! {reason} !!!")
    work = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GOFLAGS": "-mod=mod",
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        # No network at test time: never fetch a toolchain or a module.
        "GOTOOLCHAIN": "local",
        "GOPROXY": "off",
    }
    binary = work / "ollama_render"
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=HARNESS, env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        pytest.fail(f"go build of {HARNESS} failed:\n{done.stdout}{done.stderr}")
    return str(binary)


@pytest.fixture(scope="session")
def tokenizers(tokenizer) -> dict:
    """The real SmolLM2 tokenizer, and copies of it carrying other models' official templates."""

    def with_template(template: str):
        copied = copy.deepcopy(tokenizer)
        copied.chat_template = template
        return copied

    def official(name: str) -> str:
        return (CHAT_TEMPLATES / name).read_bytes().decode("utf-8")

    return {
        "smollm2": tokenizer,
        "qwen2": with_template(official("Qwen2-Instruct.jinja")),
        "qwen2.5": with_template(official("Qwen2.5-Instruct.jinja")),
        "chatml": with_template(PLAIN_CHATML),
    }


@pytest.fixture(scope="session")
def templates(tokenizers) -> dict[str, OllamaTemplate]:
    return {family: ollama_template(tok) for family, tok in tokenizers.items()}


def test_fixture_templates_are_the_official_ones():
    # Guards the stored copies against an editor's newline or whitespace "fix".
    digests = {
        "Qwen2-Instruct.jinja": "793202280c0910ab26bc6eb57c8212c2417324c6d8c4efd0d10d59092ab3e3eb",
        "Qwen2.5-Instruct.jinja": "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f",
    }
    for name, digest in digests.items():
        assert hashlib.sha256((CHAT_TEMPLATES / name).read_bytes()).hexdigest() == digest, name


def test_smollm2_tokenizer_is_really_smollm2(tokenizer):
    # The other families are copies of this tokenizer; make sure it carries its own template.
    assert "SmolLM" in tokenizer.chat_template


@pytest.mark.parametrize("family", DEFAULT_SYSTEMS)
def test_family_is_detected_from_the_rendered_template(templates, family):
    found = templates[family]
    assert found.family == "chatml"
    assert found.default_system == DEFAULT_SYSTEMS[family]
    assert found.stops == CHATML_STOPS == ("<|im_end|>", "<|im_start|>")
    if found.default_system is not None:
        assert found.default_system in found.template
    else:
        assert "<|im_start|>system" not in found.template


@pytest.mark.parametrize("modelfile_system", [None, MODELFILE_SYSTEM], ids=["no-SYSTEM", "SYSTEM"])
@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("family", DEFAULT_SYSTEMS)
def test_go_template_renders_what_hf_renders(go_binary, tokenizers, templates, family, conversation, modelfile_system):
    messages = ollama_messages(CONVERSATIONS[conversation], modelfile_system)
    # Ollama merges consecutive same-role messages before the template sees them; these lists have
    # none, so HF and Go get exactly the same list.
    assert all(x["role"] != y["role"] for x, y in itertools.pairwise(messages))
    expected = hf_render(tokenizers[family], messages)
    assert go_render(go_binary, templates[family].template, messages) == expected


@pytest.mark.parametrize("family", DEFAULT_SYSTEMS)
def test_last_assistant_message_is_continued_not_closed(go_binary, tokenizers, templates, family):
    # Ollama sends a trailing assistant message to be continued (prefill): no <|im_end|> after it.
    messages = [u("Extract the links."), a('{"links": [')]
    expected = hf_render(tokenizers[family], messages[:1]) + messages[1]["content"]
    assert go_render(go_binary, templates[family].template, messages) == expected


def test_harness_collates_like_ollama(go_binary):
    template = "{{ .System }}|{{ range .Messages }}{{ .Role }}={{ .Content }};{{ end }}|{{ if .Tools }}tools{{ end }}"
    messages = [s("s1"), s("s2"), u("u1"), u("u2"), a("a1"), s("s3")]
    assert (
        go_render(go_binary, template, messages)
        == "s1\n\ns2\n\ns3|system=s1\n\ns2;user=u1\n\nu2;assistant=a1;system=s3;|"
    )


def test_harness_reports_template_errors(go_binary):
    with pytest.raises(AssertionError, match="parse"):
        go_render(go_binary, "{{ range .Messages }}", [u("x")])


FAMILIES_SEEN = {
    "llama3": "its template looks like Llama 3",
    "alpaca": "its template looks like Alpaca",
    "chatml that trims content": "its template looks like ChatML",
    "chatml without generation prompt": "its template looks like ChatML",
    "mistral (rejects system role)": "its template looks like Mistral",
}


@pytest.mark.parametrize("name", UNSUPPORTED)
def test_unsupported_template_is_refused(tokenizer, name):
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = UNSUPPORTED[name]
    with pytest.raises(UnsupportedTemplate) as err:
        ollama_template(copied)
    message = str(err.value)
    assert message.startswith(
        f"base_model: chat template family not supported for Ollama: {FAMILIES_SEEN[name]} (supported: ChatML: "
    )
    assert re.search(r"probe '[^']+' (rendered .* expected |failed to render)", message, re.DOTALL), message


def test_missing_template_is_refused_with_the_config_key(tokenizer):
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = None
    with pytest.raises(
        UnsupportedTemplate, match=r"^tasks\.links\.base_model: .*: it has no chat template .*failed to render"
    ):
        ollama_template(copied, key="tasks.links.base_model")


def test_render_modelfile(templates):
    template = templates["qwen2.5"]
    text = render_modelfile("links.Q4_K_M.gguf", template, MODELFILE_SYSTEM, num_ctx=4096, decoding=DECODING)
    assert text == (
        "FROM ./links.Q4_K_M.gguf\n"
        f'TEMPLATE """{template.template}"""\n'
        'PARAMETER stop "<|im_end|>"\n'
        'PARAMETER stop "<|im_start|>"\n'
        f'SYSTEM """{MODELFILE_SYSTEM}"""\n'
        "PARAMETER num_ctx 4096\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER top_k 40\n"
        "PARAMETER top_p 0.9\n"
        "PARAMETER min_p 0.0\n"
        "PARAMETER repeat_penalty 1.1\n"
        "PARAMETER repeat_last_n 64\n"
        "PARAMETER seed 7\n"
        "PARAMETER num_predict 256\n"
    )
    # What Ollama's parser reads back between the triple quotes is the template, unchanged.
    assert re.search(r'^TEMPLATE """(.*?)"""$', text, re.DOTALL | re.MULTILINE).group(1) == template.template


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"system_prompt": 'Say """hi"""'}, 'SYSTEM contains """'),
        ({"system_prompt": "non\u00a0breaking"}, "U\\+00A0"),
        ({"gguf_file": "/abs/model.gguf"}, "relative to the Modelfile"),
        ({"gguf_file": "a\nb.gguf"}, "relative to the Modelfile"),
        ({"num_ctx": 0}, "num_ctx"),
        ({"num_ctx": 4096.0}, "num_ctx"),
        ({"decoding": {**DECODING, "temperature": -0.1}}, "temperature"),
        ({"decoding": {**DECODING, "temperature": float("nan")}}, "temperature"),
        ({"decoding": {**DECODING, "top_k": 40.5}}, "top_k"),
        ({"decoding": {k: v for k, v in DECODING.items() if k != "seed"}}, "seed"),
    ],
)
def test_render_modelfile_refuses_what_ollama_cannot_read(templates, kwargs, match):
    args = {"gguf_file": "m.gguf", "system_prompt": "Be terse.", "num_ctx": 2048, "decoding": DECODING, **kwargs}
    with pytest.raises(ValueError, match=match):
        render_modelfile(template=templates["smollm2"], **args)


def test_render_modelfile_refuses_triple_quotes_in_the_template(templates):
    broken = OllamaTemplate("chatml", 'x """ y', CHATML_STOPS, None)
    with pytest.raises(ValueError, match='TEMPLATE contains """'):
        render_modelfile("m.gguf", broken, "Be terse.", 2048, DECODING)
