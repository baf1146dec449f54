import io
import zipfile
from pathlib import Path

import docx
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coder_assist.core.errors import InputError
from coder_assist.formats.transcripts import (
    expand_inputs,
    load_transcripts,
    parse_attribute_options,
    parse_speaker_text,
    read_attributes,
    read_transcript,
)
from tests.conftest import DEMO_DIR


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return p


def assert_offsets(t):
    for turn in t.turns:
        assert t.text[turn.start : turn.end] == turn.text


@pytest.mark.parametrize(
    "line, speaker, ts",
    [
        ("Interviewer: How long have you worked here?", "Interviewer", None),
        ("I: How long?", "I", None),
        ("P3: About six years.", "P3", None),
        ("Participant 3: About six years.", "Participant 3", None),
        ("R: Yes.", "R", None),
        ("[00:01:02] Jo Bloggs: Right.", "Jo Bloggs", "00:01:02"),
        ("Jo Bloggs (00:01:02): Right.", "Jo Bloggs", "00:01:02"),
        ("00:01:02 Interviewer: Next one.", "Interviewer", "00:01:02"),
        ("INTERVIEWER: Upper case works.", "INTERVIEWER", None),
    ],
)
def test_speaker_label_forms(line, speaker, ts):
    turns = parse_speaker_text(line + "\n")
    assert [(t.speaker, t.timestamp) for t in turns] == [(speaker, ts)]
    assert turns[0].text == line.split(": ", 1)[1]


def test_header_continuation_and_colons_in_prose():
    text = (
        "# Interview 4, recorded 3 May\n\n"
        "Interviewer: What gets in the way?\n\n"
        "P4: Time, mostly. So the thing is: nobody has any.\n\n"
        "And a second paragraph of the same answer.\n\n"
        "Interviewer: Thanks.\n"
    )
    turns = parse_speaker_text(text)
    assert [t.speaker for t in turns] == ["Interviewer", "P4", "Interviewer"]
    assert turns[1].text.endswith("same answer.")
    assert "So the thing is: nobody" in turns[1].text
    for t in turns:
        assert text[t.start : t.end] == t.text


def test_one_off_capitalised_word_before_colon_is_not_a_speaker():
    text = "Interviewer: Go on.\nP1: We tried it.\nNote: it failed twice.\nInterviewer: Why?\n"
    turns = parse_speaker_text(text)
    assert [t.speaker for t in turns] == ["Interviewer", "P1", "Interviewer"]
    assert "Note: it failed" in turns[1].text


def test_text_without_labels_becomes_paragraph_turns():
    text = "First memo paragraph.\n\nSecond one\nover two lines.\n"
    turns = parse_speaker_text(text)
    assert [t.text for t in turns] == ["First memo paragraph.", "Second one\nover two lines."]
    assert all(t.speaker == "" for t in turns)


def test_demo_set_reads_every_format_with_attributes():
    ts = load_transcripts([DEMO_DIR])
    assert len(ts) == 9
    formats = {t.format for t in ts}
    assert formats == {"txt", "srt", "vtt", "csv"}
    by_name = {t.name: t for t in ts}
    assert by_name["P9_VCSE_frontline"].encoding == "cp1252"
    assert "\r\n" in by_name["P9_VCSE_frontline"].text  # stored exactly, CRLF kept
    assert by_name["P4_NHS_strategic"].turns[0].timestamp is not None
    assert by_name["P7_VCSE_strategic"].speakers() == ["Interviewer", "P7"]
    assert by_name["P5_NHS_operational"].attributes == {"participant": "P5", "sector": "NHS", "level": "Operational"}
    for t in ts:
        assert_offsets(t)
        assert len(t.turns) >= 30


def test_encodings(tmp_path):
    body = "Interviewer: Was it \u201cco-production\u201d \u2013 really?\nP1: Caf\u00e9 talk, mostly.\n"
    for name, data, enc in [
        ("utf8.txt", body.encode("utf-8"), "utf-8"),
        ("bom.txt", b"\xef\xbb\xbf" + body.encode("utf-8"), "utf-8-sig"),
        ("word.txt", body.encode("cp1252"), "cp1252"),
    ]:
        t = read_transcript(write(tmp_path, name, data))
        assert t.encoding == enc
        assert t.text == body
        assert [x.speaker for x in t.turns] == ["Interviewer", "P1"]


