"""The Template page's "Undo last template edit", driven with AppTest on the tiny project of
test_app.py: merge two codes with the page's buttons, undo, and check the project database."""

from __future__ import annotations

from coder_assist.app import edit, review
from coder_assist.store.project import Project
from tests.integration.test_app import base_project, project_dir, start  # noqa: F401
from tests.integration.test_app_pages import page
from ui.template import tree_key

MONEY, TIME = "barriers/money", "barriers/time"


def test_merge_then_undo_restores_the_template_and_the_decisions(project_dir):
    with Project.open(project_dir) as p:
        for sid in review.review_queue(p, "Alex", code_id=TIME)["suggestion_id"]:
            review.decide(p, int(sid), "accept", "Alex")
        template_before = p.template().to_dict()
        log_before = p.decisions()[["id", "segment_id", "code_id", "action", "coder", "undoes"]]
        t = p.template()
    time_ids = sorted(int(i) for i in log_before.loc[log_before["code_id"] == TIME, "id"])
    assert time_ids, "the tiny project needs Time decisions for this test"

    at = page(start("Alex"), "template")
    assert not [b for b in at.button if b.key == "tpl_undo"]  # nothing to undo yet
    at.button(key=tree_key(t, TIME)).click().run()
    at.selectbox(key="tpl_merge_into").set_value(MONEY).run()
    at.button(key="tpl_merge").click().run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        assert TIME not in p.template().codes
        log = p.decisions().set_index("id")
        assert (log.loc[time_ids, "code_id"] == MONEY).all()

    undo = at.button(key="tpl_undo")
    assert "merge" in undo.label and "Time" in undo.label
    undo.click().run()
    assert not at.exception, at.exception
    assert any("Undone (merge)" in s.value for s in at.success)
    with Project.open(project_dir) as p:
        assert p.template().to_dict() == template_before
        log_after = p.decisions()[["id", "segment_id", "code_id", "action", "coder", "undoes"]]
        assert log_after.equals(log_before)  # every row back on its code; nothing added or deleted
        assert p.conn.execute("SELECT active FROM codes WHERE id = ?", (TIME,)).fetchone()[0] == 1
        hist = edit.history(p)
        assert [h["op"] for h in hist] == ["merge", "undo"]
        assert hist[1]["undoes"] == 0 and hist[1]["coder"] == "Alex"
        assert sorted(hist[1]["moved_decisions"][TIME]) == time_ids
        assert edit.open_review(p) == []  # the merge's review list went with it
    assert not [b for b in at.button if b.key == "tpl_undo"]
    assert "Barriers > Time" in at.selectbox(key="tpl_code").options  # the page shows the restored tree
    assert at.button(key=tree_key(t, TIME))
