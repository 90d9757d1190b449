"""Stage 1: turn the notes a task selects into task inputs (one JSON record each)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .split import TRUNCATION_MARKER, middle_truncate
from .vault import (
    BadNote,
    Note,
    VaultCache,
    matches_location,
    reason_kind,
    select_notes,
)

DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass
class ExtractResult:
    records: list[dict]
    skipped: dict[str, str] = field(default_factory=dict)  # note path -> reason
    repaired: dict[str, list[str]] = field(default_factory=dict)  # note path -> what was mended
    primary: list[Note] = field(default_factory=list)  # the selected notes that could be read
    selected: int = 0  # notes the selector chose, readable or not
    # Every note file the extraction read (chosen notes and link targets, readable or not): the
    # extract job's input at DAG time, so that an edit to any other note never reruns it.
    notes_read: list[str] = field(default_factory=list)
    # note path -> its links that several notes fit: the link, every candidate and the pick.
    ambiguous_links: dict[str, list[dict]] = field(default_factory=dict)

    def stats(self) -> dict:
        """extract_stats.json: every skip and every repair, counted by reason and listed."""
        return {
            "inputs": len(self.records),
            "notes_selected": self.selected,
            "skipped": dict(Counter(reason_kind(reason) for reason in self.skipped.values())),
            "repaired": dict(Counter(reason_kind(r) for reasons in self.repaired.values() for r in reasons)),
            "skipped_notes": dict(sorted(self.skipped.items())),
            "repaired_notes": dict(sorted(self.repaired.items())),
            "ambiguous_links": sum(len(links) for links in self.ambiguous_links.values()),
            "ambiguous_link_notes": dict(sorted(self.ambiguous_links.items())),
        }


def content_id(user_content: str) -> str:
    return hashlib.sha256(user_content.encode("utf-8")).hexdigest()[:16]


def render_note(note: Note) -> str:
    lines = [f"## {note.title}"]
    if note.tags:
        lines.append("Tags: " + ", ".join(note.tags))
    lines.append("")
    lines.append(note.body)
    return "\n".join(lines)


def cut_middle(text: str, max_chars: int) -> str:
    """`text` in at most `max_chars`: its first third (the header and the framing) and its
    last two thirds (the latest content), joined by the truncation marker, cut at line ends
    where one is near so that no word or line is split."""
    if len(text) <= max_chars:
        return text
    room = max_chars - len(TRUNCATION_MARKER)
    head_chars = room // 3
    tail_chars = room - head_chars
    head = text[:head_chars]
    line_end = head.rfind("\n")
    if line_end >= head_chars // 2:
        head = head[:line_end]
    tail = text[len(text) - tail_chars :]
    line_start = tail.find("\n")
    if 0 <= line_start <= tail_chars // 2:
        tail = tail[line_start + 1 :]
    return middle_truncate(head.rstrip(), tail)


def make_record(header: str, notes: list[Note], max_chars: int | None = None) -> dict:
    user = header + "\n\n" + "\n\n".join(render_note(note) for note in notes)
    if max_chars is not None:
        user = cut_middle(user, max_chars)
    return {"id": content_id(user), "sources": [note.path for note in notes], "user": user}


def note_date(note: Note) -> dt.date | None:
    raw = note.meta.get("date")
    if isinstance(raw, dt.date):
        return raw
    match = DATE_IN_NAME.search(str(raw) if raw else note.title)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1))
    except ValueError:
        return None


def group_single(notes: list[Note], _: dict, __: dict) -> list[list[Note]]:
    return [[note] for note in notes]


def group_linked(notes: list[Note], selector: dict, links_of: dict[str, list[Note]]) -> list[list[Note]]:
    """A note followed by the notes it links to (one hop), up to max_linked of them."""
    limit = selector.get("max_linked", 3)
    groups = []
    for note in notes:
        extra = [other for other in links_of.get(note.path, []) if other.path != note.path]
        groups.append([note, *extra[:limit]])
    return groups


def group_window(notes: list[Note], selector: dict, _: dict) -> list[list[Note]]:
    """Sliding windows of consecutive calendar days; days with no note are simply absent."""
    days = selector.get("window_days", 7)
    stride = selector.get("stride_days", 1)
    dated = sorted((d, note) for note in notes if (d := note_date(note)) is not None)
    if not dated:
        return []
    first, last = dated[0][0], dated[-1][0]
    groups = []
    start = first
    while start + dt.timedelta(days=days - 1) <= last:
        end = start + dt.timedelta(days=days)
        window = [note for d, note in dated if start <= d < end]
        if window:
            groups.append(window)
        start += dt.timedelta(days=stride)
    return groups


GROUPERS = {"single": group_single, "linked": group_linked, "window": group_window}


class NoteReader:
    """Reads notes once each, recording skips and repairs by path."""

    def __init__(self, cache: VaultCache):
        self.cache = cache
        self.skipped: dict[str, str] = {}
        self.repaired: dict[str, list[str]] = {}
        self.parsed: dict[str, Note] = {}
        self.ambiguous_links: dict[str, list[dict]] = {}

    def read(self, rel: str) -> Note | None:
        if rel not in self.parsed and rel not in self.skipped:
            try:
                note = self.cache.note(rel)
            except BadNote as reason:
                self.skipped[rel] = str(reason)
                return None
            self.parsed[rel] = note
            if note.repairs:
                self.repaired[rel] = list(note.repairs)
        return self.parsed.get(rel)


def linked_notes(reader: NoteReader, primary: list[Note], follow_external_links: bool) -> dict[str, list[Note]]:
    """Each primary note's link targets that exist and can be read, in link order, resolved as
    Obsidian does (vault.LinkIndex); the links that several notes fit go to the reader's record."""
    index = reader.cache.link_index(follow_external_links)
    links_of = {}
    for note in primary:
        resolutions = {link: index.resolve(link, note.path) for link in note.links}
        ambiguous = [
            {"link": link, "candidates": list(found.candidates), "picked": found.target}
            for link, found in resolutions.items()
            if found.ambiguous
        ]
        if ambiguous:
            reader.ambiguous_links[note.path] = ambiguous
        targets = dict.fromkeys(found.target for found in resolutions.values() if found.target)
        links_of[note.path] = [linked for t in targets if (linked := reader.read(t)) is not None]
    return links_of


