"""The quality benchmark's arithmetic: Wilson intervals, field agreement by schema type, the
held-out selection and the per-arm statistics, on hand-made answers and the real schemas."""

import json

import pytest
from conftest import ROOT

from vault_distill.evaluate import COMPLIANT, TRUNCATED
from vault_distill.failure_modes import COPIED_PROMPT, TEXT_BEFORE_JSON, UNCLOSED_STRING
from vault_distill.quality import (
    ALL_ARMS,
    ARMS,
    QualityError,
    answer_agreement,
    answer_arms,
    arm_statistics,
    as_deployed,
    field_agreement,
    field_kind,
    gold_accuracy,
    gold_correct,
    heldout_rows,
    normalized_tokens,
    render_quality_markdown,
    score_arm,
    select_heldout,
    task_quality,
    teacher_is_base,
    token_f1,
    wilson_interval,
)
from vault_distill.split import split_order


def schema(task):
    return json.loads((ROOT / f"resources/schemas/{task}.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        # Published values (Wilson 1927; Newcombe 1998, Table I; the "3 of 6: 19-81%").
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (5, 10, (0.2366, 0.7634)),
        (3, 6, (0.1876, 0.8124)),
        (81, 263, (0.2553, 0.3662)),
    ],
)
def test_wilson_interval_matches_known_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert low == pytest.approx(expected[0], abs=1e-4) and high == pytest.approx(expected[1], abs=1e-4)


def test_wilson_interval_tells_fifty_from_ninety_at_forty_but_not_at_six():
    assert wilson_interval(20, 40)[1] < wilson_interval(36, 40)[0]
    assert wilson_interval(3, 6)[1] > wilson_interval(5, 6)[0]
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(7, 6)


def test_token_f1_is_squad_style():
    assert normalized_tokens("The Raft log, replicated!") == ["raft", "log", "replicated"]
    assert token_f1(["raft", "log"], ["raft", "log"]) == 1.0
    assert token_f1([], []) == 1.0 and token_f1(["x"], []) == 0.0
    # 1 common token: precision 1/2, recall 1/3 -> F1 0.4
    assert token_f1(["raft", "paxos"], ["raft", "log", "leader"]) == pytest.approx(0.4)
    assert token_f1(["log", "log"], ["log"]) == pytest.approx(2 / 3)  # counts, not sets


def test_field_kinds_follow_the_schema_types():
    judge, planner, analyst = schema("judge"), schema("planner"), schema("analyst")
    assert field_kind(judge["properties"]["score"]) == "scale"  # integer 1..5
    assert field_kind(judge["properties"]["verdict"]) == "exact"  # enum
    assert field_kind(judge["properties"]["gaps"]) == "text_list"
    assert field_kind(planner["properties"]["horizon_weeks"]) == "scale"
    assert field_kind(analyst["properties"]["summary"]) == "text"
    assert field_kind({"type": "boolean"}) == "exact"
    assert field_kind({"type": "integer"}) == "exact"  # unbounded: no ±1
    assert field_kind({"type": "object"}) == "json"


def test_field_agreement_on_hand_made_judge_answers():
    teacher = {"score": 4, "verdict": "keep", "strengths": ["clear steps"], "gaps": ["no sources", "no links"]}
    student = {"score": 3, "verdict": "keep", "strengths": ["clear steps"], "gaps": ["no sources"]}
    fields = field_agreement(student, teacher, schema("judge"))
    assert fields["score"] == {"kind": "scale", "score": 0.0, "within_1": True}
    assert fields["verdict"] == {"kind": "exact", "score": 1.0}
    assert fields["strengths"]["score"] == 1.0
    # gaps pooled: student {no, sources} vs teacher {no, sources, no, links}: P 1, R 0.5
    assert fields["gaps"]["score"] == pytest.approx(0.6667, abs=1e-4)
    assert answer_agreement(fields) == pytest.approx((0 + 1 + 1 + 0.6667) / 4, abs=1e-4)
    far = field_agreement({**student, "score": 1}, teacher, schema("judge"))
    assert far["score"]["within_1"] is False


