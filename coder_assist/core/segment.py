"""Split transcripts into codable segments: whole turns, sentences, or short sentence windows.

Sentence boundaries come from spaCy's rule-based sentencizer on a blank English pipeline, so
nothing is downloaded. Offsets always index the transcript's stored text.

Passages follow the speaker: a short turn (up to ``short_sentences`` sentences or
``short_words`` words) is one passage, never cut in two; a longer one is windowed at sentence
bounds. Text without speaker labels (documents, survey answers, field notes, comment exports)
is codable in full: :func:`document_turns` makes each paragraph a turn, so every part of the
text lies in some passage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Literal

import pandas as pd

from .transcript import DEFAULT_INTERVIEWER_NAMES, NOTE_NAMES, Transcript, Turn, is_interviewer

Unit = Literal["turn", "sentence", "window"]


@dataclass(frozen=True)
class Segment:
    transcript: str
    turn_index: int
    index: int  # position among the transcript's segments
    start: int
    end: int
    text: str
    speaker: str


@dataclass
class Segmenter:
    """Configurable segmentation.

    unit: ``"turn"`` (one segment per turn), ``"sentence"``, or ``"window"`` (the default:
    a turn of at most ``short_sentences`` sentences or ``short_words`` words is one passage,
    so a short answer is never cut in two; a longer turn is split into windows of ``window``
    consecutive sentences, a trailing scrap joining the window before it).
    coded_speakers: speakers whose turns are coded; ``None`` means everyone except the
    interviewer (names in ``interviewer_names``) and transcriber notes. Other turns stay as
    context only.
    """

    unit: Unit = "window"
    window: int = 3
    short_sentences: int = 4
    short_words: int = 80
    coded_speakers: frozenset[str] | None = None
    interviewer_names: frozenset[str] = field(default_factory=lambda: DEFAULT_INTERVIEWER_NAMES)

    def __post_init__(self) -> None:
        if self.unit not in ("turn", "sentence", "window"):
            raise ValueError(f"unit must be 'turn', 'sentence' or 'window', not {self.unit!r}")
        if self.window < 1:
            raise ValueError("window must be at least 1 sentence")
        if self.coded_speakers is not None:
            self.coded_speakers = frozenset(s.lower() for s in self.coded_speakers)

    def is_coded(self, speaker: str) -> bool:
        if self.coded_speakers is not None:
            return speaker.lower() in self.coded_speakers
        return not is_interviewer(speaker, self.interviewer_names) and speaker.strip().lower() not in NOTE_NAMES

    def segments(self, transcript: Transcript) -> list[Segment]:
        out: list[Segment] = []
        for turn in transcript.turns:
            if not self.is_coded(turn.speaker):
                continue
            for start, end in self._spans(transcript.text, turn.start, turn.end):
                out.append(Segment(transcript.name, turn.index, len(out), start, end, transcript.text[start:end], turn.speaker))
        return out

    def _spans(self, text: str, start: int, end: int) -> list[tuple[int, int]]:
        if self.unit == "turn":
            return [(start, end)]
        if self.unit == "window" and _n_words(text, start, end) <= self.short_words:
            # Checked before any sentence splitting: most answers are short, and this keeps
            # segmenting a 15,000-paragraph document fast.
            return [(start, end)]
        sents = sentence_spans(text[start:end])
        sents = [(start + a, start + b) for a, b in sents]
        if self.unit == "sentence":
            return sents
        if len(sents) <= max(1, self.short_sentences):
            return [(sents[0][0], sents[-1][1])] if sents else []
        size = self.window
        groups = [sents[i : i + size] for i in range(0, len(sents), size)]
        # A trailing scrap shorter than half a window reads better attached to the passage before it.
        if len(groups) > 1 and len(groups[-1]) < math.ceil(size / 2):
            tail = groups.pop()
            groups[-1] = groups[-1] + tail
        return [(g[0][0], g[-1][1]) for g in groups]

    def frame(self, transcripts: Iterable[Transcript]) -> pd.DataFrame:
        """Segments of many transcripts as a DataFrame (one row per segment), with the text of
        the turn before the segment's turn as ``prev_text`` (context for the learned scorer)."""
        rows = [
            {**s.__dict__, "prev_text": t.turns[s.turn_index - 1].text if s.turn_index > 0 else ""}
            for t in transcripts
            for s in self.segments(t)
        ]
        return pd.DataFrame(rows, columns=["transcript", "turn_index", "index", "start", "end", "text", "speaker", "prev_text"])


_WORD = re.compile(r"\S+")


def _n_words(text: str, start: int, end: int, cap: int = 10_000) -> int:
    n = 0
    for _ in _WORD.finditer(text, start, end):
        n += 1
        if n > cap:
            break
    return n


_PARAGRAPH = re.compile(r"[^\r\n]*\S[^\r\n]*")
_BLANK_LINE = re.compile(r"\S[ \t]*\r?\n[ \t]*\r?\n[ \t]*\S")


def document_turns(text: str) -> list[Turn]:
    """Turns for a text without speaker labels: one per paragraph (speaker ``""``), so the
    whole text is codable. Paragraphs are separated by blank lines where the text has them
    (hard-wrapped prose; at least one blank line per ten lines), otherwise by line breaks (a Word document's paragraphs, a table's
    cells, one comment or survey answer per line). Offsets index ``text``; whitespace around
    a paragraph belongs to no turn."""
    turns: list[Turn] = []
    lines = sum(1 for _ in _PARAGRAPH.finditer(text))
    # Blank lines separate paragraphs only where they are common: one stray empty line in a
    # 15,000-line comment export does not make the export two paragraphs.
    if len(_BLANK_LINE.findall(text)) >= 0.1 * lines:
        pattern = re.compile(r"\S(?:.*?\S)?(?=\s*(?:\r?\n[ \t]*\r?\n|\Z))", re.DOTALL)
    else:
        pattern = _PARAGRAPH
    for m in pattern.finditer(text):
        a, b = m.start(), m.end()
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            turns.append(Turn(len(turns), "", a, b, text[a:b]))
    return turns


@lru_cache(maxsize=1)
def sentence_pipeline():
    """spaCy's blank English pipeline with a sentencizer (rules, no model weights), made once
    per process: what :func:`sentence_spans` splits with."""
    import sys

    if "torch" not in sys.modules:
        # A blank pipeline's sentencizer needs no torch, but thinc imports it eagerly when it is
        # installed: seconds before the first import can segment anything. Hidden only while
        # spaCy loads; a later ``import torch`` (the encoder) works as usual.
        sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            import spacy
        finally:
            if sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10_000_000
    return nlp


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, trimmed of surrounding whitespace."""
    spans = []
    for sent in sentence_pipeline()(text).sents:
        a, b = sent.start_char, sent.end_char
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            spans.append((a, b))
    return spans
