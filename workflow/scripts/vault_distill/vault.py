"""Reading an Obsidian-style vault: notes, front matter, wiki links, selection.

Selection runs at DAG time (from workflow/rules/common.smk) so that each task's
extraction depends only on the notes that it reads. It must therefore be cheap
and must never raise on a bad note: a note it cannot parse is kept in the
selection, so that the extract job can name it in its log and skip it.

What a person wrote is kept wherever it can be: a note with broken front matter keeps its
body, and a note saved in a legacy 8-bit encoding is read as Windows-1252. Both are repairs,
reported by the extract job. The vault root is a boundary: a symlink that leads outside it
is not followed unless the task's selector opts in (`follow_external_links`), because every
note read may be sent to a remote teacher.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

WIKI_LINK = re.compile(r"\[\[([^\]|#^]+)(?:[#^][^\]|]*)?(?:\|[^\]]*)?\]\]")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.S | re.M)


# Legacy 8-bit notes are read as Windows-1252: it decodes Latin-1's printable range alike, and
# leaves undefined only five bytes (C1 controls in Latin-1) that no text has.
LEGACY_ENCODING = "cp1252"
BROKEN_FRONT_MATTER = "broken front matter"


class BadNote(Exception):
    """A note that cannot be used. `kind` is the reason in a few fixed words (what the extract
    stats count by); the message adds the detail."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def reason_kind(reason: str) -> str:
    """The fixed words of a skip or repair reason ("broken front matter: ..." -> its kind)."""
    return reason.split(":", 1)[0]


@dataclass(frozen=True)
class Note:
    path: str  # relative to the vault root, POSIX separators
    title: str
    meta: dict = field(hash=False, compare=False)
    body: str = ""
    # What had to be mended to read it ("broken front matter: ...", "legacy encoding: ...").
    repairs: tuple[str, ...] = field(default=(), compare=False)

    @property
    def tags(self) -> list[str]:
        return normalise_tags(self.meta.get("tags"))

    @property
    def links(self) -> list[str]:
        return wiki_links(self.body)


def normalise_tags(raw) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = re.split(r"[,\s]+", raw)
    if not isinstance(raw, list):
        return []
    return [str(tag).lstrip("#").strip() for tag in raw if str(tag).strip()]


def wiki_links(text: str) -> list[str]:
    """Link targets in order of first appearance, without alias or heading."""
    seen: dict[str, None] = {}
    for match in WIKI_LINK.finditer(text):
        seen.setdefault(match.group(1).strip(), None)
    return list(seen)


def split_front_matter(text: str) -> tuple[dict, str]:
    """(metadata, body); raises BadNote when the front matter is there but unusable."""
    match = FRONT_MATTER.match(text)
    if not match:
        if text.startswith("---\n") or text.startswith("---\r\n"):
            raise BadNote(BROKEN_FRONT_MATTER, "no closing ---")
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        first_line = str(err).splitlines()[0]
        raise BadNote(BROKEN_FRONT_MATTER, first_line) from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadNote(BROKEN_FRONT_MATTER, "not a mapping")
    return meta, text[match.end() :]


def front_matter_or_repair(text: str) -> tuple[dict, str, list[str]]:
    """Front matter and body; broken front matter keeps the body (all of the text when no
    closing --- says where the front matter ends) and no metadata, with the repair named."""
    try:
        meta, body = split_front_matter(text)
        return meta, body, []
    except BadNote as broken:
        match = FRONT_MATTER.match(text)
        return {}, text[match.end() :] if match else text, [str(broken)]


def decode_note(data: bytes) -> tuple[str, list[str]]:
    """UTF-8 text, or else Windows-1252 (a superset of Latin-1's printable range) as a repair.
    Raises BadNote for bytes that no text encoding explains."""
    if b"\x00" in data[:8192]:
        raise BadNote("binary content", "NUL bytes")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as err:
        not_utf8 = f"not UTF-8 at byte {err.start}"
    try:
        text = data.decode(LEGACY_ENCODING)
    except UnicodeDecodeError as err:
        raise BadNote("binary content", f"{not_utf8}, nor Windows-1252 at byte {err.start}") from None
    return text, [f"legacy encoding: {not_utf8}, read as Windows-1252"]