def test_docx(tmp_path):
    d = docx.Document()
    d.add_paragraph("Interview transcript")
    d.add_paragraph("Interviewer: Tell me about your team.")
    d.add_paragraph("P2: We are small. We share everything.")
    d.save(tmp_path / "t.docx")
    t = read_transcript(tmp_path / "t.docx")
    assert t.format == "docx"
    assert [(x.speaker, x.text) for x in t.turns] == [("Interviewer", "Tell me about your team."), ("P2", "We are small. We share everything.")]
    assert_offsets(t)


def test_vtt_voices_and_merge(tmp_path):
    vtt = (
        "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<v Interviewer>Hello.\n\n"
        "00:00:03.500 --> 00:00:06.000\n<v P7>First part\nof the answer.\n\n"
        "00:00:06.000 --> 00:00:08.000\n<v P7>Second part.\n"
    )
    t = read_transcript(write(tmp_path, "a.vtt", vtt))
    assert [(x.speaker, x.text, x.timestamp) for x in t.turns] == [
        ("Interviewer", "Hello.", "00:00:01.000"),
        ("P7", "First part of the answer. Second part.", "00:00:03.500"),
    ]
    assert t.text.startswith("Interviewer: Hello.\n\nP7: First part")
    assert_offsets(t)


def test_srt_inline_labels_and_unlabelled_continuation(tmp_path):
    srt = (
        "1\n00:00:01,000 --> 00:00:03,000\nInterviewer: Hello.\n\n"
        "2\n00:00:03,500 --> 00:00:06,000\nP6: It started badly.\n\n"
        "3\n00:00:06,000 --> 00:00:08,000\nThen it got better.\n"
    )
    t = read_transcript(write(tmp_path, "a.srt", srt))
    assert [(x.speaker, x.text) for x in t.turns] == [("Interviewer", "Hello."), ("P6", "It started badly. Then it got better.")]
    assert_offsets(t)


def test_csv_transcript(tmp_path):
    p = write(tmp_path, "c.csv", 'Speaker,Text\nInterviewer,"Hi, thanks."\nP8,"Well, yes."\n')
    t = read_transcript(p)
    assert [(x.speaker, x.text) for x in t.turns] == [("Interviewer", "Hi, thanks."), ("P8", "Well, yes.")]
    assert_offsets(t)


# ------------------------------------------------------------------ bad input: clear errors


def _truncated_docx(tmp_path) -> bytes:
    d = docx.Document()
    d.add_paragraph("P1: hello")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()[:700]


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.txt", b"", "empty"),
        ("blank.txt", b"  \n\n ", "empty"),
        ("binary.txt", bytes(range(256)) * 8, "binary"),
        ("broken.vtt", "WEBVTT\n\n00:00:0x.000 --> 00:00:04.000\nHello\n", "VTT"),
        ("arrows.vtt", "WEBVTT\n\n00:00:01.000 -> 00:00:04.000\nHello\n", "no VTT cues"),
        ("backwards.srt", "1\n00:00:05,000 --> 00:00:04,000\nP1: hi\n", "ends"),
        ("cols.csv", "who,what\nP1,hello\n", "'speaker' and 'text'"),
        ("notes.pdf", b"%PDF-1.4", "unsupported"),
    ],
)
def test_bad_files_name_the_file_and_problem(tmp_path, name, content, problem):
    p = write(tmp_path, name, content)
    with pytest.raises(InputError) as err:
        read_transcript(p)
    assert name in str(err.value)
    assert problem in str(err.value)


def test_truncated_docx(tmp_path):
    p = write(tmp_path, "cut.docx", _truncated_docx(tmp_path))
    with pytest.raises(InputError, match=r"cut\.docx.*(truncated|readable)"):
        read_transcript(p)


def test_docx_that_is_not_a_zip(tmp_path):
    p = write(tmp_path, "fake.docx", "Interviewer: not really a docx")
    with pytest.raises(InputError, match="fake.docx"):
        read_transcript(p)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([tmp_path / "nope.txt"])


