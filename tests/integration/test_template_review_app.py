"""The Template page's code tree (click to select) and the review list a template edit leaves,
driven with AppTest on the tiny project of test_app.py, with the notes template of
tests/fixtures/notes_template.yaml (the same code ids), checking the project afterwards."""

from __future__ import annotations

from pathlib import Path

from coder_assist.app import edit, review
from coder_assist.formats.template import load_template
from coder_assist.store.project import Project
from tests.integration.test_app import base_project, project_dir, start  # noqa: F401
from tests.integration.test_app_pages import page
from ui.template import tree_key

MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"
NOTES = Path(__file__).resolve().parents[1] / "fixtures" / "notes_template.yaml"


def with_notes(project_dir: Path) -> None:
    with Project.open(project_dir) as p:
        p.set_template(load_template(NOTES))
        for sid in review.review_queue(p, "Alex", code_id=TIME)["suggestion_id"]:
            review.decide(p, int(sid), "accept", "Alex")


def test_tree_click_selects_the_code(project_dir):
    with_notes(project_dir)
    at = page(start("Alex"), "template")
    with Project.open(project_dir) as p:
        t = p.template()
    assert len([b for b in at.button if b.key and b.key.startswith("tpl_tree_")]) == len(t.codes)
    at.button(key=tree_key(t, TIME)).click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="tpl_code").value == TIME
    assert at.button(key=tree_key(t, TIME)).proto.type == "primary"
    assert at.button(key=tree_key(t, MONEY)).proto.type == "tertiary"
    assert [h.value for h in at.subheader][0] == "Time"
    at.button(key=tree_key(t, "enablers")).click().run()  # a theme opens too
    assert at.selectbox(key="tpl_code").value == "enablers"


def test_merge_shows_the_review_list_and_each_button_commits(project_dir):
    with_notes(project_dir)
    at = page(start("Alex"), "template")
    with Project.open(project_dir) as p:
        t = p.template()
    assert not [b for b in at.button if b.key and b.key.startswith("tpl_rv_")]  # nothing to review yet
    at.button(key=tree_key(t, TIME)).click().run()
    at.selectbox(key="tpl_merge_into").set_value(MONEY).run()
    at.button(key="tpl_merge").click().run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        items = edit.open_review(p)
        assert TIME not in p.template().codes and p.template().codes[MONEY].counter_examples == []
        assert (p.decisions()["code_id"] != TIME).all()
    assert len(items) == 7
    fixes = sorted(b.key for b in at.button if b.key and b.key.startswith("tpl_rv_fix_"))
    keeps = sorted(b.key for b in at.button if b.key and b.key.startswith("tpl_rv_keep_"))
    assert fixes == sorted(f"tpl_rv_fix_{i.id}" for i in items) and keeps == sorted(f"tpl_rv_keep_{i.id}" for i in items)
    shown = " ".join(h.value for h in at.get("html"))
    assert "as distinct from time to plan them" in shown and "Proposed:" in shown

    desc = next(i for i in items if i.code_id == MONEY and i.field == "description")
    at.button(key=f"tpl_rv_fix_{desc.id}").click().run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        assert p.template().codes[MONEY].description == desc.fix == "Funding is short for running sessions. Deadlines and capacity."
        last = edit.history(p)[-1]
        assert (last["op"], last["code"], last["coder"]) == ("review_fix", MONEY, "Alex")
    assert f"tpl_rv_fix_{desc.id}" not in {b.key for b in at.button}
    assert at.selectbox(key="tpl_code").value == MONEY
    # The edit form shows the fixed text, so saving it cannot bring the old one back.
    assert at.text_area(key=f"tpl_desc_{MONEY}").value == desc.fix
    next(b for b in at.button if b.label == "Save").click().run()
    with Project.open(project_dir) as p:
        assert p.template().codes[MONEY].description == desc.fix

    listen = next(i for i in items if i.code_id == LISTEN)
    at.button(key=f"tpl_rv_keep_{listen.id}").click().run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        assert p.template().codes[LISTEN].exclude == listen.text
        assert edit.history(p)[-1]["op"] == "review_keep"
        assert {i.id for i in edit.open_review(p)} == {i.id for i in items} - {desc.id, listen.id}
    assert f"tpl_rv_keep_{listen.id}" not in {b.key for b in at.button}

    # The list is the project's, not the page's: a fresh session shows what is left.
    at2 = page(start("Bob"), "template")
    assert sorted(b.key for b in at2.button if b.key and b.key.startswith("tpl_rv_keep_")) == sorted(
        f"tpl_rv_keep_{i.id}" for i in items if i.id not in {desc.id, listen.id})


def test_rename_updates_the_notes_and_says_so(project_dir):
    with_notes(project_dir)
    at = page(start("Alex"), "template")
    with Project.open(project_dir) as p:
        t = p.template()
    at.button(key=tree_key(t, TIME)).click().run()
    at.text_input(key=f"tpl_name_{TIME}").input("Deadlines")  # in a form: sent with the submit
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception, at.exception
    assert any("2 notes of other codes naming it in quotes now use the new name" in s.value for s in at.success)
    with Project.open(project_dir) as p:
        codes = p.template().codes
        assert codes[TIME].name == "Deadlines" and "use 'Deadlines'" in codes[MONEY].exclude
        assert {(i.code_id, i.field) for i in edit.open_review(p)} == {(LISTEN, "exclude"), ("barriers/time-to-reflect", "description")}


def test_history_table_has_no_none_cells(project_dir):
    with Project.open(project_dir) as p:
        edit.apply_update(p, MONEY, description="Funding is short.")  # an edit with no coder (as from a script)
    at = page(start("Alex"), "template")
    hist = at.dataframe[-1].value
    assert list(hist["what"]) == ["update"] and list(hist["who"]) == [""]
    assert not hist.isna().any().any()
