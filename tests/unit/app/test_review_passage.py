"""Passage review (coder_assist.app.review: next_passage, confirm_passage, undo_last) on the tiny
project of test_review.py: three leaf codes (Money, Time, Listening), suggestions inserted
directly with chosen confidences, no model."""

from __future__ import annotations

import pandas as pd
import pytest

from coder_assist.app import review
from coder_assist.core.errors import ProjectError
from coder_assist.store.project import ORIGIN_PASSAGE, Project
from tests.unit.app.test_review import LISTEN, MONEY, TIME, base_db, project, suggested  # noqa: F401  (fixtures)

LEAVES = [MONEY, TIME, LISTEN]  # template order


def seg(project: Project, i: int) -> int:
    return int(project.segments().iloc[i]["id"])


def reference_passages(project: Project, coder: str, order: str = "likely", **filters) -> list[int]:
    """The triage queue (the slow reference) deduplicated by segment, in queue order."""
    q = review.review_queue(project, coder, order, **filters)
    return [int(s) for s in dict.fromkeys(q["segment_id"])]


def unit_rows(project: Project, unit: int) -> pd.DataFrame:
    log = project.decisions()
    return log[log["unit_id"] == unit]


# --------------------------------------------------------------------------- which passage


@pytest.mark.parametrize("order", list(review.ORDERS))
def test_passages_follow_the_triage_queue_one_per_segment(suggested, order):
    want = reference_passages(suggested, "ann", order)
    assert len(want) == 4
    got = []
    while (p := review.next_passage(suggested, "ann", order)) is not None:
        got.append(p.segment_id)
        ticked = [c.code_id for c in p.candidates if c.ticked]
        assert review.confirm_passage(suggested, p.segment_id, ticked, "ann") is not None
        # A confirmed passage leaves the queue: the rest is the reference queue now.
        assert p.segment_id not in reference_passages(suggested, "ann", order)
    assert got == want
    assert review.passage_progress(suggested, "ann") == {"total": 4, "queued": 0, "confirmed": 4}


def test_likely_order_is_the_passages_best_suggestion(suggested):
    # seg0 has 0.9, seg1 0.6, seg3 0.5, seg2 0.2
    assert review.next_passage(suggested, "ann").segment_id == seg(suggested, 0)
    assert reference_passages(suggested, "ann") == [seg(suggested, i) for i in (0, 1, 3, 2)]


def test_filters_narrow_the_passages(suggested):
    p = review.next_passage(suggested, "ann", filters={"code_id": LISTEN})
    assert p.segment_id == seg(suggested, 2)
    assert review.passage_progress(suggested, "ann", filters={"code_id": TIME}) == {"total": 3, "queued": 3, "confirmed": 0}
    assert review.next_passage(suggested, "ann", filters={"transcript": "no such"}) is None


def test_a_passage_half_decided_in_triage_stays_with_that_decision_shown(suggested):
    q = review.review_queue(suggested, "ann")
    first = q.iloc[0]  # Money 0.9 on seg0; seg0 also has Time 0.4
    review.decide(suggested, int(first["suggestion_id"]), "reject", "ann")
    # Still queued, at the place of its suggestion left (Time 0.4: after 0.6 and 0.5).
    assert reference_passages(suggested, "ann").index(int(first["segment_id"])) == 2
    assert review.passage_progress(suggested, "ann")["queued"] == 4
    p = review.next_passage(suggested, "ann", pin=int(first["segment_id"]))
    assert p.segment_id == int(first["segment_id"])
    by = {c.code_id: c for c in p.candidates}
    assert by[MONEY].suggested and not by[MONEY].ticked  # the coder's reject unticks the likely code
    assert by[TIME].ticked
    assert p.mine[["code_id", "action"]].values.tolist() == [[MONEY, "reject"]]


# --------------------------------------------------------------------------- candidates


def test_candidates_likely_first_with_confidence_and_evidence_then_others_unticked(suggested):
    p = review.next_passage(suggested, "ann")
    assert p.segment_id == seg(suggested, 0)
    c = p.candidates
    assert [(x.code_id, x.ticked, x.suggested) for x in c[:2]] == [(MONEY, True, True), (TIME, True, True)]
    assert c[0].confidence == pytest.approx(0.9) and c[0].evidence == f"evidence for {MONEY}" and c[0].suggestion_id
    # Listening is suggested two passages on, in the same transcript: listed, unticked, no confidence.
    assert [(x.code_id, x.ticked, x.suggested, x.confidence) for x in c[2:]] == [(LISTEN, False, False, None)]
    assert c[2].reason == "suggested for a passage nearby"
    assert len({x.code_id for x in c}) == len(c)
    assert "turn" not in p.segment and p.segment["text"] and p.context and p.attributes == {"site": "North"}


