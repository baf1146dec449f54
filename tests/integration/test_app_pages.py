"""The Transcripts, Template and Import pages and the Review page's filters, driven with
AppTest on the tiny project of test_app.py (no browser, no model)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from coder_assist.app import edit, review
from coder_assist.store.project import Project
from tests.integration.test_app import APP, TIMEOUT, base_project, log, project_dir, shown_code, start  # noqa: F401
from tests.integration.test_revise import base_revise_project  # noqa: F401

MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"ui/pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def html_of(at: AppTest) -> str:
    """The page's HTML: st.html blocks and the HTML the Transcripts reading view is given."""
    views = [json.loads(c.proto.json_args).get("html", "") for c in at.get("component_instance")]
    return " ".join([h.value for h in at.get("html")] + views)


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def current(project_dir: Path, coder: str) -> list[tuple[int, str, str]]:
    with Project.open(project_dir) as p:
        cur = p.current_decisions(coder)
    return sorted((int(s), c, a) for s, c, a in zip(cur["segment_id"], cur["code_id"], cur["action"]))


def segments(project_dir: Path) -> pd.DataFrame:
    with Project.open(project_dir) as p:
        return p.segments()


# --------------------------------------------------------------------------- Transcripts


def test_transcripts_page_shows_codings_and_codes_by_hand(project_dir):
    with Project.open(project_dir) as p:
        first = review.next_suggestion(p, "Alex")
        review.decide(p, first["suggestion_id"], "accept", "Alex")
        review.add_code(p, first["segment_id"], LISTEN, "Bob")
    at = page(start("Alex"), "transcripts")
    doc = html_of(at)
    assert doc.count('class="ca-seg') == len(segments(project_dir)[lambda d: d["transcript"] == "t1_alpha"])
    assert "ca-bar" in doc and "ca-chip ca-pend" in doc  # a coding stripe and a pending suggestion
    assert "Listening · Bob" not in doc  # mine only by default
    at.radio(key="tr_whose").set_value("all").run()
    assert "Listening · Bob" in html_of(at)

    # Code a passage by hand: choose it, add a code, remove it, undo the removal.
    segs = segments(project_dir)
    target = int(segs[segs["transcript"] == "t1_alpha"].iloc[-1]["id"])
    at.selectbox(key="tr_segment").set_value(target).run()
    assert f'id="seg-{target}"' in html_of(at) and 'ca-seg ca-sel" id="seg-%d"' % target in html_of(at)
    at.selectbox(key="tr_add_code").set_value(TIME).run()
    at.button(key="tr_add").click().run()
    assert not at.exception, at.exception
    assert (target, TIME, "accept") in current(project_dir, "Alex")
    last = log(project_dir).iloc[-1]
    assert (last["coder"], last["note"]) == ("Alex", review.MANUAL_ADD_NOTE)
    at.button(key=f"tr_rm_{TIME}").click().run()
    assert (target, TIME, "reject") in current(project_dir, "Alex")
    at.button(key="tr_undo").click().run()
    assert (target, TIME, "accept") in current(project_dir, "Alex")
    assert list(log(project_dir)["action"])[-3:] == ["accept", "reject", "undo"]


def test_transcripts_page_decides_pending_suggestions_and_steps(project_dir):
    at = page(start("Alex"), "transcripts")
    at.button(key="tr_next_pending").click().run()
    seg = at.selectbox(key="tr_segment").value
    with Project.open(project_dir) as p:
        pend = review.segment_suggestions(p, seg)
    assert len(pend)
    sid = int(pend.iloc[0]["suggestion_id"])
    at.button(key=f"tr_acc_{sid}").click().run()
    assert log(project_dir).iloc[-1][["action", "suggestion_id", "coder"]].tolist() == ["accept", sid, "Alex"]
    at.button(key="tr_prev").click().run()
    assert at.selectbox(key="tr_segment").value != seg
    at.button(key="tr_next").click().run()
    assert at.selectbox(key="tr_segment").value == seg


