"""Coding any span by hand, and fitting a suggestion's span to sentence bounds before accepting it.

A span is (start, end), character offsets into the transcript's stored text (what
:meth:`Project.codings` returns and REFI-QDA exports). A hand-coded span is an accept with that
span, attached to the passage it overlaps most, recorded under the coder's name with origin
"hand-coded"; an accepted suggestion whose span the coder widened or narrowed keeps its link to
the suggestion and carries the new span. Both are ordinary decisions: undo takes them back.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

from ..core.coding import ORIGIN_HAND, ORIGIN_SUGGESTION
from ..core.errors import ProjectError
from ..core.segment import sentence_spans
from ..store.project import Project
from . import review

Span = tuple[int, int]


def sentence_bounds(text: str, turns: pd.DataFrame) -> list[Span]:
    """The sentences of every turn (rows with start, end into ``text``), as spans of ``text``
    in reading order. Speaker labels and timestamps between turns belong to no sentence."""
    out: list[Span] = []
    for t in turns.sort_values("start").itertuples(index=False):
        a = int(t.start)
        out.extend((a + s, a + e) for s, e in sentence_spans(text[a : int(t.end)]))
    return out


def move_span(span: Span, sentences: Sequence[Span], edge: str, step: int) -> Span:
    """``span`` with one edge moved by one sentence: ``edge`` "start" or "end", ``step`` -1
    (earlier) or +1 (later). The start lands on a sentence's start, the end on a sentence's
    end; a move that would empty the span, or has no sentence to go to, leaves it as it is."""
    start, end = int(span[0]), int(span[1])
    if edge not in ("start", "end") or step not in (-1, 1):
        raise ProjectError(f"cannot move the {edge!r} of a span by {step!r} sentences (start/end, -1/+1)")
    if edge == "start":
        starts = sorted({a for a, _ in sentences})
        if step < 0:
            cand = [a for a in starts if a < start]
            return (cand[-1], end) if cand else (start, end)
        cand = [a for a in starts if start < a < end]
        return (cand[0], end) if cand else (start, end)
    ends = sorted({b for _, b in sentences})
    if step > 0:
        cand = [b for b in ends if b > end]
        return (start, cand[0]) if cand else (start, end)
    cand = [b for b in ends if start < b < end]
    return (start, cand[-1]) if cand else (start, end)


def code_span(project: Project, transcript_id: int, start: int, end: int, code_ids: Iterable[str], coder: str) -> list[int]:
    """Code exactly ``start``-``end`` of a transcript with each of ``code_ids`` (leaf codes)
    under ``coder``'s name, in one transaction. A code the coder already has on exactly this
    span is not recorded twice. Returns the new decision ids."""
    coder = (coder or "").strip()
    if not coder:
        raise ProjectError("a decision needs the coder's name")
    code_ids = list(dict.fromkeys(code_ids))
    if not code_ids:
        raise ProjectError("choose at least one code for the selected text")
    leaves = dict(review.leaf_codes(project))
    unknown = [c for c in code_ids if c not in leaves]
    if unknown:
        raise ProjectError(f"not a code that can be applied (a leaf of the template): {', '.join(map(repr, unknown))}")
    start, end = int(start), int(end)
    with project.transaction():
        have = project.codings(int(transcript_id))
        have = have[(have["coder"] == coder) & (have["start"] == start) & (have["end"] == end)]
        done = set(have["code_id"])
        return [project.add_coding(int(transcript_id), start, end, c, coder, origin=ORIGIN_HAND) for c in code_ids if c not in done]


def accept_span(project: Project, suggestion_id: int, segment_id: int, code_id: str, span: Span, coder: str) -> int | None:
    """Accept a suggestion (of ``code_id`` on ``segment_id``) with the span the coder fitted
    it to. ``None`` (nothing recorded) when this coder has already accepted or rejected the
    pair, as :func:`review.decide_once` does."""
    coder = (coder or "").strip()
    if not coder:
        raise ProjectError("a decision needs the coder's name")
    with project.transaction():
        if review.current_action(project, int(segment_id), code_id, coder) in ("accept", "reject"):
            return None
        return project.record_decision(int(segment_id), code_id, "accept", coder, suggestion_id=int(suggestion_id),
                                       span=(int(span[0]), int(span[1])), origin=ORIGIN_SUGGESTION)
