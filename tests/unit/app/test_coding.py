"""coder_assist.app.coding: hand-coding any span, and fitting a suggestion to sentence bounds."""

from __future__ import annotations

import pandas as pd
import pytest

from coder_assist.app import coding, export, review
from coder_assist.core.coding import ORIGIN_HAND, ORIGIN_SUGGESTION
from coder_assist.core.errors import ProjectError
from coder_assist.core.segment import Segmenter
from coder_assist.core.template import parse_template
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.store.project import Project

TPL = parse_template({"name": "t", "codes": [{"name": "A", "children": [{"name": "X", "description": "x."},
                                                                         {"name": "Y", "description": "y."}]}]}, source="test")
X, Y = "a/x", "a/y"
TEXT = ("Interviewer: How was it?\r\n\r\nP1: Café first. Second one 😀 here.\r\nThird, last.\r\n\r\n"
        "Interviewer: More?\r\n\r\nP1: Only this. And that.\r\n")


@pytest.fixture
def project(tmp_path) -> Project:
    p = Project.create(tmp_path / "p", TPL)
    t = Transcript("t", TEXT, parse_speaker_text(TEXT, "t"))
    p.add_transcripts([t], {"t": Segmenter().segments(t)})
    yield p
    p.close()


def _tid(p: Project) -> int:
    return int(p.transcripts()["id"].iloc[0])


def test_sentence_bounds_are_the_turns_sentences_in_the_stored_text(project):
    sents = coding.sentence_bounds(TEXT, project.turns(_tid(project)))
    got = [TEXT[a:b] for a, b in sents]
    assert got == ["How was it?", "Café first.", "Second one 😀 here.", "Third, last.", "More?", "Only this.", "And that."]


def test_move_span_widens_and_narrows_by_one_sentence_and_never_empties():
    sents = [(0, 10), (11, 20), (21, 30)]
    assert coding.move_span((11, 20), sents, "start", -1) == (0, 20)
    assert coding.move_span((11, 20), sents, "end", 1) == (11, 30)
    assert coding.move_span((0, 30), sents, "start", 1) == (11, 30)
    assert coding.move_span((0, 30), sents, "end", -1) == (0, 20)
    assert coding.move_span((11, 20), sents, "start", 1) == (11, 20)  # would empty it
    assert coding.move_span((11, 20), sents, "end", -1) == (11, 20)
    assert coding.move_span((0, 30), sents, "start", -1) == (0, 30)  # nothing before
    assert coding.move_span((15, 18), sents, "start", -1) == (11, 18)  # mid-sentence: to that sentence's start
    with pytest.raises(ProjectError):
        coding.move_span((0, 10), sents, "middle", 1)


def test_code_span_records_exact_offsets_once_per_code_and_undo_takes_it_back(project):
    tid = _tid(project)
    a = TEXT.index("Second one")
    b = TEXT.index("Only this") + len("Only")  # across passages
    ids = coding.code_span(project, tid, a, b, [X, Y, X], "Ana")
    assert len(ids) == 2
    cod = project.codings(tid)
    assert sorted(map(tuple, cod[["start", "end", "code_id", "coder", "origin"]].values.tolist())) == [
        (a, b, X, "Ana", ORIGIN_HAND), (a, b, Y, "Ana", ORIGIN_HAND)]
    assert coding.code_span(project, tid, a, b, [X], "Ana") == []  # not recorded twice
    frame = export.codings_frame(project)
    assert set(frame["text"]) == {TEXT[a:b]} and "\r\n" in TEXT[a:b]
    review.undo_last(project, "Ana")
    assert project.codings(tid)["code_id"].tolist() == [X]


def test_code_span_refuses_bad_input_and_records_nothing(project):
    tid = _tid(project)
    with pytest.raises(ProjectError, match="coder"):
        coding.code_span(project, tid, 0, 5, [X], " ")
    with pytest.raises(ProjectError, match="at least one code"):
        coding.code_span(project, tid, 0, 5, [], "Ana")
    with pytest.raises(ProjectError, match="leaf"):
        coding.code_span(project, tid, 0, 5, ["a"], "Ana")
    with pytest.raises(ProjectError, match="not inside"):
        coding.code_span(project, tid, 0, len(TEXT) + 1, [X], "Ana")
    assert project.decisions().empty


def test_accept_span_keeps_the_suggestion_and_carries_the_fitted_span(project):
    seg = project.segments().sort_values("start").iloc[0]
    mv = project.add_model_version("test", "none")
    project.add_suggestions(mv, pd.DataFrame([{"segment_id": int(seg.id), "code_id": X, "rank": 1, "confidence": 0.8, "similarity": 0.8,
                                               "evidence": "e", "evidence_source": "x", "evidence_similarity": 0.5}]))
    sid = int(project.suggestions()["suggestion_id"].iloc[0])
    sents = coding.sentence_bounds(TEXT, project.turns(_tid(project)))
    span = coding.move_span((int(seg.start), int(seg.end)), sents, "end", -1)
    assert TEXT[span[0]:span[1]] == "Café first. Second one 😀 here."
    did = coding.accept_span(project, sid, int(seg.id), X, span, "Ana")
    d = project.decisions().set_index("id").loc[did]
    assert (int(d.suggestion_id), int(d.span_start), int(d.span_end), d.origin) == (sid, *span, ORIGIN_SUGGESTION)
    assert coding.accept_span(project, sid, int(seg.id), X, span, "Ana") is None  # decided already
    row = export.codings_frame(project).iloc[0]
    assert (row.start, row.end, row.origin, row.confidence) == (*span, "suggestion", 0.8)
