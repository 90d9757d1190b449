"""llama.cpp's part of a build (teach, evaluate, the GGUF checks), side by side for two builds of
llama-cpp-python at one sitting: prefill and generation tok/s on the bundled SmolLM2, with and
without the JSON-schema grammar that the teacher and the grammar arm decode under.

    .venv/bin/python benchmarks/llama_cpp_speed.py                 # the portable wheel vs this CPU's
    .venv/bin/python benchmarks/llama_cpp_speed.py --wheels A B    # any two wheel files

Each wheel is unpacked into its own folder and measured in a fresh process, in turns (A, B, A, B,
...), so both see the same machine load; medians are reported. Wheels come from setup's cache,
~/.cache/vault-distill/wheels/<variant>-<python>/. The last line is
`prefill_speedup=<x> generate_speedup=<x> grammar_overhead=<x> teach_speedup=<x> grammar_last_speedup=<x>`:
B over A for the speedups, and free over grammar-constrained generation for B (above 1: the grammar
costs that factor). teach_speedup is completion tokens per second of teacher-like chat calls under
the schema; grammar_last_speedup is the same calls through the teacher's own sampler (greedy, the
grammar checked on the chosen token only: the same answers) over llama-cpp-python's, on B.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

PREFILL_TOKENS = 600
GENERATE_TOKENS = 96
# Teacher-like calls per measurement (prompt prefill and schema-constrained answers).
TEACH_CALLS = 6
SCHEMA = ROOT / "resources" / "schemas" / "judge.schema.json"


def worker(threads: int, model: str | None) -> dict:
    """Runs inside the process whose sys.path puts one wheel's llama_cpp first."""
    import llama_cpp
    from llama_cpp import Llama, LlamaGrammar

    from vault_distill.grammar_sampling import GrammarLastLlama
    from vault_distill.models import bundled_gguf

    def load(cls):
        return cls(model_path=model or str(bundled_gguf("bundled:smollm2", "model")), n_ctx=2048, n_threads=threads,
                   n_threads_batch=threads, n_batch=512, verbose=False)  # fmt: skip

    llm = load(Llama)
    notes = "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in sorted((ROOT / "resources" / "vault").rglob("*.md"))
    )
    prompt = llm.tokenize(notes.encode("utf-8"))[:PREFILL_TOKENS]
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    prefill_s = time.perf_counter() - started

    def generate(grammar) -> float:
        """Tokens per second after the first (which pays for a 64-token prompt), greedy."""
        llm.reset()
        tokens = llm.generate(prompt[:64], temp=0.0, grammar=grammar)
        next(tokens)
        started, produced = time.perf_counter(), 0
        for token in tokens:
            produced += 1
            if produced == GENERATE_TOKENS or token == llm.token_eos():
                break
        return produced / (time.perf_counter() - started)

    def teach(llm) -> float:
        """Completion tokens per second of teacher-like calls: chat, JSON schema, greedy. Counted
        in tokens, because two builds' numerics can make the same call answer at other lengths."""
        schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
        system = "Grade the note. Answer with one JSON object."
        tokens, started = 0, time.perf_counter()
        for note in sorted((ROOT / "resources" / "vault").rglob("*.md"))[:TEACH_CALLS]:
            response = llm.create_chat_completion(
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": note.read_text(encoding="utf-8", errors="replace")[:1500]}],
                response_format={"type": "json_object", "schema": schema}, temperature=0.0, max_tokens=384, seed=0,
            )  # fmt: skip
            tokens += response["usage"]["completion_tokens"]
        return tokens / (time.perf_counter() - started)

    grammar = LlamaGrammar.from_json_schema(SCHEMA.read_text(encoding="utf-8"), verbose=False)
    return {
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace"),
        "prefill_tok_s": PREFILL_TOKENS / prefill_s,
        "generate_tok_s": generate(None),
        "grammar_tok_s": generate(grammar),
        "teach_tok_s": teach(llm),
        "teach_grammar_last_tok_s": teach(load(GrammarLastLlama)),
    }


def cached_wheels() -> list[Path]:
    """The portable wheel and this CPU's, where setup caches them (setup names both folders)."""

    def wheel_dir(**env) -> Path:
        done = subprocess.run(["bash", str(ROOT / "envs" / "setup.sh"), "--wheel-dir"], env={**os.environ, **env},
                              capture_output=True, text=True, check=True)  # fmt: skip
        return Path(done.stdout.strip())

    with tempfile.NamedTemporaryFile("w", suffix=".cpuinfo") as plain_x86:  # no AVX512: the portable build
        plain_x86.write("flags\t\t: sse2 avx avx2\n")
        plain_x86.flush()
        folders = [wheel_dir(VAULT_DISTILL_CPUINFO=plain_x86.name), wheel_dir()]
    found = [wheel for folder in folders for wheel in sorted(folder.glob("llama_cpp_python-*.whl"))[:1]]
    if len(found) < 2 or folders[0] == folders[1]:
        raise SystemExit(f"need two wheels, the portable one and this CPU's, in {folders}; found {found}")
    return found


def measure(unpacked: Path, threads: int, model: Path | None) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{unpacked}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    extra = ["--model", str(model)] if model else []
    done = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads), *extra], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"worker for {unpacked} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", nargs=2, type=Path, help="baseline wheel, then the one to compare")
    parser.add_argument("--model", type=Path, help="a GGUF (default: the bundled SmolLM2 Q4_1, the default teacher)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.threads, args.model and str(args.model))))
        return

    from machine import bf16_matmul_flops

    print(f"bf16 matmul: {bf16_matmul_flops('cpu', 2048, 5) / 1e9:.0f} GFLOP/s (2048x2048, this machine, now)")
    wheels = args.wheels or cached_wheels()
    runs: dict[int, list[dict]] = {0: [], 1: []}
    with tempfile.TemporaryDirectory(prefix="vd-llama-") as scratch:
        folders = []
        for index, wheel in enumerate(wheels):
            folder = Path(scratch) / str(index)
            zipfile.ZipFile(wheel).extractall(folder)
            folders.append(folder)
        for _ in range(args.repeats):
            for index, folder in enumerate(folders):
                runs[index].append(measure(folder, args.threads, args.model))
    medians = []
    for index, wheel in enumerate(wheels):
        median = {
            key: statistics.median(run[key] for run in runs[index]) for key in runs[index][0] if key != "system_info"
        }
        medians.append(median)
        print(f"{wheel.parent.name}/{wheel.name}: " + ", ".join(f"{k} {v:.1f}" for k, v in median.items()))
        print(f"  {runs[index][0]['system_info'].strip()}")
    base, new = medians
    print(
        f"prefill_speedup={new['prefill_tok_s'] / base['prefill_tok_s']:.2f} "
        f"generate_speedup={new['generate_tok_s'] / base['generate_tok_s']:.2f} "
        f"grammar_overhead={new['generate_tok_s'] / new['grammar_tok_s']:.2f} "
        f"teach_speedup={new['teach_tok_s'] / base['teach_tok_s']:.2f} "
        f"grammar_last_speedup={new['teach_grammar_last_tok_s'] / new['teach_tok_s']:.2f}"
    )


if __name__ == "__main__":
    main()
