"""Stage extract: notes become task inputs (one record each): grouping, middle cuts, ids."""

from conftest import ROOT, write_note

from vault_distill.extract import ambiguous_link_lines, content_id, cut_middle, extract_task_inputs, too_few_inputs
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
        # Each task reads at least one of the notes saved on Windows (.gitattributes): none of its \r is kept.
        assert result.stats()["repaired"].get("line endings", 0) >= 1, task
        assert not any("\r" in rec["user"] for rec in result.records), task
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


def crlf(text: str) -> bytes:
    return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")


def test_a_vault_saved_on_windows_gives_the_inputs_of_its_lf_twin_and_counts_the_repairs(tmp_path):
    notes = {
        "goals/Ship it.md": "---\ntags: [goal]\n---\n# Ship it\n\nNeeds [[Backups#restore]] and [[CI|the pipeline]].\n",
        "topics/Backups.md": "---\naliases: [backup]\n---\nThree copies.\n\n- two media\n- one offsite\n",
        "topics/CI.md": "Green builds only.\r\n",
    }
    for name, folder in (("lf", tmp_path / "lf"), ("windows", tmp_path / "windows")):
        for rel, text in notes.items():
            write_note(folder, rel, text.encode("utf-8") if name == "lf" else crlf(text))
    selector = {"folders": ["goals"], "group": "linked"}
    lf = extract_task_inputs(tmp_path / "lf", "=== PLAN ===", selector)
    windows = extract_task_inputs(tmp_path / "windows", "=== PLAN ===", selector)
    assert windows.records == lf.records and len(lf.records) == 1
    assert lf.records[0]["sources"] == ["goals/Ship it.md", "topics/Backups.md", "topics/CI.md"]
    assert "\r" not in windows.records[0]["user"] and "- two media\n- one offsite" in windows.records[0]["user"]
    assert windows.stats()["repaired"] == {"line endings": 3}
    assert windows.repaired["topics/CI.md"] == ["line endings: 1 CRLF and 1 lone CR read as LF"]
    assert lf.stats()["repaired"] == {"line endings": 1}  # the one CRLF the LF twin has too


def test_an_ambiguous_link_is_logged_with_its_candidates_and_the_pick_and_counted(tmp_path):
    write_note(tmp_path, "goals/Plan.md", "Read [[Shared]] and [[sub/Shared]] and [[Alias only]].\n")
    write_note(tmp_path, "topics/Shared.md", "The topic one.\n")
    write_note(tmp_path, "sub/Shared.md", "---\naliases: [Alias only]\n---\nThe sub one.\n")
    result = extract_task_inputs(tmp_path, "H", {"folders": ["goals"], "group": "linked"})
    assert result.records[0]["sources"] == ["goals/Plan.md", "sub/Shared.md"]
    assert result.ambiguous_links == {
        "goals/Plan.md": [
            {"link": "Shared", "candidates": ["sub/Shared.md", "topics/Shared.md"], "picked": "sub/Shared.md"}
        ]
    }
    assert result.stats()["ambiguous_links"] == 1
    assert ambiguous_link_lines(result.ambiguous_links) == [
        "ambiguous link in goals/Plan.md: [[Shared]] fits sub/Shared.md, topics/Shared.md; picked sub/Shared.md "
        "(Obsidian's order: the linking note's folder, then the shortest path)"
    ]
    assert result.notes_read == ["goals/Plan.md", "sub/Shared.md"]
