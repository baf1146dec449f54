"""coder_assist.app.modelview (what the Model page shows) on a tiny project built here. Model
versions with hand-written cards stand in for trained ones, except in one test that trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from coder_assist.app import modelview
from coder_assist.app.pipeline import import_files, init_project
from coder_assist.store.project import Project

TEMPLATE = """\
name: Tiny template
codes:
  - name: Barriers
    children:
      - name: Money
        description: Funding is short, budgets are cut, paying for things.
        examples: ["The budget was cut again.", "The grant ran out in March."]
      - name: Time
        description: Deadlines and no capacity in the week.
        examples: ["We never have enough time.", "The deadlines are impossible."]
  - name: Enablers
    children:
      - name: Listening
        description: People feel heard.
        examples: ["They actually listened to us."]
"""

MONEY_TEXT = [
    "The budget was cut in half this year.", "We lost the grant that paid for the groups.", "There is no money for transport.",
    "Funding stopped after the pilot.", "Nobody pays for the extra sessions.", "The council cut our budget again.",
]
TIME_TEXT = [
    "There are no hours left in the week.", "The deadlines came far too fast.", "We had no time to plan anything.",
    "Everyone is stretched and rushing.", "The timeline was impossible from the start.", "I work late every night to catch up.",
]
MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"


def make_project(folder: Path) -> Project:
    """One transcript, one participant turn per passage (so one segment each), no suggestions."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    lines = "".join(f"Interviewer: Question {i}?\n\nP1: {t}\n\n" for i, t in enumerate(MONEY_TEXT + TIME_TEXT))
    (folder / "t1.txt").write_text(lines, encoding="utf-8")
    project = init_project(folder / "proj", folder / "template.yaml")
    import_files(project, [folder / "t1.txt"])
    return project


def add_suggestions(project: Project, rows: list[tuple[int, str, float]], kind: str = "example-similarity", card: dict | None = None) -> tuple[int, list[int]]:
    """A model version with suggestions (segment index, code, confidence); returns (version, suggestion ids)."""
    segs = project.segments()
    mv = project.add_model_version(kind, "none", card)
    frame = pd.DataFrame([
        {"segment_id": int(segs.iloc[i]["id"]), "code_id": c, "rank": 1, "confidence": conf, "similarity": conf,
         "evidence": None, "evidence_source": None, "evidence_similarity": None}
        for i, c, conf in rows
    ])
    project.add_suggestions(mv, frame)
    ids = [
        project.conn.execute("SELECT id FROM suggestions WHERE segment_id = ? AND code_id = ? AND model_version_id = ?",
                             (int(segs.iloc[i]["id"]), c, mv)).fetchone()[0]
        for i, c, _ in rows
    ]
    return mv, ids


def learned_card(n_decisions: int, codes: list[tuple[str, float | None, str]]) -> dict:
    """A learned model card with per-code (code_id, f1, verdict)."""
    return {
        "scorer": "learned", "n_decisions": n_decisions, "features": "emb",
        "codes": [
            {"code_id": c, "n_pos": 4, "n_neg": 5, "weight": 0.5 if f1 is not None else 0.0, "precision": f1, "recall": f1,
             "f1": f1, "threshold": 0.5, "verdict": verdict}
            for c, f1, verdict in codes
        ],
    }


@pytest.fixture
def project(tmp_path) -> Project:
    p = make_project(tmp_path)
    yield p
    p.close()


def test_empty_project(project):
    assert modelview.model_versions_table(project).empty
    report = modelview.code_report(project)
    assert list(report["code_id"]) == [MONEY, TIME, LISTEN]  # template order
    assert set(report["verdict"]) == {"cold start"} and report["f1"].isna().all()
    assert modelview.learning_curve(project).empty
    assert modelview.card_text(project) is None
    agr = modelview.coder_model_agreement(project, "Ann")
    assert agr["n"] == 0 and agr["kappa"] is None and agr["accept_rate"] is None and agr["by_version"].empty
    assert not modelview.needs_auto_retrain(project)


