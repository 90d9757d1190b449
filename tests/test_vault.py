import pytest
from conftest import write_note

from vault_distill.extract import extract_task_inputs
from vault_distill.vault import (
    BadNote,
    read_note,
    scan_vault,
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
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content: NUL bytes"),
        # 0x81 and 0x9d are undefined in Windows-1252 (C1 controls in Latin-1): no text has them.
        (b"caf\xe9 \x81\x9d\x8d", "binary content: not UTF-8 at byte 3, nor Windows-1252 at byte 5"),
    ],
)
def test_bad_notes_raise_with_reason(tmp_path, content, reason):
    write_note(tmp_path, "bad.md", content)
    with pytest.raises(BadNote, match=reason):
        read_note(tmp_path, "bad.md")


@pytest.mark.parametrize(
    ("content", "body", "repair"),
    [
        (b"---\ntags: [unclosed, list\n: : bad\n---\nthe text\n", "the text", "broken front matter: while parsing"),
        # No closing fence: nothing says where front matter would end, so every line is kept.
        (b"---\ntags: [a]\nno end\n", "---\ntags: [a]\nno end", "broken front matter: no closing ---"),
        (b"---\n- just\n- a list\n---\nthe text\n", "the text", "broken front matter: not a mapping"),
    ],
)
def test_broken_front_matter_keeps_the_body_without_metadata(tmp_path, content, body, repair):
    write_note(tmp_path, "note.md", content)
    note = read_note(tmp_path, "note.md")
    assert note.body == body and note.meta == {} and note.tags == []
    assert len(note.repairs) == 1 and note.repairs[0].startswith(repair)


def test_legacy_encoded_note_is_read_as_windows_1252(tmp_path):
    text = "Caf\u00e9 na\u00efve \u2013 \u201cquoted\u201d for Frau M\u00fcller \u20ac5"
    write_note(tmp_path, "old.md", ("---\ntags: [paris]\n---\n" + text + "\n").encode("cp1252"))
    note = read_note(tmp_path, "old.md")
    assert note.body == text and note.tags == ["paris"]
    assert note.repairs == ("legacy encoding: not UTF-8 at byte 25, read as Windows-1252",)
    # Plain Latin-1 (no Windows-only characters) reads the same way.
    write_note(tmp_path, "latin1.md", "d\u00e9j\u00e0 vu, \u00e7a va".encode("latin-1"))
    assert read_note(tmp_path, "latin1.md").body == "d\u00e9j\u00e0 vu, \u00e7a va"
    write_note(tmp_path, "utf8.md", text)
    assert read_note(tmp_path, "utf8.md").repairs == ()


@pytest.fixture
def linked_vault(tmp_path):
    """A vault with a symlinked file and a symlinked folder that lead out of it, one that stays
    inside it, and a link cycle."""
    vault, outside = tmp_path / "vault", tmp_path / "elsewhere"
    write_note(vault, "topics/Own.md", "Mine.\n")
    write_note(outside, "secret.md", "Salary review notes.\n")
    write_note(outside, "drafts/Draft.md", "Someone else's draft.\n")
    (vault / "topics/Linked secret.md").symlink_to(outside / "secret.md")
    (vault / "topics/drafts").symlink_to(outside / "drafts", target_is_directory=True)
    (vault / "topics/Alias.md").symlink_to(vault / "topics/Own.md")
    (vault / "mirror").symlink_to(vault / "topics", target_is_directory=True)
    (vault / "topics/loop").symlink_to(vault, target_is_directory=True)
    return vault, outside


def test_symlinks_out_of_the_vault_are_skipped_with_their_reason(linked_vault):
    vault, outside = linked_vault
    scan = scan_vault(vault)
    # Inside links are read where they lead (a folder link's notes at their real place, once).
    assert scan.notes == ["topics/Alias.md", "topics/Own.md"]
    assert scan.outside == {
        "topics/Linked secret.md": f"outside the vault: links to {(outside / 'secret.md').resolve()}",
        "topics/drafts/": f"outside the vault: links to {(outside / 'drafts').resolve()}",
    }
    result = extract_task_inputs(vault, "H", {"folders": ["topics"]})
    assert "Salary" not in str(result.records) and "draft" not in str(result.records)
    assert set(result.skipped) == {"topics/Linked secret.md", "topics/drafts/"}
    assert result.stats()["skipped"] == {"outside the vault": 2}


def test_follow_external_links_opts_in(linked_vault):
    vault, _ = linked_vault
    selector = {"folders": ["topics"], "follow_external_links": True}
    assert scan_vault(vault, follow_external_links=True).outside == {}
    assert extract_task_inputs(vault, "H", selector).notes_read == [
        "topics/Alias.md",
        "topics/Linked secret.md",
        "topics/Own.md",
        "topics/drafts/Draft.md",
    ]
    result = extract_task_inputs(vault, "H", selector)
    assert any("Salary review" in rec["user"] for rec in result.records) and not result.skipped


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
    single = extract_task_inputs(vault, "H", {"folders": ["goals"], "group": "single"}).notes_read
    linked = extract_task_inputs(vault, "H", {"folders": ["goals"], "group": "linked"}).notes_read
    assert single == ["goals/Run a 10k.md"]
    assert linked == ["goals/Run a 10k.md", "topics/Raft.md"]


def test_unreadable_note_stays_selected_so_extract_can_report_it(vault):
    write_note(vault, "topics/Binary.md", b"\x00\x01")
    assert "topics/Binary.md" in select_notes(vault, {"folders": ["topics"], "tags": ["research"]})
    result = extract_task_inputs(vault, "=== H ===", {"folders": ["topics"], "tags": ["research"]})
    assert result.skipped == {"topics/Binary.md": "binary content: NUL bytes"}
    assert [rec["sources"] for rec in result.records] == [["topics/Raft.md"]]


def test_note_with_broken_front_matter_is_kept_untagged_and_reported(vault):
    write_note(vault, "topics/Broken.md", b"---\ntags: [oops\n---\nBroken but mine.\n")
    result = extract_task_inputs(vault, "=== H ===", {"folders": ["topics"]})
    assert result.repaired == {"topics/Broken.md": ["broken front matter: while parsing a flow sequence"]}
    assert any(rec["sources"] == ["topics/Broken.md"] and "Broken but mine." in rec["user"] for rec in result.records)
    # Its tags could not be read, so a tag selector cannot choose it.
    tagged = extract_task_inputs(vault, "=== H ===", {"folders": ["topics"], "tags": ["oops"]})
    assert tagged.records == [] and tagged.repaired == {}
