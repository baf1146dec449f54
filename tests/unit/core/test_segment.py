import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import load_transcripts, parse_speaker_text
from coder_assist.core.segment import Segmenter, document_turns, sentence_spans
from tests.conftest import DEMO_DIR

TEXT = (
    "Interviewer: What helps?\n\n"
    "P1: Time helps. Money helps. Trust helps most. We built it slowly. It took two years. Then it worked. Yes.\n\n"
    "Interviewer: And the board?\n\n"
    "P1: They listened. Eventually.\n"
)


def transcript(text=TEXT):
    return Transcript("t1", text, parse_speaker_text(text))


def test_sentences():
    t = transcript()
    segs = Segmenter(unit="sentence").segments(t)
    assert [s.text for s in segs][:3] == ["Time helps.", "Money helps.", "Trust helps most."]
    assert all(s.speaker == "P1" for s in segs)  # interviewer turns are context, not coded
    assert len(segs) == 9


def test_turns():
    segs = Segmenter(unit="turn").segments(transcript())
    assert [s.text for s in segs] == [t.text for t in transcript().turns if t.speaker == "P1"]


def test_a_short_answer_is_one_passage():
    # 7 sentences but 20 words: one answer, never cut in two ("That signal from the top made
    # people take it seriously" must not become a passage of its own).
    segs = Segmenter(unit="window", window=3).segments(transcript())
    assert [s.text for s in segs] == [
        "Time helps. Money helps. Trust helps most. We built it slowly. It took two years. Then it worked. Yes.",
        "They listened. Eventually.",
    ]
    assert [s.turn_index for s in segs] == [1, 3]
    assert [s.index for s in segs] == [0, 1]


LONG = ("P1: " + " ".join(f"Sentence number {i} says quite a lot more than a few short words here." for i in range(1, 8)) + "\n")


def test_long_turns_are_windowed_at_sentence_bounds_and_absorb_short_tail():
    t = transcript(LONG)
    segs = Segmenter(unit="window", window=3).segments(t)
    turn = t.turns[0]
    sents = [(turn.start + a, turn.start + b) for a, b in sentence_spans(turn.text)]
    bounds = {a for a, _ in sents} | {b for _, b in sents}
    # 7 sentences, 91 words: 3 + 4 (a 1-sentence tail joins the window before it)
    assert [s.text.count("Sentence number") for s in segs] == [3, 4]
    assert all(s.start in bounds and s.end in bounds for s in segs)
    # Up to 4 sentences is short whatever the length.
    four = transcript("P1: " + " ".join(f"Sentence number {i} " + "word " * 30 + "end." for i in range(4)) + "\n")
    assert len(Segmenter().segments(four)) == 1
    # The limits are settings: nothing is short, so windows of 3 as before.
    assert len(Segmenter(short_sentences=1, short_words=0).segments(transcript())) == 3


def test_document_turns_make_every_paragraph_codable():
    # A comment export: one field per line, and one stray blank line in it.
    rows = ["video_id", "video_title", "PSZ: a title that is not a speaker", "Na mi van? Nem mertetek."] * 3
    text = "\r\n".join(rows[:6]) + "\r\n  \r\n" + "\r\n".join(rows[6:]) + "\r\nlast line"
    turns = document_turns(text)
    assert [text[t.start:t.end] for t in turns] == rows + ["last line"]
    assert all(t.speaker == "" and t.text == text[t.start:t.end] for t in turns)
    segs = Segmenter().segments(Transcript("d", text, turns))
    assert [(s.start, s.end) for s in segs] == [(t.start, t.end) for t in turns]
    # Hard-wrapped prose (blank lines between paragraphs) keeps its paragraphs whole.
    prose = "First line of a paragraph\nwrapped here.\n\nSecond paragraph\nalso wrapped.\n"
    assert [prose[t.start:t.end] for t in document_turns(prose)] == ["First line of a paragraph\nwrapped here.",
                                                                    "Second paragraph\nalso wrapped."]
    assert document_turns("") == [] and document_turns(" \n\n ") == []


def test_coded_speakers_configurable():
    t = transcript()
    segs = Segmenter(unit="turn", coded_speakers=frozenset({"Interviewer"})).segments(t)
    assert {s.speaker for s in segs} == {"Interviewer"}


def test_invalid_unit():
    with pytest.raises(ValueError, match="unit"):
        Segmenter(unit="paragraph")


def test_demo_offsets_and_size():
    ts = load_transcripts([DEMO_DIR])
    frame = Segmenter().frame(ts)
    # 218 passages since a short answer is one passage (283 in 3-sentence windows before).
    assert len(frame) >= 200
    by = {t.name: t for t in ts}
    for r in frame.itertuples():
        assert by[r.transcript].text[r.start : r.end] == r.text
    assert not frame["speaker"].str.lower().isin(["interviewer", "i", "note"]).any()


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc .?!\n\t\u00e9\u201c")), max_size=300))
def test_sentence_spans_index_text(text):
    for a, b in sentence_spans(text):
        assert 0 <= a < b <= len(text)
        assert text[a:b] == text[a:b].strip()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("Hello world. Why? Yes!\n")), min_size=1, max_size=80), min_size=1, max_size=6),
       st.sampled_from(["turn", "sentence", "window"]), st.integers(1, 4))
def test_segment_offsets_property(answers, unit, window):
    text = "".join(f"Interviewer: q{i}?\nP2: {a}\n" for i, a in enumerate(answers))
    t = transcript(text)
    for s in Segmenter(unit=unit, window=window).segments(t):
        assert text[s.start : s.end] == s.text
        turn = t.turns[s.turn_index]
        assert turn.start <= s.start and s.end <= turn.end


def test_projects_keep_the_segmentation_they_were_made_with(tmp_path):
    import json

    from coder_assist.app.pipeline import init_project, project_segmenter

    p = init_project(tmp_path / "new")
    assert (project_segmenter(p).short_words, project_segmenter(p).short_sentences) == (80, 4)
    # A project made before the word rule has no such key: its new transcripts are cut as before.
    with p.transaction():
        p._set_meta("segmenter", json.dumps({"unit": "window", "window": 3, "coded_speakers": None}))
    old = project_segmenter(p)
    assert old.short_words == 0 and [s.text for s in old.segments(transcript())][0] == "Time helps. Money helps. Trust helps most."
