"""Stage 1: turn the notes a task selects into task inputs (one JSON record each)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .split import TRUNCATION_MARKER, middle_truncate
from .vault import BadNote, Note, list_notes, read_note, resolve_link, select_notes, stem_index

DATE_IN_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")


@dataclass
class ExtractResult:
    records: list[dict]
    skipped: dict[str, str] = field(default_factory=dict)  # note path -> reason


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


def extract_task_inputs(vault: Path, header: str, selector: dict) -> ExtractResult:
    """Build the inputs of one task. Unusable notes are skipped and reported, never raised."""
    all_notes = list_notes(vault)
    skipped: dict[str, str] = {}
    primary = []
    for rel in select_notes(vault, selector, all_notes):
        try:
            primary.append(read_note(vault, rel))
        except BadNote as reason:
            skipped[rel] = str(reason)

    links_of: dict[str, list[Note]] = {}
    if selector.get("group", "single") == "linked":
        index = stem_index(all_notes)
        parsed: dict[str, Note] = {note.path: note for note in primary}
        for note in primary:
            targets = dict.fromkeys(filter(None, (resolve_link(index, t) for t in note.links)))
            for resolved in targets:
                if resolved not in parsed and resolved not in skipped:
                    try:
                        parsed[resolved] = read_note(vault, resolved)
                    except BadNote as reason:
                        skipped[resolved] = str(reason)
            links_of[note.path] = [parsed[t] for t in targets if t in parsed]

    groups = GROUPERS[selector.get("group", "single")](primary, selector, links_of)
    min_chars = selector.get("min_chars", 0)
    records, seen = [], set()
    for group in groups:
        if sum(len(note.body) for note in group) < min_chars:
            for note in group:
                skipped.setdefault(note.path, f"shorter than min_chars={min_chars}")
            continue
        record = make_record(header, group, selector.get("max_chars"))
        if record["id"] not in seen:
            seen.add(record["id"])
            records.append(record)
    return ExtractResult(records=records, skipped=skipped)
