import pytest
from conftest import write_note

from vault_distill.extract import extract_task_inputs
from vault_distill.vault import (
    BadNote,
    notes_read_by_task,
    read_note,
    select_notes,
    split_front_matter,
    wiki_links,
)


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
