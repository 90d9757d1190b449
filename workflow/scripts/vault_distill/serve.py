"""`snakemake serve` (never part of `all`): one process answers for every task, behind an
OpenAI-compatible API.

It is llama-cpp-python's own server (llama_cpp.server: the routes, request schemas and streaming
of `python -m llama_cpp.server`) with one change, the model proxy: where llama-cpp-python loads a
whole model per `model` name and reloads on every switch, this one loads the base GGUF once with
every task's LoRA GGUF beside it, and a request's `model` (a task name) picks the adapter that
llama.cpp applies (llama_set_adapters_lora). The base weights are in memory once for all tasks.

As the task's Ollama Modelfile does with SYSTEM, a request without a system message gets the
task's system prompt: the model was trained with it in front of every input. With
serve.enforce_schema, a request that brings no `response_format` and no `grammar` of its own is
decoded under its task's schema (format.json), so every answer is schema-valid JSON as deployed;
`response_format: {"type": "text"}` asks for unconstrained text.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class UnknownTask(LookupError):
    """A request named no task this server holds."""


def task_handler(handler, system_prompt: str, grammar=None):
    """A llama-cpp-python chat handler that puts `system_prompt` first when the request has none,
    and decodes under `grammar` (a LlamaGrammar) when the request sets no format of its own."""

    def answer(*, messages, response_format=None, **kwargs):
        if not messages or messages[0].get("role") != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        if response_format is None and kwargs.get("grammar") is None and grammar is not None:
            kwargs["grammar"] = grammar
        return handler(messages=messages, response_format=response_format, **kwargs)

    return answer


class TaskAdapters:
    """One llama.cpp model with every task's LoRA adapter loaded; `select(task)` makes that
    task's adapter the one applied, alone and at scale 1. `schemas` (task -> JSON schema, or None)
    are the formats its answers are held to."""

    def __init__(self, llm, loras: dict[str, str | Path], system_prompts: dict[str, str], schemas=None):
        import llama_cpp

        from .format import schema_llama_grammar

        self.llm = llm
        self.adapters = {}
        for task, path in loras.items():
            adapter = llama_cpp.llama_adapter_lora_init(llm._model.model, str(path).encode("utf-8"))
            if adapter is None:
                raise RuntimeError(f"{path}: llama.cpp could not load this LoRA adapter")
            self.adapters[task] = adapter
        default = llm._chat_handlers[llm.chat_format]  # the GGUF's own chat template
        schemas = schemas or {}
        self.handlers = {
            task: task_handler(
                default, system_prompts[task], schema_llama_grammar(schemas[task]) if schemas.get(task) else None
            )
            for task in loras
        }
        self.active = None

    def select(self, task: str):
        import llama_cpp

        if task not in self.adapters:
            raise UnknownTask(f"no task {task!r} here; the tasks are: {', '.join(self.adapters)}")
        if task != self.active:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapters[task])
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, adapters, 1, scales) != 0:
                raise RuntimeError(f"llama.cpp refused to apply the {task} adapter")
            # The cached prompt's KV entries were computed under the other adapter.
            self.llm.reset()
            self.llm.chat_handler = self.handlers[task]
            self.active = task
        return self.llm

    def close(self) -> None:
        import llama_cpp

        for adapter in self.adapters.values():
            llama_cpp.llama_adapter_lora_free(adapter)
        self.adapters = {}
        self.llm.close()


def adapter_proxy_class():
    """llama_cpp.server's LlamaProxy, holding one TaskAdapters instead of one model per alias."""
    from fastapi import HTTPException
    from llama_cpp.server.model import LlamaProxy

    class AdapterProxy(LlamaProxy):
        def __init__(self, models) -> None:
            self._model_settings_dict = {settings.model_alias: settings for settings in models}
            base = models[0].model_copy(update={"lora_path": None, "model_alias": "base"})
            loras = {settings.model_alias: settings.lora_path for settings in models}
            prompts = {settings.model_alias: settings.system_prompt for settings in models}
            schemas = {settings.model_alias: settings.answer_schema for settings in models}
            self.tasks = TaskAdapters(LlamaProxy.load_llama_from_model_settings(base), loras, prompts, schemas)

        def __call__(self, model: str | None = None):
            try:
                return self.tasks.select(model)
            except UnknownTask as err:
                raise HTTPException(status_code=404, detail=str(err)) from None

        def free(self):
            self.tasks.close()

    return AdapterProxy


