"""Reading an Obsidian-style vault: notes, front matter, wiki links, selection.

Selection runs at DAG time (from workflow/rules/common.smk) so that each task's
extraction depends only on the notes that it reads. It must therefore be cheap
and must never raise on a bad note: a note it cannot parse is kept in the
selection, so that the extract job can name it in its log and skip it.

What a person wrote is kept wherever it can be: a note with broken front matter keeps its
body, a note saved in a legacy 8-bit encoding is read as Windows-1252, and CRLF or lone-CR line
endings (Windows editors, Git's core.autocrlf) become LF before anything is parsed, so that no
teacher or student ever sees a \r. Each is a repair, reported by the extract job.

The vault root is a boundary: a symlink that leads outside it is not followed unless the task's
selector opts in (`follow_external_links`), because every note read may be sent to a remote
teacher. Wiki links resolve as Obsidian resolves them (LinkIndex), and a link that several notes
fit is reported with every candidate and the pick.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

WIKI_LINK = re.compile(r"\[\[([^\]|#^]+)(?:[#^][^\]|]*)?(?:\|[^\]]*)?\]\]")
FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*$\n?", re.S | re.M)
LINE_ENDINGS = "line endings"
# libyaml's parser where PyYAML has it (the same documents, about 10x faster: front matter is most
# of what reading a 20,000-note vault costs), else PyYAML's own.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        if text.startswith("---\n"):
            raise BadNote(BROKEN_FRONT_MATTER, "no closing ---")
        return {}, text
    try:
        meta = yaml.load(match.group(1), Loader=YAML_LOADER)  # a safe loader (YAML_LOADER)
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


def normalise_line_endings(text: str) -> tuple[str, list[str]]:
    """CRLF and lone CR as LF, with the repair named (how many of each were found)."""
    if "\r" not in text:
        return text, []
    crlf = text.count("\r\n")
    lone = text.count("\r") - crlf
    kinds = [f"{count} {name}" for count, name in ((crlf, "CRLF"), (lone, "lone CR")) if count]
    return text.replace("\r\n", "\n").replace("\r", "\n"), [f"{LINE_ENDINGS}: {' and '.join(kinds)} read as LF"]


def read_note(vault: Path, rel_path: str) -> Note:
    """Parse one note, mending what can be mended (see Note.repairs), raising BadNote with a
    short reason if it is unusable."""
    path = vault / rel_path
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadNote("unreadable", str(err.strerror or err)) from None
    text, repairs = decode_note(data)
    text, line_repairs = normalise_line_endings(text)
    meta, body, front_matter_repairs = front_matter_or_repair(text)
    if not body.strip():
        raise BadNote("empty")
    return Note(
        path=rel_path,
        title=Path(rel_path).stem,
        meta=meta,
        body=body.strip(),
        repairs=tuple(repairs + line_repairs + front_matter_repairs),
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


def note_aliases(meta: dict) -> list[str]:
    """Front matter `aliases` (or `alias`): a list, or one string."""
    raw = meta.get("aliases", meta.get("alias"))
    if isinstance(raw, str):
        raw = [raw]
    return [str(alias).strip() for alias in raw if str(alias).strip()] if isinstance(raw, list) else []


def _link_key(path: str) -> str:
    """How Obsidian compares a link with a note's path: case-insensitively, `.md` optional."""
    path = path.lower()
    return path[:-3] if path.endswith(".md") else path


@dataclass(frozen=True)
class LinkResolution:
    target: str | None  # the note's path, or None for a link to no note
    rule: str = ""  # which rule picked it: path, path suffix, name, alias
    candidates: tuple[str, ...] = ()  # every note the link fits, where more than one does

    @property
    def ambiguous(self) -> bool:
        return len(self.candidates) > 1


def closest(candidates: list[str], source: str) -> list[str]:
    """Obsidian's precedence among notes that a link fits equally well: the linking note's own
    folder first, then the shortest path (fewest folders, then fewest characters)."""
    folder = posixpath.dirname(source)
    return sorted(candidates, key=lambda path: (posixpath.dirname(path) != folder, path.count("/"), len(path), path))


