"""Greedy decoding under a grammar, checked on the chosen token only, as llama.cpp's own server does.

llama-cpp-python applies the grammar to the whole vocabulary before every token: each of the
49,152 SmolLM2 tokens is matched against the grammar's stacks, which cost as much as the model's
own forward pass on a 2-core CPU (on the Intel runner: 40-43 tok/s under the teacher's JSON
schema against 72-79 without it). llama.cpp's `common_sampler_sample` (used by llama-server) checks only
the token the chain picked, and applies the grammar to every candidate only when that one is
refused. For greedy decoding with no penalties the two pick the same token: the most likely
token, if the grammar allows it, is also the most likely allowed one; if not, the fallback is
llama-cpp-python's own rule. Ties go to the lowest token id in both, as llama.cpp's greedy
sampler breaks them.

Any other decoding (a temperature, penalties, a logits processor) keeps llama-cpp-python's chain,
where checking one token would change the distribution sampled from.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
from llama_cpp import Llama, llama_cpp


class GreedyGrammarSampler:
    """The sampler object `Llama.generate` drives (`.sample(ctx, idx)`): greedy, grammar last."""

    def __init__(self, model, grammar, n_vocab: int):
        self.grammar = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self.grammar:
            raise ValueError("llama.cpp could not parse the grammar")
        self.n_vocab = n_vocab
        # The grammar only sets a refused token's logit to -inf: ids (and p, zeroed by ctypes) stay put.
        self.candidates = (llama_cpp.llama_token_data * n_vocab)()
        np.ctypeslib.as_array(self.candidates)["id"] = np.arange(n_vocab, dtype=np.int32)
        self.fallbacks = 0

    def sample(self, ctx, idx: int) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self.n_vocab,))
        token = int(np.argmax(logits))
        if not self.allows(token):
            self.fallbacks += 1
            token = self.best_allowed(logits)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        return token

    def allows(self, token: int) -> bool:
        single = llama_cpp.llama_token_data(token, 1.0, 0.0)
        array = llama_cpp.llama_token_data_array(ctypes.pointer(single), 1, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return single.logit != -math.inf

    def best_allowed(self, logits: np.ndarray) -> int:
        """llama-cpp-python's own step: the grammar over every token, then the most likely one."""
        view = np.ctypeslib.as_array(self.candidates)
        view["logit"] = logits
        array = llama_cpp.llama_token_data_array(self.candidates, self.n_vocab, -1, False)
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return int(np.argmax(view["logit"]))

    def close(self) -> None:
        if self.grammar:
            llama_cpp.llama_sampler_free(self.grammar)
            self.grammar = None

    def __del__(self):
        self.close()


def is_plain_greedy(temp, repeat_penalty, frequency_penalty, presence_penalty, logits_processor, mirostat_mode) -> bool:
    """Decoding whose every step is the argmax: only there may the grammar be checked last."""
    return (
        temp == 0.0
        and repeat_penalty == 1.0
        and not frequency_penalty
        and not presence_penalty
        and logits_processor is None
        and not mirostat_mode
    )


class GrammarLastLlama(Llama):
    """`Llama`, with grammar-constrained greedy decoding checked on the chosen token only."""

    def _init_sampler(self, **options):
        greedy = is_plain_greedy(
            *(options.get(key) for key in ("temp", "repeat_penalty", "frequency_penalty", "presence_penalty")),
            options.get("logits_processor"),
            options.get("mirostat_mode"),
        )
        if greedy and options.get("grammar") is not None:
            return GreedyGrammarSampler(self._model, options["grammar"], self._n_vocab)
        return super()._init_sampler(**options)
