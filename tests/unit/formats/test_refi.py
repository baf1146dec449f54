"""REFI-QDA exchange (coder_assist.formats.refi): .qdc and .qdpx written valid against the REFI XSDs,
read back, stable GUIDs, offsets over CRLF and non-BMP text, and unsafe inputs refused without
touching the project."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree

from coder_assist.formats import refi
from coder_assist.app import importing
from coder_assist.core.template import parse_template
from coder_assist.formats.template import load_template
from coder_assist.core.errors import InputError
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.app.pipeline import init_project, project_segmenter
from coder_assist.core.segment import Segmenter
from tests.conftest import FIXTURES

FIX = FIXTURES / "refi"
NS = {"q": refi.PROJECT_NS}

TPL = parse_template({"name": "toy", "codes": [
    {"name": "Barriers", "description": "What gets in the way.", "color": "#c0392b", "children": [
        {"name": "Time", "description": "No time for it.", "include": "Apply to staffing too.",
         "examples": [{"text": "We never have the hours.", "source": "pt1"}, "Rota is full."],
         "counter_examples": ["We have time but no money."]},
        {"name": "Money", "description": "Budget problems."}]},
    {"name": "Talk", "description": "Kind of talk.", "exclusive": True, "children": [
        {"name": "Story", "description": "A story."}, {"name": "Opinion", "description": "An opinion."}]}]})

T1 = ("Interviewer: How is it going?\nP1: We never have the hours. The rota is full every week. Nobody can plan.\n"
      "Interviewer: And money?\nP1: The budget was cut again. We lost two posts. I think it is wrong.\n")
T2 = "Interviewer: Tell me.\nP2: Once we ran a group for carers. It went well. People came back.\n"


@pytest.fixture(scope="module")
def xsd():
    return {
        "project": etree.XMLSchema(etree.parse(str(FIX / "Project.xsd"))),
        "codebook": etree.XMLSchema(etree.parse(str(FIX / "Codebook.xsd"))),
    }


def make_project(folder: Path, template=TPL, texts=(("t1", T1, {"sector": "NHS", "level": "Strategic"}), ("t2", T2, {"sector": "VCSE"}))):
    p = init_project(folder, template, Segmenter(unit="sentence"))
    seg = project_segmenter(p)
    ts = [Transcript(n, t, parse_speaker_text(t), attributes=a) for n, t, a in texts]
    p.add_transcripts(ts, {t.name: seg.segments(t) for t in ts})
    return p


def code_decisions(p):
    segs = p.segments()
    ids = list(segs.id)
    tpl = p.template()
    time_, money, story = tpl.get("Time").id, tpl.get("Money").id, tpl.get("Story").id
    p.record_decision(ids[0], time_, "accept", "Ann")
    p.record_decision(ids[0], time_, "accept", "Bob")
    p.record_decision(ids[1], time_, "accept", "Ann")
    p.record_decision(ids[3], money, "accept", "Bob")
    p.record_decision(ids[4], money, "reject", "Ann")  # rejects are not codings
    p.record_decision(ids[2], money, "accept", "Ann")
    p.undo_last("Ann")  # undone: not exported
    p.record_decision(int(segs[segs.transcript == "t2"].id.iloc[0]), story, "accept", "Ann")
    return p


def qde_of(path) -> etree._Element:
    with zipfile.ZipFile(path) as z:
        return etree.fromstring(z.read("project.qde"))


def db_dump(p) -> list[str]:
    return list(p.conn.iterdump())


def make_qdpx(path: Path, qde: bytes | str, files: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("project.qde", qde)
        for name, data in (files or {}).items():
            z.writestr(name, data)
    return path


# ----------------------------------------------------------------------------- .qdc


def test_qdc_of_default_template_is_valid_and_reads_back_unchanged(tmp_path, xsd):
    tpl = load_template()
    out = refi.write_qdc(tpl, tmp_path / "codebook.qdc")
    doc = etree.parse(str(out))
    assert xsd["codebook"].validate(doc), xsd["codebook"].error_log
    codes = doc.getroot().findall(".//{urn:QDA-XML:codebook:1.0}Code")
    assert len(codes) == len(tpl.codes)
    codable = {c.get("name") for c in codes if c.get("isCodable") == "true"}
    assert codable == {c.name for c in tpl.leaves()}
    back = refi.read_qdc(out)
    # Descriptions, include/exclude notes, examples (with sources), counter-examples, colours and
    # the hierarchy all survive: they travel in the Description text.
    assert back.to_dict()["codes"] == tpl.to_dict()["codes"]
    assert back.name == tpl.name


def test_qdc_description_carries_examples_for_people_in_other_tools(tmp_path):
    out = refi.write_qdc(TPL, tmp_path / "toy.qdc")
    root = etree.parse(str(out)).getroot()
    time_el = [c for c in root.iter("{urn:QDA-XML:codebook:1.0}Code") if c.get("name") == "Time"][0]
    desc = time_el.find("{urn:QDA-XML:codebook:1.0}Description").text
    assert desc.startswith("No time for it.")
    assert 'Examples:\n- "We never have the hours." (source: pt1)\n- "Rota is full."' in desc
    assert "Include: Apply to staffing too." in desc
    back = refi.read_qdc(out)
    assert back.get("Talk").exclusive and back.get("Time").counter_examples[0].text == "We have time but no money."


def test_read_example_codebook_from_another_tool(xsd):
    assert xsd["codebook"].validate(etree.parse(str(FIX / "codebook.qdc")))
    tpl = load_template(FIX / "codebook.qdc")  # the .qdc suffix is recognised by load_template
    assert tpl.get("Barriers").children and not tpl.get("Barriers").is_leaf
    assert tpl.get("Barriers > Connectivity problems").description == "Unreliable broadband, dropped calls, VPN trouble."
    assert tpl.get("Barriers").description == "Anything that makes remote working harder."
    # non-codable node -> theme; a code without description gets its name as description
    enablers = tpl.get("Enablers")
    assert not enablers.is_leaf and enablers.color == "#27ae60"
    assert tpl.get("Flexible hours").description == "Flexible hours"
    assert {c.name for c in tpl.leaves()} == {"Connectivity problems", "Flexible hours"}


def test_read_qdc_refuses_wrong_root_and_bad_xml(tmp_path):
    bad = tmp_path / "x.qdc"
    bad.write_text('<?xml version="1.0"?><Project xmlns="urn:QDA-XML:project:1.0" name="x"/>')
    with pytest.raises(InputError, match=r"x\.qdc.*not a REFI-QDA codebook"):
        refi.read_qdc(bad)
    bad.write_text("<CodeBook><Codes>")
    with pytest.raises(InputError, match="not well-formed XML"):
        refi.read_qdc(bad)


# ----------------------------------------------------------------------------- .qdpx export


def test_qdpx_export_is_valid_and_complete(tmp_path, xsd):
    p = code_decisions(make_project(tmp_path / "p"))
    out = importing.export_qdpx(p, tmp_path / "p.qdpx")
    root = qde_of(out)
    assert xsd["project"].validate(root), xsd["project"].error_log
    users = {u.get("name"): u.get("guid") for u in root.findall("q:Users/q:User", NS)}
    assert set(users) == {"Ann", "Bob"}
    guid_user = {g: n for n, g in users.items()}
    # variables and cases from the attributes
    variables = {v.get("guid"): v.get("name") for v in root.findall("q:Variables/q:Variable", NS)}
    assert set(variables.values()) == {"level", "sector"}
    cases = root.findall("q:Cases/q:Case", NS)
    t1_case = [c for c in cases if c.get("name") == "t1"][0]
    vals = {variables[vv.find("q:VariableRef", NS).get("targetGUID")]: vv.find("q:TextValue", NS).text
            for vv in t1_case.findall("q:VariableValue", NS)}
    assert vals == {"level": "Strategic", "sector": "NHS"}
    # sources: exact text, UTF-8, in sources/<guid>.txt
    segs = p.segments()
    tpl = p.template()
    cur = p.current_decisions()
    want = {(r.transcript, r.start, r.end, tpl.codes[d.code_id].name, d.coder)
            for d in cur[cur.action == "accept"].itertuples() for r in segs[segs.id == d.segment_id].itertuples()}
    code_names = {c.get("guid"): c.get("name") for c in root.iter(f"{{{refi.PROJECT_NS}}}Code")}
    got = set()
    with zipfile.ZipFile(out) as z:
        for src in root.findall("q:Sources/q:TextSource", NS):
            g = src.get("guid")
            assert src.get("plainTextPath") == f"internal://{g}.txt"
            text = z.read(f"sources/{g}.txt").decode("utf-8")
            assert text == {"t1": T1, "t2": T2}[src.get("name")]
            for sel in src.findall("q:PlainTextSelection", NS):
                s, e = int(sel.get("startPosition")), int(sel.get("endPosition"))
                assert sel.get("name") == text[s:e]
                for c in sel.findall("q:Coding", NS):
                    assert c.get("creatingUser") == sel.get("creatingUser")
                    assert c.get("creationDateTime").endswith("Z")
                    got.add((src.get("name"), s, e, code_names[c.find("q:CodeRef", NS).get("targetGUID")], guid_user[c.get("creatingUser")]))
    assert got == want and len(got) == 5  # the reject and the undone accept are not codings


def test_guids_are_stable_across_exports_and_match_the_qdc(tmp_path):
    p = code_decisions(make_project(tmp_path / "p"))
    a = importing.export_qdpx(p, tmp_path / "a.qdpx")
    b = importing.export_qdpx(p, tmp_path / "b.qdpx")
    assert a.read_bytes() == b.read_bytes()
    guids = lambda root: sorted((el.tag, el.get("guid")) for el in root.iter() if el.get("guid"))  # noqa: E731
    ga = guids(qde_of(a))
    assert ga == guids(qde_of(b)) and len(ga) > 20
    # A new coding changes nothing else's GUID.
    p.record_decision(int(p.segments().id.iloc[5]), p.template().get("Time").id, "accept", "Cy")
    gc = set(guids(qde_of(importing.export_qdpx(p, tmp_path / "c.qdpx"))))
    assert set(ga) < gc
    qdc = refi.write_qdc(p.template(), tmp_path / "c.qdc")
    qdc_codes = {c.get("name"): c.get("guid") for c in etree.parse(str(qdc)).getroot().iter("{urn:QDA-XML:codebook:1.0}Code")}
    qde_codes = {c.get("name"): c.get("guid") for c in qde_of(a).iter(f"{{{refi.PROJECT_NS}}}Code")}
    assert qdc_codes == qde_codes
    # the project GUID lives in meta; another project gets other source GUIDs
    q = make_project(tmp_path / "q")
    src = lambda path: {s.get("guid") for s in qde_of(path).findall("q:Sources/q:TextSource", NS)}  # noqa: E731
    assert src(a).isdisjoint(src(importing.export_qdpx(q, tmp_path / "q.qdpx")))
    assert p.meta("refi_project_guid")


def test_machine_suggestions_only_on_request_and_clearly_separate(tmp_path, xsd):
    p = code_decisions(make_project(tmp_path / "p"))
    segs = p.segments()
    mv = p.add_model_version("test", "none")
    time_id, money_id = p.template().get("Time").id, p.template().get("Money").id
    p.add_suggestions(mv, pd.DataFrame([
        dict(segment_id=int(segs.id[0]), code_id=time_id, rank=1, confidence=0.9, similarity=0.5, evidence="e", evidence_source="s", evidence_similarity=0.5),  # decided
        dict(segment_id=int(segs.id[5]), code_id=money_id, rank=1, confidence=0.8, similarity=0.5, evidence="e", evidence_source="s", evidence_similarity=0.5),
        dict(segment_id=int(segs.id[6]), code_id=money_id, rank=1, confidence=0.3, similarity=0.5, evidence="e", evidence_source="s", evidence_similarity=0.5),
    ]))
    plain = qde_of(importing.export_qdpx(p, tmp_path / "plain.qdpx"))
    assert refi.MACHINE_USER not in {u.get("name") for u in plain.findall("q:Users/q:User", NS)}
    out = importing.export_qdpx(p, tmp_path / "m.qdpx", suggestions_threshold=0.5)
    root = qde_of(out)
    assert xsd["project"].validate(root), xsd["project"].error_log
    machine = [u.get("guid") for u in root.findall("q:Users/q:User", NS) if u.get("name") == refi.MACHINE_USER]
    assert len(machine) == 1
    msels = [s for s in root.iter(f"{{{refi.PROJECT_NS}}}PlainTextSelection") if s.get("creatingUser") == machine[0]]
    assert [(int(s.get("startPosition")), len(s.findall("q:Coding", NS))) for s in msels] == [(int(segs.start[5]), 1)]
    assert "NOT reviewed" in msels[0].find("q:Description", NS).text
    # Importing it back never turns machine suggestions into human coding.
    q = make_project(tmp_path / "q")
    rep = importing.import_qdpx(q, out)
    assert rep.machine_codings_skipped == 1 and refi.MACHINE_USER not in set(q.decisions().coder)


# ----------------------------------------------------------------------------- .qdpx import


def test_import_example_project_from_another_tool(tmp_path, xsd):
    qde = (FIX / "project.qde").read_bytes()
    assert xsd["project"].validate(etree.fromstring(qde))
    p = make_project(tmp_path / "p")
    n_before = len(p.decisions())
    rep = importing.import_qdpx(p, make_qdpx(tmp_path / "ex.qdpx", qde))
    assert rep.transcripts_added == 1 and rep.users == ["Analyst A"]
    # "Barriers" is a theme of the template already (matched by path): only the rest is added.
    assert set(rep.codes_added) == {"Barriers > Connectivity problems", "Enablers", "Enablers > Flexible hours"}
    tpl = p.template()
    assert tpl.get("Barriers > Connectivity problems").is_leaf and tpl.get("Time").is_leaf  # old codes kept
    assert p.attributes().loc["Interview 01", "Work pattern"] == "Hybrid"
    assert p.attributes().loc["Interview 01", "Days at home"] == "3"
    # Sentence segments: each selection lies inside one sentence (end excludes nothing here).
    d = p.decisions().iloc[n_before:]
    segs = p.segments().set_index("id")
    got = {(segs.loc[r.segment_id, "text"], tpl.codes[r.code_id].name, r.coder, r.created_at) for r in d.itertuples()}
    assert got == {
        ("The broadband drops out most afternoons, so video calls are hard.", "Connectivity problems", "Analyst A", "2024-05-01T10:10:00.000+00:00"),
        ("My manager is flexible about hours.", "Flexible hours", "Analyst A", "2024-05-01T10:11:00.000+00:00"),
    }
    assert rep.spans_exact == 1 and rep.spans_inexact == 1 and rep.decisions_added == 2


def _crlf_project(sel_start: int, sel_end: int, name: str) -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Project xmlns="urn:QDA-XML:project:1.0" name="crlf">
  <Users><User guid="11111111-1111-1111-1111-111111111111" name="Dee"/></Users>
  <CodeBook><Codes><Code guid="22222222-2222-2222-2222-222222222221" name="Barriers" isCodable="false">
    <Code guid="22222222-2222-2222-2222-222222222222" name="Money" isCodable="true"/></Code></Codes></CodeBook>
  <Sources>
    <TextSource guid="{{33333333-3333-3333-3333-333333333333}}" name="win" plainTextPath="internal://33333333-3333-3333-3333-333333333333.txt">
      <PlainTextSelection guid="44444444-4444-4444-4444-444444444444" name="{name}" startPosition="{sel_start}" endPosition="{sel_end}" creatingUser="11111111-1111-1111-1111-111111111111">
        <Coding guid="55555555-5555-5555-5555-555555555555" creatingUser="11111111-1111-1111-1111-111111111111" creationDateTime="2025-01-02T03:04:05Z"><CodeRef targetGUID="22222222-2222-2222-2222-222222222222"/></Coding>
      </PlainTextSelection>
    </TextSource>
  </Sources>
</Project>""".encode()