def test_field_agreement_on_booleans_json_and_missing_fields():
    custom = {
        "type": "object",
        "properties": {
            "done": {"type": "boolean"},
            "meta": {"type": "object"},
            "note": {"type": "string"},
            "extra": {"type": "string"},
        },
    }
    fields = field_agreement(
        {"done": True, "meta": {"a": 1, "b": 2}, "note": "x"},
        {"done": False, "meta": {"b": 2, "a": 1}, "extra": "y"},
        custom,
    )
    assert fields["done"]["score"] == 0.0 and fields["meta"]["score"] == 1.0
    assert fields["note"]["score"] == 0.0 and fields["extra"]["score"] == 0.0


def test_heldout_selection_takes_val_first_then_unseen_inputs_in_hash_order():
    inputs = [{"id": f"i{n}", "sources": [], "user": f"note {n}"} for n in range(10)]
    train = [{"id": "i0"}, {"id": "i1"}]
    val = [{"id": "i2", "prompt_messages": [], "completion": "{}"}]
    chosen_val, unseen = select_heldout(inputs, train, val, max_inputs=5)
    assert [row["id"] for row in chosen_val] == ["i2"]
    expected = sorted((f"i{n}" for n in range(3, 10)), key=split_order)[:4]
    assert [row["id"] for row in unseen] == expected
    assert select_heldout(inputs, train, val, max_inputs=1)[1] == []


def test_heldout_rows_carry_the_teacher_answer_of_val_rows_only(tokenizer):
    val = [
        {
            "id": "v",
            "prompt_messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
            "completion": '{"a": 1}<|im_end|>',
        }
    ]
    long_note = "word " * 2000
    rows = heldout_rows(val, [{"id": "u", "user": long_note}], "S", tokenizer, max_length=128)
    assert rows[0] == {"id": "v", "source": "val", "messages": val[0]["prompt_messages"], "reference": '{"a": 1}'}
    assert rows[1]["source"] == "unseen" and rows[1]["reference"] is None
    user = rows[1]["messages"][1]["content"]
    assert "[...]" in user and len(user) < len(long_note)  # cut in the middle to fit max_length
    prompt = tokenizer.apply_chat_template(rows[1]["messages"], tokenize=False, add_generation_prompt=True)
    assert len(tokenizer(prompt)["input_ids"]) <= 128


VALID = json.dumps({"score": 4, "verdict": "keep", "strengths": ["clear"], "gaps": ["no sources"]})
REFERENCE = VALID


JUDGE_CHAT = [
    {"role": "system", "content": "Grade the note. strengths: up to 3 short strings."},
    {"role": "user", "content": "=== KNOWLEDGE JUDGE DATA ===\n\n# A note\nNo sources."},
]


def row(row_id, source="val", reference=None):
    return {"id": row_id, "source": source, "reference": reference, "messages": JUDGE_CHAT}


def answer(answer_id, text, finish_reason="stop", tokens=20):
    return {"id": answer_id, "text": text, "finish_reason": finish_reason, "tokens": tokens, "seconds": 0.5}


def test_arm_statistics_count_compliance_agreement_and_outcomes():
    heldout = [row(f"x{n}") for n in range(5)]
    wrong = json.dumps({"score": 1, "verdict": "archive", "strengths": [], "gaps": ["vague"]})
    answers = [
        answer("x0", VALID),
        answer("x1", wrong),
        answer("x2", VALID[:20], finish_reason="length", tokens=384),
        answer("x3", "A fine note."),
        answer("x4", json.dumps({"score": 2, "verdict": "keep", "strengths": ["up to 3 short strings"], "gaps": []})),
    ]
    scored = score_arm(answers, heldout, {"x0": REFERENCE, "x1": REFERENCE, "x2": REFERENCE}, schema("judge"))
    stats = arm_statistics(scored)
    assert (stats["n"], stats["compliant"], stats["rate"]) == (5, 3, 0.6)
    assert stats["ci95"] == [round(v, 4) for v in wilson_interval(3, 5)]
    assert stats["labelled"] == 3 and stats["labelled_valid"] == 2
    assert stats["field_agreement"] == pytest.approx((1.0 + 0.0) / 2)
    assert stats["valid_but_wrong"] == 1
    assert stats["outcomes"] == {COMPLIANT: 3, TRUNCATED: 1, "not JSON": 1}
    # The truncated answer stops inside its first string; the prose has no JSON to scan.
    assert stats["failure_patterns"] == {UNCLOSED_STRING: 1, TEXT_BEFORE_JSON: 1}
    assert stats["compliant_with_defects"] == {COPIED_PROMPT: 1}
    assert stats["ran_to_max_tokens"] == 1
    assert stats["mean_answer_tokens"] == pytest.approx((20 * 4 + 384) / 5)
    assert stats["fields"]["score"] == {"kind": "scale", "n": 2, "mean": 0.5, "within_1": 0.5}


