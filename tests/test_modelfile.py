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
from families import CHAT_TEMPLATES, FAMILIES, PLAIN_CHATML

from vault_distill.chat_format import without_bos
from vault_distill.modelfile import OllamaTemplate, UnsupportedTemplate, ollama_template, render_modelfile

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "go" / "ollama_render"

FAMILY_NAMES = list(FAMILIES)

# Official SHA-256 of each stored template (see tests/data/chat_templates/README.md).
DIGESTS = {
    "Gemma-3-it.jinja": "7de1c58e208eda46e9c7f86397df37ec49883aeece39fb961e0a6b24088dd3c4",
    "Llama-3-Instruct.jinja": "ba03a121d097859c7b5b9cd03af99aafe95275210d2876f642ad9929a150f122",
    "Llama-3.1-Instruct.jinja": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
    "Llama-3.2-Instruct.jinja": "5816fce10444e03c2e9ee1ef8a4a1ea61ae7e69e438613f3b17b69d0426223a4",
    "Llama-3.3-Instruct.jinja": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
    "Mistral-7B-Instruct-v0.3.jinja": "e16746b40344d6c5b5265988e0328a0bf7277be86f1c335156eae07e29c82826",
    "Mistral-Nemo-Instruct-2407.jinja": "e4676cb56dffea7782fd3e2b577cfaf1e123537e6ef49b3ec7caa6c095c62272",
    "Mistral-Small-3.2-Instruct.jinja": "5b8f31f11198696548d544dbe424a3c1ef244d00a475f4e1bffb351fda085608",
    "Phi-3.5-mini-instruct.jinja": "78d976a442bcde2f0be15aafbb8e3050e1104f86732266f68403251b89982a90",
    "Phi-4-mini-instruct.jinja": "febf589225c9728ab791f52e8897d7607a823d45368f0a4c92fa68997b40cce9",
    "Qwen2-Instruct.jinja": "793202280c0910ab26bc6eb57c8212c2417324c6d8c4efd0d10d59092ab3e3eb",
    "Qwen2.5-Instruct.jinja": "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f",
    "Qwen3.jinja": "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5",
}