CRLF_TEXT = "Interviewer: Hello?\r\nP1: Fine.\r\n\r\nInterviewer: Money?\r\nP1: The budget was cut again.\r\n"


@pytest.mark.parametrize("counting", ["as stored (CRLF = 2)", "LF-normalised (CRLF = 1)"])
def test_crlf_source_offsets_land_on_the_same_text(tmp_path, counting):
    target = "The budget was cut again."
    text = CRLF_TEXT if counting.startswith("as stored") else CRLF_TEXT.replace("\r\n", "\n")
    s = text.index(target)
    qdpx = make_qdpx(tmp_path / "w.qdpx", _crlf_project(s, s + len(target), target),
                     {"Sources/33333333-3333-3333-3333-333333333333.txt": CRLF_TEXT.encode()})  # folder case differs too
    p = make_project(tmp_path / "p")
    rep = importing.import_qdpx(p, qdpx)
    tid = int(p.transcripts().set_index("name").loc["win", "id"])
    assert p.transcript_text(tid) == CRLF_TEXT  # stored byte-identical, CRLF kept
    d = p.decisions().iloc[-1]
    seg = p.segments().set_index("id").loc[d.segment_id]
    assert seg.text == target and d.coder == "Dee" and p.template().codes[d.code_id].name == "Money"
    assert d.code_id == p.template().get("Barriers > Money").id  # matched the template's code by path
    assert rep.codes_added == [] and rep.spans_exact == 1
    assert bool(rep.offset_adjusted_sources) == counting.startswith("LF")