def test_answers_for_other_inputs_are_refused():
    with pytest.raises(QualityError, match="not for the held-out inputs"):
        score_arm([answer("a", VALID)], [row("b")], {}, schema("judge"))


def test_task_quality_has_every_arm_and_labels_from_both_sources():
    heldout = [row("v", reference=REFERENCE), row("u", source="unseen")]
    arms = {arm: [answer("v", VALID), answer("u", VALID)] for arm in ARMS}
    quality = task_quality(heldout, {"u": REFERENCE}, arms, schema("judge"))
    assert set(ARMS) <= set(quality)
    assert quality["inputs"] == {"heldout": 2, "val": 1, "unseen": 1, "labelled": 2}
    assert quality["tuned"]["labelled_valid"] == 2 and quality["tuned"]["field_agreement"] == 1.0
    without_labels = task_quality(heldout, {}, arms, schema("judge"))
    assert without_labels["tuned"]["labelled"] == 1
    with pytest.raises(QualityError, match="tuned_grammar"):
        task_quality(heldout, {}, {arm: arms[arm] for arm in ARMS[:3]}, schema("judge"))


def test_as_deployed_is_the_grammar_arm_where_serve_enforces_the_schema_and_tuned_where_not():
    heldout = [row("v"), row("w")]
    arms = {arm: [answer("v", VALID), answer("w", VALID)] for arm in ARMS}
    arms["tuned"] = [answer("v", VALID), answer("w", "not json")]
    judge = task_quality(heldout, {}, arms, schema("judge"))
    enforced, unconstrained = as_deployed(judge, enforce_schema=True), as_deployed(judge, enforce_schema=False)
    assert (enforced["arm"], enforced["compliant"], enforced["without_format"]) == ("tuned_grammar", 2, 1)
    assert (unconstrained["arm"], unconstrained["compliant"], unconstrained["without_format"]) == ("tuned", 1, 1)
    assert enforced["ci95"] == judge["tuned_grammar"]["ci95"] and enforced["n"] == 2


def test_markdown_report_has_every_task_and_arm_and_says_when_the_teacher_is_the_base():
    heldout = [row("v", reference=REFERENCE), row("w")]
    arms = {arm: [answer("v", VALID), answer("w", VALID[:30], finish_reason="length")] for arm in ALL_ARMS}
    judge = task_quality(heldout, {}, arms, schema("judge"))
    quality = {
        "arms": list(ALL_ARMS),
        "as_deployed_arm": "tuned_grammar",
        "tasks": {"judge": {**judge, "as_deployed": as_deployed(judge, enforce_schema=True)}},
        "base_model": "bundled:smollm2",
        "teacher": {"backend": "llama_cpp", "model": "bundled:smollm2"},
        "teacher_is_base": teacher_is_base({"backend": "llama_cpp", "model": "bundled:smollm2"}, "bundled:smollm2"),
        "decoding_line": "temperature 0.1",
        "compliance_rule": "compliant: x",
        "agreement_rule": "field agreement: y",
    }
    text = render_quality_markdown(quality)
    assert all(f"| judge | {arm} | 2 | 1/2 |" in text for arm in ALL_ARMS)  # the adapter arm too
    assert "| task | arm | object never closed |" in text  # only the patterns that occur get a column
    assert all(f"| judge | {arm} | 1 |" in text for arm in ALL_ARMS)
    assert "teacher is the base model itself" in text
    assert "held to format.json" in text and "judge 1/2: **1 of 2** compliant; without the format, 1 of 2." in text
    assert not teacher_is_base({"backend": "openai", "model": "bundled:smollm2"}, "bundled:smollm2")