def test_versions_table_code_report_and_curve(project):
    v1, _ = add_suggestions(project, [(0, MONEY, 0.2)])
    v2 = project.add_model_version("learned", "enc", learned_card(10, [(MONEY, 0.6, "needs more decisions"), (TIME, None, "needs more decisions")]))
    v3 = project.add_model_version("learned", "enc", learned_card(30, [(MONEY, 0.9, "reliable"), (TIME, 0.5, "needs more decisions"), (LISTEN, None, "needs more decisions")]))

    table = modelview.model_versions_table(project)
    assert list(table["id"]) == [v1, v2, v3]
    assert list(table["active"]) == [False, False, True]
    assert table["decisions"].isna().tolist() == [True, False, False] and table["decisions"].iloc[1:].tolist() == [10, 30]
    assert table.loc[table["id"] == v3, "reliable"].item() == 1 and table.loc[table["id"] == v3, "codes_scored"].item() == 2
    assert pd.isna(table.loc[table["id"] == v1, "reliable"].item())  # the template-only model has no verdicts

    report = modelview.code_report(project).set_index("code_id")
    assert report.loc[MONEY, "f1"] == pytest.approx(0.9) and report.loc[MONEY, "verdict"] == "reliable"
    assert np.isnan(report.loc[LISTEN, "f1"]) and report.loc[LISTEN, "n_pos"] == 4
    assert report.loc[MONEY, "code_path"] == "Barriers > Money"
    assert modelview.verdict_counts(report.reset_index()) == {"needs more decisions": 2, "reliable": 1}

    curve = modelview.learning_curve(project)
    assert list(curve["version"]) == [v2, v3]  # the template-only version has no point
    assert list(curve["decisions"]) == [10, 30]
    assert curve["macro_f1"].tolist() == pytest.approx([0.6, 0.7])  # mean over codes that have an F1
    assert list(curve["codes_with_f1"]) == [1, 2]

    # Rollback: the per-code figures follow the active version; the curve does not change.
    project.set_active_model_version(v2)
    assert modelview.model_versions_table(project)["active"].tolist() == [False, True, False]
    assert modelview.code_report(project).set_index("code_id").loc[MONEY, "f1"] == pytest.approx(0.6)
    project.set_active_model_version(v1)
    assert set(modelview.code_report(project)["verdict"]) == {"cold start"}
    assert len(modelview.learning_curve(project)) == 2


def test_stale_verdict_overrides_the_card(project):
    from coder_assist.core.template import parse_template

    project.add_model_version("learned", "enc", learned_card(10, [(MONEY, 0.9, "reliable")]))
    d = project.template().to_dict()
    d["codes"][0]["children"][0]["description"] = "Money, redefined."
    project.set_template(parse_template(d))
    report = modelview.code_report(project).set_index("code_id")
    assert report.loc[MONEY, "verdict"] == "stale" and report.loc[MONEY, "f1"] == pytest.approx(0.9)


def test_card_text_reads_the_versions_folder(project):
    mv = project.add_model_version("learned", "enc", learned_card(3, []))
    assert modelview.card_text(project) is None
    folder = project.folder / "models" / f"v{mv}"
    folder.mkdir(parents=True)
    (folder / "card.txt").write_text("coder-assist model card\n", encoding="utf-8")
    assert modelview.card_text(project) == "coder-assist model card\n"
    assert modelview.card_text(project, mv) == modelview.card_text(project)


