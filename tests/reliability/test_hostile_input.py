"""Hostile and malformed input, property-based (hypothesis) and a corpus of nasty files made
here (nothing binary is committed).

Every parser either returns something whose offsets are exact, or raises one of the
documented error types (``coder_assist.core.errors.*``); a failed import leaves the project
database byte-for-byte unchanged (compared with ``iterdump``).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coder_assist.formats import transcripts as ingest
from coder_assist.core.template import parse_template
from coder_assist.formats.template import load_template
from coder_assist.core.errors import CoderAssistError, InputError, TemplateError
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import Project
from tests.conftest import DEMO_DIR

EXAMPLES = int(os.environ.get("CODER_ASSIST_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TRIED = {"inputs": 0}
SEGMENTER = Segmenter()


# --------------------------------------------------------------------------- valid seeds


def _docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    d = docx.Document()
    for p in paragraphs:
        d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


SEEDS: dict[str, bytes] = {
    ".txt": sorted(DEMO_DIR.glob("*.txt"))[0].read_bytes()[:3000],
    ".vtt": b"WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Interviewer>How did it start?\n\n"
            b"00:00:04.500 --> 00:00:09.000\n<v P3>We had no money for travel, so people stopped coming.\n",
    ".srt": b"1\n00:00:01,000 --> 00:00:04,000\nInterviewer: How did it start?\n\n"
            b"2\n00:00:04,500 --> 00:00:09,000\nP3: We had no money for travel, so people stopped coming.\n",
    ".csv": b"speaker,text,timestamp\nInterviewer,How did it start?,00:01\nP3,\"We had no money, so people stopped.\",00:02\n",
    ".docx": _docx_bytes(["Interviewer: How did it start?", "P3: We had no money for travel.", "P3: People stopped coming."]),
}


def mutate(data: bytes, rnd: random.Random, n: int) -> bytes:
    """Flip, insert, delete and duplicate bytes; cut the end off."""
    b = bytearray(data)
    for _ in range(n):
        op = rnd.randrange(5)
        i = rnd.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1:
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 8)))
        elif op == 2:
            del b[i : i + rnd.randrange(1, 16)]
        elif op == 3:
            j = rnd.randrange(len(b) + 1)
            b[i:i] = b[j : j + rnd.randrange(1, 64)]
        else:
            del b[rnd.randrange(len(b) + 1):]
    return bytes(b)


def check_transcript_file(data: bytes, suffix: str) -> None:
    """Read the bytes as a transcript file: exact offsets, or a documented error."""
    TRIED["inputs"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzzed{suffix}"
        path.write_bytes(data)
        try:
            t = ingest.read_transcript(path)
        except CoderAssistError as exc:
            assert "fuzzed" in str(exc)  # names the file
            return
    for turn in t.turns:
        assert t.text[turn.start : turn.end] == turn.text
    segs = SEGMENTER.segments(t)
    for s in segs:
        assert t.text[s.start : s.end] == s.text and s.start < s.end
    assert len(segs) <= max(1, len(t.text))


SUFFIXES = st.sampled_from(sorted(SEEDS))


@FUZZ
@given(suffix=SUFFIXES, data=st.binary(max_size=4096))
def test_random_bytes_as_any_format(suffix, data):
    check_transcript_file(data, suffix)


@FUZZ
@given(suffix=SUFFIXES, seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40))
def test_mutated_valid_files(suffix, seed, n):
    check_transcript_file(mutate(SEEDS[suffix], random.Random(seed), n), suffix)


# Speaker labels, control characters, right-to-left text, emoji, combining marks, lone
# surrogates are not encodable (so not in files), everything else is.
NASTY_TEXT = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=20),
        st.sampled_from(["\n", "\r\n", "\n\n", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u200f", "\u202e", "\ufeff",
                         "שלום ", "مرحبا ", "👩‍👩‍👧", "🏳️‍🌈", "e\u0301", "Interviewer: ", "P3: ", "[00:01:02] Ann: ", ": ", ". "]),
    ),
    max_size=60,
).map("".join)


@FUZZ
@given(text=NASTY_TEXT, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]))
def test_nasty_text_keeps_exact_offsets(text, encoding):
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    check_transcript_file(data, ".txt")


@FUZZ
@given(rows=st.lists(st.tuples(NASTY_TEXT, NASTY_TEXT), max_size=12))
def test_csv_transcripts_with_nasty_cells(rows):
    import csv

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["speaker", "text"])
    w.writerows(rows)
    check_transcript_file(buf.getvalue().encode("utf-8"), ".csv")


@FUZZ
@given(paragraphs=st.lists(NASTY_TEXT.map(lambda s: "".join(c for c in s if c.isprintable() or c in "\t")), max_size=8))
def test_docx_with_nasty_paragraphs(paragraphs):
    try:
        data = _docx_bytes(paragraphs)
    except ValueError:  # python-docx refuses XML-illegal characters itself
        return
    check_transcript_file(data, ".docx")


# --------------------------------------------------------------------------- attribute sheets


ATTR_SEED = b"transcript,sector,level\nP1_LA_strategic,LA,strategic\nP2_LA_operational,LA,operational\n"


def check_attributes(data: bytes) -> None:
    TRIED["inputs"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attributes.csv"
        path.write_bytes(data)
        try:
            table = ingest.read_attributes(path)
        except CoderAssistError as exc:
            assert "attributes.csv" in str(exc)
            return
        assert table.index.is_unique


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), st.integers(0, 2**32 - 1).map(lambda s: mutate(ATTR_SEED, random.Random(s), 20))))
def test_attribute_sheets(data):
    check_attributes(data)


# --------------------------------------------------------------------------- templates

TEMPLATE_SEED = load_template().to_yaml()[:6000]

YAML_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(
        st.sampled_from(["name", "codes", "children", "description", "examples", "parent", "id", "color", "include",
                         "exclude", "counter_examples", "exclusive", "text", "source", "x"]) | st.text(max_size=8),
        kids, max_size=6),
    max_leaves=30,
)


@FUZZ
@given(data=YAML_DATA)
def test_template_structures(data):
    TRIED["inputs"] += 1
    try:
        parse_template({"name": "t", "codes": data} if not isinstance(data, dict) else data, "fuzz.yaml")
    except TemplateError:
        pass


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30))
def test_mutated_template_yaml(seed, n, tmp_path_factory):
    TRIED["inputs"] += 1
    path = tmp_path_factory.mktemp("tpl") / "template.yaml"
    path.write_bytes(mutate(TEMPLATE_SEED.encode("utf-8"), random.Random(seed), n))
    try:
        load_template(path)
    except TemplateError as exc:
        assert "template.yaml" in str(exc)


def test_template_yaml_cannot_construct_objects(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(
        f"name: evil\ncodes:\n  - name: !!python/object/apply:os.system ['touch {marker}']\n    description: x\n"
        "  - name: !!python/object:collections.OrderedDict {}\n    description: y\n",
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match="evil.yaml"):
        load_template(path)
    assert not marker.exists()


# --------------------------------------------------------------------------- all or nothing


@pytest.fixture(scope="module")
def empty_project(tmp_path_factory):
    from coder_assist.app.pipeline import init_project

    folder = tmp_path_factory.mktemp("hostile") / "proj"
    init_project(folder).close()
    return folder


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), bad_suffix=SUFFIXES)
def test_failed_import_changes_nothing(empty_project, seed, bad_suffix):
    from coder_assist.app.pipeline import import_files

    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, Project.open(empty_project) as p:
        files = []
        for i, f in enumerate(sorted(DEMO_DIR.glob("*.txt"))[:3]):
            files.append(Path(tmp) / f"good{i}_{seed}.txt")
            files[-1].write_bytes(f.read_bytes())
        bad = Path(tmp) / f"bad_{seed}{bad_suffix}"
        bad.write_bytes(b"\x00\x01binary" if rnd.random() < 0.3 else mutate(SEEDS[bad_suffix], rnd, 60)[: rnd.randrange(1, 80)])
        files.insert(rnd.randrange(len(files) + 1), bad)
        before = list(p.conn.iterdump())
        TRIED["inputs"] += 1
        try:
            import_files(p, files)
        except CoderAssistError:
            assert list(p.conn.iterdump()) == before
        else:  # the "bad" file happened to be readable: then everything went in, together
            names = set(p.transcripts()["name"])
            assert {f.stem for f in files} <= names
            with p.transaction():
                p.conn.execute("DELETE FROM transcripts")


# --------------------------------------------------------------------------- nasty corpus


def _zip(entries: dict[str, bytes], compress=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _docx_with_document(xml: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """A real .docx whose word/document.xml is replaced."""
    with zipfile.ZipFile(io.BytesIO(SEEDS[".docx"])) as z:
        entries = {i.filename: z.read(i.filename) for i in z.infolist()}
    entries["word/document.xml"] = xml
    entries.update(extra or {})
    return _zip(entries)


W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def read_file(tmp_path: Path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    TRIED["inputs"] += 1
    return ingest.read_transcript(path)


def test_binary_as_txt(tmp_path):
    with pytest.raises(InputError, match="binary"):
        read_file(tmp_path, "image.txt", bytes(range(256)) * 64)


def test_truncated_docx(tmp_path):
    for cut in (10, len(SEEDS[".docx"]) // 2, len(SEEDS[".docx"]) - 10):
        with pytest.raises(InputError, match="docx"):
            read_file(tmp_path, f"cut{cut}.docx", SEEDS[".docx"][:cut])


def test_docx_zip_bomb(tmp_path):
    body = b" " * (ingest.MAX_DOCX_XML_BYTES + 1024)
    xml = b'<?xml version="1.0"?><w:document ' + W.encode() + b"><w:body><w:p><w:r><w:t>x</w:t></w:r></w:p>" + body + b"</w:body></w:document>"
    data = _docx_with_document(xml)
    assert len(data) < 2 * 2**20  # a small file ...
    with pytest.raises(InputError, match="limit"):  # ... that would unpack to over 100 MB
        read_file(tmp_path, "bomb.docx", data)


def test_docx_billion_laughs(tmp_path):
    ents = '<!ENTITY a0 "ha">' + "".join(f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    xml = f'<?xml version="1.0"?><!DOCTYPE w:document [{ents}]><w:document {W}><w:body><w:p><w:r><w:t>&a9;</w:t></w:r></w:p></w:body></w:document>'
    try:
        t = read_file(tmp_path, "laughs.docx", _docx_with_document(xml.encode()))
    except InputError:
        return
    assert len(t.text) < 10_000  # the entities were not expanded


def test_docx_external_entity_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-PARTICIPANT-LIST", encoding="utf-8")
    xml = (f'<?xml version="1.0"?><!DOCTYPE w:document [<!ENTITY xxe SYSTEM "file://{secret}">]>'
           f'<w:document {W}><w:body><w:p><w:r><w:t>P3: leaked &xxe; here</w:t></w:r></w:p>'
           f'<w:p><w:r><w:t>P3: more</w:t></w:r></w:p></w:body></w:document>')
    try:
        t = read_file(tmp_path, "xxe.docx", _docx_with_document(xml.encode()))
    except InputError:
        return
    assert "TOP-SECRET" not in t.text


def test_docx_path_traversal_entries_are_not_extracted(tmp_path):
    target = tmp_path.parent / "evil-written-by-docx.txt"
    data = _docx_with_document(
        f'<?xml version="1.0"?><w:document {W}><w:body><w:p><w:r><w:t>P3: fine</w:t></w:r></w:p></w:body></w:document>'.encode(),
        {"../evil-written-by-docx.txt": b"x", "/abs/evil.txt": b"x", "..\\..\\win.txt": b"x"},
    )
    try:
        read_file(tmp_path, "traversal.docx", data)
    except InputError:
        pass
    assert not target.exists()


def test_50_mb_transcript_is_refused_with_the_limit(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        line = b"P3: " + b"and then we talked about the budget again " * 20 + b"\n\n"
        while f.tell() < 50 * 2**20:
            f.write(line * 1000)
    TRIED["inputs"] += 1
    with pytest.raises(InputError, match=r"huge\.txt.*limit is 20 MB"):
        ingest.read_transcript(path)


def test_text_over_the_character_limit(tmp_path):
    # Under the byte limit (cp1252 bytes are one char each) but over the character limit.
    with pytest.raises(InputError, match="characters; the limit"):
        read_file(tmp_path, "long.txt", (b"P3: " + b"word " * 200 + b"\n\n") * (ingest.MAX_TEXT_CHARS // 1000 + 10))


def test_100k_line_csv(tmp_path):
    rows = "".join(f"{'Interviewer' if i % 2 else 'P3'},line {i} with a comma\\, and \"quotes\"\n" for i in range(100_000))
    t = read_file(tmp_path, "big.csv", ("speaker,text\n" + rows).encode("utf-8"))
    assert len(t.turns) == 100_000
    assert all(t.text[x.start : x.end] == x.text for x in t.turns[::997])
    sheet = tmp_path / "attributes.csv"
    sheet.write_text("transcript,site\n" + "".join(f"t{i},s{i % 7}\n" for i in range(100_000)), encoding="utf-8")
    assert len(ingest.read_attributes(sheet)) == 100_000


def test_mixed_encodings_and_control_characters(tmp_path):
    # UTF-8 text with one Windows-1252 byte: read as Windows-1252 (UTF-8 accents then show as
    # mojibake, but nothing is lost and the offsets are exact) ...
    data = "Interviewer: Café?\n\nP3: naïve — ok\x07\x1b[31m red txet\n\nP3: fine\n".encode("utf-8") + b"\x93quoted\x94\n"
    t = read_file(tmp_path, "mixed.txt", data)
    assert t.encoding == "cp1252" and t.text.endswith("\u201cquoted\u201d\n")
    for s in SEGMENTER.segments(t):
        assert t.text[s.start : s.end] == s.text
    # ... unless the bytes are not Windows-1252 either: then a clear refusal naming the file.
    with pytest.raises(InputError, match=r"mixed2\.txt: cannot decode"):
        read_file(tmp_path, "mixed2.txt", "P3: שלום 👩‍👩‍👧\n".encode("utf-8") + b"\x93quoted\x94\n")


def test_right_to_left_and_emoji_round_trip_through_the_project(tmp_path, empty_project):
    from coder_assist.app.pipeline import import_files

    text = "Interviewer: ما رأيك؟\n\nP3: الميزانية 👍🏽 was cut. שלום! e\u0301\u0301 ok.\n\nP3: ‮reversed‬ and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.\n"
    f = tmp_path / "rtl_emoji.txt"
    f.write_bytes(text.encode("utf-8"))
    dest = tmp_path / "proj"
    shutil.copytree(empty_project, dest)
    with Project.open(dest) as p:
        import_files(p, [f])
        tid = int(p.transcripts()["id"].iloc[0])
        stored = p.transcript_text(tid)
        assert stored == text
        for s in p.segments(tid).itertuples():
            assert stored[s.start : s.end] == s.text


def test_extremely_long_line_does_not_explode(tmp_path):
    line = ("word " * 200_000).strip()  # 1 MB, no sentence end
    t = read_file(tmp_path, "oneline.txt", f"P3: {line}\n".encode())
    segs = SEGMENTER.segments(t)
    assert 1 <= len(segs) <= 3
    assert all(t.text[s.start : s.end] == s.text for s in segs)


# --------------------------------------------------------------------------- REFI-QDA


refi = pytest.importorskip("coder_assist.formats.refi")
importing = pytest.importorskip("coder_assist.app.importing")


@pytest.fixture(scope="module")
def refi_seeds(tmp_path_factory, base_project):
    folder = tmp_path_factory.mktemp("refi")
    with Project.open(base_project) as p:
        qdc = refi.write_qdc(p.template(), folder / "codes.qdc").read_bytes()
        qdpx = importing.export_qdpx(p, folder / "proj.qdpx").read_bytes()
    return {"qdc": qdc, "qdpx": qdpx}


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 30), raw=st.booleans())
def test_fuzz_qdc(refi_seeds, seed, n, raw, tmp_path_factory):
    TRIED["inputs"] += 1
    rnd = random.Random(seed)
    data = rnd.randbytes(rnd.randrange(2000)) if raw else mutate(refi_seeds["qdc"], rnd, n)
    path = tmp_path_factory.mktemp("qdc") / "codes.qdc"
    path.write_bytes(data)
    try:
        refi.read_qdc(path)
    except CoderAssistError as exc:
        assert "codes.qdc" in str(exc)


@settings(max_examples=max(10, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 20), inner=st.booleans())
def test_fuzz_qdpx_import_all_or_nothing(refi_seeds, empty_project, seed, n, inner, tmp_path_factory):
    """Mutate the archive's bytes, or the project.qde inside an intact archive."""
    TRIED["inputs"] += 1
    rnd = random.Random(seed)
    if inner:
        with zipfile.ZipFile(io.BytesIO(refi_seeds["qdpx"])) as z:
            entries = {i.filename: z.read(i.filename) for i in z.infolist()}
        entries["project.qde"] = mutate(entries["project.qde"], rnd, n)
        data = _zip(entries)
    else:
        data = mutate(refi_seeds["qdpx"], rnd, n)
    path = tmp_path_factory.mktemp("qdpx") / "fuzzed.qdpx"
    path.write_bytes(data)
    with Project.open(empty_project) as p:
        before = list(p.conn.iterdump())
        try:
            importing.import_qdpx(p, path)
        except CoderAssistError:
            assert list(p.conn.iterdump()) == before
        else:
            with p.transaction():  # a harmless mutation imported cleanly: reset for the next example
                p.conn.execute("DELETE FROM decisions")
                p.conn.execute("DELETE FROM transcripts")


def test_qdpx_hostile_archives(tmp_path, empty_project, refi_seeds):
    with zipfile.ZipFile(io.BytesIO(refi_seeds["qdpx"])) as z:
        good = {i.filename: z.read(i.filename) for i in z.infolist()}
    cases = {
        "traversal": good | {"../../evil.txt": b"x"},
        "bomb": good | {"sources/bomb.txt": b"\0" * (60 * 2**20)},
        "xxe": good | {"project.qde": b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Project>&x;</Project>'},
        "laughs": good | {"project.qde": ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "ha">' + "".join(
            f'<!ENTITY a{i} "{"&a;" * 10 if i == 0 else ("&a" + str(i - 1) + ";") * 10}">' for i in range(8)) + ']><Project>&a7;</Project>').encode()},
    }
    with Project.open(empty_project) as p:
        before = list(p.conn.iterdump())
        for name, entries in cases.items():
            path = tmp_path / f"{name}.qdpx"
            path.write_bytes(_zip(entries))
            TRIED["inputs"] += 1
            with pytest.raises(InputError):
                importing.import_qdpx(p, path)
            assert list(p.conn.iterdump()) == before
    assert not (tmp_path.parent / "evil.txt").exists()
