"""REFI-QDA import keeps everything and export gives it back, on a hand-made project with the
parts no real file here shows (notes, sets, links, cases and variables, PDF / audio / picture
sources, text only in a .docx, braced upper-case GUIDs, ATLAS.ti 26's <project>.qde and a
capitalised Sources/ folder), and MAXQDA 24's codes with descriptions on sources without
codings. See tests/fixtures/refi/kept/study.qde."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import docx
import pytest
from lxml import etree

from coder_assist.formats import refi
from coder_assist.app import importing
from coder_assist.core.errors import InputError
from coder_assist.store.project import Project
from tests.conftest import FIXTURES

FIX = FIXTURES / "refi"
NS = "{urn:QDA-XML:project:1.0}"
INTERVIEW = ("Interviewer: How is it going?\nP1: We never have the hours. The rota is full every week.\n"
             "Interviewer: And money?\nP1: The budget was cut again. We lost two posts.\n")
FIELD_NOTES = ["Tuesday, site visit.", "The car park was full again.", "Staff said so too."]
B = "bbbbbbbb-0000-4000-8000-00000000000"
OTHER_FILES = {f"Sources/{B}3.pdf": b"%PDF-1.4 not really a pdf\n", f"Sources/{B}4.m4a": b"\x00\x00\x00\x18ftypM4A audio",
               f"Sources/{B}5.jpg": b"\xff\xd8\xff\xe0 a picture", "Sources/99999999-0000-4000-8000-000000000002.txt": b"Memo text."}


def field_notes_docx() -> bytes:
    d = docx.Document()
    for p in FIELD_NOTES:
        d.add_paragraph(p)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


@pytest.fixture()
def study(tmp_path) -> Path:
    path = tmp_path / "study.qdpx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("study.qde", (FIX / "kept" / "study.qde").read_bytes())  # ATLAS.ti 26: not project.qde
        z.writestr(f"Sources/{B}1.txt", INTERVIEW.encode())
        z.writestr(f"Sources/{B}2.txt", b"\n")  # NVivo's 1-byte plain text: the text is only in the .docx
        z.writestr(f"Sources/{B}2.docx", field_notes_docx())
        for name, data in OTHER_FILES.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def xsd():
    return etree.XMLSchema(etree.parse(str(FIX / "Project.xsd")))


def qde(path: Path) -> etree._Element:
    with zipfile.ZipFile(path) as z:
        name = [n for n in z.namelist() if n.endswith(".qde")][0]
        return etree.fromstring(z.read(name))


def g(v: str | None) -> str:
    return (v or "").strip("{}").lower()


def codings_of(root) -> list[tuple]:
    users = {g(u.get("guid")): u.get("name") for u in root.iter(NS + "User")}
    return sorted((g(src.get("guid")), int(sel.get("startPosition")), int(sel.get("endPosition")), g(c.find(NS + "CodeRef").get("targetGUID")),
                   users[g(c.get("creatingUser"))], g(sel.get("guid")), g(c.get("guid")))
                  for src in root.iter(NS + "TextSource") for sel in src.findall(NS + "PlainTextSelection") for c in sel.findall(NS + "Coding"))


def codes_of(root) -> list[tuple]:
    out = []
    for c in root.find(NS + "CodeBook").iter(NS + "Code"):
        d = c.find(NS + "Description")
        parent = c.getparent()
        out.append((g(c.get("guid")), c.get("name"), c.get("isCodable"), c.get("color"), d.text if d is not None else None,
                    g(parent.get("guid")) if parent.tag == NS + "Code" else None))
    return out


def c14n(el) -> bytes:
    """Canonical XML, ignoring indentation between elements (a pretty-printer's, not data)."""
    el = etree.fromstring(etree.tostring(el, with_tail=False))
    for e in el.iter():
        if len(e) and e.text is not None and not e.text.strip():
            e.text = None
        if e.tail is not None and not e.tail.strip():
            e.tail = None
    return etree.tostring(el, method="c14n", with_tail=False)


def part(root, path: str) -> dict[str, bytes]:
    """Elements at ``path`` by GUID, canonical XML: what must come back unchanged."""
    return {g(e.get("guid") or e.get("targetGUID")): c14n(e) for e in root.findall(path)}


def test_import_keeps_every_part_and_says_so(study, tmp_path):
    p, rep = importing.init_from_qdpx(tmp_path / "p", study)
    assert rep.transcripts_added == 2 and rep.sources_from_docx == ["Field notes"]
    assert [s.split(" (")[0] for s in rep.sources_kept] == ["Policy paper", "Voice memo", "Site photo"]
    assert rep.codings_in_kept_sources == 1  # the PDF's coding travels with the PDF
    assert rep.users == ["Nobody coded", "Rita", "Sam"] == p.coders()  # users become coders, coded or not
    assert rep.kept == {"variables": 2, "cases": 1, "notes": 3, "links": 1, "sets": 1, "project Description": 1, "project NoteRef": 1, "files": 5}
    assert rep.codings_read == rep.decisions_added == 4 and rep.codings_on_themes == 1  # Sam coded the theme "Barriers"
    for line in ("Policy paper", "read from its .docx", "3 notes", "1 sets", "2 variables", "1 cases"):
        assert line in rep.summary()
    # The codebook is the template, nothing merged; two "Money" siblings both kept.
    tpl = p.template()
    assert [c.path_str for c in tpl.codes.values()] == ["Barriers", "Barriers > Time", "Barriers > Money", "Barriers > Money (2)", "Places"]
    assert tpl.get("Barriers").color == "#c0392b" and tpl.get("Barriers > Time").description.startswith("No time for it.")
    # Text only in the .docx, counted as NVivo counts it; the selection lands on its words.
    notes_id = int(p.transcripts().set_index("name").loc["Field notes", "id"])
    text = p.transcript_text(notes_id)
    assert text == "".join(f"{s}\n" for s in FIELD_NOTES)
    c = p.codings()
    got = {(p.transcript_text(int(r.transcript_id))[r.start:r.end], tpl.codes[r.code_id].path_str, r.coder) for r in c.itertuples()}
    assert got == {("We never have the hours.", "Barriers > Time", "Rita"), ("We never have the hours.", "Barriers", "Sam"),
                   (INTERVIEW[59:141], "Barriers > Money (2)", "Sam"), ("The car park was full again.", "Barriers > Money", "Sam")}
    assert set(c.origin) == {"imported from study.qdpx"}
    # A span across two answers is attached to the passage it overlaps most, and kept whole.
    segs = p.segments().set_index("id")
    across = c[c.end == 141].iloc[0]
    assert segs.loc[across.segment_id, "text"] == "We never have the hours. The rota is full every week."
    # Cases and variables: attributes here (a source's own value wins over its case's).
    attrs = p.attributes()
    assert attrs.loc["Interview 1", "Role"] == "Manager" and attrs.loc["Interview 1", "Years"] == "3"
    assert attrs.loc["Field notes", "Years"] == "7"


def test_export_gives_everything_back_valid(study, tmp_path, xsd):
    p, _ = importing.init_from_qdpx(tmp_path / "p", study)
    out = importing.export_qdpx(p, tmp_path / "back.qdpx")
    a, b = qde(study), qde(out)
    assert xsd.validate(b), xsd.error_log
    assert codings_of(b) == codings_of(a) and len(codings_of(a)) == 4  # span, code, user and GUIDs
    assert codes_of(b) == codes_of(a)  # name, flag, colour as written, description, place in the tree
    assert sorted(u.get("name") for u in b.iter(NS + "User")) == ["Nobody coded", "Rita", "Sam"]
    assert {g(u.get("guid")) for u in b.iter(NS + "User")} == {g(u.get("guid")) for u in a.iter(NS + "User")}
    for path in (f"{NS}Notes/{NS}Note", f"{NS}Sets/{NS}Set", f"{NS}Links/{NS}Link", f"{NS}Cases/{NS}Case", f"{NS}Variables/{NS}Variable",
                 f"{NS}Sources/{NS}PDFSource", f"{NS}Sources/{NS}AudioSource", f"{NS}Sources/{NS}PictureSource", f"{NS}Description", f"{NS}NoteRef"):
        assert part(b, path) == part(a, path) and part(a, path), path
    # A source's own description, note and value, a selection's description and note, and a
    # selection with a note only.
    src_a, src_b = ({g(e.get("guid")): e for e in r.iter(NS + "TextSource")}[B + "1"] for r in (a, b))
    for tag in ("Description", "NoteRef", "VariableValue"):
        assert [c14n(e) for e in src_b.findall(NS + tag)] == [c14n(e) for e in src_a.findall(NS + tag)]
    sels_a = {g(s.get("guid")): s for s in src_a.findall(NS + "PlainTextSelection")}
    sels_b = {g(s.get("guid")): s for s in src_b.findall(NS + "PlainTextSelection")}
    assert sels_b.keys() == sels_a.keys()
    for k, s in sels_a.items():
        for tag in ("Description", "NoteRef"):
            assert [c14n(e) for e in sels_b[k].findall(NS + tag)] == [c14n(e) for e in s.findall(NS + tag)]
        assert sels_b[k].get("name") == s.get("name")
    # Every file comes back: texts identical, the .docx and the sources we cannot code as they were.
    with zipfile.ZipFile(study) as zi, zipfile.ZipFile(out) as zo:
        names = {n.lower(): n for n in zo.namelist()}
        for n in zi.namelist():
            if n.endswith(".qde") or n == f"Sources/{B}2.txt":
                continue
            assert zo.read(names[n.lower()]) == zi.read(n), n
        assert zo.read(f"sources/{B}2.txt").decode() == "".join(f"{s}\n" for s in FIELD_NOTES)


def test_reimport_adds_nothing_twice_and_exports_the_same(study, tmp_path):
    p, _ = importing.init_from_qdpx(tmp_path / "p", study)
    first = importing.export_qdpx(p, tmp_path / "one.qdpx").read_bytes()
    n_items, n_dec = len(p.exchange_items()), len(p.decisions())
    for f in (study, tmp_path / "one.qdpx"):
        rep = importing.import_qdpx(p, f)
        assert rep.already_present == 4 and rep.decisions_added == 0 and rep.codes_added == [] and rep.transcripts_matched == 2
    assert len(p.decisions()) == n_dec
    assert importing.export_qdpx(p, tmp_path / "two.qdpx").read_bytes() == first
    assert len(p.exchange_items()) >= n_items


def test_codes_match_by_guid_before_path(study, tmp_path):
    p, _ = importing.init_from_qdpx(tmp_path / "p", study)
    tpl = p.template()
    d = tpl.to_dict()
    d["codes"][0]["children"][0]["name"] = "Hours"  # renamed here since: its GUID still matches
    from coder_assist.core.template import parse_template

    p.set_template(parse_template(d))
    rep = importing.import_qdpx(p, study)
    assert rep.codes_added == [] and rep.already_present == 4
    # The renamed code goes out under its new name, with the GUID it came with.
    b = qde(importing.export_qdpx(p, tmp_path / "back.qdpx"))
    names = {g(c.get("guid")): c.get("name") for c in b.iter(NS + "Code")}
    assert names["cccccccc-0000-4000-8000-000000000002"] == "Hours"


def test_a_broken_file_changes_nothing(study, tmp_path):
    bad = tmp_path / "bad.qdpx"
    with zipfile.ZipFile(study) as zi, zipfile.ZipFile(bad, "w") as zo:
        for n in zi.namelist():
            data = zi.read(n)
            if n.endswith(".qde"):
                data = data.replace(b'<CodeRef targetGUID="cccccccc-0000-4000-8000-000000000003"/>\n        </Coding>\n      </PlainTextSelection>\n    </TextSource>',
                                    b'<CodeRef targetGUID="12345678-0000-4000-8000-000000000000"/>\n        </Coding>\n      </PlainTextSelection>\n    </TextSource>')
                assert b"12345678" in data
            zo.writestr(n, data)
    with pytest.raises(InputError, match="bad.qdpx.*not in the codebook"):
        importing.init_from_qdpx(tmp_path / "new", bad)
    assert not (tmp_path / "new").exists()  # init --from: no half-made project left behind
    p, _ = importing.init_from_qdpx(tmp_path / "p", study)
    before = list(p.conn.iterdump())
    with pytest.raises(InputError, match="not in the codebook"):
        importing.import_qdpx(p, bad)
    assert list(p.conn.iterdump()) == before


MAXQDA = """<?xml version="1.0" encoding="utf-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="maxqda" origin="MAXQDA 24">
  <CodeBook><Codes>
    <Code guid="A1B2C3D4-0000-4000-8000-000000000001" name="Wellbeing" isCodable="true" color="#00FF00">
      <Description>How people feel at work.</Description>
      <Code guid="A1B2C3D4-0000-4000-8000-000000000002" name="Stress" isCodable="true"><Description>Pressure, strain.</Description></Code>
    </Code>
  </Codes></CodeBook>
  <Sources>
    <TextSource guid="A1B2C3D4-0000-4000-8000-0000000000AA" name="Answers">
      <PlainTextContent>Q1 answers
I feel stretched most weeks.
Work is fine.</PlainTextContent>
    </TextSource>
  </Sources>
</Project>
"""


def test_maxqda_codes_with_descriptions_and_a_source_without_codings(tmp_path, xsd):
    f = tmp_path / "m.qdpx"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("project.qde", MAXQDA)
    p, rep = importing.init_from_qdpx(tmp_path / "p", f)
    assert rep.transcripts_added == 1 and rep.codings_read == 0 and rep.sources_in_full == ["Answers"]
    # Survey answers without speaker labels: every line is a passage to code.
    assert p.segments().text.tolist() == ["Q1 answers", "I feel stretched most weeks.", "Work is fine."]
    assert p.template().get("Stress").description == "Pressure, strain."
    b = qde(importing.export_qdpx(p, tmp_path / "back.qdpx"))
    assert xsd.validate(b), xsd.error_log
    assert codes_of(b) == codes_of(etree.fromstring(MAXQDA.encode()))


def test_a_hand_coded_span_across_passages_is_exported_at_its_offsets(tmp_path, xsd):
    from coder_assist.app.pipeline import import_files, init_project

    src = tmp_path / "t.txt"
    src.write_text(INTERVIEW, encoding="utf-8")
    p = init_project(tmp_path / "p", None)
    import_files(p, [src])
    tid = int(p.transcripts().id[0])
    a, b = INTERVIEW.index("hours. The rota"), INTERVIEW.index(" We lost")  # from one answer into the next
    code = p.template().leaves()[0].id
    p.add_coding(tid, a, b, code, "Ann")
    root = qde(importing.export_qdpx(p, tmp_path / "x.qdpx"))
    assert xsd.validate(root), xsd.error_log
    sels = [(int(s.get("startPosition")), int(s.get("endPosition")), s.get("name")) for s in root.iter(NS + "PlainTextSelection")]
    assert sels == [(a, b, INTERVIEW[a:b])]
    # ... and comes back at the same offsets.
    q = init_project(tmp_path / "q", None)
    importing.import_qdpx(q, tmp_path / "x.qdpx")
    c = q.codings()
    assert [(int(r.start), int(r.end), r.code_id, r.coder) for r in c.itertuples()] == [(a, b, code, "Ann")]


def test_speaker_labels_count_only_in_a_transcript():
    wrapped = "".join(f"Interviewer: Question {i} about the\nproject and its money?\n\nP1: An answer that runs over\n"
                      f"several lines because the\ntranscriber wrapped it at\nforty columns.\n\n" for i in range(5))
    turns, labelled = refi.source_turns(wrapped, "w")
    assert labelled and {t.speaker for t in turns} == {"Interviewer", "P1"}
    # A comment export whose titles read "PSZ: ...": a few "labels" among thousands of lines.
    rows = "".join(f"id{i}\r\n{'PSZ: a video title' if i % 10 == 0 else 'A video title'}\r\n@user{i}\r\nComment number {i} says something.\r\n"
                   for i in range(40))
    turns, labelled = refi.source_turns("video_id\r\n" * 100 + rows, "c")
    assert not labelled and all(t.speaker == "" for t in turns) and len(turns) == 100 + 160
