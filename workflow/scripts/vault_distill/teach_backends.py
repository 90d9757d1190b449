"""The teacher backends: a local GGUF through llama.cpp, any OpenAI-compatible server, the
Anthropic Messages API, and any command. Each answers `complete(system, user, schema, attempt)
-> str`; a failure worth retrying raises TransientError, any other TeacherError. What is asked,
retried, cached and kept is teach.py's business."""

from __future__ import annotations

import json
import logging
import os
import subprocess
from contextlib import contextmanager
from typing import Protocol

from .models import resolve_gguf

log = logging.getLogger(__name__)

# The sampling penalties, as OpenAI, Ollama, vLLM and llama.cpp all name them (0 is off).
PENALTIES = ("presence_penalty", "frequency_penalty")


class SchemaFailure(ValueError):
    """An answer that is not JSON or does not satisfy the output schema."""


# Retries after a schema failure sample at least this warm, so that a deterministic
# (temperature 0) failure is not simply repeated.
RETRY_TEMPERATURE = 0.7

SCHEMA_INSTRUCTION = (
    "\n\nReply with a single JSON object that validates against this JSON Schema, and nothing else:\n{schema}"
)


class TeacherError(RuntimeError):
    """A teacher failure that retrying cannot fix (bad config, missing key, dead server)."""


class TransientError(RuntimeError):
    """A failure worth retrying: a timeout, a 429, a 5xx, a crashed command."""


class Backend(Protocol):
    def complete(self, system: str, user: str, schema: dict, attempt: int) -> str: ...


def _temperature(settings: dict, attempt: int) -> float:
    base = settings["temperature"]
    return base if attempt == 0 else max(base, RETRY_TEMPERATURE)


def _api_key(settings: dict, default_env: str | None) -> str | None:
    env = settings.get("api_key_env") or default_env
    if env is None:
        return None
    key = os.environ.get(env)
    if not key:
        raise TeacherError(f"teacher.api_key_env: environment variable {env} is not set")
    return key


class LlamaCppBackend:
    """A local GGUF, in-process, schema-constrained by llama.cpp's grammar sampler."""

    def __init__(self, settings: dict, threads: int = 1):
        from .grammar_sampling import GrammarLastLlama

        self.settings = settings
        path = resolve_gguf(settings["model"], key="teacher.model")
        # Greedy answers under the schema check the grammar on the chosen token only: the same
        # answers, without matching the whole vocabulary against the grammar at every token.
        self.llm = GrammarLastLlama(
            model_path=str(path),
            n_ctx=settings["n_ctx"],
            n_threads=max(1, threads),
            n_threads_batch=max(1, threads),
            seed=settings["seed"],
            verbose=False,
        )

    def complete(self, system: str, user: str, schema: dict, attempt: int) -> str:
        fmt = self.settings["response_format"]
        response_format = None if fmt == "none" else {"type": "json_object", "schema": schema}
        try:
            response = self.llm.create_chat_completion(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format=response_format,
                temperature=_temperature(self.settings, attempt),
                max_tokens=self.settings["max_tokens"],
                seed=self.settings["seed"] + attempt,
                **penalties(self.settings),
            )
        except ValueError as err:  # e.g. "Requested tokens (5000) exceed context window"
            raise SchemaFailure(f"teacher could not answer: {err}") from None
        return response["choices"][0]["message"]["content"] or ""


def penalties(settings: dict) -> dict:
    """The penalties that are on, as OpenAI, Ollama, vLLM and llama.cpp all spell them."""
    return {key: settings[key] for key in PENALTIES if settings[key] != 0.0}


def warn_unused_penalty(settings: dict, backend: str) -> None:
    for key, value in penalties(settings).items():
        log.warning("teacher.%s %s has no effect: %s has no such setting", key, value, backend)


