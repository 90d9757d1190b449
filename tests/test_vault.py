import pytest
from conftest import write_note

from vault_distill.extract import extract_task_inputs
from vault_distill.vault import (
    BadNote,
    LinkIndex,
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


WINDOWS_NOTE = (
    "---\ntags: [windows, sync]\naliases: [CRLF note]\n---\n# Heading\n\nSee [[Other]] and [[sub/Shared|it]].\n"
)


def test_a_bom_and_crlf_note_parses_as_its_lf_twin_and_the_repair_is_named(tmp_path):
    write_note(tmp_path, "lf.md", WINDOWS_NOTE.encode("utf-8"))
    write_note(tmp_path, "crlf.md", b"\xef\xbb\xbf" + WINDOWS_NOTE.replace("\n", "\r\n").encode("utf-8"))
    lf, crlf = read_note(tmp_path, "lf.md"), read_note(tmp_path, "crlf.md")
    assert (crlf.meta, crlf.body, crlf.tags, crlf.links) == (lf.meta, lf.body, lf.tags, lf.links)
    assert crlf.tags == ["windows", "sync"] and crlf.links == ["Other", "sub/Shared"]
    assert crlf.body.startswith("# Heading\n\nSee") and "\r" not in crlf.body
    assert crlf.repairs == ("line endings: 7 CRLF read as LF",) and lf.repairs == ()


def test_lone_carriage_returns_are_line_ends_too(tmp_path):
    write_note(tmp_path, "mac.md", b"---\rtags: [old]\r---\rClassic Mac OS.\r\nMixed.\r")
    note = read_note(tmp_path, "mac.md")
    assert note.tags == ["old"] and note.body == "Classic Mac OS.\nMixed."
    assert note.repairs == ("line endings: 1 CRLF and 4 lone CR read as LF",)


SHARED_VAULT = ["topics/Shared.md", "sub/Shared.md", "sub/deeper/Shared.md", "goals/Plan.md", "sub/Plan B.md"]


@pytest.mark.parametrize(
    ("link", "source", "target", "rule"),
    [
        ("sub/Shared", "goals/Plan.md", "sub/Shared.md", "path"),  # a link with a path picks that file
        ("/sub/deeper/Shared.md", "goals/Plan.md", "sub/deeper/Shared.md", "path"),  # from the root, .md optional
        ("../sub/Shared", "goals/Plan.md", "sub/Shared.md", "path"),  # relative to the linking note
        ("deeper/Shared", "goals/Plan.md", "sub/deeper/Shared.md", "path suffix"),
        ("SHARED", "sub/deeper/x.md", "sub/deeper/Shared.md", "name"),  # the linking note's folder first
        ("Shared", "sub/Plan B.md", "sub/Shared.md", "name"),
        ("Shared", "goals/Plan.md", "sub/Shared.md", "name"),  # else the shortest path: 1 folder, fewer chars
        ("plan b", "topics/Shared.md", "sub/Plan B.md", "name"),  # unique: no ambiguity
        ("Missing", "goals/Plan.md", None, ""),
        ("nowhere/Shared", "goals/Plan.md", None, ""),
    ],
)
def test_links_resolve_as_obsidian_resolves_them(link, source, target, rule):
    found = LinkIndex(SHARED_VAULT).resolve(link, source)
    assert (found.target, found.rule) == (target, rule)


def test_an_ambiguous_name_reports_every_candidate_in_the_order_of_the_pick():
    found = LinkIndex(SHARED_VAULT).resolve("Shared", "goals/Plan.md")
    assert found.ambiguous and found.candidates == ("sub/Shared.md", "topics/Shared.md", "sub/deeper/Shared.md")
    assert not LinkIndex(SHARED_VAULT).resolve("sub/Shared", "goals/Plan.md").ambiguous


def test_a_name_no_file_has_resolves_by_alias_and_a_file_name_wins_over_an_alias():
    aliases = {"topics/Shared.md": ["Common ground", "Plan B"], "goals/Plan.md": ["common ground"]}
    index = LinkIndex(SHARED_VAULT, lambda rel: aliases.get(rel, []))
    found = index.resolve("common GROUND", "topics/x.md")
    assert (found.target, found.rule, found.candidates) == (
        "topics/Shared.md",
        "alias",
        ("topics/Shared.md", "goals/Plan.md"),
    )
    assert index.resolve("Plan B", "goals/Plan.md").target == "sub/Plan B.md"  # the file, not the alias
    assert LinkIndex(SHARED_VAULT).resolve("Common ground", "topics/x.md").target is None


def test_one_cache_reads_each_note_once_for_every_task_and_keeps_bad_notes_bad(vault):
    from vault_distill.vault import VaultCache

    cache = VaultCache(vault)
    write_note(vault, "topics/Binary.md", b"\x00\x01")
    first = extract_task_inputs(vault, "H", {"folders": ["topics"]}, cache)
    write_note(vault, "topics/Raft.md", "Rewritten after the DAG read it.\n")  # a job would read this
    again = extract_task_inputs(vault, "H", {"folders": ["topics", "goals"], "group": "linked"}, cache)
    assert (
        cache.note("topics/Raft.md") is again.primary[-1]
        and "Raft elects a leader" in cache.note("topics/Raft.md").body
    )
    assert first.skipped == again.skipped == {"topics/Binary.md": "binary content: NUL bytes"}
    with pytest.raises(BadNote, match="NUL bytes"):
        cache.note("topics/Binary.md")
    assert "Rewritten" in extract_task_inputs(vault, "H", {"folders": ["topics"]}).records[-1]["user"]