def ambiguous_link_lines(ambiguous_links: dict[str, list[dict]]) -> list[str]:
    """One log line per link that several notes fit: where it is, the candidates and the pick."""
    return [
        f"ambiguous link in {path}: [[{link['link']}]] fits {', '.join(link['candidates'])}; picked "
        f"{link['picked']} (Obsidian's order: the linking note's folder, then the shortest path)"
        for path, links in sorted(ambiguous_links.items())
        for link in links
    ]


def extract_task_inputs(vault: Path, header: str, selector: dict, cache: VaultCache | None = None) -> ExtractResult:
    """Build the inputs of one task. Unusable notes are skipped and reported, never raised;
    mended ones (broken front matter, legacy encoding, line endings) are kept and reported.
    `cache` shares the reading of the vault between the tasks extracted in one process."""
    cache = cache or VaultCache(vault)
    follow = selector.get("follow_external_links", False)
    scan = cache.scan(follow)
    reader = NoteReader(cache)
    for rel, why in scan.outside.items():
        if matches_location(rel if not rel.endswith("/") else rel + "_.md", selector):
            reader.skipped[rel] = why
    chosen = select_notes(vault, selector, scan.notes, cache)
    primary = [note for rel in chosen if (note := reader.read(rel)) is not None]
    group = selector.get("group", "single")
    links_of = linked_notes(reader, primary, follow) if group == "linked" else {}
    groups = GROUPERS[group](primary, selector, links_of)
    min_chars = selector.get("min_chars", 0)
    records, seen = [], set()
    for notes in groups:
        if sum(len(note.body) for note in notes) < min_chars:
            for note in notes:
                reader.skipped.setdefault(note.path, f"shorter than min_chars: under {min_chars} characters")
            continue
        record = make_record(header, notes, selector.get("max_chars"))
        if record["id"] not in seen:
            seen.add(record["id"])
            records.append(record)
    in_vault = set(scan.notes)
    notes_read = sorted(rel for rel in {*chosen, *reader.parsed, *reader.skipped} if rel in in_vault)
    return ExtractResult(
        records, reader.skipped, reader.repaired, primary, len(chosen), notes_read, reader.ambiguous_links
    )


def where_looked(vault: Path, selector: dict) -> str:
    """The vault and the selector's location and tag filters, as a user wrote them."""
    parts = [f"{key} {selector[key]}" for key in ("folders", "globs", "tags") if selector.get(key)]
    return f"{vault} ({', '.join(parts) or 'every note'})"


def window_shortfall(primary: list[Note], selector: dict) -> str:
    """Why a window task made no input: how many dated notes it found, over how many days."""
    days = selector.get("window_days", 7)
    dates = sorted(d for note in primary if (d := note_date(note)) is not None)
    if not dates:
        return (
            f"none of the {len(primary)} notes found has a date (front matter `date:` or YYYY-MM-DD "
            f"in the name); window_days: {days} needs dated notes"
        )
    span = (dates[-1] - dates[0]).days + 1
    return (
        f"{len(dates)} dated notes found, spanning {span} days ({dates[0]} to {dates[-1]}); "
        f"window_days: {days} needs notes spanning at least {days} days"
    )


def too_few_inputs(result: ExtractResult, vault: Path, selector: dict, needed: int) -> str | None:
    """Why a task has fewer than `needed` usable inputs, in one line; None when it has enough."""
    found = len(result.records)
    if found >= needed:
        return None
    message = f"{found} usable inputs found in {where_looked(vault, selector)}, {needed} needed"
    if result.skipped:
        message += f"; {len(result.skipped)} notes skipped (see the extract log)"
    if selector.get("group") == "window" and result.primary:
        message += "; " + window_shortfall(result.primary, selector)
    return message