def test_utf16_counted_offsets_after_an_emoji(tmp_path):
    text = "Interviewer: Hi 😀 there?\nP1: Great 🎉 day. The budget was cut again.\n"
    target = "The budget was cut again."
    s16 = len(text[: text.index(target)].encode("utf-16-le")) // 2
    qdpx = make_qdpx(tmp_path / "e.qdpx", _crlf_project(s16, s16 + len(target), target),
                     {"sources/33333333-3333-3333-3333-333333333333.txt": text.encode()})
    p = make_project(tmp_path / "p")
    rep = importing.import_qdpx(p, qdpx)
    seg = p.segments().set_index("id").loc[p.decisions().iloc[-1].segment_id]
    assert seg.text == target and rep.offset_adjusted_sources == ["win (UTF-16 units)"]


def test_reimport_of_own_export_adds_nothing_twice(tmp_path):
    p = code_decisions(make_project(tmp_path / "p"))
    n = len(p.decisions())
    out = importing.export_qdpx(p, tmp_path / "p.qdpx")
    rep = importing.import_qdpx(p, out)
    assert rep.transcripts_matched == 2 and rep.transcripts_added == 0
    assert rep.decisions_added == 0 and rep.already_present == 5 and rep.codes_added == []
    assert len(p.decisions()) == n