def test_transcripts_page_needs_a_name_to_code(project_dir):
    at = page(start(), "transcripts")
    assert at.button(key="tr_add").disabled and at.selectbox(key="tr_add_code").disabled
    assert log(project_dir).empty


# --------------------------------------------------------------------------- Template


def test_template_merge_moves_decisions(project_dir):
    with Project.open(project_dir) as p:
        q = review.review_queue(p, "Alex")
        for sid in q["suggestion_id"]:
            review.decide(p, int(sid), "accept", "Alex")
        n_time = int((p.decisions()["code_id"] == TIME).sum())
    assert n_time
    at = page(start("Alex"), "template")
    at.selectbox(key="tpl_code").set_value(TIME).run()
    at.selectbox(key="tpl_merge_into").set_value(MONEY).run()
    assert any(f"({n_time} log entries, skips and undos included)" in w.value for w in at.warning)
    at.button(key="tpl_merge").click().run()
    assert not at.exception, at.exception
    assert any(f"{n_time} log entries moved" in s.value for s in at.success)
    decisions = log(project_dir)
    assert (decisions["code_id"] != TIME).all() and len(decisions) == 4
    with Project.open(project_dir) as p:
        assert TIME not in p.template().codes
        assert edit.history(p)[-1]["coder"] == "Alex"
    # The review page follows: no "Time" anywhere, progress intact.
    at.switch_page("ui/pages/review.py").run()
    assert not at.exception, at.exception


def test_template_split_reassigns_every_coded_passage(project_dir):
    with Project.open(project_dir) as p:
        time_sids = review.review_queue(p, "Alex", code_id=TIME)["suggestion_id"].tolist()
        for sid in time_sids:
            review.decide(p, int(sid), "accept", "Alex")
        coded = edit.split_segments(p, TIME)
    at = page(start("Alex"), "template")
    at.selectbox(key="tpl_code").set_value(TIME).run()
    at.text_input(key=f"tpl_split_name_{TIME}_0").input("Deadlines").run()
    at.text_input(key=f"tpl_split_desc_{TIME}_0").input("Dates imposed from outside.").run()
    at.text_input(key=f"tpl_split_name_{TIME}_1").input("Capacity").run()
    at.text_input(key=f"tpl_split_desc_{TIME}_1").input("Not enough hours.").run()
    assert at.button(key="tpl_split").disabled  # passages not assigned yet
    at.selectbox(key="tpl_split_bulk").set_value(1).run()
    at.button(key="tpl_split_bulk_go").click().run()
    at.button(key="tpl_split").click().run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        t = p.template()
        assert TIME not in t.codes and {"barriers/deadlines", "barriers/capacity"} <= set(t.codes)
    assert {(s, c) for s, c, _ in current(project_dir, "Alex") if s in coded} >= {(s, "barriers/capacity") for s in coded}
    assert (log(project_dir)["code_id"] != TIME).all()


def test_template_rename_add_code_and_example(project_dir):
    with Project.open(project_dir) as p:
        sid = review.review_queue(p, "Alex", code_id=LISTEN).iloc[0]["suggestion_id"]
        review.decide(p, int(sid), "accept", "Alex")
    at = page(start("Alex"), "template")
    at.selectbox(key="tpl_code").set_value(LISTEN).run()
    # Rename through the form: the id (and the decision) stay.
    at.text_input(key=f"tpl_name_{LISTEN}").input("Being heard")  # in a form: sent with the submit
    button(at, "Save").click().run()
    assert not at.exception, at.exception
    assert current(project_dir, "Alex") == [(current(project_dir, "Alex")[0][0], LISTEN, "accept")]
    with Project.open(project_dir) as p:
        assert p.template().codes[LISTEN].name == "Being heard"
    # Add the accepted passage as an example excerpt.
    at.button(key="tpl_add_example").click().run()
    with Project.open(project_dir) as p:
        ex = p.template().codes[LISTEN].examples[-1]
    assert "coded by Alex" in ex.source
    # Add a code under Enablers.
    at.text_input(key="tpl_new_name").input("Being thanked")
    at.text_area(key="tpl_new_desc").input("Staff are thanked.")
    button(at, "Add code").click().run()
    with Project.open(project_dir) as p:
        assert "enablers/being-thanked" in p.template().codes
    assert [h["op"] for h in edit.history(Project.open(project_dir))] == ["rename", "add_example", "add"]


