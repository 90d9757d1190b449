"""Stage extract: notes become task inputs (one record each): grouping, middle cuts, ids."""

from conftest import ROOT, write_note

from vault_distill.extract import content_id, cut_middle, extract_task_inputs, too_few_inputs
from vault_distill.split import TRUNCATION_MARKER


def test_extract_single_records_have_header_content_id_and_sources(vault):
    result = extract_task_inputs(vault, "=== JUDGE ===", {"folders": ["topics"], "group": "single"})
    assert len(result.records) == 2
    for record in result.records:
        assert record["user"].startswith("=== JUDGE ===\n\n## ")
        assert record["id"] == content_id(record["user"])
    raft = next(rec for rec in result.records if rec["sources"] == ["topics/Raft.md"])
    assert "Tags: distributed-systems, research" in raft["user"]


def test_extract_linked_groups_resolve_aliases_and_headings(vault):
    result = extract_task_inputs(vault, "H", {"folders": ["topics"], "group": "linked", "max_linked": 3})
    raft = next(rec for rec in result.records if rec["sources"][0] == "topics/Raft.md")
    assert raft["sources"] == ["topics/Raft.md", "topics/Paxos.md", "tech/Vector clocks.md"]
    limited = extract_task_inputs(vault, "H", {"folders": ["topics"], "group": "linked", "max_linked": 1})
    assert next(rec for rec in limited.records if rec["sources"][0] == "topics/Raft.md")["sources"] == [
        "topics/Raft.md",
        "topics/Paxos.md",
    ]


def test_extract_window_slides_over_calendar_days(vault):
    result = extract_task_inputs(vault, "H", {"folders": ["daily"], "group": "window", "window_days": 2})
    assert [rec["sources"] for rec in result.records] == [
        ["daily/2026-09-01.md", "daily/2026-09-02.md"],
        ["daily/2026-09-02.md"],
        ["daily/2026-09-04.md"],
    ]


def test_long_inputs_keep_their_first_third_and_last_two_thirds_at_line_ends():
    lines = [f"line {i:03d} " + "x" * 40 for i in range(100)]
    text = "=== H ===\n\n" + "\n".join(lines)
    cut = cut_middle(text, 1200)
    assert len(cut) <= 1200
    head, tail = cut.split(TRUNCATION_MARKER)
    assert head.startswith("=== H ===\n\nline 000") and text.startswith(head)
    assert tail.endswith(lines[-1]) and text.endswith(tail)
    # Whole lines only, about a third before the marker and two thirds after it.
    assert all(line in lines for line in head.splitlines()[2:]) and all(line in lines for line in tail.splitlines())
    assert 0.25 < len(head) / len(cut) < 0.36
    assert cut_middle(text, len(text)) == text


def test_extract_cuts_inputs_over_max_chars_and_ids_the_cut_text(vault):
    whole = extract_task_inputs(vault, "H", {"folders": ["topics"], "group": "linked"}).records
    cut = extract_task_inputs(vault, "H", {"folders": ["topics"], "group": "linked", "max_chars": 200}).records
    assert [rec["sources"] for rec in cut] == [rec["sources"] for rec in whole]
    for before, after in zip(whole, cut, strict=True):
        assert len(after["user"]) <= 200 and after["id"] == content_id(after["user"])
        if len(before["user"]) > 200:
            assert TRUNCATION_MARKER in after["user"] and after["id"] != before["id"]
        else:
            assert after == before
    assert any(TRUNCATION_MARKER in rec["user"] for rec in cut)


def test_content_id_is_stable_and_changes_with_content(vault):
    first = extract_task_inputs(vault, "H", {"folders": ["goals"]}).records
    again = extract_task_inputs(vault, "H", {"folders": ["goals"]}).records
    assert first == again
    write_note(vault, "goals/Run a 10k.md", "---\ntags: [goal]\n---\nTrain harder.\n")
    assert extract_task_inputs(vault, "H", {"folders": ["goals"]}).records[0]["id"] != first[0]["id"]


def test_sample_vault_gives_every_default_task_30_inputs_and_names_bad_notes():
    from conftest import default_config

    config = default_config()
    vault = ROOT / config["vault"]
    for task, settings in config["tasks"].items():
        result = extract_task_inputs(vault, settings["header"], settings["select"])
        assert len(result.records) >= 30, task
        assert len({rec["id"] for rec in result.records}) == len(result.records)
    inbox = extract_task_inputs(vault, "H", {"folders": ["inbox"]})
    assert inbox.skipped == {
        "inbox/untitled.md": "empty",
        "inbox/Quick thought.md": "empty",
        "inbox/pasted image.md": "binary content: NUL bytes",
    }
    assert inbox.repaired == {
        "inbox/latin1 note.md": ["legacy encoding: not UTF-8 at byte 18, read as Windows-1252"],
        "inbox/broken front matter.md": ["broken front matter: while parsing a flow sequence"],
    }
    # The repaired notes are inputs, with what the person wrote.
    assert [rec["sources"] for rec in inbox.records] == [
        ["inbox/broken front matter.md"],
        ["inbox/latin1 note.md"],
        ["inbox/meeting scrawl.md"],
    ]
    assert "Notes from the caf\u00e9 on Rue des Tilleuls" in inbox.records[1]["user"]
    assert "tag daily notes automatically" in inbox.records[0]["user"]
    stats = inbox.stats()
    assert (stats["inputs"], stats["notes_selected"]) == (3, 6)
    assert stats["skipped"] == {"empty": 2, "binary content": 1}
    assert stats["repaired"] == {"legacy encoding": 1, "broken front matter": 1}
    assert stats["skipped_notes"] == dict(sorted(inbox.skipped.items()))


def test_min_chars_skips_are_counted_by_reason(vault):
    result = extract_task_inputs(vault, "H", {"folders": ["topics"], "min_chars": 40})
    assert [rec["sources"] for rec in result.records] == [["topics/Raft.md"]]
    assert result.skipped == {"topics/Paxos.md": "shorter than min_chars: under 40 characters"}
    assert result.stats()["skipped"] == {"shorter than min_chars": 1}


def test_too_few_inputs_says_how_many_and_where(vault):
    selector = {"folders": ["topics"]}
    result = extract_task_inputs(vault, "H", selector)
    assert too_few_inputs(result, vault, selector, needed=2) is None
    assert too_few_inputs(result, vault, selector, needed=8) == (
        f"2 usable inputs found in {vault} (folders ['topics']), 8 needed"
    )
    write_note(vault, "topics/Empty.md", "")
    result = extract_task_inputs(vault, "H", selector)
    assert too_few_inputs(result, vault, selector, needed=3).endswith("; 1 notes skipped (see the extract log)")


def test_window_task_with_too_few_days_says_what_it_found_and_needs(vault):
    # Three daily notes, 2026-09-01 to 2026-09-04: four calendar days, not seven.
    selector = {"folders": ["daily"], "group": "window", "window_days": 7}
    result = extract_task_inputs(vault, "H", selector)
    assert result.records == []
    assert too_few_inputs(result, vault, selector, needed=1) == (
        f"0 usable inputs found in {vault} (folders ['daily']), 1 needed; 3 dated notes found, spanning 4 days "
        "(2026-09-01 to 2026-09-04); window_days: 7 needs notes spanning at least 7 days"
    )
    undated = {"folders": ["topics"], "group": "window"}
    message = too_few_inputs(extract_task_inputs(vault, "H", undated), vault, undated, needed=1)
    assert message.endswith(
        "none of the 2 notes found has a date (front matter `date:` or YYYY-MM-DD in the name); "
        "window_days: 7 needs dated notes"
    )