@pytest.mark.slow
def test_grammar_arm_on_the_real_bundled_gguf_answers_valid_json_for_every_task():
    """The base + grammar arm, as the quality_base job runs it: the bundled SmolLM2 GGUF,
    constrained to each task's schema, decoded with the shipped settings."""
    from conftest import default_config

    from vault_distill.models import resolve_gguf

    config = default_config()
    notes = {
        "judge": "topics/Raft consensus.md",
        "planner": "goals/Bake a consistent sourdough loaf.md",
        "seeder": "topics/Quantization.md",
        "analyst": "tech/Bash strict mode.md",
        "reflector": "daily/2026-10-15.md",
    }
    for task, note in notes.items():
        settings = config["tasks"][task]
        system = (ROOT / settings["system_prompt"]).read_text(encoding="utf-8").strip()
        user = settings["header"] + "\n\n" + (ROOT / "resources/vault" / note).read_text(encoding="utf-8")[:1200]
        heldout = [{"id": task, "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]}]
        records = answer_arms(
            resolve_gguf("bundled:smollm2", "base_model"),
            heldout,
            schema(task),
            ("base", "base_grammar"),
            config["decoding"],
            n_ctx=2048,
            threads=2,
        )
        assert records["base_grammar"]["grammar"] and not records["base"]["grammar"]
        assert records["base_grammar"]["decoding"] == config["decoding"]
        scored = score_arm(records["base_grammar"]["answers"], heldout, {}, schema(task))
        assert all(answer["compliant"] for answer in scored), (task, scored[0]["text"], scored[0]["errors"])


def plan(goal: str) -> str:
    return json.dumps({"goal": goal, "next_actions": ["start"], "blocker": "", "horizon_weeks": 4})


def test_gold_matches_titles_by_token_overlap_and_languages_by_their_aliases():
    assert gold_correct("title", "Raft", "Raft consensus")  # F1 0.67
    assert not gold_correct("title", "Leader election", "Raft consensus")
    assert gold_correct("language", "Python", "python") and gold_correct("language", "sh", "bash")
    assert not gold_correct("language", ["bash"], "bash") and not gold_correct("exact", "Rising", "rising")


def test_gold_accuracy_counts_an_invalid_answer_wrong_and_gives_its_interval():
    gold = {"a": {"goal": "Run a sub-50 10k"}, "b": {"goal": "Bake rye"}, "c": {}}
    answers = {"a": json.loads(plan("sub-50 10k run")), "b": None, "c": json.loads(plan("anything"))}
    assert gold_accuracy("planner", answers, gold) == {
        "goal": {"n": 2, "correct": 1, "rate": 0.5, "ci95": [round(v, 4) for v in wilson_interval(1, 2)]}
    }
    assert gold_accuracy("judge", answers, gold) == {}


def test_task_quality_scores_the_teacher_and_every_arm_on_gold_and_gives_fidelity():
    heldout = [row("v", reference=plan("Run a sub-50 10k")), row("u", source="unseen")]
    arms = {arm: [answer("v", plan("Run a sub-50 10k")), answer("u", plan("Bake rye bread"))] for arm in ARMS}
    arms["tuned"] = [answer("v", plan("Something else")), answer("u", "not json")]
    gold = {"v": {"goal": "Run a sub-50 10k"}, "u": {"goal": "Bake a pure rye loaf"}, "elsewhere": {"goal": "x"}}
    quality = task_quality(heldout, {"u": plan("Sourdough starter")}, arms, schema("planner"), gold, "planner")
    assert quality["teacher_gold"]["goal"]["n"] == 2 and quality["teacher_gold"]["goal"]["correct"] == 1
    assert quality["base"]["gold"]["goal"]["correct"] == 2 and quality["base"]["fidelity"] == {"goal": 2.0}
    assert quality["tuned"]["gold"]["goal"]["correct"] == 0 and quality["tuned"]["fidelity"] == {"goal": 0.0}
    deployed = as_deployed(quality, enforce_schema=True)
    assert deployed["gold"] == quality["tuned_grammar"]["gold"]
