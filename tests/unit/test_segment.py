import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coder_assist.formats.transcripts import load_transcripts, parse_speaker_text, Transcript
from coder_assist.core.segment import Segmenter, sentence_spans
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


def test_windows_stay_inside_turns_and_absorb_short_tail():
    segs = Segmenter(unit="window", window=3).segments(transcript())
    # 7 sentences in the first answer: 3 + 4 (a 1-sentence tail joins the window before it)
    assert [s.text for s in segs] == [
        "Time helps. Money helps. Trust helps most.",
        "We built it slowly. It took two years. Then it worked. Yes.",
        "They listened. Eventually.",
    ]
    assert [s.turn_index for s in segs] == [1, 1, 3]
    assert [s.index for s in segs] == [0, 1, 2]


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
    assert len(frame) >= 250  # "several hundred segments"
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