def model_settings(
    base_gguf: str | Path,
    loras: dict[str, str | Path],
    system_prompts: dict,
    n_ctx: int,
    threads: int,
    repeat_last_n=64,
    schemas: dict | None = None,
):
    """One ModelSettings per task, as llama_cpp.server lists them under /v1/models. `repeat_last_n`
    (decoding.repeat_last_n) is a model setting in llama-cpp-python, not a request field.
    `schemas`: task -> the JSON schema its answers are held to (none: unconstrained)."""
    from llama_cpp.server.settings import ModelSettings

    class TaskModelSettings(ModelSettings):
        system_prompt: str = ""
        answer_schema: dict | None = None

    return [
        TaskModelSettings(
            model=str(base_gguf),
            model_alias=task,
            lora_path=str(lora),
            system_prompt=system_prompts[task],
            answer_schema=(schemas or {}).get(task),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=-1,  # every layer on the GPU when llama.cpp was built with one; none otherwise
            last_n_tokens_size=repeat_last_n,
            verbose=False,
        )
        for task, lora in loras.items()
    ]


def create_app(base_gguf, loras: dict, system_prompts: dict, n_ctx: int, threads: int, host: str, port: int, **options):
    """llama_cpp.server's FastAPI app, with AdapterProxy as its model proxy (`options`: those of
    model_settings)."""
    import llama_cpp.server.app as server_app
    from llama_cpp.server.settings import ServerSettings

    server_app.LlamaProxy = adapter_proxy_class()  # create_app builds its proxy by this name
    settings = model_settings(base_gguf, loras, system_prompts, n_ctx, threads, **options)
    return server_app.create_app(server_settings=ServerSettings(host=host, port=port), model_settings=settings)


def serve(base_gguf, loras: dict, system_prompts: dict, n_ctx: int, threads: int, host: str, port: int, **options):
    """Run the server until it is stopped (Ctrl-C)."""
    import uvicorn

    app = create_app(base_gguf, loras, system_prompts, n_ctx, threads, host, port, **options)
    log.warning("serving %s on http://%s:%d/v1 (one base, %d adapters)", ", ".join(loras), host, port, len(loras))
    uvicorn.run(app, host=host, port=port, log_level="info")


def read_formats(tasks: list[str], format_files: list[str | Path]) -> dict[str, dict]:
    """Each task's format.json, by task."""
    import json

    return {
        task: json.loads(Path(path).read_text(encoding="utf-8")) for task, path in zip(tasks, format_files, strict=True)
    }


def free_port() -> int:
    """A TCP port nobody listens on now, for a server started next (tests, benchmarks)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, process, timeout_s: float) -> dict:
    """Poll `url` (a GET that answers JSON) until the server `process` answers; its answer."""
    import json
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}) before it answered {url}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {url} in {timeout_s:.0f} s") from None
            time.sleep(0.5)


def request_sampling(decoding: dict) -> dict:
    """The sampling fields of a chat request that decode as `decoding` says (the Modelfile's
    settings): the server's defaults for a field left out are not the config's (repeat_penalty
    1.1 against llama-cpp-python's 1.0 in-process, temperature 0.8), so a client states them."""
    from llama_cpp.server.types import CreateChatCompletionRequest

    from .decoding import llama_cpp_sampling

    fields = CreateChatCompletionRequest.model_fields
    return {key: value for key, value in llama_cpp_sampling(decoding).items() if key in fields}