def test_template_move_refuses_a_coded_leaf_as_parent(project_dir):
    at = page(start("Alex"), "template")
    at.selectbox(key="tpl_code").set_value(MONEY).run()
    at.selectbox(key="tpl_move_to").set_value("__top__").run()
    at.button(key="tpl_move").click().run()
    with Project.open(project_dir) as p:
        assert p.template().codes[MONEY].path == ("Money",)


def test_template_revise_tab_opens_and_adds_a_missing_code(base_revise_project, tmp_path, monkeypatch, base_encoder):
    """The Revise tab of the Template page (ui/revise.py) on the project of test_revise.py: the
    report is drawn only once its tab is open, and its "Add as a new code" changes the template."""
    import shutil

    import ui.common
    from tests.integration.test_revise import parking_ids

    folder = tmp_path / "proj"
    shutil.copytree(base_revise_project, folder)
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(folder))
    monkeypatch.setattr(ui.common, "get_encoder", lambda *a, **k: base_encoder)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.sidebar.text_input(key="coder_input").input("Alex").run()
    page(at, "template")
    assert [t.label for t in at.tabs][:7] == ["Edit", "Add example", "Add code", "Move", "Merge", "Split", "Revise"]
    assert not [b for b in at.button if b.key.startswith("rev_add_")]  # closed: no report computed

    at.session_state["tpl_tab"] = "Revise"
    at.run()
    assert not at.exception, at.exception
    with Project.open(folder) as p:
        first = min(parking_ids(p))
        before = set(p.template().codes)
    assert any("covers the whole template" in c.value for c in at.caption)
    assert f"rev_add_{first}" in [b.key for b in at.button]
    at.text_input(key=f"rev_name_{first}").input("Parking").run()
    at.selectbox(key=f"rev_parent_{first}").set_value("barriers").run()
    at.button(key=f"rev_add_{first}").click().run()
    assert not at.exception, at.exception
    assert any("Added the code Barriers > Parking" in s.value for s in at.success)
    with Project.open(folder) as p:
        added = [c for c in p.template().codes.values() if c.id not in before]
        assert [c.path_str for c in added] == ["Barriers > Parking"]
        assert edit.history(p)[-1]["coder"] == "Alex"
    assert at.session_state["tpl_tab"] == "Revise"  # the tab stays open after the edit


# --------------------------------------------------------------------------- Import


def test_import_checks_each_file_and_imports_all_or_nothing(project_dir):
    from ui import import_page

    good = ("t3_gamma.txt", b"Interviewer: Hi?\n\nP3: The budget was cut. We had no time.\n")
    empty = ("t4_empty.txt", b"")
    clash = ("t1_alpha.txt", b"Interviewer: Again?\n\nP1: Yes.\n")
    attrs = ("attributes.csv", b"transcript,site\nt3_gamma,South\nnobody,North\n")
    with Project.open(project_dir) as p:
        check = import_page.check_files(p, [good, empty, clash], attrs, "wave=2")
        problems = {r["file"]: r["problem"] for r in check["rows"]}
        assert problems["t3_gamma.txt"] is None and "empty" in problems["t4_empty.txt"] and "already in the project" in problems["t1_alpha.txt"]
        assert not check["ok"] and check["attr_unmatched"] == ["nobody"]
        assert import_page.status_table(check["rows"])["status"].tolist() == [
            "✓ ready", "✗ the file is empty", f"✗ {problems['t1_alpha.txt']}"]
        n_before = len(p.transcripts())
        with pytest.raises(Exception):
            import_page.do_import(p, [good, empty], attrs, "")
        assert len(p.transcripts()) == n_before  # nothing half-imported
        check = import_page.check_files(p, [good], attrs, "wave=2")
        assert check["ok"]
        done = import_page.do_import(p, [good], attrs, "wave=2")
        assert [t.name for t in done] == ["t3_gamma"]
        assert review.transcript_attributes(p, int(p.transcripts().set_index("name").loc["t3_gamma", "id"])) == {"site": "South", "wave": "2"}
        bad_extra = import_page.check_files(p, [("t5.txt", b"P5: ok.\n")], None, "oops")
        assert bad_extra["extra_problem"] and not bad_extra["ok"]
    assert import_page.safe_name("../../etc/passwd") == "passwd" and import_page.safe_name("C:\\x\\a.txt") == "a.txt"
    assert import_page.safe_name(".hidden") is None


