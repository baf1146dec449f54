"""coder_assist.app.modelview.confidence_meaning: what the number on a suggestion means, from
the project's own decisions (hand-made model versions and decisions, no training)."""

from __future__ import annotations

import pytest

from coder_assist.app import modelview
from tests.unit.app.test_modelview import LISTEN, MONEY, TIME, add_suggestions, learned_card, make_project


@pytest.fixture
def project(tmp_path):
    p = make_project(tmp_path)
    yield p
    p.close()


def _decide(project, rows, sids, actions, coder="Ann"):
    segs = project.segments()
    for (i, code, _), sid, action in zip(rows, sids, actions):
        project.record_decision(int(segs.iloc[i]["id"]), code, action, coder, suggestion_id=sid)


def test_no_model_says_not_calibrated(project):
    note = modelview.confidence_meaning(project)
    assert not note.calibrated and note.n_decisions == 0
    assert note.sentence == modelview.NOT_CALIBRATED
    assert "rank" in note.sentence and "not as a probability" in note.sentence
    assert note.table.empty and note.quoted is None


def test_template_only_model_counts_its_decided_suggestions_but_is_not_calibrated(project):
    rows = [(0, MONEY, 0.05), (1, MONEY, 0.04), (2, TIME, 0.06)]
    _, sids = add_suggestions(project, rows)
    _decide(project, rows, sids, ["accept", "reject", "accept"])
    note = modelview.confidence_meaning(project)
    assert not note.calibrated
    assert note.sentence.startswith(modelview.NOT_CALIBRATED)
    assert "2 of 3 decided suggestions were accepted (67%)" in note.sentence
    assert note.table[["bin", "n", "accepted"]].values.tolist() == [["0.0-0.1", 3, 2]]


def test_calibrated_quotes_the_filled_bin_nearest_sixty_percent(project):
    # A template version whose decisions must not count, then a learned one trained on 40.
    trows = [(i, MONEY, 0.62) for i in range(3, 12)]
    _, tsids = add_suggestions(project, trows)
    _decide(project, trows, tsids, ["reject"] * 9)
    card = learned_card(40, [(MONEY, 0.8, "reliable"), (TIME, 0.7, "needs more decisions"), (LISTEN, None, "needs more decisions")])
    # 12 at ~0.6 (7 accepted), 10 at ~0.9 (9 accepted), 3 at ~0.3 (too few to quote).
    lrows = [(i, TIME, 0.61) for i in range(12)] + [(i, LISTEN, 0.91) for i in range(10)] + [(i, MONEY, 0.33) for i in range(3)]
    _, lsids = add_suggestions(project, lrows, kind="learned", card=card)
    _decide(project, lrows, lsids, ["accept"] * 7 + ["reject"] * 5 + ["accept"] * 9 + ["reject"] + ["accept", "reject", "reject"])
    note = modelview.confidence_meaning(project)
    assert note.calibrated and note.n_decisions == 40
    assert note.sentence == "Calibrated on 40 of your decisions: of suggestions shown at about 61%, 58% were accepted (7 of 12)."
    table = note.table.set_index("bin")
    assert list(table.index) == ["0.3-0.4", "0.6-0.7", "0.9-1.0"]  # the template's 9 rejects are not in it
    assert table.loc["0.9-1.0", "accepted"] == 9 and table.loc["0.9-1.0", "accept_rate"] == pytest.approx(0.9)
    assert note.quoted["bin"] == "0.6-0.7"
    # One coder's decisions only.
    assert modelview.confidence_meaning(project, "Bob").quoted is None


def test_calibrated_with_too_few_decided_suggestions_says_so(project):
    card = learned_card(6, [(MONEY, 0.8, "reliable"), (TIME, None, "needs more decisions"), (LISTEN, None, "needs more decisions")])
    rows = [(0, MONEY, 0.7), (1, MONEY, 0.2)]
    _, sids = add_suggestions(project, rows, kind="learned", card=card)
    _decide(project, rows, sids, ["accept", "reject"])
    note = modelview.confidence_meaning(project)
    assert note.calibrated and note.quoted is None
    assert "too few decided suggestions" in note.sentence and "(2)" in note.sentence
    assert note.table["n"].sum() == 2


def test_reliability_frame_bins_confidence_against_accepts():
    import pandas as pd

    decided = pd.DataFrame({"confidence": [0.05, 0.15, 0.16, 0.95, 1.0], "accepted": [False, True, False, True, True]})
    t = modelview.reliability_frame(decided)
    assert t[["bin", "n", "accepted"]].values.tolist() == [["0.0-0.1", 1, 0], ["0.1-0.2", 2, 1], ["0.9-1.0", 2, 2]]
    assert t["mean_confidence"].tolist() == pytest.approx([0.05, 0.155, 0.975])
    assert modelview.reliability_frame(decided.iloc[:0]).empty
