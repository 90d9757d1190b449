"""Chat template families found by probing, and templates pinned so that a build is the same tomorrow."""

from __future__ import annotations

import copy
import datetime

import pytest
from families import FAMILIES, family_tokenizer

from vault_distill.chat_format import (
    PINNED_DATE,
    NoFamily,
    chat_format,
    pin_chat_template,
    pin_tokenizer_template,
    render,
)
from vault_distill.models import folder_digest


class _Clock:
    """Stands in for transformers' `datetime` so its strftime_now reads the day we choose."""

    def __init__(self, day: datetime.date):
        self.day = day

    def now(self):
        return datetime.datetime.combine(self.day, datetime.time(12))


@pytest.fixture
def clock(monkeypatch):
    import transformers.utils.chat_template_utils as utils

    def set_day(day: datetime.date):
        monkeypatch.setattr(utils, "datetime", _Clock(day))

    return set_day


def unpinned(tokenizer, name: str):
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = FAMILIES[name].template()
    return copied


def hf(tokenizer, **kwargs) -> str:
    messages = [{"role": "user", "content": "hi"}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


TODAY, TOMORROW = datetime.date(2026, 12, 1), datetime.date(2026, 12, 2)


@pytest.mark.parametrize(("name", "pinned_text"), [("llama3.2", "26 Jul 2024"), ("mistral-small-3.2", "2024-07-26")])
def test_a_template_that_reads_the_clock_renders_the_same_tomorrow_once_pinned(
    family_tokenizers, clock, name, pinned_text
):
    raw = unpinned(family_tokenizers[name], name)
    clock(TODAY)
    raw_today, pinned_today = hf(raw), hf(family_tokenizers[name])
    clock(TOMORROW)
    raw_tomorrow, pinned_tomorrow = hf(raw), hf(family_tokenizers[name])
    assert raw_today != raw_tomorrow  # the official template really reads the clock
    assert pinned_today == pinned_tomorrow
    assert pinned_text in pinned_today and TODAY.strftime("%Y") not in pinned_today


def test_a_pinned_tokenizer_saves_the_same_files_tomorrow(family_tokenizers, clock, tmp_path):
    digests = []
    for day in (TODAY, TOMORROW):
        clock(day)
        raw = unpinned(family_tokenizers["llama3.2"], "llama3.2")
        pin_tokenizer_template(raw).save_pretrained(tmp_path / day.isoformat())
        digests.append(folder_digest(tmp_path / day.isoformat()))
    assert digests[0] == digests[1]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("llama3.1", {"date_string": "26 Jul 2024"}),
        ("llama3.2", {"date_string": "26 Jul 2024"}),
        ("qwen3", {"enable_thinking": False}),
    ],
)
def test_pinning_means_the_documented_template_arguments(family_tokenizers, name, kwargs):
    assert hf(family_tokenizers[name]) == hf(unpinned(family_tokenizers[name], name), **kwargs)


@pytest.mark.parametrize("name", ["smollm2", "qwen2.5", "gemma3", "phi-3.5", "mistral-v0.3"])
def test_a_template_that_reads_no_clock_is_left_as_it_is(name, tokenizer):
    template = FAMILIES[name].template() or tokenizer.chat_template
    assert pin_chat_template(template) == template


def test_pinning_twice_pins_once():
    template = FAMILIES["llama3.2"].template()
    assert pin_chat_template(pin_chat_template(template)) == pin_chat_template(template)
    assert datetime.date(2024, 7, 26) == PINNED_DATE  # the date Llama 3.1 and 3.3 hard-code


@pytest.mark.parametrize("name", FAMILIES)
def test_the_twin_renders_every_family_as_hf_does(family_tokenizers, name):
    fmt = chat_format(family_tokenizers[name])
    assert fmt.family == FAMILIES[name].family
    assert fmt.end_of_turn == FAMILIES[name].end_of_turn
    messages = [{"role": "system", "content": "Answer with JSON."}, {"role": "user", "content": "A note."}]
    expected = family_tokenizers[name].apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert fmt.bos + render(fmt, messages) == expected


def test_the_family_is_found_by_what_renders_not_by_a_name(tokenizer):
    # Llama 3's turns under a template that says ChatML in a comment: the rendering decides.
    copied = family_tokenizer(tokenizer, "llama3")
    copied.chat_template = "{# ChatML <|im_start|> #}" + copied.chat_template
    assert chat_format(copied).family == "Llama 3"


def test_a_near_miss_names_the_closest_family_and_the_probe(tokenizer):
    copied = family_tokenizer(tokenizer, "gemma3")
    copied.chat_template = copied.chat_template.replace(
        "+ '\n\n' -%}", "+ '\n' -%}"
    )  # one newline after the system text
    with pytest.raises(
        NoFamily,
        match=r"^closest family Gemma 3: probe 'system\+user' rendered .*user\\nvd-probe system text\\nvd-probe",
    ):
        chat_format(copied)
