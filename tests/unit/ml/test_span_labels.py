"""Learning maps codings (spans) to segments by overlap, without changing a stored coding: a
coding is a positive for each segment it covers at least half of, and for no other."""

from __future__ import annotations

import pandas as pd
import pytest

from coder_assist.app import figures
from coder_assist.core.segment import Segmenter
from coder_assist.core.template import parse_template
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.ml.features import MIN_COVER, decisions_on_segments, labels_from_decisions
from coder_assist.store.project import Project

TPL = parse_template({"name": "t", "codes": [{"name": "A", "children": [{"name": "X", "description": "x."}, {"name": "Y", "description": "y."}]}]}, source="test")
X, Y = "a/x", "a/y"
SEGS = pd.DataFrame({"id": [1, 2, 3], "transcript_id": [7, 7, 7], "start": [0, 100, 200], "end": [100, 200, 300]})


def _dec(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["id", "segment_id", "code_id", "action", "coder", "span_start", "span_end"])


def _labels(dec, codings=None) -> dict:
    lab = labels_from_decisions(decisions_on_segments(dec, SEGS, codings), TPL)
    return lab.set_index(["segment_id", "code_id"])["label"].to_dict()


def test_a_phrase_is_no_label_and_a_span_over_most_of_a_passage_is_a_positive():
    dec = _dec([
        (1, 1, X, "accept", "a", 10, 30),     # 20% of segment 1: no label
        (2, 2, X, "accept", "a", 110, 190),   # 80% of segment 2: positive
        (3, 3, Y, "accept", "a", None, None),  # the passage's own span: positive
    ])
    assert _labels(dec) == {(2, X): 1, (3, Y): 1}
    assert MIN_COVER == 0.5
    assert _labels(_dec([(1, 1, X, "accept", "a", 0, 50)])) == {(1, X): 1}  # exactly half counts
    assert _labels(_dec([(1, 1, X, "accept", "a", 0, 49)])) == {}


def test_a_span_across_passages_labels_each_passage_it_covers_most_of():
    # Attached to segment 1 (it overlaps it most), covers 90% of 1, 60% of 2 and 10% of 3.
    dec = _dec([(5, 1, X, "accept", "a", 10, 210)])
    assert _labels(dec) == {(1, X): 1, (2, X): 1}


def test_rejects_stay_on_their_segment_and_the_latest_decision_wins():
    dec = _dec([(1, 1, X, "accept", "a", 0, 180), (2, 2, X, "reject", "b", None, None)])
    assert _labels(dec) == {(1, X): 1, (2, X): 0}
    later = _dec([(3, 2, X, "reject", "b", None, None), (4, 1, X, "accept", "a", 0, 180)])
    assert _labels(later) == {(1, X): 1, (2, X): 1}


def test_codings_in_force_replace_the_accepts_of_the_decisions():
    # One coder holds two spans of X on segment 1; current decisions show only the latest.
    dec = _dec([(2, 1, X, "accept", "a", 0, 10)])
    cod = pd.DataFrame({"decision_id": [1, 2], "transcript_id": [7, 7], "start": [0, 0], "end": [90, 10], "code_id": [X, X],
                        "coder": ["a", "a"]})
    assert _labels(dec) == {}
    assert _labels(dec, cod) == {(1, X): 1}


@pytest.fixture
def project(tmp_path) -> Project:
    text = ("Interviewer: How was it?\n\nP1: The budget was cut again and again. We waited months for any answer. "
            "Nobody called us back.\n\nInterviewer: And then?\n\nP1: Staff left. Morale fell.\n")
    p = Project.create(tmp_path / "p", TPL)
    t = Transcript("t", text, parse_speaker_text(text, "t"))
    p.add_transcripts([t], {"t": Segmenter().segments(t)})
    yield p
    p.close()


def test_learnability_counts_span_codings_by_cover_and_leaves_the_codings_as_stored(project):
    tid = int(project.transcripts()["id"].iloc[0])
    segs = project.segments().sort_values("start")
    first, second = segs.iloc[0], segs.iloc[1]
    text = project.transcript_text(tid)
    word = text.index("budget")
    project.add_coding(tid, word, word + len("budget"), X, "Ana")  # a word of a long passage
    project.add_coding(tid, int(second.start), int(second.end) - 3, Y, "Ana")  # most of the short one
    before = project.codings()
    table = figures.learnability(project).table.set_index("code_id")
    assert int(table.loc[X, "positives"]) == 0
    assert int(table.loc[Y, "positives"]) == 1
    pd.testing.assert_frame_equal(project.codings(), before)  # learning changed no coding
    assert (project.decisions()["segment_id"] == int(first.id)).sum() == 1


def test_spans_map_to_segments_as_the_rule_says_one_span_at_a_time():
    """Every span's segments are found at once; the same rows in the same order as the rule
    applied to each span and each segment in turn, on random spans over uneven segments in
    two transcripts (spans inside one segment, across several, before and after all of them)."""
    import numpy as np

    rng = np.random.default_rng(5)
    seg_rows, sid = [], 1
    for tid in (7, 8):
        pos = 0
        for _ in range(12):
            length = int(rng.integers(1, 60))
            seg_rows.append((sid, tid, pos, pos + length))
            sid, pos = sid + 1, pos + length + int(rng.integers(0, 5))
    segs = pd.DataFrame(seg_rows, columns=["id", "transcript_id", "start", "end"])
    codings = pd.DataFrame([
        (i + 1, int(rng.choice([7, 8, 9])), int(a), int(a + rng.integers(0, 200)), rng.choice([X, Y]), rng.choice(["ann", "bo"]))
        for i, a in enumerate(rng.integers(-20, 500, size=300))
    ], columns=["decision_id", "transcript_id", "start", "end", "code_id", "coder"])
    want = []
    for tid in pd.unique(codings["transcript_id"]):
        s = segs[segs["transcript_id"] == tid].sort_values("start")
        for c in codings[codings["transcript_id"] == tid].itertuples(index=False):
            for seg in s.itertuples(index=False):
                if (min(c.end, seg.end) - max(c.start, seg.start)) / max(seg.end - seg.start, 1) >= MIN_COVER:
                    want.append((c.decision_id, seg.id, c.code_id, "accept", c.coder))
    want.sort(key=lambda r: r[0])  # by decision id, stable: a span's segments in reading order
    got = decisions_on_segments(_dec([]), segs, codings)
    assert [tuple(r) for r in got.itertuples(index=False)] == want
    assert len(want) > 100 and got["segment_id"].dtype == "int64"
