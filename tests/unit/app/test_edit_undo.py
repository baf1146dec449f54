"""coder_assist.app.edit.undo_last_edit: a template edit undone puts back the template and
exactly the decisions the edit moved, and is recorded as an event (no model)."""

from __future__ import annotations

import pytest
import yaml

from coder_assist.app import edit, review
from coder_assist.core.errors import ProjectError
from coder_assist.core.template import parse_template
from tests.unit.app.test_edit import base_db, codes_of, project, queue_consistent, seg  # noqa: F401  (fixtures)
from tests.unit.app.test_review import LISTEN, MONEY, TIME


def code_of(project, ids) -> dict[int, str]:
    log = project.decisions().set_index("id")
    return {int(i): log.loc[int(i), "code_id"] for i in ids}


def active(project, code_id) -> int:
    return project.conn.execute("SELECT active FROM codes WHERE id = ?", (code_id,)).fetchone()[0]


def test_undo_merge_restores_the_template_and_moves_back_only_what_the_merge_moved(project):
    review.add_code(project, seg(project, 0), TIME, "ann")
    review.add_code(project, seg(project, 1), TIME, "bob")
    review.add_code(project, seg(project, 2), MONEY, "ann")
    before_tpl, before_log = project.template().to_dict(), project.decisions()
    time_ids = [int(i) for i in before_log.loc[before_log["code_id"] == TIME, "id"]]
    assert len(time_ids) == 2

    edit.apply_merge(project, TIME, MONEY, coder="ann")
    assert set(code_of(project, time_ids).values()) == {MONEY}
    review.add_code(project, seg(project, 3), MONEY, "ann")  # made after the merge: stays on Money
    new_id = int(project.decisions()["id"].max())
    assert edit.undoable_edit(project)["op"] == "merge"

    undone = edit.undo_last_edit(project, coder="ann")
    assert undone["op"] == "merge" and undone["index"] == len(edit.history(project)) - 2
    assert project.template().to_dict() == before_tpl
    assert code_of(project, time_ids) == {i: TIME for i in time_ids}
    assert code_of(project, [new_id]) == {new_id: MONEY}
    after = project.decisions()
    assert len(after) == len(before_log) + 1  # nothing deleted, only the post-merge decision added
    assert active(project, TIME) == 1
    last = edit.history(project)[-1]
    assert last["op"] == "undo" and last["undoes"] == undone["index"] and last["undone_op"] == "merge"
    assert sorted(last["moved_decisions"][TIME]) == sorted(time_ids) and last["coder"] == "ann"
    assert edit.history(project)[undone["index"]]["op"] == "merge"  # the merge stays in the history
    assert edit.undoable_edit(project) is None
    queue_consistent(project)
    per = review.progress(project, "ann")["per_code"].set_index("code_id")
    assert TIME in per.index


def test_undo_merge_takes_the_merge_review_items_off_the_list(project):
    edit.apply_update(project, MONEY, exclude="Lack of time is 'Time'.")
    edit.apply_merge(project, TIME, MONEY)
    assert edit.open_review(project)
    edit.undo_last_edit(project)
    assert edit.open_review(project) == []


def test_an_undo_event_made_since_follows_its_decision_back(project):
    review.add_code(project, seg(project, 0), TIME, "ann")
    did = int(project.decisions()["id"].max())
    edit.apply_merge(project, TIME, MONEY)
    review.undo_last(project, "ann")  # undoes the moved decision, on Money now
    edit.undo_last_edit(project)
    log = project.decisions()
    undo_row = log[log["undoes"] == did]
    assert list(undo_row["code_id"]) == [TIME]
    assert (seg(project, 0), TIME, "accept") not in codes_of(project)


def test_undo_split_returns_the_decisions_and_retires_the_parts(project):
    s0, s3 = seg(project, 0), seg(project, 3)
    review.add_code(project, s0, MONEY, "ann")
    review.add_code(project, s3, MONEY, "bob")
    before = project.template().to_dict()
    money_ids = [int(i) for i in project.decisions()["id"]]
    ids = edit.apply_split(project, MONEY, [edit.Part("Cuts", "c"), edit.Part("Grants", "g")], {s0: 0, s3: 1})
    edit.undo_last_edit(project)
    assert project.template().to_dict() == before
    assert set(code_of(project, money_ids).values()) == {MONEY}
    assert [active(project, c) for c in ids] == [0, 0]


def test_undo_refused_when_it_would_strand_decisions_made_since(project):
    review.add_code(project, seg(project, 0), MONEY, "ann")
    ids = edit.apply_split(project, MONEY, [edit.Part("Cuts", "c"), edit.Part("Grants", "g")], {seg(project, 0): 0})
    review.add_code(project, seg(project, 1), ids[1], "ann")  # on a part the undo would remove
    tpl, log, hist = project.template().to_dict(), project.decisions(), edit.history(project)
    with pytest.raises(ProjectError, match="Grants: 1"):
        edit.undo_last_edit(project)
    assert project.template().to_dict() == tpl and project.decisions().equals(log) and edit.history(project) == hist


def test_undo_goes_back_one_edit_at_a_time(project):
    t0 = project.template().to_dict()
    edit.apply_rename(project, LISTEN, "Being heard")
    t1 = project.template().to_dict()
    edit.apply_update(project, LISTEN, description="Heard and answered.")
    assert edit.undo_last_edit(project)["op"] == "update"
    assert project.template().to_dict() == t1
    assert edit.undo_last_edit(project)["op"] == "rename"
    assert project.template().to_dict() == t0
    with pytest.raises(ProjectError, match="no template edit to undo"):
        edit.undo_last_edit(project)
    assert [h["op"] for h in edit.history(project)] == ["rename", "update", "undo", "undo"]


def test_undo_refused_after_a_template_change_outside_the_edits(project):
    edit.apply_update(project, LISTEN, description="Heard and answered.")
    changed = parse_template({**project.template().to_dict(), "name": "Imported"})
    project.set_template(changed)  # as an import does: no history entry
    with pytest.raises(ProjectError, match="changed since"):
        edit.undo_last_edit(project)
    assert project.template().name == "Imported"


def test_undo_replace_returns_each_code_its_own_decisions(project):
    review.add_code(project, seg(project, 0), MONEY, "ann")
    review.add_code(project, seg(project, 1), TIME, "ann")
    log = project.decisions()
    by_code = {c: [int(i) for i in log.loc[log["code_id"] == c, "id"]] for c in (MONEY, TIME)}
    before = project.template().to_dict()
    new = parse_template(yaml.safe_load("""
name: New template
codes:
  - name: Resources
    description: Money or time.
  - name: Listening
    id: enablers/listening
    description: People feel heard.
"""), "new.yaml")
    assert edit.replace_template(project, new, {MONEY: "resources", TIME: "resources"}) == {"resources": 2}
    edit.undo_last_edit(project)
    assert project.template().to_dict() == before
    assert code_of(project, by_code[MONEY]) == {i: MONEY for i in by_code[MONEY]}
    assert code_of(project, by_code[TIME]) == {i: TIME for i in by_code[TIME]}
    assert active(project, "resources") == 0
