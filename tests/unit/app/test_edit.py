"""coder_assist.app.edit: template edits, and decisions following them (no model)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from coder_assist.app import edit, review
from coder_assist.core.template import parse_template
from coder_assist.core.errors import CoderAssistError, ProjectError
from coder_assist.store.project import Project
from tests.conftest import FIXTURES
from tests.unit.app.test_review import LISTEN, MONEY, TIME, add_suggestions, make_project


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("editbase")
    make_project(folder).close()
    return folder / "proj"


@pytest.fixture
def project(base_db, tmp_path) -> Project:
    dest = tmp_path / "proj"
    shutil.copytree(base_db, dest)
    p = Project.open(dest)
    add_suggestions(p, [(0, MONEY, 0.9), (0, TIME, 0.4), (1, TIME, 0.6), (2, LISTEN, 0.2), (3, TIME, 0.1), (3, MONEY, 0.5)])
    yield p
    p.close()


def seg(project: Project, i: int) -> int:
    return int(project.segments().iloc[i]["id"])


def codes_of(project: Project, coder: str = "ann") -> list[tuple[int, str, str]]:
    cur = project.current_decisions(coder)
    return sorted((int(s), c, a) for s, c, a in zip(cur["segment_id"], cur["code_id"], cur["action"]))


def queue_consistent(project: Project, coder: str = "ann") -> None:
    """The page's fast path agrees with the reference queue after an edit."""
    q = review.review_queue(project, coder)
    nxt = review.next_suggestion(project, coder)
    assert (nxt is None and q.empty) or nxt["suggestion_id"] == int(q.iloc[0]["suggestion_id"])
    assert review.progress(project, coder)["queued"] == len(q)


# --------------------------------------------------------------------------- pure edits


def test_add_code_gets_a_fresh_id(project):
    t = project.template()
    new, cid = edit.add_code(t, "Staff turnover", parent_id="barriers", description="People leave.")
    assert cid == "barriers/staff-turnover" and new.codes[cid].path == ("Barriers", "Staff turnover")
    assert t.codes.keys() != new.codes.keys()  # the input is untouched
    _, cid2 = edit.add_code(t, "Staff turnover", parent_id="barriers", description="x", taken={"barriers/staff-turnover"})
    assert cid2 == "barriers/staff-turnover-2"  # a retired id is never reused
    with pytest.raises(CoderAssistError):
        edit.add_code(t, "Money", parent_id="barriers", description="dup")  # same name under the same parent
    with pytest.raises(ProjectError):
        edit.add_code(t, "  ", description="x")
    with pytest.raises(ProjectError):
        edit.add_code(t, "A > B", description="x")


def test_rename_and_move_keep_ids(project):
    t = project.template()
    r = edit.rename_code(t, "barriers", "Obstacles")
    assert r.codes[MONEY].path == ("Obstacles", "Money") and MONEY in r.codes
    m = edit.move_code(t, TIME, "enablers", position=0)
    assert m.codes[TIME].path == ("Enablers", "Time") and m.codes["enablers"].children == [TIME, LISTEN]
    with pytest.raises(ProjectError, match="no sub-codes left"):
        edit.move_code(t, LISTEN, "barriers")  # "Enablers" has no description to stand on its own
    top = edit.move_code(t, MONEY, None)
    assert top.codes[MONEY].path == ("Money",) and top.codes[MONEY].parent_id is None
    with pytest.raises(ProjectError, match="under itself"):
        edit.move_code(t, "barriers", MONEY)


def test_merge_and_split_templates(project):
    t = project.template()
    merged = edit.merge_codes(t, TIME, MONEY)
    assert TIME not in merged.codes
    assert [e.text for e in merged.codes[MONEY].examples] == ["The budget was cut again.", "We never have enough time."]
    with pytest.raises(ProjectError, match="sub-codes"):
        edit.merge_codes(t, "barriers", MONEY)
    with pytest.raises(ProjectError):
        edit.merge_codes(t, MONEY, MONEY)

    split, ids = edit.split_code(t, MONEY, [edit.Part("Cuts", "Budgets cut."), {"name": "Grants", "description": "Grant money."}], examples={0: 1})
    assert MONEY not in split.codes and [split.codes[i].name for i in ids] == ["Cuts", "Grants"]
    assert split.codes["barriers"].children[:2] == ids  # in the split code's place
    assert [e.text for e in split.codes[ids[1]].examples] == ["The budget was cut again."]
    with pytest.raises(ProjectError, match="at least two"):
        edit.split_code(t, MONEY, [edit.Part("Only", "one")])
    with pytest.raises(ProjectError, match="different names"):
        edit.split_code(t, MONEY, [edit.Part("A", "x"), edit.Part("a", "y")])
    with pytest.raises(ProjectError, match="needs a description"):
        edit.split_code(t, MONEY, [edit.Part("A", ""), edit.Part("B", "y")], examples={0: 1})  # A: no description, no example


