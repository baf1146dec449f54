"""A transcript as the rest of the package sees it: one stored string and its speaker turns.

Reading files into these types is formats/transcripts.py's job; the segmenter and the store need
only the types and the speaker rules, so those live here, in core, apart from any reader.
Every turn satisfies ``transcript.text[turn.start:turn.end] == turn.text``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

#: Speaker labels that mean "the interviewer": their turns are context, not coded, by default.
DEFAULT_INTERVIEWER_NAMES = frozenset(
    {"interviewer", "i", "int", "q", "moderator", "facilitator", "researcher", "interviewer 1", "interviewer 2"}
)

#: Labels of non-speech rows (transcriber notes): context, never coded.
NOTE_NAMES = frozenset({"note", "notes", "comment", "transcriber", "transcriber note"})


@dataclass(frozen=True)
class Turn:
    """One speaker turn. ``start``/``end`` index the utterance (label excluded) in the text."""

    index: int
    speaker: str
    start: int
    end: int
    text: str
    timestamp: str | None = None


@dataclass
class Transcript:
    name: str
    text: str
    turns: list[Turn]
    source_path: str | None = None
    format: str = "txt"
    encoding: str = "utf-8"
    attributes: dict[str, str] = field(default_factory=dict)

    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})


def is_interviewer(speaker: str, interviewer_names: Iterable[str] = DEFAULT_INTERVIEWER_NAMES) -> bool:
    names = {n.strip().lower() for n in interviewer_names}
    return speaker.strip().lower() in names
