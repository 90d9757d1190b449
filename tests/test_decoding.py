"""The sampling settings, spelled for Ollama's Modelfile and for llama.cpp from one config."""

import pytest
from conftest import default_config

from vault_distill.decoding import (
    NAMES,
    NEUTRAL_LLAMA_CPP,
    describe_decoding,
    describe_task_decodings,
    llama_cpp_model_options,
    llama_cpp_sampling,
    modelfile_parameters,
    read_modelfile_parameters,
)

DECODING = default_config()["decoding"]


def test_every_setting_becomes_one_modelfile_parameter_and_reads_back():
    lines = modelfile_parameters(DECODING)
    assert len(lines) == len(NAMES) and all(line.startswith("PARAMETER ") for line in lines)
    assert "PARAMETER num_predict 384" in lines and "PARAMETER min_p 0.0" in lines
    assert read_modelfile_parameters("\n".join(lines)) == DECODING


def test_reading_a_modelfile_ignores_stop_and_context():
    text = 'FROM ./m.gguf\nPARAMETER stop "<|im_end|>"\nPARAMETER num_ctx 512\nPARAMETER top_k 7\n'
    assert read_modelfile_parameters(text) == {"top_k": 7}


def test_llama_cpp_gets_the_same_values_and_neutral_extras():
    sampling = llama_cpp_sampling(DECODING)
    assert sampling["max_tokens"] == DECODING["max_tokens"]
    for key in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed"):
        assert sampling[key] == DECODING[key], key
    assert {key: sampling[key] for key in NEUTRAL_LLAMA_CPP} == NEUTRAL_LLAMA_CPP
    # llama-cpp-python's per-request default min_p is 0.05: it must never be left to it.
    assert "min_p" in sampling
    assert llama_cpp_model_options(DECODING) == {"last_n_tokens_size": DECODING["repeat_last_n"]}


def test_the_llama_cpp_keywords_exist_in_the_installed_runtime():
    import inspect

    from llama_cpp import Llama

    completion = inspect.signature(Llama.create_chat_completion).parameters
    assert set(llama_cpp_sampling(DECODING)) <= set(completion)
    assert set(llama_cpp_model_options(DECODING)) <= set(inspect.signature(Llama.__init__).parameters)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 1.5}, "top_k"),
        ({"seed": True}, "seed"),
        ({"top_p": float("inf")}, "top_p"),
    ],
)
def test_bad_values_are_refused_by_name(change, match):
    with pytest.raises(ValueError, match=match):
        modelfile_parameters({**DECODING, **change})


def test_description_names_every_setting():
    line = describe_decoding(DECODING)
    assert line.startswith("temperature 0.1, top_k 40") and line.endswith("at most 384 tokens")


def test_tasks_are_described_by_what_they_share_and_what_each_sets_otherwise():
    own = {**DECODING, "repeat_penalty": 1.05, "max_tokens": 256}
    line = describe_task_decodings({"judge": DECODING, "planner": DECODING, "reflector": own})
    assert line == describe_decoding(DECODING) + "; reflector: repeat_penalty 1.05, max_tokens 256"
    assert describe_task_decodings({"judge": DECODING, "planner": DECODING}) == describe_decoding(DECODING)