def test_add_example_and_update(project):
    t = edit.add_example(project.template(), LISTEN, "  The council   listened. ", "t1_alpha (ann)")
    assert t.codes[LISTEN].examples[-1].text == "The council listened." and t.codes[LISTEN].examples[-1].source == "t1_alpha (ann)"
    with pytest.raises(ProjectError, match="already"):
        edit.add_example(t, LISTEN, "The council listened.")
    with pytest.raises(ProjectError, match="sub-codes"):
        edit.add_example(t, "barriers", "x")
    u = edit.update_code(t, LISTEN, description="Heard and answered.", exclude="")
    assert u.codes[LISTEN].description == "Heard and answered."


# --------------------------------------------------------------------------- decisions follow


def test_merge_moves_every_decision_to_the_target(project):
    q = review.review_queue(project, "ann")
    for sid in q["suggestion_id"]:
        review.decide(project, int(sid), "accept", "ann")
    review.decide(project, int(q.iloc[0]["suggestion_id"]), "reject", "bob")
    review.undo_last(project, "ann")
    assert review.progress(project, "ann")["accepted"] == 5
    before_log = project.decisions()
    n_time = int((before_log["code_id"] == TIME).sum())

    moved = edit.apply_merge(project, TIME, MONEY, coder="ann")
    assert moved == n_time
    after_log = project.decisions()
    assert len(after_log) == len(before_log)  # nothing added, nothing dropped
    assert (after_log["code_id"] != TIME).all()
    assert list(after_log["action"]) == list(before_log["action"]) and list(after_log["coder"]) == list(before_log["coder"])
    assert project.template().codes.get(TIME) is None
    assert project.conn.execute("SELECT active FROM codes WHERE id = ?", (TIME,)).fetchone()[0] == 0
    hist = edit.history(project)[-1]
    assert hist["op"] == "merge" and sorted(hist["moved_decisions"][MONEY]) == sorted(before_log[before_log["code_id"] == TIME]["id"])
    # The review page's cached state follows the move (no stale "Time" decisions).
    queue_consistent(project)
    per = review.progress(project, "ann")["per_code"].set_index("code_id")
    assert TIME not in per.index
    assert {c for _, c, _ in codes_of(project)} <= {MONEY, LISTEN}


def test_split_moves_decisions_where_the_user_says(project):
    s0, s3 = seg(project, 0), seg(project, 3)
    review.decide(project, review.suggestion_for_pair(project, s0, MONEY), "accept", "ann")
    review.decide(project, review.suggestion_for_pair(project, s3, MONEY), "reject", "ann")
    review.add_code(project, s0, MONEY, "bob")
    assert edit.split_segments(project, MONEY) == sorted([s0, s3])
    parts = [edit.Part("Cuts", "Budgets cut."), edit.Part("Grants", "Grant money.")]
    template_before, log_before = project.template(), project.decisions()
    with pytest.raises(ProjectError, match="not assigned"):
        edit.apply_split(project, MONEY, parts, {s0: 0})
    assert project.template().to_dict() == template_before.to_dict()  # refused: nothing changed
    assert project.decisions().equals(log_before)

    ids = edit.apply_split(project, MONEY, parts, {s0: 1, s3: 0}, coder="ann")
    assert codes_of(project, "ann") == sorted([(s0, ids[1], "accept"), (s3, ids[0], "reject")])
    assert codes_of(project, "bob") == [(s0, ids[1], "accept")]
    assert edit.decision_count(project, MONEY) == 0
    assert len(project.decisions()) == len(log_before)
    queue_consistent(project)


