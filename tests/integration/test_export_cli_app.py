"""`coder-assist export` and the app's Export page on a tiny project with attributes (no model)."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from docx import Document
from openpyxl import load_workbook
from streamlit.testing.v1 import AppTest

from coder_assist.app import review
from coder_assist.cli import main
from coder_assist.app.pipeline import import_files, init_project
from coder_assist.store.project import Project
from tests.integration.test_app import APP, CONFIDENCES, T1, T2, TEMPLATE, TIMEOUT
from ui import export as export_page


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export_app")
    (folder / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    (folder / "t1_alpha.txt").write_text(T1, encoding="utf-8")
    (folder / "t2_beta.txt").write_text(T2, encoding="utf-8")
    (folder / "attributes.csv").write_text("transcript,sector\nt1_alpha,NHS\nt2_beta,VCSE\n", encoding="utf-8")
    project = init_project(folder / "proj", folder / "template.yaml")
    import_files(project, [folder / "t1_alpha.txt", folder / "t2_beta.txt"], attributes=folder / "attributes.csv")
    segs = project.segments()
    mv = project.add_model_version("test", "none")
    rows = [{"segment_id": int(segs.iloc[i]["id"]), "code_id": code, "rank": 1, "confidence": conf, "similarity": conf,
             "evidence": "e", "evidence_source": "x", "evidence_similarity": conf} for i, (code, conf) in enumerate(CONFIDENCES)]
    project.add_suggestions(mv, pd.DataFrame(rows))
    first = review.next_suggestion(project, "Alex")
    review.decide(project, first["suggestion_id"], "accept", "Alex")
    review.decide(project, first["suggestion_id"], "accept", "Bea")
    project.close()
    return folder / "proj"


@pytest.fixture
def proj(base, tmp_path, monkeypatch) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(base, dest)
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(dest))
    return dest


def cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


# --------------------------------------------------------------------------- CLI


def test_cli_exports_every_codings_format(proj, tmp_path):
    code, out = cli("export", proj, "--format", "csv", "--out", tmp_path / "c.csv")
    assert code == 0 and "exported 2 codings" in out
    df = pd.read_csv(tmp_path / "c.csv", encoding="utf-8-sig")
    assert sorted(df["coder"]) == ["Alex", "Bea"] and set(df["status"]) == {"accepted"} and "sector" in df.columns

    code, out = cli("export", proj, "-f", "xlsx", "-o", tmp_path / "c.xlsx", "--include", "suggested", "--threshold", "0.5")
    assert code == 0, out
    rows = list(load_workbook(tmp_path / "c.xlsx")["Codings"].iter_rows(values_only=True))
    status = rows[0].index("status")
    # 4 suggestions, one accepted by two coders; of the other three, those at >= 0.5 (0.7 and 0.5).
    assert sorted(r[status] for r in rows[1:]) == ["accepted", "accepted", "suggested", "suggested"]

    code, out = cli("export", proj, "-f", "docx", "-o", tmp_path / "word")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "word").iterdir()) == ["t1_alpha.docx", "t2_beta.docx"]
    authors = [c.author for p in (tmp_path / "word").iterdir() for c in Document(str(p)).comments]
    assert sorted(authors) == ["Alex", "Bea"]

    code, out = cli("export", proj, "-f", "report", "-o", tmp_path / "rep", "--attribute", "sector")
    assert code == 0, out
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert "## Codes × sector" in md and "NHS (n=1)" in md and (tmp_path / "rep" / "heatmap.png").stat().st_size > 1000


def test_cli_and_page_export_a_hand_coded_span_at_its_offsets(proj, tmp_path):
    """A phrase coded by hand is exported as that phrase (start, end, text), not as its passage,
    by the CLI's CSV and XLSX, the Export page's CSV, and in Word as a comment on the phrase."""
    with Project.open(proj) as p:
        tid = int(p.transcripts().set_index("name").loc["t1_alpha", "id"])
        text = p.transcript_text(tid)
        seg = p.segments(tid).iloc[0]
        a = int(seg.start) + 4
        b = a + 12
        p.add_coding(tid, a, b, review.leaf_codes(p)[0][0], "Cy")
    code, out = cli("export", proj, "--format", "csv", "--out", tmp_path / "c.csv")
    assert code == 0 and "exported 3 codings" in out
    df = pd.read_csv(tmp_path / "c.csv", encoding="utf-8-sig", keep_default_na=False)
    cy = df[df["coder"] == "Cy"]
    assert cy[["start", "end", "text", "origin"]].values.tolist() == [[a, b, text[a:b], "by hand"]]
    assert len(text[a:b]) < len(str(seg.text))
    page_csv = pd.read_csv(io.BytesIO(export_page.build_file(proj, "csv", "accepted", None, [])), encoding="utf-8-sig",
                           keep_default_na=False)
    assert page_csv[page_csv["coder"] == "Cy"][["start", "end", "text"]].values.tolist() == [[a, b, text[a:b]]]
    code, out = cli("export", proj, "-f", "xlsx", "-o", tmp_path / "c.xlsx")
    rows = list(load_workbook(tmp_path / "c.xlsx")["Codings"].iter_rows(values_only=True))
    col = {name: i for i, name in enumerate(rows[0])}
    assert [(r[col["start"]], r[col["end"]], r[col["text"]]) for r in rows[1:] if r[col["coder"]] == "Cy"] == [(a, b, text[a:b])]
    code, out = cli("export", proj, "-f", "docx", "-o", tmp_path / "word")
    assert code == 0, out
    doc = Document(str(tmp_path / "word" / "t1_alpha.docx"))
    assert any(c.author == "Cy" for c in doc.comments)
    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    cid = next(str(c.comment_id) for c in doc.comments if c.author == "Cy")
    inside, anchored = False, ""
    for el in doc.element.body.iter():
        if el.tag == w + "commentRangeStart" and el.get(w + "id") == cid:
            inside = True
        elif el.tag == w + "commentRangeEnd" and el.get(w + "id") == cid:
            inside = False
        elif el.tag == w + "t" and inside:
            anchored += el.text or ""
    assert anchored == text[a:b]


def test_cli_errors_are_one_clean_line(proj, tmp_path):
    code, out = cli("export", proj, "-f", "report", "-o", tmp_path / "rep", "--attribute", "level")
    assert code == 2 and "error:" in out and "no attribute 'level'" in out and "Traceback" not in out
    code, out = cli("export", proj, "-f", "docx", "-o", tmp_path / "both.docx")
    assert code == 2 and "give a folder or a .zip" in out and not (tmp_path / "both.docx").exists()
    code, out = cli("export", tmp_path / "nowhere", "-f", "csv", "-o", tmp_path / "x.csv")
    assert code == 2 and "no project here" in out


def test_cli_refi_formats(proj, tmp_path):
    pytest.importorskip("coder_assist.formats.refi")
    code, out = cli("export", proj, "-f", "qdc", "-o", tmp_path / "t.qdc")
    assert code == 0, out
    assert b"Money" in (tmp_path / "t.qdc").read_bytes()
    code, out = cli("export", proj, "-f", "qdpx", "-o", tmp_path / "p.qdpx")
    assert code == 0, out
    with zipfile.ZipFile(tmp_path / "p.qdpx") as zf:
        qde = zf.read("project.qde").decode("utf-8")
    assert "Alex" in qde and "Bea" in qde
    code, out = cli("export", proj, "-f", "qdpx", "-o", tmp_path / "s.qdpx", "--include", "suggested")
    assert code == 0, out
    with zipfile.ZipFile(tmp_path / "s.qdpx") as zf:
        with_sugg = zf.read("project.qde").decode("utf-8")
    assert with_sugg.count("<Coding ") > qde.count("<Coding ")


# --------------------------------------------------------------------------- the page's files


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "docx", "report"])
def test_page_builds_each_download(proj, fmt):
    data = export_page.build_file(proj, fmt, "suggested", 0.0, ["sector"])
    if fmt == "csv":
        assert data.startswith("\ufefftranscript,sector,".encode("utf-8"))
    elif fmt == "xlsx":
        assert load_workbook(io.BytesIO(data)).sheetnames == ["Codings", "Codes", "About"]
    else:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = sorted(zf.namelist())
        expected = ["t1_alpha.docx", "t2_beta.docx"] if fmt == "docx" else [
            "code_frequencies.csv", "heatmap.png", "matrix_counts.csv", "matrix_share.csv", "quotes.csv", "report.md"]
        assert names == expected


# --------------------------------------------------------------------------- the page


def tables(at: AppTest) -> dict[str, pd.DataFrame]:
    """The preview's tables, in the order of its tabs (AppTest does not expose their keys)."""
    frames = [d.value for d in at.dataframe]
    assert len(frames) == 3
    return dict(zip(["share", "count", "freq"], frames))