def test_sub_code_under_a_leaf_of_the_template_is_refused(tmp_path):
    qde = """<?xml version="1.0"?><Project xmlns="urn:QDA-XML:project:1.0" name="x"><CodeBook><Codes>
      <Code guid="22222222-2222-2222-2222-222222222222" name="Barriers" isCodable="true">
        <Code guid="22222222-2222-2222-2222-222222222223" name="Time" isCodable="true">
          <Code guid="22222222-2222-2222-2222-222222222224" name="Night shifts" isCodable="true"/></Code></Code>
      </Codes></CodeBook></Project>"""
    p = make_project(tmp_path / "p")
    before = db_dump(p)
    with pytest.raises(InputError, match=r"x\.qdpx.*'Barriers > Time'.*a theme"):
        importing.import_qdpx(p, make_qdpx(tmp_path / "x.qdpx", qde))
    assert db_dump(p) == before


# ----------------------------------------------------------------------------- unsafe input

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">]>
<Project xmlns="urn:QDA-XML:project:1.0" name="&lol9;"/>"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE Project [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Project xmlns="urn:QDA-XML:project:1.0" name="x"><Description>&xxe;</Description></Project>"""
OK_QDE = (FIX / "project.qde").read_bytes()


def _zip_with(tmp_path, entries: list[tuple[str, bytes]]) -> Path:
    path = tmp_path / "evil.qdpx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


