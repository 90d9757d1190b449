from pathlib import Path

import pytest
from conftest import ROOT, write_note

from vault_distill.extract import content_id, cut_middle, extract_task_inputs
from vault_distill.split import TRUNCATION_MARKER
from vault_distill.vault import (
    BadNote,
    notes_read_by_task,
    read_note,
    select_notes,
    split_front_matter,
    wiki_links,
)


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    v = tmp_path / "vault"
    write_note(
        v,
        "topics/Raft.md",
        """
        ---
        tags: [distributed-systems, research]
        ---
        Raft elects a leader. See [[Paxos|the older one]] and [[Vector clocks#history]] and [[Missing note]].
        """,
    )
    write_note(v, "topics/Paxos.md", "---\ntags: [distributed-systems]\n---\nPaxos is subtle.\n")
    write_note(v, "tech/Vector clocks.md", "---\ntags: tech, research\n---\nCode:\n```python\nprint(1)\n```\n")
    write_note(v, "goals/Run a 10k.md", "---\ntags: [goal]\n---\nTrain for it. [[Raft]] is unrelated.\n")
    write_note(v, "daily/2026-09-01.md", "---\ndate: 2026-09-01\n---\nMonday run.\n")
    write_note(v, "daily/2026-09-02.md", "Tuesday rest.\n")
    write_note(v, "daily/2026-09-04.md", "Thursday tempo.\n")
    write_note(v, ".obsidian/workspace.md", "not a note\n")
    return v


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"  \n\n\t\n", "empty"),
        (b"---\ntags: [a]\n---\n   \n", "empty"),
        ("caf\u00e9 na\u00efve".encode("latin-1"), "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"---\ntags: [unclosed, list\n: : bad\n---\ntext\n", "broken front matter"),
        (b"---\ntags: [a]\nno closing fence\n", "broken front matter"),
        (b"---\n- just\n- a list\n---\ntext\n", "broken front matter"),
    ],
)
def test_bad_notes_raise_with_reason(tmp_path, content, reason):
    write_note(tmp_path, "bad.md", content)
    with pytest.raises(BadNote, match=reason):
        read_note(tmp_path, "bad.md")


def test_unreadable_note_is_bad(tmp_path):
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(BadNote, match="unreadable"):
        read_note(tmp_path, "dir.md")


def test_front_matter_and_links():
    meta, body = split_front_matter("---\ntags: [a, '#b']\n---\nBody [[X]] [[Y|alias]] [[X]] [[Z#h]]")
    assert meta == {"tags": ["a", "#b"]}
    assert body.startswith("Body")
    assert wiki_links(body) == ["X", "Y", "Z"]
    assert split_front_matter("no front matter") == ({}, "no front matter")


def test_read_note_parses_tags_and_strips_front_matter(vault):
    note = read_note(vault, "tech/Vector clocks.md")
    assert note.tags == ["tech", "research"]
    assert note.title == "Vector clocks"
    assert "tags:" not in note.body


def test_selection_by_folder_tag_glob_and_exclude(vault):
    assert select_notes(vault, {"folders": ["topics"]}) == ["topics/Paxos.md", "topics/Raft.md"]
    assert select_notes(vault, {"folders": ["topics", "tech"], "tags": ["research"]}) == [
        "tech/Vector clocks.md",
        "topics/Raft.md",
    ]
    assert select_notes(vault, {"globs": ["daily/2026-09-0[12].md"]}) == ["daily/2026-09-01.md", "daily/2026-09-02.md"]
    assert "topics/Paxos.md" not in select_notes(vault, {"exclude_globs": ["topics/P*"]})
    assert not any(".obsidian" in rel for rel in select_notes(vault, {}))


def test_linked_selection_reads_link_targets_only_for_linked_group(vault):
    single = notes_read_by_task(vault, {"folders": ["goals"], "group": "single"})
    linked = notes_read_by_task(vault, {"folders": ["goals"], "group": "linked"})
    assert single == ["goals/Run a 10k.md"]
    assert linked == ["goals/Run a 10k.md", "topics/Raft.md"]


def test_broken_note_stays_selected_so_extract_can_report_it(vault):
    write_note(vault, "topics/Broken.md", b"---\ntags: [oops\n---\ntext\n")
    assert "topics/Broken.md" in select_notes(vault, {"folders": ["topics"], "tags": ["research"]})
    result = extract_task_inputs(vault, "=== H ===", {"folders": ["topics"], "tags": ["research"]})
    assert result.skipped == {"topics/Broken.md": "broken front matter: while parsing a flow sequence"}
    assert [rec["sources"] for rec in result.records] == [["topics/Raft.md"]]


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
    everything = extract_task_inputs(vault, "H", {"folders": ["inbox"]})
    reasons = everything.skipped
    assert reasons["inbox/untitled.md"] == "empty"
    assert reasons["inbox/Quick thought.md"] == "empty"
    assert reasons["inbox/latin1 note.md"].startswith("not UTF-8")
    assert reasons["inbox/pasted image.md"] == "binary content"
    assert reasons["inbox/broken front matter.md"].startswith("broken front matter")
    assert [rec["sources"] for rec in everything.records] == [["inbox/meeting scrawl.md"]]