def test_add_code_under_a_coded_leaf_is_refused(project):
    review.add_code(project, seg(project, 1), LISTEN, "ann")
    with pytest.raises(ProjectError, match="has decisions"):
        edit.apply_add_code(project, "Sub", parent_id=LISTEN, description="x")
    with pytest.raises(ProjectError, match="has decisions"):
        edit.apply_move(project, MONEY, LISTEN)
    cid = edit.apply_add_code(project, "Being thanked", parent_id="enablers", description="Thanks.", examples=["They said thank you."], coder="ann")
    assert project.template().codes[cid].examples[0].text == "They said thank you."
    assert ("enablers/being-thanked", "Enablers > Being thanked") in review.leaf_codes(project)


def test_rename_keeps_decisions_and_updates_paths(project):
    review.add_code(project, seg(project, 1), LISTEN, "ann")
    edit.apply_rename(project, "enablers", "Helps", coder="ann")
    edit.apply_update(project, "enablers", description="What helps.", coder="ann")
    edit.apply_move(project, LISTEN, None, coder="ann")
    assert codes_of(project) == [(seg(project, 1), LISTEN, "accept")]
    assert review.segment_codes(project, seg(project, 1), "ann")["code_path"].tolist() == ["Listening"]
    assert [h["op"] for h in edit.history(project)] == ["rename", "update", "move"]
    assert review.leaf_codes(project)[-2:] == [("enablers", "Helps"), (LISTEN, "Listening")]  # Helps is a code now


def test_add_example_from_an_accepted_segment(project):
    s = project.segments().iloc[1]
    edit.apply_add_example(project, TIME, s["text"], f"{s['transcript']} (ann)", coder="ann")
    assert project.template().codes[TIME].examples[-1].text == " ".join(s["text"].split())


def test_replace_template_needs_every_coded_code_mapped(project):
    review.add_code(project, seg(project, 0), MONEY, "ann")
    review.add_code(project, seg(project, 1), TIME, "ann")
    yaml_text = """
name: New template
codes:
  - name: Resources
    children:
      - name: Funding
        description: Money matters.
      - name: Time
        description: Not enough time.
  - name: Enablers
    children:
      - name: Listening
        description: People feel heard.
"""
    import yaml

    new = parse_template(yaml.safe_load(yaml_text), "new.yaml")
    plan = edit.plan_replace(project, new)
    assert set(plan.needs_mapping) == {MONEY, TIME}
    assert plan.suggested_mapping == {TIME: "resources/time"}
    with pytest.raises(ProjectError, match="barriers/money"):
        edit.replace_template(project, new, {TIME: "resources/time"})
    assert project.template().name == "Tiny template"
    with pytest.raises(ProjectError, match="not a code"):
        edit.replace_template(project, new, {TIME: "resources", MONEY: None})
    moved = edit.replace_template(project, new, {TIME: "resources/time", MONEY: None}, coder="ann")
    assert moved == {"resources/time": 1}
    assert codes_of(project) == sorted([(seg(project, 0), MONEY, "accept"), (seg(project, 1), "resources/time", "accept")])
    assert project.conn.execute("SELECT active FROM codes WHERE id = ?", (MONEY,)).fetchone()[0] == 0
    assert edit.history(project)[-1]["retired_with_decisions"] == [MONEY]
    queue_consistent(project)


