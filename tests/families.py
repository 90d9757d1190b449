"""The chat templates the tests set on copies of the bundled tokenizer, with each model's own bos and
eos and the special tokens its turns use, so that both rendering and tokenizing behave as they would
with the real tokenizer."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from vault_distill.chat_format import pin_chat_template

CHAT_TEMPLATES = Path(__file__).resolve().parent / "data" / "chat_templates"

# teknium/OpenHermes-2.5-Mistral-7B's template, one of the "chatml" entries of Ollama's template/index.json.
PLAIN_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA_TOKENS = ("<|begin_of_text|>", "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>"))
MISTRAL_TOKENS = ("<s>", "</s>", ("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"))
PHI_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


@dataclass(frozen=True)
class Family:
    source: str  # a file in tests/data/chat_templates, or a template text
    family: str  # what chat_format must find
    end_of_turn: str
    bos: str | None = None  # None: keep the bundled tokenizer's
    eos: str | None = None
    specials: tuple[str, ...] = ()
    default_system: str | None = None

    def template(self) -> str:
        if self.source.endswith(".jinja"):
            return (CHAT_TEMPLATES / self.source).read_bytes().decode("utf-8")
        return self.source


SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
GEMMA_TOKENS = ("<bos>", "<eos>", ("<start_of_turn>", "<end_of_turn>"))
PHI4_TOKENS = ("<|endoftext|>", "<|endoftext|>", PHI_TOKENS)
FAMILIES = {
    "smollm2": Family("", "ChatML", "<|im_end|>", default_system=SMOLLM_SYSTEM),
    "qwen2": Family("Qwen2-Instruct.jinja", "ChatML", "<|im_end|>", default_system="You are a helpful assistant."),
    "qwen2.5": Family("Qwen2.5-Instruct.jinja", "ChatML", "<|im_end|>", default_system=QWEN25_SYSTEM),
    "qwen3": Family("Qwen3.jinja", "ChatML", "<|im_end|>", specials=("<think>", "</think>")),
    "chatml": Family(PLAIN_CHATML, "ChatML", "<|im_end|>"),
    "llama3": Family("Llama-3-Instruct.jinja", "Llama 3", "<|eot_id|>", *LLAMA_TOKENS[:2], LLAMA_TOKENS[2]),
    "llama3.1": Family("Llama-3.1-Instruct.jinja", "Llama 3", "<|eot_id|>", *LLAMA_TOKENS[:2], LLAMA_TOKENS[2], ""),
    "llama3.2": Family("Llama-3.2-Instruct.jinja", "Llama 3", "<|eot_id|>", *LLAMA_TOKENS[:2], LLAMA_TOKENS[2], ""),
    "llama3.3": Family("Llama-3.3-Instruct.jinja", "Llama 3", "<|eot_id|>", *LLAMA_TOKENS[:2], LLAMA_TOKENS[2], ""),
    "gemma3": Family("Gemma-3-it.jinja", "Gemma 3", "<end_of_turn>", *GEMMA_TOKENS),
    "mistral-v0.3": Family("Mistral-7B-Instruct-v0.3.jinja", "Mistral v0.3", "</s>", *MISTRAL_TOKENS),
    "mistral-nemo": Family("Mistral-Nemo-Instruct-2407.jinja", "Mistral Nemo", "</s>", *MISTRAL_TOKENS),
    "mistral-small-3.2": Family("Mistral-Small-3.2-Instruct.jinja", "Mistral Small 3", "</s>", *MISTRAL_TOKENS),
    "phi-3.5": Family("Phi-3.5-mini-instruct.jinja", "Phi-3.5", "<|end|>", "<s>", "<|endoftext|>", PHI_TOKENS),
    "phi-4-mini": Family("Phi-4-mini-instruct.jinja", "Phi-4-mini", "<|end|>", *PHI4_TOKENS),
}  # fmt: skip


def family_tokenizer(bundled, name: str):
    """A copy of the bundled tokenizer carrying FAMILIES[name]'s pinned template and special tokens
    (the bundled one itself for "smollm2")."""
    spec = FAMILIES[name]
    if not spec.source:
        return bundled
    copied = copy.deepcopy(bundled)
    new = [token for token in (spec.bos, spec.eos, *spec.specials) if token and token not in copied.get_vocab()]
    if new:
        copied.add_tokens(list(dict.fromkeys(new)), special_tokens=True)
    if spec.bos:
        copied.bos_token = spec.bos
    if spec.eos:
        copied.eos_token = spec.eos
    copied.chat_template = pin_chat_template(spec.template())
    return copied