def test_load_is_all_or_nothing(tmp_path):
    write(tmp_path, "good.txt", "Interviewer: Hi\nP1: Hello\n")
    write(tmp_path, "bad.txt", b"")
    with pytest.raises(InputError, match="bad.txt"):
        load_transcripts([tmp_path])


# ------------------------------------------------------------------ attributes


def test_attribute_sheet_and_options(tmp_path):
    a = write(tmp_path, "attributes.csv", "transcript,sector,level\nP1.txt,NHS,Strategic\nP2,VCSE,Front-line\n")
    df = read_attributes(a)
    assert df.loc["P1"].to_dict() == {"sector": "NHS", "level": "Strategic"}
    write(tmp_path, "P1.txt", "Interviewer: Hi\nP1: Hello\n")
    (t,) = load_transcripts([tmp_path / "P1.txt"], attributes=a, extra_attributes=parse_attribute_options(["site=North"]))
    assert t.attributes == {"sector": "NHS", "level": "Strategic", "site": "North"}


@pytest.mark.parametrize(
    "content, problem",
    [
        ("sector,level\nNHS,Strategic\n", "'transcript' column"),
        ("transcript,sector\nP1,NHS\nP1,VCSE\n", "more than once"),
        ("transcript\nP1\n", "no attribute columns"),
    ],
)
def test_bad_attribute_sheets(tmp_path, content, problem):
    with pytest.raises(InputError, match=problem):
        read_attributes(write(tmp_path, "attrs.csv", content))


def test_bad_attribute_option():
    with pytest.raises(InputError, match="key=value"):
        parse_attribute_options(["sector"])


# ------------------------------------------------------------------ property: offsets always valid

speaker = st.sampled_from(["Interviewer", "I", "P3", "Participant 12", "R", "Dr Smith", "[00:01:02] Ann", "Bob (01:02:03)"])
words = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=60)
newline = st.sampled_from(["\n", "\r\n", "\n\n", "\r\n\r\n"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(speaker, words, newline), min_size=1, max_size=12), st.text(max_size=30))
def test_turn_offsets_always_index_the_text(turns, header):
    text = header + "\n" + "".join(f"{s}: {w}{nl}" for s, w, nl in turns)
    for t in parse_speaker_text(text):
        assert text[t.start : t.end] == t.text
        assert t.text == t.text.strip() and t.text


def test_text_file_named_docx_says_what_it_is(tmp_path):
    p = write(tmp_path, "notes.docx", "Interviewer: saved as text\n\nP1: then renamed\n")
    with pytest.raises(InputError, match=r"notes\.docx.*not a Word \.docx.*rename it to \.txt"):
        read_transcript(p)


def test_outputs_are_never_read_as_transcripts(tmp_path):
    from coder_assist.formats.transcripts import is_tool_output

    write(tmp_path, "P1.txt", "Interviewer: Hi\n\nP1: Hello there\n")
    write(tmp_path, "P2.csv", "speaker,text\nP2,Hello\n")  # a transcript CSV: read
    write(tmp_path, "old-suggestions.csv", "transcript,speaker,start,end,text,code_path,code_id,rank,confidence\nP1,P1,0,5,Hello,A,a,1,0.5\n")
    write(tmp_path, "codings.csv", "\ufefftranscript,segment_id,code_id,status\nP1,1,a,accepted\n")
    write(tmp_path, "this-run.csv", "")
    assert is_tool_output(tmp_path / "old-suggestions.csv") and is_tool_output(tmp_path / "codings.csv")
    assert not is_tool_output(tmp_path / "P2.csv")
    files, _ = expand_inputs([tmp_path], exclude=[tmp_path / "this-run.csv"])
    assert [f.name for f in files] == ["P1.txt", "P2.csv"]
    with pytest.raises(InputError, match="output file of this run"):
        expand_inputs([tmp_path / "this-run.csv"], exclude=[tmp_path / "this-run.csv"])
    with pytest.raises(InputError, match="old-suggestions.csv.*not a transcript"):
        expand_inputs([tmp_path / "old-suggestions.csv"])
