"""Reading an Obsidian-style vault: notes, front matter, wiki links, selection.

Selection runs at DAG time (from workflow/rules/common.smk) so that each task's
extraction depends only on the notes that it reads. It must therefore be cheap
and must never raise on a bad note: a note it cannot parse is kept in the
selection, so that the extract job can name it in its log and skip it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

WIKI_LINK = re.compile(r"\[\[([^\]|#^]+)(?:[#^][^\]|]*)?(?:\|[^\]]*)?\]\]")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.S | re.M)


class BadNote(Exception):
    """A note that cannot be used; the message says why, in a few words."""


@dataclass(frozen=True)
class Note:
    path: str  # relative to the vault root, POSIX separators
    title: str
    meta: dict = field(hash=False, compare=False)
    body: str = ""

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
    match = FRONT_MATTER.match(text)
    if not match:
        if text.startswith("---\n") or text.startswith("---\r\n"):
            raise BadNote("broken front matter: no closing ---")
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        first_line = str(err).splitlines()[0]
        raise BadNote(f"broken front matter: {first_line}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadNote("broken front matter: not a mapping")
    return meta, text[match.end() :]


def read_note(vault: Path, rel_path: str) -> Note:
    """Parse one note, raising BadNote with a short reason if it is unusable."""
    path = vault / rel_path
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadNote(f"unreadable: {err.strerror or err}") from None
    if b"\x00" in data[:8192]:
        raise BadNote("binary content")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadNote(f"not UTF-8 (byte {err.start})") from None
    meta, body = split_front_matter(text)
    if not body.strip():
        raise BadNote("empty")
    return Note(path=rel_path, title=Path(rel_path).stem, meta=meta, body=body.strip())


def list_notes(vault: Path) -> list[str]:
    """All markdown notes, relative and sorted, skipping hidden folders (.obsidian, .trash)."""
    notes = []
    for path in vault.rglob("*.md"):
        rel = path.relative_to(vault)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_file():
            notes.append(rel.as_posix())
    return sorted(notes)


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


def _peek_links(vault: Path, rel_path: str) -> list[str]:
    try:
        return read_note(vault, rel_path).links
    except BadNote:
        return []


def matches_location(rel_path: str, selector: dict) -> bool:
    folders = selector.get("folders") or []
    globs = selector.get("globs") or []
    if not folders and not globs:
        return True
    in_folder = any(rel_path.startswith(folder.rstrip("/") + "/") for folder in folders)
    return in_folder or any(fnmatch.fnmatch(rel_path, pattern) for pattern in globs)


def select_notes(vault: Path, selector: dict, all_notes: list[str] | None = None) -> list[str]:
    """Primary notes of a task: location match, then tag match, minus exclusions."""
    all_notes = list_notes(vault) if all_notes is None else all_notes
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


def notes_read_by_task(vault: Path, selector: dict) -> list[str]:
    """Every note a task's extraction reads: its primary notes plus, when grouping by
    links, the notes they link to. This is the task's extract input at DAG time."""
    all_notes = list_notes(vault)
    primary = select_notes(vault, selector, all_notes)
    if selector.get("group", "single") != "linked":
        return primary
    index = stem_index(all_notes)
    read = dict.fromkeys(primary)
    for rel in primary:
        for target in _peek_links(vault, rel):
            resolved = resolve_link(index, target)
            if resolved is not None:
                read.setdefault(resolved, None)
    return sorted(read)