def test_the_coders_own_codes_are_ticked_and_their_most_used_are_offered(suggested):
    s3 = seg(suggested, 3)
    review.add_code(suggested, s3, LISTEN, "ann")  # by hand, on a passage the model gave Time and Money
    p = review.passage_view(suggested, s3, "ann")
    assert [(x.code_id, x.ticked, x.reason) for x in p.candidates] == [
        (MONEY, True, "suggested"), (TIME, True, "suggested"), (LISTEN, True, "your coding")]
    # On another passage Listening is not suggested anywhere near, but the coder uses it.
    other = review.passage_view(suggested, seg(suggested, 1), "ann", n_candidates=5)
    assert (LISTEN, False) in [(x.code_id, x.ticked) for x in other.candidates]


# --------------------------------------------------------------------------- confirming


def test_confirm_writes_a_complete_label_as_one_unit(suggested):
    s0 = seg(suggested, 0)
    sugg = suggested.suggestions().set_index(["segment_id", "code_id"])["suggestion_id"]
    unit = review.confirm_passage(suggested, s0, [LISTEN, MONEY], "ann")  # Time unticked, Listening added
    rows = unit_rows(suggested, unit)
    assert int(rows["id"].min()) == unit and len(suggested.decisions()) == 3
    assert rows[["segment_id", "code_id", "action"]].values.tolist() == [
        [s0, MONEY, "accept"], [s0, LISTEN, "accept"], [s0, TIME, "reject"]]
    assert set(rows["origin"]) == {ORIGIN_PASSAGE} and set(rows["coder"]) == {"ann"}
    # Suggested codes keep their suggestion (accepted / rejected suggestions); the rest have none.
    link = dict(zip(rows["code_id"], rows["suggestion_id"]))
    assert link[MONEY] == sugg[(s0, MONEY)] and link[TIME] == sugg[(s0, TIME)] and pd.isna(link[LISTEN])
    cur = suggested.current_decisions("ann")
    assert sorted(zip(cur["code_id"], cur["action"])) == sorted([(MONEY, "accept"), (LISTEN, "accept"), (TIME, "reject")])
    # Triage agrees: both suggestions of the passage are decided.
    assert s0 not in set(review.review_queue(suggested, "ann")["segment_id"])
    assert review.decide_once(suggested, int(sugg[(s0, TIME)]), "accept", "ann") is None


def test_nothing_ticked_is_no_code_applies(suggested):
    s2 = seg(suggested, 2)
    unit = review.confirm_passage(suggested, s2, [], "ann")
    assert unit_rows(suggested, unit)[["code_id", "action"]].values.tolist() == [[c, "reject"] for c in LEAVES]
    assert review.passage_progress(suggested, "ann")["confirmed"] == 1


def test_a_second_identical_confirm_records_nothing(suggested):
    s0 = seg(suggested, 0)
    assert review.confirm_passage(suggested, s0, [MONEY], "ann") is not None
    n = len(suggested.decisions())
    assert review.confirm_passage(suggested, s0, [MONEY, MONEY], "ann") is None
    assert len(suggested.decisions()) == n
    # Another coder's confirmation is theirs: recorded.
    assert review.confirm_passage(suggested, s0, [MONEY], "bo") is not None
    # A different answer on the same passage (another tab showing it still) is a new unit, and wins.
    unit = review.confirm_passage(suggested, s0, [TIME], "ann")
    assert unit is not None and len(unit_rows(suggested, unit)) == 3
    cur = suggested.current_decisions("ann")
    assert dict(zip(cur["code_id"], cur["action"])) == {MONEY: "reject", TIME: "accept", LISTEN: "reject"}


def test_confirm_refuses_what_is_not_an_active_leaf_and_records_nothing(suggested):
    s0 = seg(suggested, 0)
    for bad in (["barriers"], ["no/such"], [MONEY, "barriers"]):
        with pytest.raises(ProjectError):
            review.confirm_passage(suggested, s0, bad, "ann")
    with pytest.raises(ProjectError):
        review.confirm_passage(suggested, 10_000, [MONEY], "ann")
    with pytest.raises(ProjectError):
        review.confirm_passage(suggested, s0, [MONEY], " ")
    assert suggested.decisions().empty


def test_confirm_is_all_or_nothing(suggested, monkeypatch):
    real = suggested.record_decision

    def failing(segment_id, code_id, action, coder, **kw):
        if code_id == LISTEN:
            raise ProjectError("disk on fire")
        return real(segment_id, code_id, action, coder, **kw)

    monkeypatch.setattr(suggested, "record_decision", failing)
    with pytest.raises(ProjectError, match="disk on fire"):
        review.confirm_passage(suggested, seg(suggested, 0), [MONEY], "ann")
    assert suggested.decisions().empty and not suggested.conn.in_transaction


# --------------------------------------------------------------------------- undo