def read_note(vault: Path, rel_path: str) -> Note:
    """Parse one note, mending what can be mended (see Note.repairs), raising BadNote with a
    short reason if it is unusable."""
    path = vault / rel_path
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadNote("unreadable", str(err.strerror or err)) from None
    text, repairs = decode_note(data)
    meta, body, front_matter_repairs = front_matter_or_repair(text)
    if not body.strip():
        raise BadNote("empty")
    return Note(
        path=rel_path,
        title=Path(rel_path).stem,
        meta=meta,
        body=body.strip(),
        repairs=tuple(repairs + front_matter_repairs),
    )


@dataclass
class VaultScan:
    notes: list[str]  # relative, sorted
    outside: dict[str, str]  # symlink (relative) -> why it was not followed


def _leads_outside(path: Path, root: Path) -> str | None:
    """Why a symlink must not be followed (it resolves outside `root`), or None."""
    if not path.is_symlink():
        return None
    target = path.resolve()
    return None if target.is_relative_to(root) else f"outside the vault: links to {target}"


def _keep_folder(path: Path, root: Path, follow_external_links: bool, seen: set) -> bool | str:
    """True to walk into a folder; False to pass it by; a reason to report it as not followed.
    A symlinked folder inside the vault is passed by: its notes are read where they really are."""
    if path.name.startswith("."):
        return False
    if not path.is_symlink():
        return True
    why = _leads_outside(path, root)
    if why is None:
        return False
    if not follow_external_links:
        return why
    target = path.resolve()
    if target in seen:  # a link cycle
        return False
    seen.add(target)
    return True


def scan_vault(vault: Path, follow_external_links: bool = False) -> VaultScan:
    """All markdown notes, skipping hidden files and folders (.obsidian, .trash) and, unless
    `follow_external_links`, symlinked files and folders that resolve outside the vault."""
    root = vault.resolve()
    notes, outside, seen = [], {}, set()
    for dirpath, dirnames, filenames in os.walk(vault, followlinks=True):
        folder = Path(dirpath)
        for name in list(dirnames):
            keep = _keep_folder(folder / name, root, follow_external_links, seen)
            if isinstance(keep, str):
                outside[(folder / name).relative_to(vault).as_posix() + "/"] = keep
            if keep is not True:
                dirnames.remove(name)
        for name in filenames:
            path = folder / name
            if not name.endswith(".md") or name.startswith(".") or not path.is_file():
                continue
            rel = path.relative_to(vault).as_posix()
            why = None if follow_external_links else _leads_outside(path, root)
            if why:
                outside[rel] = why
            else:
                notes.append(rel)
    return VaultScan(sorted(notes), dict(sorted(outside.items())))


def list_notes(vault: Path, follow_external_links: bool = False) -> list[str]:
    return scan_vault(vault, follow_external_links).notes


def stem_index(paths: list[str]) -> dict[str, str]:
    """Obsidian resolves [[Name]] by file stem, case-insensitively."""
    index: dict[str, str] = {}
    for rel in paths:
        index.setdefault(Path(rel).stem.lower(), rel)
    return index


def resolve_link(index: dict[str, str], target: str) -> str | None:
    name = target.rsplit("/", 1)[-1]
    name = name[:-3] if name.lower().endswith(".md") else name
    return index.get(name.lower())


def _peek_tags(vault: Path, rel_path: str) -> list[str] | None:
    """Tags of a note, or None when the note cannot be parsed (keep it: extract reports it)."""
    try:
        return read_note(vault, rel_path).tags
    except BadNote:
        return None


def matches_location(rel_path: str, selector: dict) -> bool:
    folders = selector.get("folders") or []
    globs = selector.get("globs") or []
    if not folders and not globs:
        return True
    in_folder = any(rel_path.startswith(folder.rstrip("/") + "/") for folder in folders)
    return in_folder or any(fnmatch.fnmatch(rel_path, pattern) for pattern in globs)


def select_notes(vault: Path, selector: dict, all_notes: list[str] | None = None) -> list[str]:
    """Primary notes of a task: location match, then tag match, minus exclusions."""
    if all_notes is None:
        all_notes = list_notes(vault, selector.get("follow_external_links", False))
    wanted_tags = {tag.lstrip("#") for tag in selector.get("tags") or []}
    excluded = selector.get("exclude_globs") or []
    selected = []
    for rel in all_notes:
        if not matches_location(rel, selector):
            continue
        if any(fnmatch.fnmatch(rel, pattern) for pattern in excluded):
            continue
        if wanted_tags:
            tags = _peek_tags(vault, rel)
            if tags is not None and not wanted_tags.intersection(tags):
                continue
        selected.append(rel)
    return selected
