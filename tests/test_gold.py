"""Gold labels: each rule on hand-made notes, and the labels of held-out inputs from their notes."""

from __future__ import annotations

import pytest
from conftest import write_note

from vault_distill.gold import energy_readings, energy_trend, fenced_language, gold_labels, gold_values
from vault_distill.vault import Note


def note(body: str, title: str = "A note", meta: dict | None = None) -> Note:
    return Note(path=f"x/{title}.md", title=title, meta=meta or {}, body=body)


def test_the_language_is_the_most_frequent_code_fence_and_its_aliases_are_one_language():
    body = "Setup:\n```sh\nmake\n```\nThen\n```python\nx = 1\n```\n~~~ bash\nls\n~~~\n    ```Py\n"
    assert fenced_language([note(body)]) == "bash"  # sh and bash: 2, python and Py: 2, bash seen first
    assert fenced_language([note("```yml\na: 1\n```\n```\nplain\n```\n")]) == "yaml"
    assert fenced_language([note("No code here, only `inline` code.")]) is None
    # Only the input's own note: a linked note's code is not what the analyst reads first.
    assert fenced_language([note("prose"), note("```rust\nfn main() {}\n```")]) is None


def daily(day: str, energy: str) -> Note:
    return note(f"Ran 5 km.\n{energy}\nSlept well.", title=day, meta={"date": day})


@pytest.mark.parametrize(
    ("readings", "trend"),
    [
        ([3, 4, 6, 7], "rising"),
        ([8, 7, 6.5, 5, 4], "falling"),  # the middle reading is in neither half
        ([6, 7, 6, 6.5], "steady"),
        ([7, 3, 8, 4], "mixed"),
        ([5, 9], None),  # too few to call
    ],
)
def test_energy_trend_compares_the_later_half_with_the_earlier(readings, trend):
    assert energy_trend(readings) == trend


def test_energy_readings_come_in_date_order_one_per_note():
    notes = [
        daily("2026-09-03", "Energy 8/10. Energy 2/10 later."),
        daily("2026-09-01", "energy: 3 / 10"),
        daily("2026-09-02", "Flat energy, no number."),
        note("Energy 9/10", title="undated"),
    ]
    assert energy_readings(notes) == [3.0, 8.0]


def test_each_task_gets_the_fields_its_notes_make_derivable():
    goal = note("Run it.\n```python\nprint()\n```", title="Run a sub-50 10k")
    assert gold_values("planner", [goal, note("linked")]) == {"goal": "Run a sub-50 10k"}
    assert gold_values("seeder", [goal]) == {"topic": "Run a sub-50 10k"}
    assert gold_values("analyst", [goal]) == {"language": "python"}
    assert gold_values("analyst", [note("prose only")]) == {}
    assert gold_values("judge", [goal]) == {}
    week = [daily(f"2026-09-0{day}", f"Energy {level}/10.") for day, level in ((1, 8), (2, 7), (3, 4), (4, 3))]
    assert gold_values("reflector", week) == {"energy_trend": "falling"}


def test_held_out_inputs_are_labelled_from_the_notes_they_were_built_from(tmp_path):
    write_note(tmp_path, "tech/Fix the flaky test.md", "---\ntags: [tech]\n---\n```go\nt.Parallel()\n```\n")
    write_note(tmp_path, "tech/Prose.md", "Nothing fenced.\n")
    heldout = [{"id": "a"}, {"id": "b"}, {"id": "gone"}]
    inputs = [{"id": "a", "sources": ["tech/Fix the flaky test.md"]}, {"id": "b", "sources": ["tech/Prose.md"]}]
    assert gold_labels("analyst", heldout, inputs, tmp_path) == [
        {"id": "a", "gold": {"language": "go"}},
        {"id": "b", "gold": {}},
        {"id": "gone", "gold": {}},  # an input the extraction no longer gives has no truth here
    ]
