"""Gold labels: content scored against truth, not against the teacher.

Some fields of a task's answer have their truth in the notes the input was built from, derivable
by a rule that never asks a model:
- planner `goal`, seeder `topic`: the title of the input's first note (the goal note, the topic
  note); an answer is right when its tokens overlap the title's (SQuAD token F1 >= TITLE_F1);
- analyst `language`: the language the note's code is fenced in (```python), the most frequent
  one where there are several, matched after LANGUAGE_ALIASES; a note without a fenced language
  has no gold;
- reflector `energy_trend`: the daily notes' own "Energy N/10" lines, in date order (energy_trend).

Judge has no such field: how good a note is is not written in it, so judge gets no gold here.
Every arm and the teacher are scored alike on the held-out inputs that have a gold value; an
answer that is not schema-valid is wrong, so the rate is what a user would get.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .extract import note_date
from .runtime import read_jsonl, write_jsonl
from .vault import BadNote, Note, VaultCache

# A title answer is right when its token F1 with the title is at least this: "Raft" for "Raft
# consensus" (0.67) is, "Leader election" is not.
TITLE_F1 = 0.5
# Spellings of one language in code fences and in answers.
LANGUAGE_ALIASES = {
    "py": "python",
    "python3": "python",
    "sh": "bash",
    "shell": "bash",
    "zsh": "bash",
    "console": "bash",
    "js": "javascript",
    "ts": "typescript",
    "golang": "go",
    "rs": "rust",
    "yml": "yaml",
    "postgres": "sql",
    "postgresql": "sql",
    "psql": "sql",
    "make": "makefile",
}
CODE_FENCE_LANGUAGE = re.compile(r"^[ \t]*(?:```+|~~~+)[ \t]*([A-Za-z][\w+#.-]*)", re.M)
ENERGY_LINE = re.compile(r"\benergy\b\W{0,3}(\d+(?:\.\d+)?)\s*/\s*10\b", re.I)
# energy_trend: readings needed, and how far the later half's mean must move from the earlier
# half's (on the 10-point scale) to be a trend; a spread this small or less is steady.
MIN_ENERGY_READINGS = 3
TREND_STEP = 1.5
STEADY_SPREAD = 1.0


def normalized_language(name: str) -> str:
    name = name.strip().lower()
    return LANGUAGE_ALIASES.get(name, name)


def fenced_language(notes: list[Note]) -> str | None:
    """The first note's most frequent code-fence language (the first seen among equals)."""
    found = [normalized_language(m) for m in CODE_FENCE_LANGUAGE.findall(notes[0].body)]
    return Counter(found).most_common(1)[0][0] if found else None


def energy_readings(notes: list[Note]) -> list[float]:
    """One reading per dated note that has an "Energy N/10" line (its first), in date order."""
    dated = sorted((day, note) for note in notes if (day := note_date(note)) is not None)
    readings = []
    for _, note in dated:
        match = ENERGY_LINE.search(note.body)
        if match:
            readings.append(float(match.group(1)))
    return readings


def energy_trend(readings: list[float]) -> str | None:
    """rising, falling, steady or mixed: the later half's mean against the earlier half's (an odd
    middle reading in neither), steady when every reading is within STEADY_SPREAD."""
    if len(readings) < MIN_ENERGY_READINGS:
        return None
    if max(readings) - min(readings) <= STEADY_SPREAD:
        return "steady"
    half = len(readings) // 2
    change = statistics.fmean(readings[-half:]) - statistics.fmean(readings[:half])
    if change >= TREND_STEP:
        return "rising"
    if change <= -TREND_STEP:
        return "falling"
    return "mixed"


def first_title(notes: list[Note]) -> str:
    return notes[0].title


def window_energy_trend(notes: list[Note]) -> str | None:
    return energy_trend(energy_readings(notes))


@dataclass(frozen=True)
class GoldRule:
    derive: Callable[[list[Note]], object]  # the input's notes -> the gold value, or None
    match: str  # "title": token F1 >= TITLE_F1; "language": after LANGUAGE_ALIASES; "exact"
    rule: str  # what it says, for quality.md


GOLD_RULES: dict[str, dict[str, GoldRule]] = {
    "planner": {"goal": GoldRule(first_title, "title", "the goal note's title")},
    "seeder": {"topic": GoldRule(first_title, "title", "the topic note's title")},
    "analyst": {"language": GoldRule(fenced_language, "language", "the note's code-fence language")},
    "reflector": {"energy_trend": GoldRule(window_energy_trend, "exact", "the daily notes' Energy N/10 lines")},
}


def gold_values(task: str, notes: list[Note]) -> dict:
    """The task's gold fields that these notes make derivable."""
    values = {field: rule.derive(notes) for field, rule in GOLD_RULES.get(task, {}).items()}
    return {field: value for field, value in values.items() if value is not None}


def gold_labels(task: str, heldout: list[dict], inputs: list[dict], vault: Path) -> list[dict]:
    """{id, gold} for each held-out input, from the notes its extracted input was built from."""
    sources = {row["id"]: row["sources"] for row in inputs}
    cache = VaultCache(vault)
    labels = []
    for row in heldout:
        try:
            notes = [cache.note(path) for path in sources[row["id"]]]
        except (KeyError, BadNote):
            notes = []
        labels.append({"id": row["id"], "gold": gold_values(task, notes) if notes else {}})
    return labels


def write_gold_labels(task: str, heldout_file, inputs_file, vault, out_file) -> list[dict]:
    labels = gold_labels(task, read_jsonl(heldout_file), read_jsonl(inputs_file), Path(vault))
    write_jsonl(out_file, labels)
    return labels
