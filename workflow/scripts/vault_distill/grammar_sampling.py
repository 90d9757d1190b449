"""Decoding under a grammar, checked on the chosen token only, as llama.cpp's own server does.

llama-cpp-python applies the grammar to the whole vocabulary before every token: each of the
49,152 SmolLM2 tokens is matched against the grammar's stacks, which cost as much as the model's
own forward pass on a 2-core CPU (on the Intel runner: 40-43 tok/s under the teacher's JSON
schema against 72-79 without it). llama.cpp's `common_sampler_sample` (used by llama-server) runs
the sampler chain first and checks only the token it picked; when the grammar refuses it, it
applies the grammar to every candidate and runs the chain again.

- Greedy decoding with no penalties picks the same token either way: the most likely token, if the
  grammar allows it, is also the most likely allowed one. Ties go to the lowest token id in both,
  as llama.cpp's greedy sampler breaks them.
- Sampling at a temperature draws from the same distribution either way: a token the grammar
  allows is drawn first with probability p, or after a refusal with probability (1 - A) p / A
  (A: the allowed tokens' share), p / A in all, which is the grammar-first probability. Top-k,
  top-p and min-p then cut the vocabulary before the grammar rather than after, as llama-server does.
  The random draws differ, so a seed gives other answers than llama-cpp-python's chain.

A logits processor (a Python callback) or mirostat (whose state moves on every draw) keeps
llama-cpp-python's chain.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
from llama_cpp import Llama, llama_cpp


class GrammarLastSampler:
    """The sampler object `Llama.generate` drives (`.sample(ctx, idx)`): llama-cpp-python's own chain
    without its grammar, and the grammar checked last."""

    def __init__(self, model, grammar, n_vocab: int, chain, greedy: bool):
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self.grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        self.chain = chain  # llama-cpp-python's LlamaSampler: penalties, then greedy or top-k ... dist
        self.greedy = greedy  # plain argmax: the chain's first pass is np.argmax, without a copy
        self.n_vocab = n_vocab
        self.candidates = (llama_cpp.llama_token_data * n_vocab)()
        self.token_ids = np.arange(n_vocab, dtype=np.int32)
        self.fallbacks = 0

    def sample(self, ctx, idx: int) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,))
        token = self.choose(logits)
        llama_cpp.llama_sampler_accept(self.chain.sampler, token)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def choose(self, logits: np.ndarray) -> int:
        """The chain's pick if the grammar allows it, else the chain's pick among the allowed tokens."""
        token = int(np.argmax(logits)) if self.greedy else self.chain_pick(logits, grammar_first=False)
        if not self.allows(token):
            self.fallbacks += 1
            token = self.chain_pick(logits, grammar_first=True)
        return token

    def allows(self, token: int) -> bool:
        single = llama_cpp.llama_token_data(token, 1.0, 0.0)
        array = llama_cpp.llama_token_data_array(ctypes.pointer(single), 1, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return single.logit != -math.inf

    def chain_pick(self, logits: np.ndarray, grammar_first: bool) -> int:
        # The chain sorts and truncates the candidates in place: every pick starts from a fresh copy.
        view = np.ctypeslib.as_array(self.candidates)
        view["id"], view["logit"], view["p"] = self.token_ids, logits, 0.0
        array = llama_cpp.llama_token_data_array(self.candidates, self.n_vocab, -1, False)
        if grammar_first:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self.chain.sampler, ctypes.byref(array))
        return int(self.candidates[array.selected].id)

    def close(self) -> None:
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None

    def __del__(self):
        self.close()


def is_plain_greedy(temp, repeat_penalty, frequency_penalty, presence_penalty) -> bool:
    """Decoding whose every step is the argmax of the model's logits."""
    return temp == 0.0 and repeat_penalty == 1.0 and not frequency_penalty and not presence_penalty


class GrammarLastLlama(Llama):
    """`Llama`, with grammar-constrained decoding checked on the chosen token only, and every
    completion decoded from an empty context.

    llama-cpp-python reuses the previous call's cached prefix and re-evaluates the prompt's last
    token alone. On the AVX512 build that token's logits then differ in the last bits from a whole
    prompt evaluated at once, enough to change a token sampled at 0.7 (seen on a Zen 4 runner: one
    seed, one prompt, two answers). A teacher answer must depend on its prompt and settings alone
    (it is cached by them, and a resumed run asks from another input onwards), so each completion
    pays for its whole prompt again."""

    def generate(self, tokens, *args, **kwargs):
        self.reset()
        yield from super().generate(tokens, *args, **kwargs)

    def _init_sampler(self, **options):
        grammar = options.get("grammar")
        if grammar is None or options.get("logits_processor") is not None or options.get("mirostat_mode"):
            return super()._init_sampler(**options)
        chain = super()._init_sampler(**{**options, "grammar": None})
        greedy = is_plain_greedy(
            *(options.get(key) for key in ("temp", "repeat_penalty", "frequency_penalty", "presence_penalty"))
        )
        return GrammarLastSampler(self._model, grammar, self._n_vocab, chain, greedy)