class LinkIndex:
    """Resolves wiki links as Obsidian does (MetadataCache.getFirstLinkpathDest(linkpath,
    sourcePath): "the best match for a linkpath" from the linking note):

    - a link with a folder (`[[sub/Shared]]`, `[[/sub/Shared]]`, `[[../sub/Shared]]`) is that
      path from the vault root (relative ones from the linking note), else the notes whose path
      ends with it;
    - a bare name is the note of that file name, case-insensitively;
    - where several notes fit, `closest` picks: the linking note's folder, then the shortest
      path. This is the order yanki (an Obsidian sync tool) documents as Obsidian's own in its
      v3.3.0 release: exact path, then the linking note's directory, then shorter paths;
    - a bare name that no file has resolves to the note listing it in `aliases`. Obsidian itself
      writes such links as [[Note|alias]], so this only catches links typed by hand.
    """

    def __init__(self, paths: list[str], read_aliases: Callable[[str], list[str]] | None = None):
        self.by_path = {_link_key(rel): rel for rel in paths}
        self.by_name: dict[str, list[str]] = defaultdict(list)
        for rel in paths:
            self.by_name[_link_key(posixpath.basename(rel))].append(rel)
        self._read_aliases = read_aliases
        self._by_alias: dict[str, list[str]] | None = None

    def resolve(self, target: str, source: str = "") -> LinkResolution:
        key = _link_key(target.strip())
        if "/" in key:
            return self._resolve_path(key, source)
        return self._pick(self.by_name.get(key, []), source, "name") or self._resolve_alias(key, source)

    def _resolve_path(self, key: str, source: str) -> LinkResolution:
        if key.startswith(("./", "../")):
            key = posixpath.normpath(posixpath.join(posixpath.dirname(source.lower()), key))
        key = key.lstrip("/")
        if key in self.by_path:
            return LinkResolution(self.by_path[key], "path")
        suffix = [rel for path, rel in self.by_path.items() if path.endswith("/" + key)]
        return self._pick(suffix, source, "path suffix") or LinkResolution(None)

    def _resolve_alias(self, key: str, source: str) -> LinkResolution:
        if self._read_aliases is None:
            return LinkResolution(None)
        if self._by_alias is None:  # read only when a link names no file
            self._by_alias = defaultdict(list)
            for rel in sorted(self.by_path.values()):
                for alias in self._read_aliases(rel):
                    self._by_alias[alias.lower()].append(rel)
        return self._pick(self._by_alias.get(key, []), source, "alias") or LinkResolution(None)

    @staticmethod
    def _pick(candidates: list[str], source: str, rule: str) -> LinkResolution | None:
        if not candidates:
            return None
        ranked = closest(list(dict.fromkeys(candidates)), source)
        return LinkResolution(ranked[0], rule, tuple(ranked) if len(ranked) > 1 else ())


class VaultCache:
    """One vault's scans, parsed notes and link indexes, for every extraction in one process: the
    DAG runs all five tasks' extractions over the same notes. What a task skipped or repaired is
    still its own record (extract.NoteReader); only the reading is shared."""

    def __init__(self, vault: Path):
        self.vault = vault
        self._scans: dict[bool, VaultScan] = {}
        self._notes: dict[str, Note | BadNote] = {}
        self._indexes: dict[bool, LinkIndex] = {}

    def scan(self, follow_external_links: bool = False) -> VaultScan:
        if follow_external_links not in self._scans:
            self._scans[follow_external_links] = scan_vault(self.vault, follow_external_links)
        return self._scans[follow_external_links]

    def note(self, rel_path: str) -> Note:
        """read_note, once per note; raises its BadNote again on every later ask."""
        if rel_path not in self._notes:
            try:
                self._notes[rel_path] = read_note(self.vault, rel_path)
            except BadNote as bad:
                self._notes[rel_path] = bad
        found = self._notes[rel_path]
        if isinstance(found, BadNote):
            raise found
        return found

    def link_index(self, follow_external_links: bool = False) -> LinkIndex:
        if follow_external_links not in self._indexes:
            notes = self.scan(follow_external_links).notes
            self._indexes[follow_external_links] = LinkIndex(notes, self.aliases)
        return self._indexes[follow_external_links]

    def aliases(self, rel_path: str) -> list[str]:
        """A note's aliases, or none when it cannot be parsed (extract reports it where it is
        used). Only a note that says "alias" anywhere is parsed: the alias index reads every note."""
        try:
            if rel_path not in self._notes and b"alias" not in (self.vault / rel_path).read_bytes():
                return []
            return note_aliases(self.note(rel_path).meta)
        except (BadNote, OSError):
            return []


def _peek_tags(read: Callable[[str], Note], rel_path: str) -> list[str] | None:
    """Tags of a note, or None when the note cannot be parsed (keep it: extract reports it)."""
    try:
        return read(rel_path).tags
    except BadNote:
        return None


def matches_location(rel_path: str, selector: dict) -> bool:
    folders = selector.get("folders") or []
    globs = selector.get("globs") or []
    if not folders and not globs:
        return True
    in_folder = any(rel_path.startswith(folder.rstrip("/") + "/") for folder in folders)
    return in_folder or any(fnmatch.fnmatch(rel_path, pattern) for pattern in globs)


def select_notes(
    vault: Path, selector: dict, all_notes: list[str] | None = None, cache: VaultCache | None = None
) -> list[str]:
    """Primary notes of a task: location match, then tag match, minus exclusions."""
    cache = cache or VaultCache(vault)
    if all_notes is None:
        all_notes = cache.scan(selector.get("follow_external_links", False)).notes
    wanted_tags = {tag.lstrip("#") for tag in selector.get("tags") or []}
    excluded = selector.get("exclude_globs") or []
    selected = []
    for rel in all_notes:
        if not matches_location(rel, selector):
            continue
        if any(fnmatch.fnmatch(rel, pattern) for pattern in excluded):
            continue
        if wanted_tags:
            tags = _peek_tags(cache.note, rel)
            if tags is not None and not wanted_tags.intersection(tags):
                continue
        selected.append(rel)
    return selected
