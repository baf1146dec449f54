"""REFI-QDA round trip on the demo interviews: a project coded by two coders -> .qdpx ->
import into a fresh project reproduces the transcripts (byte-identical), the codes and every
coding (segment, code, coder, time); an independent reader (pyrefiqda) reads our files; the
CLI's init --template .qdc and import .qdpx work end to end."""

from __future__ import annotations

import json
import random
import tempfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from coder_assist.formats import refi
from coder_assist.app import importing
from coder_assist.cli import main
from coder_assist.formats.template import load_template
from coder_assist.app.pipeline import DEMO_DIR, import_files, init_project
from coder_assist.store.project import Project

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "refi"


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """The demo interviews with the default template, coded by Ann and Bob (no model needed)."""
    folder = tmp_path_factory.mktemp("refi") / "demo"
    p = init_project(folder)
    import_files(p, [DEMO_DIR])
    segs = list(p.segments().id)
    leaves = [c.id for c in p.template().leaves()]
    rng = random.Random(7)
    for sid in rng.sample(segs, 60):
        p.record_decision(int(sid), rng.choice(leaves), "accept", "Ann")
    for sid in rng.sample(segs, 40):
        p.record_decision(int(sid), rng.choice(leaves), "accept", "Bob")
        p.record_decision(int(sid), rng.choice(leaves), "reject", "Bob")
    p.undo_last("Ann")
    out = importing.export_qdpx(p, folder.parent / "demo.qdpx")
    yield p, out
    p.close()


def codings(p: Project) -> set[tuple]:
    cur = p.current_decisions()
    cur = cur[cur.action == "accept"]
    segs = p.segments().set_index("id")
    return {(segs.loc[r.segment_id, "transcript"], int(segs.loc[r.segment_id, "start"]), int(segs.loc[r.segment_id, "end"]),
             r.code_id, r.coder, r.created_at) for r in cur.itertuples()}


def texts(p: Project) -> dict[str, bytes]:
    return {name: text.encode("utf-8") for name, text in p.conn.execute("SELECT name, text FROM transcripts")}


def test_export_validates_against_the_refi_schema(coded):
    _, out = coded
    xsd = etree.XMLSchema(etree.parse(str(FIX / "Project.xsd")))
    with zipfile.ZipFile(out) as z:
        assert xsd.validate(etree.fromstring(z.read("project.qde"))), xsd.error_log
        assert sum(n.startswith("sources/") and n.endswith(".txt") for n in z.namelist()) == 9


def test_round_trip_reproduces_transcripts_codes_and_codings(coded, tmp_path):
    p, out = coded
    q = init_project(tmp_path / "fresh")
    rep = importing.import_qdpx(q, out)
    assert texts(q) == texts(p)  # byte-identical text
    assert q.attributes().sort_index().equals(p.attributes().sort_index())
    assert q.template().to_dict() == p.template().to_dict() and rep.codes_added == []
    want = codings(p)
    assert codings(q) == want and len(want) > 80
    assert rep.decisions_added == len(want) and rep.spans_exact == rep.spans_inexact + rep.spans_exact
    assert rep.spans_inexact == 0 and rep.spans_unmapped == 0 and set(rep.users) == {"Ann", "Bob"}
    # Rejects are not codings and do not travel.
    assert set(q.decisions().action) == {"accept"}


def test_round_trip_via_the_qdc_codebook(coded, tmp_path):
    p, out = coded
    qdc = refi.write_qdc(p.template(), tmp_path / "codes.qdc")
    q = init_project(tmp_path / "fresh", load_template(qdc))
    rep = importing.import_qdpx(q, out)
    assert rep.codes_added == [] and codings(q) == codings(p)


def test_independent_reader_parses_our_files(coded, tmp_path):
    pyrefiqda = pytest.importorskip("pyrefiqda", reason="pyrefiqda (test extra) is not installed")
    p, out = coded
    proj = pyrefiqda.RefiProject.load(out, extract_dir=tempfile.mkdtemp(dir=tmp_path))
    assert {u.name for u in proj.users.user} == {"Ann", "Bob"}
    by_name = {s.name: s for s in proj.sources.text_source}
    assert set(by_name) == set(texts(p))
    extract = next(tmp_path.iterdir())
    seen = set()
    users = {u.guid: u.name for u in proj.users.user}
    for name, src in by_name.items():
        raw = (extract / "sources" / src.plain_text_path.replace("internal://", "")).read_bytes()
        assert raw == texts(p)[name]  # CRLF kept where the transcript has it
        text = raw.decode("utf-8")
        for sel in src.plain_text_selection:
            assert text[sel.start_position:sel.end_position] == sel.name
            for c in sel.coding:
                seen.add((name, sel.start_position, sel.end_position, users[c.creating_user]))
    assert seen == {(t, s, e, coder) for t, s, e, _, coder, _ in codings(p)}
    book = pyrefiqda.RefiCodebook.load(refi.write_qdc(p.template(), tmp_path / "c.qdc"))
    assert len(book.codes.code) == len(p.template().roots())


