"""Prompt/completion split on SmolLM2's real tokenizer and chat template."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vault_distill.split import (
    TRUNCATION_MARKER,
    DroppedExample,
    build_example,
    build_sft_dataset,
    count_example_tokens,
    render_completion,
    render_prompt,
    train_val_split,
    why_nothing_to_train,
)

SYSTEM = "You are a knowledge judge. Answer with JSON."
ANSWER = json.dumps({"score": 4, "verdict": "keep", "strengths": ["clear"], "gaps": []})


def chat_example(example_id: str, user: str, answer: str = ANSWER) -> dict:
    return {
        "id": example_id,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ],
    }


def test_prompt_and_completion_come_from_the_chat_template(tokenizer):
    prompt = render_prompt(tokenizer, SYSTEM, "hello")
    completion = render_completion(tokenizer, "hello", ANSWER)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert completion == ANSWER + "<|im_end|>"
    full = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": ANSWER},
        ],
        tokenize=False,
    )
    assert full.startswith(prompt + completion)


def test_trl_trains_exactly_one_end_of_turn(tokenizer, tmp_path):
    """Run TRL's own dataset preparation on the rows train.py gives it: the sequence must end in a
    single <|im_end|>, with the prompt masked and the whole completion (end token included) trained."""
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from vault_distill.train import tokenized_rows

    example = build_example(tokenizer, SYSTEM, "A short note about Raft.", ANSWER, max_length=256)
    tiny = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    ).to(torch.float32)
    trainer = SFTTrainer(
        model=tiny,
        args=SFTConfig(
            output_dir=str(tmp_path), max_length=256, report_to=[], completion_only_loss=True, bf16=False, use_cpu=True
        ),
        train_dataset=Dataset.from_list(
            tokenized_rows([{"prompt": example.prompt, "completion": example.completion}], tokenizer)
        ),
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    ids = row["input_ids"]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert ids[-1] == im_end
    assert ids[-2] != im_end
    assert tokenizer.decode(ids).count("<|im_end|>") == 3  # system, user, assistant turns
    trained = [label for label in row["labels"] if label != -100]
    assert tokenizer.decode(trained) == example.completion
    assert len(ids) == example.n_tokens


def test_short_example_is_not_truncated(tokenizer):
    example = build_example(tokenizer, SYSTEM, "short", ANSWER, max_length=512)
    assert not example.truncated
    assert TRUNCATION_MARKER not in example.prompt
    assert example.n_tokens == count_example_tokens(tokenizer, example.prompt, example.completion)


def test_completion_that_cannot_fit_is_dropped_not_cut(tokenizer):
    long_answer = json.dumps({"gaps": ["word " * 200]})
    with pytest.raises(DroppedExample):
        build_example(tokenizer, SYSTEM, "note", long_answer, max_length=96)


def test_a_split_where_nothing_survives_names_the_key_and_writes_nothing(tokenizer):
    long_answer = json.dumps({"gaps": ["word " * 200]})
    examples = [chat_example(f"id{i}", f"note {i}", long_answer) for i in range(3)]
    train, val, stats = build_sft_dataset(examples, tokenizer, max_length=96, val_fraction=0.34)
    assert (train, val, stats["dropped"]) == ([], [], 3)
    assert why_nothing_to_train("judge", stats).startswith(
        "tasks.judge.training.max_length: no example survives the split: all 3 were dropped (the first needs "
    )
    _, _, empty = build_sft_dataset([], tokenizer, max_length=96, val_fraction=0.34)
    assert why_nothing_to_train("judge", empty) == (
        "tasks.judge: no teacher answer to train on (see results/judge/teacher_rejects.jsonl)"
    )
    _, _, fine = build_sft_dataset(examples[:2], tokenizer, max_length=512, val_fraction=0.34)
    assert why_nothing_to_train("judge", fine) is None


def _head_tail(user: str, prompt: str) -> tuple[str, str]:
    start = prompt.index("<|im_start|>user\n") + len("<|im_start|>user\n")
    kept = prompt[start : prompt.index("<|im_end|>", start)]
    head, _, tail = kept.partition(TRUNCATION_MARKER)
    return head, tail


text_strategy = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"))
    | st.sampled_from(["\n", " ", "é", "日", "本"]),
    min_size=200,
    max_size=3000,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=text_strategy, max_length=st.integers(min_value=120, max_value=400))
def test_middle_truncation_properties(tokenizer, user, max_length):
    user = "=== HEADER ===\n" + user
    try:
        example = build_example(tokenizer, SYSTEM, user, ANSWER, max_length)
    except DroppedExample:
        return
    prompt_ids = tokenizer(text=example.prompt)["input_ids"]
    full_ids = tokenizer(text=example.prompt + example.completion)["input_ids"]
    assert len(full_ids) <= max_length
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert example.completion == ANSWER + "<|im_end|>"
    if example.truncated:
        head, tail = _head_tail(user, example.prompt)
        assert user.startswith(head) and head
        assert user.endswith(tail) and tail
        head_tokens = len(tokenizer(head, add_special_tokens=False)["input_ids"])
        tail_tokens = len(tokenizer(tail, add_special_tokens=False)["input_ids"])
        # A third for the framing, two thirds for the most recent content. Cuts land on
        # character boundaries, and one character can take up to 4 byte-level tokens.
        assert abs(tail_tokens - 2 * head_tokens) <= 12
    else:
        assert user in example.prompt


def test_truncation_keeps_header_and_latest_content(tokenizer):
    user = "=== KNOWLEDGE JUDGE DATA ===\n" + " ".join(f"day{i}" for i in range(2000)) + "\nLATEST ENTRY"
    example = build_example(tokenizer, SYSTEM, user, ANSWER, max_length=300)
    assert example.truncated
    assert example.n_tokens <= 300
    assert "=== KNOWLEDGE JUDGE DATA ===" in example.prompt
    assert "LATEST ENTRY" in example.prompt
    assert TRUNCATION_MARKER in example.prompt
    assert render_prompt(tokenizer, SYSTEM, example.user) == example.prompt
    head, tail = _head_tail(user, example.prompt)
    head_tokens = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    tail_tokens = len(tokenizer(tail, add_special_tokens=False)["input_ids"])
    assert abs(tail_tokens - 2 * head_tokens) <= 3


def test_split_is_deterministic_by_id_and_stats_count(tokenizer):
    examples = [chat_example(f"id{i:02d}", f"note {i} " * (i * 30)) for i in range(20)]
    train, val, stats = build_sft_dataset(examples, tokenizer, max_length=256, val_fraction=0.25)
    assert len(val) == 5 and len(train) + len(val) == 20 - stats["dropped"]
    again_train, again_val, _ = build_sft_dataset(list(reversed(examples)), tokenizer, 256, 0.25)
    assert {r["id"] for r in val} == {r["id"] for r in again_val}
    assert {r["id"] for r in train} == {r["id"] for r in again_train}
    assert stats["truncated"] > 0
    assert stats["tokens"]["total"]["max"] <= 256
    assert set(train[0]) == {"id", "prompt", "completion", "prompt_messages"}
    # Evaluation replays the held-out chat: it must render to the very prompt of the split.
    for rec in train + val:
        assert (
            tokenizer.apply_chat_template(rec["prompt_messages"], tokenize=False, add_generation_prompt=True)
            == (rec["prompt"])
        )
    assert stats["input_output_ratio"] > 1


def test_split_keeps_ids_on_their_side_when_examples_are_added():
    records = [{"id": f"x{i}"} for i in range(50)]
    _, val = train_val_split(records, 0.2)
    _, val_more = train_val_split([*records, *({"id": f"y{i}"} for i in range(5))], 0.2)
    assert len(val) == 10
    assert len({r["id"] for r in val} & {r["id"] for r in val_more}) >= 9


def test_truncated_prompt_tokenizes_the_same_in_llama_cpp(tokenizer):
    """Where the cut leaves a space before a digit, "\\n 4" follows the marker: llama.cpp
    splits that "\\n ", "4" and HF "\\n", " ", "4", so the GGUF check would reject the model."""
    from llama_cpp import Llama

    from vault_distill.models import resolve_gguf

    vocab = Llama(str(resolve_gguf("bundled:smollm2", "base_model")), vocab_only=True, verbose=False)
    user = "=== ANALYST DATA ===\n" + " ".join(str(i) for i in range(600))
    for max_length in range(200, 206):  # cuts on both spaces and digits
        prompt = build_example(tokenizer, SYSTEM, user, ANSWER, max_length).prompt
        assert TRUNCATION_MARKER in prompt
        hf_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert vocab.tokenize(prompt.encode("utf-8"), add_bos=False, special=True) == hf_ids, max_length


# One tokenizer per way of ending an answer: ChatML (eos is the turn end), Qwen3 (an empty think block
# first), Llama 3 (<|eot_id|> as eos), Gemma and Phi (a turn token that is not the eos), Mistral (eos
# ends the answer; v0.3 opens it with a space and folds the system text into the last user message).
FAMILY_ANSWERS = [
    "smollm2",
    "qwen3",
    "llama3.2",
    "gemma3",
    "phi-3.5",
    "phi-4-mini",
    "mistral-v0.3",
    "mistral-small-3.2",
]


@pytest.mark.parametrize("name", FAMILY_ANSWERS)
def test_each_family_trains_its_own_end_of_turn_exactly_once(family_tokenizers, name, tmp_path):
    import copy

    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from vault_distill.chat_format import bos_text, chat_format
    from vault_distill.train import tokenized_rows

    tokenizer = copy.deepcopy(family_tokenizers[name])  # TRL sets eos_token on the one it is given
    end_of_turn, eos = chat_format(tokenizer).end_of_turn, tokenizer.eos_token
    example = build_example(tokenizer, SYSTEM, "A short note about Raft.", ANSWER, max_length=256)
    assert example.completion.endswith(end_of_turn) and example.completion.count(end_of_turn) == 1
    assert example.completion.strip().removesuffix(end_of_turn) == ANSWER
    served = tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "A short note about Raft."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert bos_text(tokenizer) + example.prompt == served  # the prompt the model is served, less bos

    tiny = LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2)
    )  # fmt: skip
    args = SFTConfig(
        output_dir=str(tmp_path), max_length=256, report_to=[], completion_only_loss=True, use_cpu=True,
        eos_token=end_of_turn,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=tiny,
        args=args,
        train_dataset=Dataset.from_list(
            tokenized_rows([{"prompt": example.prompt, "completion": example.completion}], tokenizer)
        ),
        processing_class=tokenizer,
    )
    row = trainer.train_dataset[0]
    ids, trained = row["input_ids"], [label for label in row["labels"] if label != -100]
    end_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    assert ids[-1] == end_id and ids[-2] != end_id
    assert tokenizer.decode(trained) == example.completion
    if eos != end_of_turn:  # no stray eos after the turn token
        assert tokenizer.convert_tokens_to_ids(eos) not in trained
    assert len(ids) == example.n_tokens