def test_concurrent_edits_both_land(project):
    """Two sessions editing at once: each edit reads the template inside its own transaction,
    so neither overwrites the other."""
    folder = project.folder
    errors = []

    def work(name: str) -> None:
        try:
            with Project.open(folder) as p:
                for i in range(5):
                    edit.apply_add_code(p, f"{name} {i}", parent_id="enablers", description="x", coder=name)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("Ann", "Bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = {c.name for c in project.template().codes.values()}
    assert {f"{n} {i}" for n in ("Ann", "Bob") for i in range(5)} <= names
    assert len(edit.history(project)) == 10


# --------------------------------------------------------------------------- coherent edits

from coder_assist.formats.template import load_template  # noqa: E402
from coder_assist.ml.references import ReviewItem  # noqa: E402

NOTES = FIXTURES / "notes_template.yaml"
KEPT = "Lack of funding for co-production work"
GONE = "Lack of funding to develop relationships needed for co-production"
TIME_R = "Time restrictions (deadlines and capacity of current role)"


def notes() -> "edit.Template":
    return load_template(NOTES)


def by(items, code_id, field_name):
    return [i for i in items if i.code_id == code_id and i.field == field_name]


def test_rename_updates_quoted_references_and_flags_the_rest():
    t = notes()
    r = edit.rename(t, TIME, "Deadlines")
    new = r.template.codes
    assert new[MONEY].exclude == "If the problem is deadlines, use 'Deadlines'; for being heard, use 'Listening'."
    # 'Time to reflect' is another code whose name starts with "Time": untouched, quoted or not.
    assert "the 'Time to reflect' is missing" in new[LISTEN].exclude
    assert "use 'Deadlines'" in new[LISTEN].exclude and "no Time," in new[LISTEN].exclude  # unquoted: flagged, not changed
    assert {(u["code"], u["field"]) for u in r.updated} == {(MONEY, "exclude"), (LISTEN, "exclude")}
    flagged = {(i.code_id, i.field): i for i in r.review}
    assert set(flagged) == {(LISTEN, "exclude"), ("barriers/time-to-reflect", "description")}
    assert flagged[("barriers/time-to-reflect", "description")].fix == "No space to stop and think. Not the same as Deadlines (deadlines)."
    assert t.codes[MONEY].exclude.count("'Time'") == 1  # pure: the input is untouched
    # A name shared by two codes: no reference can be trusted to mean this one.
    t2 = edit.add_code(t, "Time", parent_id="enablers", description="Time given back.")[0]
    r2 = edit.rename(t2, TIME, "Deadlines")
    assert r2.template.codes[MONEY].exclude == t.codes[MONEY].exclude and not r2.updated
    assert by(r2.review, MONEY, "exclude")[0].fix == "If the problem is deadlines, use 'Deadlines'; for being heard, use 'Listening'."


def test_merge_drops_the_counter_examples_that_told_the_two_apart_and_flags_the_notes():
    t = notes()
    r = edit.merge(t, TIME, MONEY)
    kept = r.template.codes[MONEY]
    assert TIME not in r.template.codes
    assert [e.text for e in kept.examples] == ["The budget was cut again.", "We never have enough time."]
    # Both counter-examples were written to tell Money and Time apart: neither may push the
    # merged code down; each is offered as an example instead.
    assert kept.counter_examples == []
    offered = {i.text for i in by(r.review, MONEY, "examples")}
    assert offered == {e.text for e in t.codes[MONEY].counter_examples} | {e.text for e in t.codes[TIME].counter_examples}
    desc = by(r.review, MONEY, "description")[0]
    assert "as distinct from time to plan them" in desc.why
    assert desc.fix == "Funding is short for running sessions. Deadlines and capacity."
    assert by(r.review, MONEY, "exclude")[0].fix == "For being heard, use 'Listening'."
    assert by(r.review, MONEY, "include")[0].fix == "Apply when deadlines or capacity are the obstacle."
    assert by(r.review, LISTEN, "exclude")[0].fix.startswith("If people go unheard because there is no Money, use 'Money'; if the 'Time to reflect'")
    assert by(r.review, "barriers/time-to-reflect", "description")
    # Applying every proposed fix leaves no note naming the removed code.
    out = r.template
    for item in r.review:
        if edit.is_current(out, item):
            out = edit.fix_item(out, item)
    from coder_assist.ml import references as refs
    assert not any(refs.find_refs(getattr(c, f), ["Time"], ["Time to reflect"]) for c in out.codes.values() for f in refs.TEXT_FIELDS)
    assert {e.text for e in out.codes[MONEY].examples} >= offered


def test_merge_keeps_counter_examples_about_a_third_code():
    t = notes()
    tree = t.to_dict()
    tree["codes"][0]["children"][2]["counter_examples"] = [{"text": "They listened to us at last."}]
    t = parse_template(tree)
    r = edit.merge(t, "barriers/time-to-reflect", MONEY)  # its counter-example is about Listening, not about Money
    assert [e.text for e in r.template.codes[MONEY].counter_examples] == ["We never have enough hours in the week to plan anything.",
                                                                          "They listened to us at last."]
    assert not by(r.review, MONEY, "examples")


def test_split_and_move_flag_the_notes_that_name_the_code():
    t = notes()
    s, ids = edit.split(t, TIME, [edit.Part("Deadlines", "d"), edit.Part("Capacity", "c")])
    fix = by(s.review, MONEY, "exclude")[0].fix
    assert fix == "If the problem is deadlines, use 'Deadlines' or 'Capacity'; for being heard, use 'Listening'."
    assert {(i.code_id, i.field) for i in s.review if i.text == ""} == {(c, f) for c in ids for f in ("include", "exclude")}
    assert s.template.codes[MONEY].exclude == t.codes[MONEY].exclude  # flagged, not changed
    m = edit.move(t, TIME, "enablers")
    assert {(i.code_id, i.field) for i in m.review} == {(MONEY, "exclude"), (LISTEN, "exclude"), ("barriers/time-to-reflect", "description")}
    assert all(i.fix is None and "moved from 'Barriers' to 'Enablers'" in i.why for i in m.review)
    assert edit.move(t, TIME, "barriers", 0).review == []  # same parent: nothing to check


def test_default_template_merge_scenario():
    t = load_template()
    src, tgt = t.get(GONE).id, t.get(KEPT).id
    r = edit.merge(t, src, tgt)
    kept = r.template.codes[tgt]
    # Before: both funding codes' counter-examples described the other one.
    assert kept.counter_examples == []
    assert {i.text for i in by(r.review, tgt, "examples")} == {e.text for e in t.codes[src].counter_examples + t.codes[tgt].counter_examples}
    desc = by(r.review, tgt, "description")[0]
    assert "as distinct from funding the relationship-building" in desc.text and "as distinct from" not in desc.fix
    assert "relationship- and trust-building" in desc.fix
    exc = by(r.review, tgt, "exclude")[0]
    assert GONE in exc.text and GONE not in exc.fix and "Lack of access to communities or trusting relationships" in exc.fix
    access = t.get("Lack of access to communities or trusting relationships").id
    assert by(r.review, access, "exclude")[0].fix.startswith(f"If trust cannot be built because relationship work is unfunded, use '{KEPT}';")
    assert not any(GONE in (i.fix or "") for i in r.review if i.field in ("description", "include", "exclude"))


def test_default_template_rename_scenario():
    t = load_template()
    cid = t.get(TIME_R).id
    naming = [c.id for c in t.codes.values() if f"'{TIME_R}'" in c.exclude]
    assert len(naming) == 3
    r = edit.rename(t, cid, "Not enough time")
    for c in naming:
        assert TIME_R not in r.template.codes[c].exclude and "'Not enough time'" in r.template.codes[c].exclude
    assert sorted(u["code"] for u in r.updated) == sorted(naming) and r.review == []


def test_review_items_are_stored_fixed_and_kept(project):
    project.set_template(notes())
    n = edit.apply_merge(project, TIME, MONEY, coder="ann")
    assert n >= 0
    items = edit.open_review(project)
    assert len(items) == 7 and len({i.id for i in items}) == 7
    assert edit.history(project)[-1]["review"] == [i.id for i in items]
    desc = by(items, MONEY, "description")[0]
    edit.apply_review_fix(project, desc.id, coder="ann")
    assert project.template().codes[MONEY].description == desc.fix
    assert edit.history(project)[-1] == {**edit.history(project)[-1], "op": "review_fix", "code": MONEY, "review": [desc.id]}
    ex = by(items, MONEY, "examples")[0]
    edit.apply_review_fix(project, ex.id, coder="ann")
    assert ex.text in [e.text for e in project.template().codes[MONEY].examples]
    keep = by(items, LISTEN, "exclude")[0]
    before = project.template().codes[LISTEN].exclude
    edit.keep_review_item(project, keep.id, coder="ann")
    assert project.template().codes[LISTEN].exclude == before and edit.history(project)[-1]["op"] == "review_keep"
    left = {i.id for i in edit.open_review(project)}
    assert left == {i.id for i in items} - {desc.id, ex.id, keep.id}
    with pytest.raises(ProjectError, match="not open"):
        edit.apply_review_fix(project, keep.id)
    # An item whose text was edited by hand since is settled: it leaves the list, and its fix is refused.
    exc = by(items, MONEY, "exclude")[0]
    edit.apply_update(project, MONEY, exclude="Something else.", coder="ann")
    assert exc.id not in {i.id for i in edit.open_review(project)}
    with pytest.raises(ProjectError, match="changed since"):
        edit.apply_review_fix(project, exc.id)
    assert project.template().codes[MONEY].exclude == "Something else."


def test_review_item_round_trips():
    item = ReviewItem("a/b", "exclude", "x", "why", None, "", 3)
    assert ReviewItem.from_dict(item.to_dict()) == item