def test_agreement_compares_confidence_at_the_time_with_accept(project):
    # v1 (template only) made suggestions 0-5; v2 made 6-9. The model "said yes" at >= 0.5.
    v1, s1 = add_suggestions(project, [(0, MONEY, 0.9), (1, MONEY, 0.7), (2, MONEY, 0.2), (3, TIME, 0.1), (4, TIME, 0.6), (5, TIME, 0.3)])
    v2, s2 = add_suggestions(project, [(6, TIME, 0.8), (7, TIME, 0.4), (8, MONEY, 0.55), (9, LISTEN, 0.05)], kind="learned")
    segs = project.segments()
    seg = lambda i: int(segs.iloc[i]["id"])  # noqa: E731
    actions = ["accept", "accept", "reject", "reject", "reject", "accept", "accept", "reject", "reject", "reject"]
    rows = [(0, MONEY), (1, MONEY), (2, MONEY), (3, TIME), (4, TIME), (5, TIME), (6, TIME), (7, TIME), (8, MONEY), (9, LISTEN)]
    sids = s1 + s2
    for (i, code), action, sid in zip(rows, actions, sids):
        project.record_decision(seg(i), code, action, "Ann", suggestion_id=sid)
    # Not counted: a skip, another coder, a coding without a suggestion, an undone decision.
    project.record_decision(seg(10), MONEY, "skip", "Ann")
    project.record_decision(seg(0), MONEY, "reject", "Bob", suggestion_id=s1[0])
    project.record_decision(seg(11), LISTEN, "accept", "Ann")
    project.record_decision(seg(11), MONEY, "accept", "Ann", suggestion_id=None)
    project.record_decision(seg(2), MONEY, "accept", "Ann", suggestion_id=s1[2])  # changes her mind ...
    project.undo_last("Ann")  # ... and takes it back: the reject stands

    agr = modelview.coder_model_agreement(project, "Ann")
    conf = [0.9, 0.7, 0.2, 0.1, 0.6, 0.3, 0.8, 0.4, 0.55, 0.05]
    coder = [a == "accept" for a in actions]
    model = [c >= 0.5 for c in conf]
    assert agr["n"] == 10 and agr["accepted"] == 4 and agr["rejected"] == 6
    assert agr["accept_rate"] == pytest.approx(0.4)
    assert agr["model_yes_rate"] == pytest.approx(0.5)
    assert agr["observed_agreement"] == pytest.approx(np.mean(np.array(coder) == np.array(model)))
    assert agr["kappa"] == pytest.approx(cohen_kappa_score(coder, model))
    by = agr["by_version"].set_index("model_version_id")
    assert list(by.index) == [v1, v2] and list(by["n"]) == [6, 4]
    assert by.loc[v2, "accept_rate"] == pytest.approx(0.25)
    assert by.loc[v1, "kappa"] == pytest.approx(cohen_kappa_score(coder[:6], model[:6]))

    # Bob decided one suggestion only: kappa undefined, figures still there.
    bob = modelview.coder_model_agreement(project, "Bob")
    assert bob["n"] == 1 and bob["kappa"] is None and bob["accept_rate"] == 0.0


def test_kappa_undefined_when_both_sides_always_agree(project):
    _, sids = add_suggestions(project, [(0, MONEY, 0.9), (1, MONEY, 0.8)])
    segs = project.segments()
    for i, sid in enumerate(sids):
        project.record_decision(int(segs.iloc[i]["id"]), MONEY, "accept", "Ann", suggestion_id=sid)
    agr = modelview.coder_model_agreement(project, "Ann")
    assert agr["kappa"] is None and agr["observed_agreement"] == 1.0


