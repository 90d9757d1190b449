"""One server for every task against one server per task: resident memory, side by side.

- one: `snakemake serve`'s server (vault_distill.serve): the base GGUF loaded once, every task's
  LoRA GGUF beside it, the adapter picked per request;
- separate: one llama-cpp-python server per task (`python -m llama_cpp.server`), each holding
  that task's merged GGUF, as separate deployments of the merged models would run.

Every server answers one chat request per task it holds (the task's first held-out chat, system
prompt included, greedy, at most `--max-tokens`), then its resident memory is read from /proc
(VmRSS now, VmHWM its peak), summed over the separate ones; the answers' tokens per second of
wall time (prompt included) are compared too.
The servers run one after the other on this machine, in this one sitting. It reads a build with
both deployments:

    .venv/bin/snakemake --cores 2 --config "gguf={deploy: both}" gguf
    .venv/bin/python benchmarks/serve_memory.py

The last line is

    one_over_separate_rss=<x> one_rss_mb=<n> separate_rss_mb=<n> one_over_separate_tok_s=<x>
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import bf16_matmul_flops  # noqa: E402
from train_throughput import load_config  # noqa: E402

from vault_distill.layout import base_gguf_path, gguf_suffix, lora_gguf_path, merged_gguf_path  # noqa: E402
from vault_distill.runtime import read_jsonl  # noqa: E402
from vault_distill.serve import free_port, request_sampling, wait_for_server  # noqa: E402


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a live process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def ask(port: int, model: str, messages: list[dict], sampling: dict) -> tuple[float, int]:
    """Wall seconds and answer tokens of one chat request."""
    body = {"model": model, "messages": messages, **sampling}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=600) as response:
        tokens = json.loads(response.read())["usage"]["completion_tokens"]
    return time.monotonic() - started, tokens


def measure(argv: list[str], port: int, chats: dict[str, list[dict]], sampling: dict) -> dict:
    """Start one server, ask it once per task in `chats`, read its memory, stop it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/v1/models", process, timeout_s=600)
        answers = [ask(port, task, messages, sampling) for task, messages in chats.items()]
        seconds, tokens = sum(s for s, _ in answers), sum(t for _, t in answers)
        return {**memory_mb(process.pid), "seconds": seconds, "tokens": tokens}
    finally:
        process.terminate()
        process.wait(timeout=60)


def one_server(base_gguf: Path, loras: dict[str, Path], chats: dict, sampling: dict, n_ctx: int, threads: int) -> dict:
    port = free_port()
    prompts = {task: messages[0]["content"] for task, messages in chats.items()}
    args = (str(base_gguf), {task: str(path) for task, path in loras.items()}, prompts, n_ctx, threads)
    code = f"from vault_distill.serve import serve; serve(*{args!r}, host='127.0.0.1', port={port})"
    return measure([sys.executable, "-c", code], port, chats, sampling)


def separate_servers(merged: dict[str, Path], chats: dict, sampling: dict, n_ctx: int, threads: int) -> dict:
    total = {"VmRSS": 0.0, "VmHWM": 0.0, "seconds": 0.0, "tokens": 0}
    for task, gguf in merged.items():
        port = free_port()
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", task]
        argv += ["--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]
        for key, value in measure(argv, port, {task: chats[task]}, sampling).items():
            total[key] += value
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"), help="the build's config")
    parser.add_argument("--results", default="results", help="the build's results folder")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp threads per server")
    parser.add_argument("--max-tokens", type=int, default=384, help="longest answer of each request")
    parser.add_argument("--n-ctx", type=int, default=1024, help="context of every server (KV cache size)")
    args = parser.parse_args()

    config = load_config(Path(args.config))
    gguf_type = gguf_suffix(config["gguf"]["outtype"])
    tasks = list(config["tasks"])
    loras = {task: Path(lora_gguf_path(task, args.results)) for task in tasks}
    merged = {task: Path(merged_gguf_path(task, gguf_type, args.results)) for task in tasks}
    base = Path(base_gguf_path(gguf_type, args.results))
    missing = [str(path) for path in (base, *loras.values(), *merged.values()) if not path.is_file()]
    if missing:
        raise SystemExit(f"missing {missing[0]}: build both deployments first (see --help)")
    chats = {task: read_jsonl(Path(args.results) / task / "sft" / "val.jsonl")[0]["prompt_messages"] for task in tasks}
    sampling = request_sampling({**config["decoding"], "temperature": 0, "max_tokens": args.max_tokens})
    print(f"bf16 matmul: {bf16_matmul_flops('cpu', 2048, 5) / 1e9:.0f} GFLOP/s (2048x2048, this machine, now)")
    one = one_server(base, loras, chats, sampling, args.n_ctx, args.threads)
    separate = separate_servers(merged, chats, sampling, args.n_ctx, args.threads)
    for name, record in (("one server, base + adapters", one), (f"{len(tasks)} servers, merged", separate)):
        record["tok_s"] = record["tokens"] / record["seconds"]
        print(
            f"{name}: RSS {record['VmRSS']:.0f} MB (peak {record['VmHWM']:.0f} MB), "
            f"{record['tokens']} tokens in {record['seconds']:.1f} s ({record['tok_s']:.1f} tok/s)"
        )
    print(
        f"one_over_separate_rss={one['VmRSS'] / separate['VmRSS']:.2f} one_rss_mb={one['VmRSS']:.0f} "
        f"separate_rss_mb={separate['VmRSS']:.0f} one_over_separate_tok_s={one['tok_s'] / separate['tok_s']:.2f}"
    )


if __name__ == "__main__":
    main()