UNSUPPORTED = {
    "alpaca": (
        "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + message['content'] + '\n\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    # ChatML and Llama 3 lookalikes that a name- or marker-based check would accept.
    "chatml without generation prompt": PLAIN_CHATML.split("{% if add_generation_prompt %}")[0],
    "chatml that upper-cases roles": PLAIN_CHATML.replace("message['role']", "message['role'] | upper"),
    "llama 3 without the blank line": (CHAT_TEMPLATES / "Llama-3-Instruct.jinja").read_text().replace("\n\n", "\n"),
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
def templates(family_tokenizers) -> dict[str, OllamaTemplate]:
    return {name: ollama_template(tok) for name, tok in family_tokenizers.items()}


def test_fixture_templates_are_the_official_ones():
    # Guards the stored copies against an editor's newline or whitespace "fix".
    assert sorted(DIGESTS) == sorted(path.name for path in CHAT_TEMPLATES.glob("*.jinja"))
    for name, digest in DIGESTS.items():
        assert hashlib.sha256((CHAT_TEMPLATES / name).read_bytes()).hexdigest() == digest, name


def test_smollm2_tokenizer_is_really_smollm2(tokenizer):
    # The other families are copies of this tokenizer; make sure it carries its own template.
    assert "SmolLM" in tokenizer.chat_template


STOPS = {
    "ChatML": ("<|im_end|>", "<|im_start|>"),
    "Llama 3": ("<|eot_id|>", "<|start_header_id|>"),
    "Gemma 3": ("<end_of_turn>", "<start_of_turn>"),
    "Phi-3.5": ("<|end|>", "<|user|>", "<|assistant|>"),
    "Phi-4-mini": ("<|end|>", "<|user|>", "<|assistant|>"),
    "Mistral v0.3": ("[INST]",),
    "Mistral Nemo": ("[INST]",),
    "Mistral Small 3": ("[INST]", "[SYSTEM_PROMPT]"),
}


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_family_is_detected_from_the_rendered_template(templates, name):
    found, spec = templates[name], FAMILIES[name]
    assert found.family == spec.family
    assert found.stops == STOPS[spec.family]
    if name.startswith("mistral-small"):
        # Its default system prompt carries the pinned date, never today's.
        assert found.default_system.startswith("You are Mistral Small 3, a Large Language Model")
        assert "The current date is 2024-07-26." in found.default_system
    else:
        assert found.default_system == spec.default_system
    if found.default_system:
        # Quoted as a Go string constant, so its newlines and quotes appear escaped.
        assert json.dumps(found.default_system, ensure_ascii=False)[1:-1] in found.template


@pytest.mark.parametrize("name", ["llama3.1", "llama3.2", "llama3.3"])
def test_llama_system_block_is_always_there_with_the_pinned_date(go_binary, family_tokenizers, templates, name):
    expected = hf_render(family_tokenizers[name], [u("hi")])
    assert expected == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert go_render(go_binary, templates[name].template, [u("hi")]) == expected.removeprefix("<|begin_of_text|>")


def test_qwen3_is_served_without_thinking(go_binary, family_tokenizers, templates):
    # One stated mode: the empty think block opens every answer, in training and in Ollama.
    prompt = go_render(go_binary, templates["qwen3"].template, [u("hi")])
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert prompt == hf_render(family_tokenizers["qwen3"], [u("hi")])


def test_gemma_folds_the_system_text_into_the_first_user_turn(go_binary, templates):
    assert go_render(go_binary, templates["gemma3"].template, [s("Be terse."), u("hi"), a("ok"), u("more")]) == (
        "<start_of_turn>user\nBe terse.\n\nhi<end_of_turn>\n<start_of_turn>model\nok<end_of_turn>\n"
        "<start_of_turn>user\nmore<end_of_turn>\n<start_of_turn>model\n"
    )


def test_mistral_v03_folds_the_system_text_into_the_last_user_message_only(go_binary, templates):
    assert go_render(go_binary, templates["mistral-v0.3"].template, [s("Be terse."), u("hi"), a("ok"), u("more")]) == (
        "[INST] hi[/INST] ok</s>[INST] Be terse.\n\nmore[/INST]"
    )


def served(tokenizer, messages: list[dict]) -> str:
    """What the HF template renders, without the bos it writes itself: the tokenizer adds that one
    (and llama.cpp, serving the GGUF for Ollama, adds it too)."""
    return without_bos(tokenizer, hf_render(tokenizer, messages))


def stripped(messages: list[dict], roles) -> list[dict]:
    return [{**m, "content": m["content"].strip()} if m["role"] in roles else m for m in messages]


@pytest.mark.parametrize("modelfile_system", [None, MODELFILE_SYSTEM], ids=["no-SYSTEM", "SYSTEM"])
@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_go_template_renders_what_hf_renders(
    go_binary, family_tokenizers, templates, name, conversation, modelfile_system
):
    tokenizer, template = family_tokenizers[name], templates[name]
    messages = ollama_messages(CONVERSATIONS[conversation], modelfile_system)
    # Ollama merges consecutive same-role messages before the template sees them; these lists have
    # none, so HF and Go get exactly the same list.
    assert all(x["role"] != y["role"] for x, y in itertools.pairwise(messages))
    expected = served(tokenizer, messages)
    if template.trim:
        # The template strips these contents and Go's text/template cannot: Ollama renders them as
        # sent, so a client must send them stripped. Stripped, both render the same bytes.
        assert served(tokenizer, stripped(messages, template.trim)) == expected
        messages = stripped(messages, template.trim)
    assert go_render(go_binary, template.template, messages) == expected


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_last_assistant_message_is_continued_not_closed(go_binary, family_tokenizers, templates, name):
    # Ollama sends a trailing assistant message to be continued (prefill): no end of turn after it.
    messages = [u("Extract the links."), a('{"links": [')]
    expected = served(family_tokenizers[name], messages[:1]) + messages[1]["content"]
    assert go_render(go_binary, templates[name].template, messages) == expected


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
    "alpaca": "its template looks like Alpaca",
    "chatml without generation prompt": "its template looks like ChatML",
    "chatml that upper-cases roles": "its template looks like ChatML",
    "llama 3 without the blank line": "its template looks like Llama 3",
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
        f"base_model: chat template family not supported for Ollama: {FAMILIES_SEEN[name]} (supported: ChatML "
        "(SmolLM2, Qwen2, Qwen2.5, Qwen3), Llama 3.x, Gemma 3, Mistral (v0.3, Nemo, Small 3), Phi-3.5, Phi-4-mini); "
    ), message
    assert re.search(
        r"probe '[^']+' (rendered .* renders |failed to render|rendered .* which opens)", message, re.DOTALL
    )


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


def test_an_adapter_modelfile_is_the_merged_one_with_the_base_and_the_adapter_as_its_model(templates):
    """FROM the shared base GGUF one folder up, ADAPTER the task's LoRA GGUF; the rest unchanged."""
    template = templates["qwen2.5"]
    merged = render_modelfile("links.Q8_0.gguf", template, MODELFILE_SYSTEM, num_ctx=4096, decoding=DECODING)
    adapter = render_modelfile(
        "../base/base.Q8_0.gguf", template, MODELFILE_SYSTEM, 4096, DECODING, adapter_file="links.lora.F16.gguf"
    )
    assert adapter.startswith("FROM ../base/base.Q8_0.gguf\nADAPTER ./links.lora.F16.gguf\nTEMPLATE ")
    assert adapter.split("\n", 2)[2] == merged.split("\n", 1)[1]
    with pytest.raises(ValueError, match="adapter_file must be a path relative"):
        render_modelfile("m.gguf", template, "Be terse.", 2048, DECODING, adapter_file="/abs/links.gguf")


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
    broken = OllamaTemplate("ChatML", 'x """ y', ("<|im_end|>",), None)
    with pytest.raises(ValueError, match='TEMPLATE contains """'):
        render_modelfile("m.gguf", broken, "Be terse.", 2048, DECODING)