def test_export_page_scope_counts_downloads_and_preview(proj):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("ui/pages/export.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Accepted codings"] == "2" and metrics["Machine suggestions"] == "–" and metrics["Coders"] == "2"
    assert at.radio(key=export_page.INCLUDE_KEY).value == "accepted"
    assert not [s for s in at.slider if s.key == export_page.THRESHOLD_KEY]
    assert at.multiselect(key=export_page.ATTRS_KEY).value == ["sector"]  # an attribute with few values
    downloads = at.get("download_button")
    assert len(downloads) == len(export_page.FORMATS)

    at.multiselect(key=export_page.ATTRS_KEY).set_value([]).run()
    assert not at.exception, at.exception
    assert list(tables(at)["share"].columns) == ["all transcripts (n=2)"]
    at.multiselect(key=export_page.ATTRS_KEY).set_value(["sector"]).run()
    shares = tables(at)["share"]
    assert list(shares.columns) == ["NHS (n=1)", "VCSE (n=1)"]
    assert int(shares.to_numpy().sum()) == 100  # the one coded passage, in one of the two transcripts
    assert len(at.get("image")) == 1  # the heatmap

    at.radio(key=export_page.INCLUDE_KEY).set_value("suggested").run()
    assert not at.exception, at.exception
    assert any("not a coder's judgement" in w.value for w in at.warning)
    assert {m.label: m.value for m in at.metric}["Machine suggestions"] == "3"
    at.slider(key=export_page.THRESHOLD_KEY).set_value(0.6).run()
    assert {m.label: m.value for m in at.metric}["Machine suggestions"] == "1"
    freq = tables(at)["freq"]
    assert freq["suggested_passages"].sum() == 1 and freq["accepted_passages"].sum() == 1


def test_export_page_with_nothing_accepted_says_what_to_do(proj):
    with Project.open(proj) as p:
        review.undo_last(p, "Alex")
        review.undo_last(p, "Bea")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("ui/pages/export.py").run()
    assert not at.exception, at.exception
    assert any("Nothing to export" in i.value for i in at.info)