def test_auto_retrain_counts_decisions_since_the_last_retrain(project):
    assert modelview.auto_retrain_every(project) == 0
    segs = project.segments()
    seg = lambda i: int(segs.iloc[i]["id"])  # noqa: E731
    for i in range(4):
        project.record_decision(seg(i), MONEY, "accept", "Ann")
    assert not modelview.needs_auto_retrain(project)  # off
    modelview.set_auto_retrain_every(project, 5)
    assert project.meta("auto_retrain_every") == "5" and modelview.auto_retrain_every(project) == 5
    assert modelview.decisions_since_training(project) == 4 and not modelview.needs_auto_retrain(project)
    project.record_decision(seg(4), MONEY, "skip", "Ann")  # skips are not decisions to learn from
    assert not modelview.needs_auto_retrain(project)
    project.record_decision(seg(4), TIME, "reject", "Bob")
    assert modelview.n_decisions(project) == 5 and modelview.needs_auto_retrain(project)
    project.undo_last("Bob")
    assert not modelview.needs_auto_retrain(project)
    project.record_decision(seg(4), TIME, "reject", "Bob")
    # The same pair decided again counts once (it is one label).
    project.record_decision(seg(4), TIME, "accept", "Bob")
    assert modelview.n_decisions(project) == 5 and modelview.n_decisions(project) == int(
        project.current_decisions()["action"].isin(["accept", "reject"]).sum())

    # A retrain on these 5 resets the count; a rollback to an older version does not start one.
    v1 = project.add_model_version("learned", "enc", learned_card(2, []))
    v2 = project.add_model_version("learned", "enc", learned_card(5, []))
    assert modelview.decisions_since_training(project) == 0 and not modelview.needs_auto_retrain(project)
    project.set_active_model_version(v1)
    assert not modelview.needs_auto_retrain(project)
    for i in range(6, 11):
        project.record_decision(seg(i), MONEY, "reject", "Ann")
    assert modelview.decisions_since_training(project) == 5 and modelview.needs_auto_retrain(project)
    assert v2 > v1
    modelview.set_auto_retrain_every(project, 0)
    assert not modelview.needs_auto_retrain(project)
    with pytest.raises(ValueError):
        modelview.set_auto_retrain_every(project, -1)
    project._set_meta("auto_retrain_every", "often")  # a hand-edited value turns it off, not the page
    assert modelview.auto_retrain_every(project) == 0


def test_consistency_table_columns():
    flagged = pd.DataFrame([{
        "segment_id": 3, "transcript": "t1", "code_id": MONEY, "code_path": "Barriers > Money", "coder": "Ann", "text": "x",
        "similarity": 0.2, "nearest_other": "Barriers > Time", "similarity_other": 0.4, "flag": "closer to another code",
    }])
    out = modelview.consistency_table(flagged)
    assert list(out.columns) == modelview.CONSISTENCY_COLUMNS
    assert out.iloc[0]["flag"] == "closer to another code" and out.iloc[0]["nearest_other"] == "Barriers > Time"
    assert modelview.consistency_table(flagged.iloc[:0]).empty


def test_after_a_real_retrain(project, encoder):
    from coder_assist.app.training import train_project

    segs = project.segments()
    n_money = len(MONEY_TEXT)
    for i, sid in enumerate(segs["id"]):
        project.record_decision(int(sid), MONEY, "accept" if i < n_money else "reject", "Ann")
        project.record_decision(int(sid), TIME, "reject" if i < n_money else "accept", "Ann")
    modelview.set_auto_retrain_every(project, 10)
    assert modelview.needs_auto_retrain(project)
    mv = train_project(project, encoder)
    assert not modelview.needs_auto_retrain(project)

    card = json.loads(project.model_versions().set_index("id").loc[mv, "card"])
    table = modelview.model_versions_table(project)
    row = table[table["id"] == mv].iloc[0]
    assert row["active"] and row["kind"] == "learned" and row["decisions"] == 2 * len(segs) == card["n_decisions"]
    report = modelview.code_report(project).set_index("code_id")
    for c in card["codes"]:
        assert report.loc[c["code_id"], "verdict"] == c["verdict"]
        assert report.loc[c["code_id"], "n_pos"] == c["n_pos"]
    assert report.loc[MONEY, "n_pos"] == n_money and report.loc[MONEY, "f1"] >= 0  # enough labels for held-out figures
    text = modelview.card_text(project)
    assert text is not None and "Money" in text and "The model used 24 decisions" in text.replace("\n", " ")
    curve = modelview.learning_curve(project)
    assert list(curve["version"]) == [mv] and 0 <= curve["macro_f1"].iloc[0] <= 1
    assert curve["codes_with_f1"].iloc[0] == 2
    # Agreement: these decisions were made without suggestions, so there is nothing to compare.
    assert modelview.coder_model_agreement(project, "Ann")["n"] == 0