class OpenAIBackend:
    """Any OpenAI-compatible server: OpenAI, Ollama, vLLM, llama.cpp's server."""

    def __init__(self, settings: dict, threads: int = 1):
        import openai

        self.openai = openai
        self.settings = settings
        self.client = openai.OpenAI(
            base_url=settings.get("base_url"),
            api_key=_api_key(settings, None) or "not-needed",
            timeout=settings["timeout_s"],
            max_retries=0,  # tenacity retries, with one policy for every backend
        )

    def _response_format(self, schema: dict) -> dict | None:
        fmt = self.settings["response_format"]
        if fmt == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        if fmt == "json_object":
            return {"type": "json_object", "schema": schema}
        return None

    def complete(self, system: str, user: str, schema: dict, attempt: int) -> str:
        kwargs = {}
        if (response_format := self._response_format(schema)) is not None:
            kwargs["response_format"] = response_format
        kwargs.update(penalties(self.settings))
        with sdk_errors_translated(self.openai, "teacher server"):
            response = self.client.chat.completions.create(
                model=self.settings["model"],
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=_temperature(self.settings, attempt),
                max_tokens=self.settings["max_tokens"],
                seed=self.settings["seed"] + attempt,
                **kwargs,
            )
        return response.choices[0].message.content or ""


@contextmanager
def sdk_errors_translated(sdk, server: str):
    """The openai and anthropic SDKs name their errors alike: timeouts, lost connections, 429
    and 5xx are worth a retry (TransientError); any other refusal is final (TeacherError)."""
    try:
        yield
    except (sdk.APITimeoutError, sdk.APIConnectionError, sdk.RateLimitError) as err:
        raise TransientError(f"{type(err).__name__}: {err}") from None
    except sdk.APIStatusError as err:
        if err.status_code >= 500:
            raise TransientError(f"HTTP {err.status_code}") from None
        raise TeacherError(f"{server} refused the request: HTTP {err.status_code}: {err.message}") from None


class AnthropicBackend:
    """The Messages API, through the official SDK. It has no grammar, so the schema
    goes into the system prompt and the answer is validated like any other."""

    def __init__(self, settings: dict, threads: int = 1):
        import anthropic

        self.anthropic = anthropic
        self.settings = settings
        warn_unused_penalty(settings, "the Anthropic API")
        self.client = anthropic.Anthropic(
            api_key=_api_key(settings, "ANTHROPIC_API_KEY"),
            base_url=settings.get("base_url"),
            timeout=settings["timeout_s"],
            max_retries=0,
        )

    def complete(self, system: str, user: str, schema: dict, attempt: int) -> str:
        with sdk_errors_translated(self.anthropic, "Anthropic API"):
            # No temperature: the Messages API (2026-10-21 on, the 2.x SDK's default) and the
            # SDK itself refuse sampling parameters, so a schema retry simply asks again.
            message = self.client.messages.create(
                model=self.settings["model"],
                max_tokens=self.settings["max_tokens"],
                system=system + SCHEMA_INSTRUCTION.format(schema=json.dumps(schema)),
                messages=[{"role": "user", "content": user}],
            )
        return "".join(block.text for block in message.content if block.type == "text")


class CommandBackend:
    """Any program that reads the prompt on stdin and prints the answer
    (`claude -p`, `llm -m SmolLM2`, a shell script)."""

    def __init__(self, settings: dict, threads: int = 1):
        if not settings.get("command"):
            raise TeacherError("teacher.command: the command backend needs an argv list")
        self.settings = settings
        warn_unused_penalty(settings, "the command backend")

    def complete(self, system: str, user: str, schema: dict, attempt: int) -> str:
        prompt = system + SCHEMA_INSTRUCTION.format(schema=json.dumps(schema)) + "\n\n" + user
        argv = self.settings["command"]
        try:
            done = subprocess.run(
                argv,
                input=prompt,
                capture_output=True,
                text=True,
                timeout=self.settings["timeout_s"],
            )
        except subprocess.TimeoutExpired:
            raise TransientError(f"command timed out after {self.settings['timeout_s']} s") from None
        except FileNotFoundError:
            raise TeacherError(f"teacher.command: program not found: {argv[0]}") from None
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or [""]
            raise TransientError(f"command exited {done.returncode}: {tail[0][:200]}")
        return done.stdout


BACKENDS = {
    "llama_cpp": LlamaCppBackend,
    "openai": OpenAIBackend,
    "anthropic": AnthropicBackend,
    "command": CommandBackend,
}
