"""`coder-assist revise` and the Revise tab on a tiny project with an obvious missing topic:
four interviews about money, time and being listened to, where six passages talk about
parking, which the template has no code for. Real default model (use-multilingual-v3), hand-made
suggestions and decisions (recorded through the library, as the review app does)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from coder_assist.app import edit
from coder_assist.cli import main
from coder_assist.app.pipeline import import_files, init_project
from coder_assist.app.revise_project import propose_code, revise_project, to_json, to_markdown
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import Project

TEMPLATE = (Path(__file__).resolve().parents[1] / "fixtures" / "tiny_template.yaml").read_text(encoding="utf-8")
MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"

# (transcript, sector, level, [(text, gold)]): gold None = parking, which no code covers;
# "off-topic": small talk, one passage each, never suggested or decided (noise around the topic).
INTERVIEWS = [
    ("p1_nhs_strategic", "NHS", "Strategic", [
        ("The budget for the groups was cut again this spring.", MONEY),
        ("Parking at the hospital is a nightmare, the car park is always full.", None),
        ("We never have enough time to plan the sessions properly.", TIME),
        ("The board really listened to what the families told them.", LISTEN),
        ("The weather was lovely on the day of the summer fair.", "off-topic"),
    ]),
    ("p2_nhs_frontline", "NHS", "Front-line", [
        ("There is no money left for volunteers' expenses.", MONEY),
        ("I spent twenty minutes driving round the car park looking for a parking space.", None),
        ("Deadlines come too fast, there is no time to involve anyone.", TIME),
        ("Parking fees at the clinic car park put people off coming.", None),
        ("My daughter started at university in September.", "off-topic"),
    ]),
    ("p3_vcse_strategic", "VCSE", "Strategic", [
        ("Our funding was cut and the grant ended in March.", MONEY),
        ("People felt heard when the council listened to them.", LISTEN),
        ("Visitors cannot find parking near the centre, the car park is tiny.", None),
        ("The staff listened and changed the plan because of us.", LISTEN),
        ("We watched the football together on Saturday night.", "off-topic"),
    ]),
    ("p4_vcse_frontline", "VCSE", "Front-line", [
        ("There is never time for the groups to meet before a decision.", TIME),
        ("The car park charges went up again so parking costs a fortune.", None),
        ("Without parking for disabled visitors at the car park, people stay home.", None),
        ("A small budget that the group controls would help.", MONEY),
        ("I baked a cake for my neighbour's birthday.", "off-topic"),
    ]),
]


def _write(folder: Path) -> list[Path]:
    paths = []
    rows = []
    for name, sector, level, turns in INTERVIEWS:
        body = "\n\n".join(f"Interviewer: Tell me more.\n\nP: {text}" for text, _ in turns) + "\n"
        path = folder / f"{name}.txt"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
        rows.append({"transcript": name, "sector": sector, "level": level})
    pd.DataFrame(rows).to_csv(folder / "attributes.csv", index=False)
    return paths


@pytest.fixture(scope="module")
def base_revise_project(tmp_path_factory) -> Path:
    """Suggestions: each passage's gold code, except parking passages, which get Time (wrong) or
    nothing, and small talk, which gets nothing. Decisions by Alex: accepts on the coded passages; on parking, rejects Time; on two
    money passages a reject of Time and an accept of Money (what "Different code..." records)."""
    folder = tmp_path_factory.mktemp("revise")
    (folder / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    paths = _write(folder)
    project = init_project(folder / "proj", folder / "template.yaml", segmenter=Segmenter(unit="turn"))
    import_files(project, paths, attributes=folder / "attributes.csv")
    segs = project.segments()
    gold = {text: g for _, _, _, turns in INTERVIEWS for text, g in turns}
    assert set(segs["text"]) == set(gold), "one segment per participant turn"
    mv = project.add_model_version("test", "none")
    rows, parking_seen = [], 0
    for r in segs.itertuples():
        g = gold[r.text]
        if g == "off-topic":
            continue
        if g is None:
            parking_seen += 1
            if parking_seen % 3 == 0:
                continue  # two parking passages get no suggestion at all
            code = TIME
        else:
            code = TIME if g == MONEY and r.transcript in ("p1_nhs_strategic", "p2_nhs_frontline") else g
        rows.append({"segment_id": int(r.id), "code_id": code, "rank": 1, "confidence": 0.6, "similarity": 0.6,
                     "evidence": "", "evidence_source": "example", "evidence_similarity": 0.6})
    project.add_suggestions(mv, pd.DataFrame(rows))
    sugg = project.suggestions().set_index("segment_id")
    for r in segs.itertuples():
        g = gold[r.text]
        sid = int(sugg.loc[r.id, "suggestion_id"]) if r.id in sugg.index else None
        if g == "off-topic":
            continue
        if g is None:
            if sid is not None:
                project.record_decision(int(r.id), TIME, "reject", "Alex", suggestion_id=sid)
        elif sugg.loc[r.id, "code_id"] != g:
            project.record_decision(int(r.id), TIME, "reject", "Alex", suggestion_id=sid)
            project.record_decision(int(r.id), g, "accept", "Alex")
        else:
            project.record_decision(int(r.id), g, "accept", "Alex", suggestion_id=sid)
    project.close()
    return folder / "proj"


@pytest.fixture
def revise_dir(base_revise_project, tmp_path) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(base_revise_project, dest)
    return dest


def parking_ids(project: Project) -> set[int]:
    segs = project.segments()
    return set(segs.loc[segs["text"].str.contains("parking", case=False), "id"].astype(int))


def test_report_finds_the_missing_topic_the_confusion_and_the_coverage(revise_dir, base_encoder):
    with Project.open(revise_dir) as p:
        report = revise_project(p, base_encoder)
        parking = parking_ids(p)
    rev = report.revision
    assert rev.n_missed == 10  # parking: four rejected, two never suggested; four passages of small talk
    top = rev.missing[0]
    assert set(top.segment_ids) == parking
    assert "parking" in " ".join(top.words[:2]) and "car park" in " ".join(top.words[:3])
    assert all("park" in q.text for q in top.quotes) and 3 <= len(top.quotes) <= 5
    assert top.transcripts == {"p4_vcse_frontline": 2, "p2_nhs_frontline": 2, "p1_nhs_strategic": 1, "p3_vcse_strategic": 1}
    assert top.attributes["sector"] == {"NHS": 3, "VCSE": 3}

    pair = rev.confusions[0]
    assert (pair.code_a, pair.code_b) == (MONEY, TIME)
    assert (pair.rejected_a_chose_b, pair.rejected_b_chose_a) == (0, 2)
    assert (pair.model_a_coder_b, pair.model_b_coder_a, pair.passages) == (0, 2, 2)

    cov = rev.coverage
    assert cov.by == ["level", "sector"]
    assert list(cov.table.columns) == ["Front-line / NHS", "Front-line / VCSE", "Strategic / NHS", "Strategic / VCSE"]
    assert cov.table.loc[MONEY].tolist() == [1, 1, 1, 1]
    assert cov.table.loc[TIME].tolist() == [1, 1, 1, 0]
    assert cov.table.loc[LISTEN].tolist() == [0, 0, 1, 2]
    assert set(cov.gaps) == {(TIME, "Strategic / VCSE"), (LISTEN, "Front-line / NHS"), (LISTEN, "Front-line / VCSE")}
    assert rev.unused == []  # every code has passages from more than one participant

    md = to_markdown(report)
    assert "## 1. What the template misses" in md and "car park" in md and "| Barriers > Money | Barriers > Time | 0 | 2 |" in md
    data = to_json(report)
    assert data["missing"]["clusters"][0]["size"] == 6 and data["coverage"]["rows"][2]["counts"]["Strategic / VCSE"] == 2
    json.dumps(data)


def test_add_cluster_as_code_goes_through_the_template_edits(revise_dir, base_encoder):
    with Project.open(revise_dir) as p:
        report = revise_project(p, base_encoder)
        proposal = propose_code(report.revision.missing[0], report.template)
        assert proposal.parent_id in {"barriers", "enablers"} and len(proposal.examples) == 3
        from coder_assist.app.revise_project import add_code

        cid = add_code(p, proposal, coder="Alex")
        code = p.template().codes[cid]
        assert code.name == proposal.name and [e.text for e in code.examples] == proposal.examples
        assert edit.history(p)[-1]["op"] == "add" and edit.history(p)[-1]["code"] == cid


def test_cli_writes_markdown_and_json_and_names_a_missing_project(revise_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["revise", str(revise_dir), "--out", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "car park" in (tmp_path / "r.md").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["missing"]["passages_no_code_fits"] == 10
    res = runner.invoke(main, ["revise", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no project here" in res.output and str(tmp_path / "nowhere") in res.output
    res = runner.invoke(main, ["revise", str(revise_dir), "--by", "region"])
    assert res.exit_code == 2 and "no participant attribute 'region'" in res.output


def _revise_page(project_path: str) -> None:
    from coder_assist.ml.embed import load_encoder
    from coder_assist.store.project import Project
    from ui.revise import render_revise

    render_revise(Project.open(project_path), "Alex", encoder=load_encoder(cache=False))


def test_revise_tab_adds_a_cluster_as_a_new_code(revise_dir, base_encoder):
    at = AppTest.from_function(_revise_page, args=(str(revise_dir),), default_timeout=120).run()
    assert not at.exception, at.exception
    with Project.open(revise_dir) as p:
        parking = sorted(parking_ids(p))
        before = p.template()
    key = str(min(parking))  # the widgets of a cluster are keyed by its first passage
    first = min(parking)
    assert f"rev_add_{first}" in [w.key for w in at.button]
    assert "car park" in " ".join(m.value for m in at.markdown)
    at.text_input(key=f"rev_name_{key}").input("Parking").run()
    at.selectbox(key=f"rev_parent_{key}").set_value("barriers").run()
    at.button(key=f"rev_add_{key}").click().run()
    assert not at.exception, at.exception
    assert any("Added the code Barriers > Parking" in s.value for s in at.success)
    with Project.open(revise_dir) as p:
        after = p.template()
        hist = edit.history(p)
    new = [c for c in after.codes.values() if c.id not in before.codes]
    assert len(new) == 1 and new[0].path_str == "Barriers > Parking" and new[0].parent_id == "barriers"
    assert len(new[0].examples) == 3 and all("park" in e.text for e in new[0].examples)
    assert hist[-1]["op"] == "add" and hist[-1]["coder"] == "Alex"
    # The cluster now says where it went, and is not offered a second time.
    assert any("Added as Barriers > Parking" in s.value for s in at.success)
    assert f"rev_add_{key}" not in [w.key for w in at.button]

    # Sharpen the confused pair's notes side by side: both codes' include/exclude open for editing.
    at.button(key="rev_sharpen_btn_1").click().run()
    assert at.text_area(key="rev_exc_1_1").value == ""
    at.text_area(key="rev_exc_1_1").input("Not for money itself: use Money.")
    at.text_area(key="rev_inc_1_0").input("Budgets, grants, funding cuts.")
    next(b for b in at.button if b.label == "Save notes").click().run()
    assert not at.exception, at.exception
    assert any("Saved the notes of 2 code(s)" in s.value for s in at.success)
    with Project.open(revise_dir) as p:
        tpl = p.template()
        hist = edit.history(p)
    assert tpl.codes[TIME].exclude == "Not for money itself: use Money." and tpl.codes[MONEY].include == "Budgets, grants, funding cuts."
    assert [h["op"] for h in hist[-2:]] == ["update", "update"]

    # Merge the confused pair from the tab: Time's decisions move to Money.
    at.selectbox(key="rev_keep_1").set_value(MONEY).run()
    at.button(key="rev_merge_1").click().run()
    assert not at.exception, at.exception
    with Project.open(revise_dir) as p:
        assert TIME not in p.template().codes and MONEY in p.template().codes
        cur = p.current_decisions()
        hist = edit.history(p)
    assert (cur["code_id"] == TIME).sum() == 0 and hist[-1]["op"] == "merge" and hist[-1]["into"] == MONEY
    assert any("Merged:" in s.value for s in at.success)


def test_report_on_a_project_with_no_suggestions_or_decisions_yet(tmp_path, base_encoder):
    (tmp_path / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    paths = _write(tmp_path)
    with init_project(tmp_path / "proj", tmp_path / "template.yaml", segmenter=Segmenter(unit="turn")) as p:
        import_files(p, paths, attributes=tmp_path / "attributes.csv")
        report = revise_project(p, base_encoder)
    rev = report.revision
    assert rev.n_missed == rev.n_segments == 20  # nothing suggested: every passage is one no code fits yet
    assert rev.confusions == [] or all(c.passages == 0 for c in rev.confusions)  # only the template can speak
    assert [u.reason for u in rev.unused] == ["no accepted coding"] * 3
    assert int(rev.coverage.table.to_numpy().sum()) == 0 and rev.coverage.gaps == [] and rev.integrative == []
    assert "## 4. Coverage" in to_markdown(report)