UNSAFE = {
    "billion laughs": (lambda tmp: _zip_with(tmp, [("project.qde", BOMB.encode())]), "DTD or entities"),
    "billion laughs in UTF-16": (lambda tmp: _zip_with(tmp, [("project.qde", BOMB.replace('version="1.0"', 'version="1.0" encoding="utf-16"').encode("utf-16"))]), "DTD or entities"),
    "external entity": (lambda tmp: _zip_with(tmp, [("project.qde", XXE.encode())]), "DTD or entities"),
    "../ in an entry name": (lambda tmp: _zip_with(tmp, [("project.qde", OK_QDE), ("sources/../../evil.txt", b"x")]), r"unsafe path"),
    "absolute entry name": (lambda tmp: _zip_with(tmp, [("project.qde", OK_QDE), ("/etc/evil.txt", b"x")]), r"unsafe path"),
    "zip bomb (compression ratio)": (lambda tmp: _zip_with(tmp, [("project.qde", OK_QDE), ("sources/big.txt", b"\0" * (20 * 1024 * 1024))]), "zip bomb"),
    "not a zip": (lambda tmp: (tmp / "evil.qdpx").write_bytes(b"PK\x03\x04 nope") and tmp / "evil.qdpx", "not a .qdpx"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_input_is_refused_and_changes_nothing(tmp_path, case):
    make, problem = UNSAFE[case]
    p = code_decisions(make_project(tmp_path / "p"))
    before = db_dump(p)
    path = make(tmp_path)
    with pytest.raises(InputError, match=problem) as err:
        importing.import_qdpx(p, path)
    assert err.value.path == str(path)
    assert db_dump(p) == before


def test_zip_bomb_with_a_lying_size_header_is_capped(tmp_path, monkeypatch):
    # An entry that unpacks to more than its header declares: reading stops at the declared size.
    path = _zip_with(tmp_path, [("project.qde", OK_QDE)])
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("project.qde")
    declared = info.file_size
    # Patch the declared size in the local header (offset 22) and the central directory entry.
    small = (declared // 2).to_bytes(4, "little")
    raw[info.header_offset + 22: info.header_offset + 26] = small
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24: cd + 28] = small
    path.write_bytes(bytes(raw))
    p = make_project(tmp_path / "p")
    before = db_dump(p)
    with pytest.raises(InputError, match="project.qde"):
        importing.import_qdpx(p, path)
    assert db_dump(p) == before


def test_qdc_bomb_is_refused(tmp_path):
    bad = tmp_path / "bomb.qdc"
    bad.write_text(BOMB.replace("Project", "CodeBook"))
    with pytest.raises(InputError, match=r"bomb\.qdc.*DTD or entities"):
        refi.read_qdc(bad)


def test_clash_in_a_later_source_leaves_the_project_unchanged(tmp_path):
    # First source new, second clashes with an existing transcript of another text: nothing is written.
    p = make_project(tmp_path / "p")
    other = make_project(tmp_path / "o", texts=(("new one", T2, {}), ("t1", T2, {})))
    out = importing.export_qdpx(other, tmp_path / "o.qdpx")
    before = db_dump(p)
    with pytest.raises(InputError, match="'t1'.*different text"):
        importing.import_qdpx(p, out)
    assert db_dump(p) == before


def test_dry_run_reports_and_rolls_back(tmp_path):
    p = make_project(tmp_path / "p")
    before = db_dump(p)
    path = make_qdpx(tmp_path / "ex.qdpx", (FIX / "project.qde").read_bytes())
    dry = importing.import_qdpx(p, path, dry_run=True)
    assert db_dump(p) == before
    real = importing.import_qdpx(p, path)
    assert dry == real and real.decisions_added == 2


def test_import_qdc_adds_missing_codes_only(tmp_path):
    p = make_project(tmp_path / "p")
    rep = importing.import_qdc(p, FIX / "codebook.qdc")
    assert set(rep.codes_added) == {"Barriers > Connectivity problems", "Enablers", "Enablers > Flexible hours"}
    tpl = p.template()
    assert tpl.get("Barriers > Connectivity problems").description == "Unreliable broadband, dropped calls, VPN trouble."
    assert set(TPL.codes) < set(tpl.codes)
    assert importing.import_qdc(p, FIX / "codebook.qdc").codes_added == []


def test_form_feeds_and_emoji_export_valid_and_round_trip(tmp_path, xsd):
    # A form feed (PDF-extracted text) cannot appear in XML; the source file keeps it, and
    # offsets count characters (an emoji is one), so the round trip lands on the same text.
    text = "Interviewer: Hi?\nP1: Page one ends.\x0c Page two 🎉 starts. And so on.\r\nP1: More text here.\n"
    p = make_project(tmp_path / "p", texts=(("ff", text, {}),))
    for sid in p.segments().id:
        p.record_decision(int(sid), p.template().get("Time").id, "accept", "Ann")
    out = importing.export_qdpx(p, tmp_path / "ff.qdpx")
    assert xsd["project"].validate(qde_of(out))
    q = make_project(tmp_path / "q", texts=())
    rep = importing.import_qdpx(q, out)
    assert q.transcript_text(int(q.transcripts().id[0])) == text
    assert rep.spans_exact == len(p.segments()) and rep.offset_adjusted_sources == []
    key = lambda pr: sorted((r.start, r.end, r.text) for r in pr.segments().itertuples())  # noqa: E731
    assert key(q) == key(p)


def test_codings_on_a_retired_code_are_left_out_so_every_reference_resolves(tmp_path, xsd):
    p = code_decisions(make_project(tmp_path / "p"))
    d = TPL.to_dict()
    d["codes"][0]["children"] = [c for c in d["codes"][0]["children"] if c["name"] != "Money"]
    p.set_template(parse_template(d))  # "Money" keeps its decisions but leaves the template
    root = qde_of(importing.export_qdpx(p, tmp_path / "r.qdpx"))
    assert xsd["project"].validate(root)
    codes = {c.get("guid") for c in root.iter(f"{{{refi.PROJECT_NS}}}Code")}
    refs = [r.get("targetGUID") for r in root.iter(f"{{{refi.PROJECT_NS}}}CodeRef")]
    assert refs and set(refs) <= codes and len(refs) == 4  # 5 codings, 1 of them on Money


def test_utf16_offsets_without_names_are_recognised_when_they_overrun_the_text(tmp_path):
    # No selection names to check against: the reading that keeps the selection inside the text wins.
    text = "Interviewer: Hi 😀 there?\nP1: Great 🎉 day. The budget was cut again."
    target = "The budget was cut again."
    s16 = len(text[: text.index(target)].encode("utf-16-le")) // 2
    qde = _crlf_project(s16, s16 + len(target), "").replace(b' name=""', b"")
    qdpx = make_qdpx(tmp_path / "w.qdpx", qde, {"sources/33333333-3333-3333-3333-333333333333.txt": text.encode()})
    p = make_project(tmp_path / "p")
    rep = importing.import_qdpx(p, qdpx)
    assert rep.offset_adjusted_sources == ["win (UTF-16 units)"]
    assert p.segments().set_index("id").loc[p.decisions().iloc[-1].segment_id].text == target


def test_source_outside_the_archive_is_skipped_and_a_pathless_one_found_by_guid(tmp_path):
    qde = _crlf_project(0, 5, "").replace(
        b'plainTextPath="internal://33333333-3333-3333-3333-333333333333.txt"', b"").replace(
        b"</Sources>", b'<TextSource guid="66666666-6666-6666-6666-666666666666" name="ext" plainTextPath="absolute:///etc/passwd"/></Sources>')
    qdpx = make_qdpx(tmp_path / "x.qdpx", qde, {"sources/33333333-3333-3333-3333-333333333333.txt": T2.encode()})
    p = make_project(tmp_path / "p", texts=())
    rep = importing.import_qdpx(p, qdpx)
    assert list(p.transcripts().name) == ["win"] and rep.transcripts_added == 1
    # Never read, but kept as it is and written back: the export gives the other tool its source.
    assert rep.sources_kept == ["ext (TextSource with its text at absolute:///etc/passwd, outside the archive (not read); 0 coding(s) kept with it)"]
    assert "/etc/passwd" in p.exchange_items("other_source").data[0]["xml"] and "root:" not in str(p.exchange_items().data.tolist())
    # 0-5 is "Inter" of the interviewer's turn, on no passage: kept at its span, attached to the nearest passage.
    assert rep.spans_unmapped == 1 and rep.decisions_added == 1
    c = p.codings()
    assert (c.start.iloc[0], c.end.iloc[0]) == (0, 5) and p.transcript_text(int(c.transcript_id.iloc[0]))[0:5] == "Inter"