def test_import_page_renders_and_lists_transcripts(project_dir):
    at = page(start("Alex"), "import_page")
    assert any("t1_alpha" in str(df.value) for df in at.dataframe)
    assert not at.button(key="imp_compute").disabled


# --------------------------------------------------------------------------- Review extras


def test_review_attribute_filter_and_per_code_counts(project_dir):
    with Project.open(project_dir) as p:
        p.conn.execute("INSERT INTO attributes(transcript_id, key, value) SELECT id, 'site', "
                       "CASE name WHEN 't1_alpha' THEN 'North' ELSE 'South' END FROM transcripts")
    at = start("Alex")
    at.selectbox(key="review_filter_attr::site").set_value("South").run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        expected = review.review_queue(p, "Alex", attributes={"site": "South"})
    assert shown_code(at) == expected.iloc[0]["code_path"].split(" > ")[-1]
    assert f"filters: {len(expected)} of {len(expected)} left" in at.get("progress")[0].proto.text
    at.toggle(key="review_per_code").set_value(True).run()
    per = at.dataframe[0].value
    assert list(per.columns[:3]) == ["code_path", "suggested", "accepted"] and per["suggested"].sum() == 4


def test_two_tabs_of_one_coder_never_double_count(project_dir):
    """Two browser tabs (sessions) of the same coder show the same suggestion; both press
    Accept. One decision is recorded; the second tab is told and moves on."""
    tab1, tab2 = start("Alex"), start("Alex")
    assert shown_code(tab1) == shown_code(tab2)
    tab1.button(key="btn_accept").click().run()
    tab2.button(key="btn_accept").click().run()
    assert not tab2.exception, tab2.exception
    assert list(log(project_dir)["action"]) == ["accept"]
    assert any("already decided" in i.value for i in tab2.info)
    assert shown_code(tab1) == shown_code(tab2)
    tab2.button(key="btn_reject").click().run()  # a different decision on the next one is fine
    assert list(log(project_dir)["action"]) == ["accept", "reject"]
    # Another coder is independent: same first suggestion, own decision.
    bob = start("Bob")
    bob.button(key="btn_accept").click().run()
    assert log(project_dir).groupby("coder").size().to_dict() == {"Alex": 2, "Bob": 1}


def test_reload_and_restart_lose_nothing(project_dir):
    """Decisions are on disk before the page moves on: a new session (a reload) and a server
    restart (fresh caches) show the same progress and the same next suggestion."""
    at = start("Alex")
    at.button(key="btn_accept").click().run()
    at.button(key="btn_skip").click().run()
    text = at.get("progress")[0].proto.text
    nxt = shown_code(at)
    reloaded = start("Alex")
    assert reloaded.get("progress")[0].proto.text == text and shown_code(reloaded) == nxt
    # A restart: the process-wide caches of coder_assist.app.review are gone.
    review._POOLS.clear()
    review._LOGS.clear()
    restarted = start("Alex")
    assert restarted.get("progress")[0].proto.text == text and shown_code(restarted) == nxt
    assert re.search(r"1 of 4 decided", text)