def test_undo_takes_the_whole_passage_back_and_it_comes_back_first(suggested):
    s0, s1 = seg(suggested, 0), seg(suggested, 1)
    review.confirm_passage(suggested, s0, [MONEY], "ann")
    unit = review.confirm_passage(suggested, s1, [TIME, LISTEN], "ann")
    assert review.next_passage(suggested, "ann").segment_id == seg(suggested, 3)
    undone = review.undo_last(suggested, "ann")
    assert sorted(d.code_id for d in undone) == sorted(LEAVES) and {d.unit_id for d in undone} == {unit}
    assert review.unit_of(suggested, undone) == {"passage": s1, "accepted": [TIME, LISTEN]}
    # One undo event per row of the unit, the log otherwise untouched.
    log = suggested.decisions()
    assert sorted(int(u) for u in log["undoes"].dropna()) == sorted(unit_rows(suggested, unit)["id"].astype(int))
    assert review.passage_progress(suggested, "ann")["confirmed"] == 1
    assert review.next_passage(suggested, "ann", pin=s1).segment_id == s1
    assert review.next_passage(suggested, "ann").segment_id == s1  # its own place: 0.6 is next after 0.9
    # The passage before is the next undo, whole.
    assert review.unit_of(suggested, review.undo_last(suggested, "ann"))["passage"] == s0
    assert suggested.current_decisions("ann").empty
    assert review.undo_last(suggested, "ann") == []


def test_a_pin_no_longer_queued_is_ignored(suggested):
    s0 = seg(suggested, 0)
    review.confirm_passage(suggested, s0, [MONEY], "ann")
    assert review.next_passage(suggested, "ann", pin=s0).segment_id != s0


def test_triage_actions_still_undo_one_by_one_between_passages(suggested):
    q = review.review_queue(suggested, "ann")
    review.confirm_passage(suggested, seg(suggested, 0), [MONEY], "ann")
    s1_sugg = int(q[q["segment_id"] == seg(suggested, 1)].iloc[0]["suggestion_id"])
    review.choose_other_code(suggested, s1_sugg, LISTEN, "ann")
    assert len(review.undo_last(suggested, "ann")) == 2  # the Different code pair, as one unit
    assert len(review.undo_last(suggested, "ann")) == 3  # then the passage


# --------------------------------------------------------------------------- what counts where


def test_implicit_rejects_are_labels_but_not_rejected_suggestions(suggested):
    from coder_assist.app import export, figures, modelview
    from coder_assist.app.importing import qdpx_project
    from coder_assist.ml.features import decisions_on_segments, labels_from_decisions

    s0 = seg(suggested, 0)
    review.confirm_passage(suggested, s0, [MONEY], "ann")  # Money accepted, Time (suggested) and Listening rejected
    # Review progress counts suggestions: one accepted, one rejected; Listening was never suggested there.
    prog = review.progress(suggested, "ann")
    assert (prog["accepted"], prog["rejected"], prog["decided"]) == (1, 1, 2)
    per = prog["per_code"].set_index("code_id")
    assert per.loc[LISTEN, "rejected"] == 0 and per.loc[TIME, "rejected"] == 1
    assert prog["accept_rate"] == 0.5
    # The model's reliability figures read decided suggestions only: Listening's reject is not one.
    dec = modelview.decided_suggestions(suggested, "ann")
    assert sorted(zip(dec["code_id"], dec["accepted"])) == [(MONEY, True), (TIME, False)]
    # The learner gets the complete label.
    on = decisions_on_segments(suggested.current_decisions(), suggested.segments(), suggested.codings())
    lab = labels_from_decisions(on, suggested.template())
    assert sorted(zip(lab["code_id"], lab["label"])) == sorted([(MONEY, 1), (LISTEN, 0), (TIME, 0)])
    # One decision in force: the coder confirmed one passage (its three rows are one unit).
    assert figures.decisions_in_force(suggested, "ann") == 1
    assert figures.tally(suggested, "ann").accepted + figures.tally(suggested, "ann").rejected == 3
    # Exports carry codings: the accept, never the rejects.
    frame = export.codings_frame(suggested)
    assert frame[["segment_id", "code_id", "status"]].values.tolist() == [[s0, MONEY, "accepted"]]
    assert frame["origin"].tolist() == ["suggestion"]
    assert [(c[3], c[4]) for c in qdpx_project(suggested).codings] == [(MONEY, "ann")]


def test_a_code_added_by_search_is_a_hand_coding_in_the_export(suggested):
    from coder_assist.app import export

    review.confirm_passage(suggested, seg(suggested, 1), [LISTEN], "ann")
    frame = export.codings_frame(suggested)
    assert frame[["code_id", "origin"]].values.tolist() == [[LISTEN, "by hand"]]


def test_a_confirmed_passage_is_one_decision_in_force(suggested):
    """A row per leaf (accepts + rejects) but one decision: the sidebar's count and the
    'retrain every N decisions' trigger count passages, as the simulated researcher does."""
    from coder_assist.app import figures

    p = review.next_passage(suggested, "ann")
    review.confirm_passage(suggested, p.segment_id, [p.candidates[0].code_id], "ann")
    t = figures.tally(suggested, "ann")
    assert t.accepted + t.rejected == len(LEAVES) and t.passages == 1
    assert figures.decisions_in_force(suggested, "ann") == 1
    review.add_code(suggested, seg(suggested, 3), TIME, "ann")  # a decision outside passage review counts once too
    assert figures.decisions_in_force(suggested, "ann") == 2
    review.undo_last(suggested, "ann")
    review.undo_last(suggested, "ann")
    assert figures.decisions_in_force(suggested, "ann") == 0