def test_cli_init_from_qdc_and_import_qdpx(coded, tmp_path):
    p, out = coded
    runner = CliRunner()
    qdc = refi.write_qdc(p.template(), tmp_path / "codes.qdc")
    res = runner.invoke(main, ["init", str(tmp_path / "q"), "--template", str(qdc)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["import", str(tmp_path / "q"), str(out)])
    assert res.exit_code == 0, res.output
    assert "9 text source(s) added" in res.output and "0 inside or across passages" in res.output
    with Project.open(tmp_path / "q") as q:
        assert codings(q) == codings(p)
    # Unsafe input: one clean error line, exit 2, nothing changed.
    bomb = tmp_path / "bomb.qdpx"
    with zipfile.ZipFile(bomb, "w") as z:
        z.writestr("project.qde", '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><Project name="&a;"/>')
    with Project.open(tmp_path / "q") as q:
        before = list(q.conn.iterdump())
    res = runner.invoke(main, ["import", str(tmp_path / "q"), str(bomb)])
    assert res.exit_code == 2 and "bomb.qdpx" in res.output and "DTD" in res.output
    with Project.open(tmp_path / "q") as q:
        assert list(q.conn.iterdump()) == before
    res = runner.invoke(main, ["import", str(tmp_path / "q"), str(out), str(DEMO_DIR / "P1_LA_strategic.txt")])
    assert res.exit_code != 0 and "on their own" in res.output


def test_import_page_checks_then_imports_refi_uploads(coded, tmp_path):
    from ui.import_page import check_refi, do_refi_import

    p, out = coded
    q = init_project(tmp_path / "fresh")
    files = [("demo.qdpx", out.read_bytes()), ("codes.qdc", (FIX / "codebook.qdc").read_bytes())]
    before = list(q.conn.iterdump())
    rows = check_refi(q, files)
    assert [r["problem"] for r in rows] == [None, None]
    assert rows[0]["report"].decisions_added == len(codings(p)) and rows[1]["report"].codes_added
    assert list(q.conn.iterdump()) == before  # a check writes nothing
    bad = check_refi(q, [("../evil.qdpx", b"not a zip")])
    assert "not a .qdpx" in bad[0]["problem"]
    done = do_refi_import(q, files)
    assert not any(r["problem"] for r in done)
    assert codings(q) == codings(p) and "Enablers > Flexible hours" in {c.path_str for c in q.template().codes.values()}


# -- real exports made by NVivo itself (../shared/refi-qda/real, never committed) -----------------

REAL = Path(__file__).resolve().parents[3] / "shared" / "refi-qda" / "real"
REAL_FILES = {
    # file: (text sources, codes, codings, users)
    "nvivo-win12-oltas.qdpx": (1, 60, 97, 2),
    "nvivo-mac15-codebook.qdpx": (2, 262, 0, 2),
}
_P = "{urn:QDA-XML:project:1.0}"


def _g(v):
    return (v or "").strip("{}").lower()


def _qde_and_texts(path):
    with zipfile.ZipFile(path) as z:
        root = etree.fromstring(z.read([n for n in z.namelist() if n.endswith(".qde")][0]))
        names = {n.lower(): n for n in z.namelist()}
        texts = {}
        for src in root.iter(_P + "TextSource"):
            entry = "sources/" + src.get("plainTextPath")[len("internal://"):].lower()
            texts[_g(src.get("guid"))] = z.read(names[entry]).decode("utf-8-sig")  # NVivo for Windows writes a BOM
    return root, texts


def _codings(root):
    users = {_g(u.get("guid")): u.get("name") for u in root.iter(_P + "User")}
    return sorted((_g(src.get("guid")), int(sel.get("startPosition")), int(sel.get("endPosition")),
                   _g(c.find(_P + "CodeRef").get("targetGUID")), users[_g(c.get("creatingUser"))], _g(c.get("guid")))
                  for src in root.iter(_P + "TextSource") for sel in src.iter(_P + "PlainTextSelection") for c in sel.iter(_P + "Coding"))


def _codes(root):
    out = []
    for c in root.find(_P + "CodeBook").iter(_P + "Code"):
        d = c.find(_P + "Description")
        parent = c.getparent()
        out.append((_g(c.get("guid")), c.get("name"), c.get("isCodable"), c.get("color"), d.text if d is not None else None,
                    _g(parent.get("guid")) if parent.tag == _P + "Code" else None, parent.index(c)))
    return out


@pytest.mark.skipif(not REAL.is_dir(), reason="the real NVivo exports live in ../shared/refi-qda/real")
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_nvivo_export_comes_in_whole_and_goes_back_unchanged(name, tmp_path):
    n_sources, n_codes, n_codings, n_users = REAL_FILES[name]
    src = REAL / name
    runner = CliRunner()
    res = runner.invoke(main, ["init", str(tmp_path / "p"), "--from", str(src)])
    assert res.exit_code == 0, res.output
    assert f"{n_sources} text source(s) added" in res.output and f"{n_codings} of {n_codings} coding(s) imported" in res.output
    with Project.open(tmp_path / "p") as p:
        assert len(p.transcripts()) == n_sources and len(p.template().codes) == n_codes
        c = p.codings()
        assert len(c) == n_codings
        if n_codings:
            # Every coding sits on a real passage it overlaps.
            segs = p.segments().set_index("id")
            assert all(min(r.end, segs.loc[r.segment_id, "end"]) > max(r.start, segs.loc[r.segment_id, "start"]) for r in c.itertuples())
        out = importing.export_qdpx(p, tmp_path / "back.qdpx")
    a, texts_a = _qde_and_texts(src)
    b, texts_b = _qde_and_texts(out)
    xsd = etree.XMLSchema(etree.parse(str(REAL.parent / "Project.xsd")))
    assert xsd.validate(b), xsd.error_log
    assert texts_b == texts_a  # every source text identical
    # 100% of the codings: the same start, end, code and user (and GUIDs).
    assert _codings(b) == _codings(a) and len(_codings(a)) == n_codings
    # Every code's description, colour, flag and place in the tree (parent and position), by GUID.
    assert _codes(b) == _codes(a) and len(_codes(a)) == n_codes
    assert sorted((_g(u.get("guid")), u.get("name")) for u in b.iter(_P + "User")) == sorted(
        (_g(u.get("guid")), u.get("name")) for u in a.iter(_P + "User")) and len(list(a.iter(_P + "User"))) == n_users
    # The .docx of each source comes back as it came.
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(out) as zo:
        back = {n.lower(): n for n in zo.namelist()}
        for n in zi.namelist():
            if n.lower().endswith(".docx"):
                assert zo.read(back[n.lower()]) == zi.read(n)


@pytest.mark.skipif(not REAL.is_dir(), reason="the real NVivo exports live in ../shared/refi-qda/real")
def test_real_nvivo_export_into_a_project_with_its_own_template(tmp_path):
    """import into an existing project: codes match by GUID, then by path, the rest are added;
    every coding still arrives at its exact span."""
    p = init_project(tmp_path / "p")
    n_codes = len(p.template().codes)
    rep = importing.import_qdpx(p, REAL / "nvivo-win12-oltas.qdpx")
    assert rep.decisions_added == 97 and rep.spans_unmapped == 0 and len(rep.codes_added) == 60
    assert len(p.template().codes) == n_codes + 60
    a, _ = _qde_and_texts(REAL / "nvivo-win12-oltas.qdpx")
    b, _ = _qde_and_texts(importing.export_qdpx(p, tmp_path / "back.qdpx"))
    assert _codings(b) == _codings(a)


@pytest.mark.skipif(not REAL.is_dir(), reason="the real NVivo exports live in ../shared/refi-qda/real")
def test_docx_text_is_counted_as_nvivo_counts_it():
    """Where NVivo wrote both, our reading of the .docx (a 15,272-cell table) equals its plain
    text exactly, so offsets into a .docx-only source land where NVivo's do; the Mac file's empty
    .docx reads as its 1-byte text."""
    for name, newline in (("nvivo-win12-oltas.qdpx", "\r\n"), ("nvivo-mac15-codebook.qdpx", "\n")):
        with zipfile.ZipFile(REAL / name) as z:
            for n in z.namelist():
                if n.endswith(".docx"):
                    txt = z.read(n[:-5] + ".txt").decode("utf-8-sig")
                    assert refi._docx_text(z.read(n), REAL / name, n, newline) == txt, n


@pytest.mark.skipif(not REAL.is_dir(), reason="the real NVivo exports live in ../shared/refi-qda/real")
def test_a_project_started_from_a_real_nvivo_export_retrains(tmp_path):
    """A project started from NVivo has NVivo's codebook as its template, with no example
    excerpts: retraining on its imported codings used to fail in the n-gram featurizer."""
    from coder_assist.app.training import train_project
    from tests.reliability.workers import HashEncoder

    p, rep = importing.init_from_qdpx(tmp_path / "p", REAL / "nvivo-win12-oltas.qdpx")
    with p:
        assert rep.decisions_added == 97
        assert not any(c.examples for c in p.template().codes.values())
        version = train_project(p, HashEncoder())
        assert p.latest_model_version() == version
        card = json.loads(p.model_versions().set_index("id").loc[version, "card"])
        assert card["scorer"] == "learned" and card["n_decisions"] > 0 and card["n_labels"] >= 97
        assert len(p.suggestions(version)) > 0
