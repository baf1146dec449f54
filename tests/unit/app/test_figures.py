"""coder_assist.app.figures: each figure against a hand-built decision log (accepts, rejects, an
undo, a "Different code..." pair, a skip, a second coder, a merge), checked by hand and
against a direct count of the database."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from coder_assist.app import agreement as ag
from coder_assist.app import edit, figures, modelview, review
from coder_assist.app import training as learn  # MIN_CLASS (from ml.classifier) and model_card_text
from coder_assist.store.project import Project
from tests.unit.app.test_modelview import LISTEN, MONEY, TIME, add_suggestions, learned_card, make_project


@pytest.fixture
def project(tmp_path) -> Project:
    p = make_project(tmp_path)
    yield p
    p.close()


def _in_force_sql(project: Project, coder: str | None = None) -> int:
    """Decisions in force counted straight from the log, written independently of the store."""
    rows = project.conn.execute("SELECT id, segment_id, code_id, coder, action, undoes FROM decisions ORDER BY id").fetchall()
    undone = {r["undoes"] for r in rows if r["action"] == "undo"}
    latest: dict = {}
    for r in rows:
        if r["action"] != "undo" and r["id"] not in undone:
            latest[(r["segment_id"], r["code_id"], r["coder"])] = r["action"]
    return sum(a in ("accept", "reject") and (coder is None or k[2] == coder) for k, a in latest.items())


def build_log(project: Project) -> dict:
    """Suggestions for Money on passages 0-5 and Time on 6-9, then Ann's log:
    accept 0, 1, 2 (Money); reject 3 (Money); accept 4 then undo it; skip 5; "Different code"
    on 6 (reject Time, accept Listening); accept 7 (Time) and accept Money on 7 by hand; Bob
    accepts 0 (Money) and rejects 8 (Time)."""
    rows = [(i, MONEY, 0.6) for i in range(6)] + [(i, TIME, 0.4) for i in range(6, 10)]
    _, sids = add_suggestions(project, rows)
    sid = dict(zip(range(10), sids))
    seg = lambda i: int(project.segments().iloc[i]["id"])  # noqa: E731
    for i in (0, 1, 2):
        review.decide(project, sid[i], "accept", "Ann")
    review.decide(project, sid[3], "reject", "Ann")
    review.decide(project, sid[4], "accept", "Ann")
    review.undo_last(project, "Ann")
    review.decide(project, sid[5], "skip", "Ann")
    review.choose_other_code(project, sid[6], LISTEN, "Ann")
    review.decide(project, sid[7], "accept", "Ann")
    review.add_code(project, seg(7), MONEY, "Ann")
    review.decide(project, sid[0], "accept", "Bob")
    review.decide(project, sid[8], "reject", "Bob")
    return {"sid": sid, "seg": seg}


def test_label_counts_and_plural():
    assert figures.label(1, "passage coded", "passages coded") == "1 passage coded"
    assert figures.label(3, "passage coded", "passages coded") == "3 passages coded"
    assert figures.label(0, "code") == "0 codes" and figures.label(1, "code") == "1 code"
    with pytest.raises(ValueError, match="needs its plural"):
        figures.label(2, "decision in force")
    assert figures.label(1, "log entry", "log entries") == "1 log entry"
    assert figures.needs_text(2, 1) == "needs 2 more accepts and 1 more reject"
    assert figures.needs_text(0, 3) == "needs 3 more rejects" and figures.needs_text(0, 0) == ""


def test_decisions_in_force_on_a_hand_built_log(project):
    build_log(project)
    # Ann: accepts 0, 1, 2, 7 (Time), Money on 7, Listening on 6; rejects 3 and Time on 6.
    # Not in force: the undone accept of 4, the skip of 5.
    ann = figures.tally(project, "Ann")
    assert (ann.accepted, ann.rejected, ann.skipped) == (6, 2, 1)
    assert ann.in_force == figures.decisions_in_force(project, "Ann") == 8 == _in_force_sql(project, "Ann")
    assert figures.decisions_in_force(project, "Bob") == 2
    assert figures.decisions_in_force(project) == 10 == _in_force_sql(project)
    # The Model page's count is the same figure.
    assert modelview.n_decisions(project) == 10 and modelview.decisions_since_training(project) == 10
    per = figures.decisions_in_force_per_code(project)
    assert per.to_dict() == {MONEY: 6, TIME: 3, LISTEN: 1}


def test_passages_coded_counts_passages_not_coders(project):
    build_log(project)
    coded = figures.passages_coded(project)
    # Money: 0 (Ann and Bob: one passage), 1, 2, 7 (by hand); Time: 7; Listening: 6.
    assert coded.to_dict() == {MONEY: 4, TIME: 1, LISTEN: 1}
    assert figures.passages_coded(project, "Bob").to_dict() == {MONEY: 1}


def test_log_entries_count_every_row(project):
    build_log(project)
    n = project.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    assert figures.log_entries(project) == n == 13  # Ann: 10 decisions (the D pair is two) and an undo; Bob: 2
    # Money: accepts 0, 1, 2, reject 3, accept 4 and its undo, skip 5, by hand 7, Bob 0.
    assert figures.log_entries(project, MONEY) == 9


def test_queue_progress_and_the_review_counts_agree_with_the_definitions(project):
    build_log(project)
    q = figures.queue_progress(project, "Ann")
    # Suggestions decided: 0, 1, 2, 3 (Money), 6 and 7 (Time): six of ten; the accept of
    # Listening on 6 and Money on 7 decide no suggestion (the model did not suggest them).
    assert (q["suggestions_decided"], q["to_go"], q["total"]) == (6, 4, 10)
    assert figures.decisions_in_force(project, "Ann") - q["suggestions_decided"] == 2
    prog = review.progress(project, "Ann")
    assert prog["decided"] == q["suggestions_decided"] and prog["accept_rate"] == q["accept_rate"]
    # Accepted on suggestions: 0, 1, 2 and 7 (Time); rejected: 3, and Time on 6.
    assert (prog["accepted"], prog["rejected"]) == (4, 2) and q["accept_rate"] == pytest.approx(4 / 6)


def test_merge_effect_matches_what_the_merge_does(project):
    build_log(project)
    # On passage 7 Ann has an accept of Time and (later) of Money: merging Time into Money
    # leaves one decision there. Bob's reject of Time on 8 moves; Ann's reject on 6 moves.
    fx = figures.merge_effect(project, TIME, MONEY)
    assert (fx.source_in_force, fx.target_in_force, fx.collapsed) == (3, 6, 1)
    assert fx.in_force_after == 8 and fx.lost == 1
    assert fx.log_entries == figures.log_entries(project, TIME) == 3  # Ann's reject on 6 and accept on 7, Bob's reject on 8
    before = figures.decisions_in_force(project)
    moved = edit.apply_merge(project, TIME, MONEY, coder="Ann")
    assert moved == fx.log_entries
    assert figures.decisions_in_force(project) == before - fx.lost == _in_force_sql(project)
    assert figures.decisions_in_force_per_code(project).get(MONEY) == fx.in_force_after
    # Only the collapsed pair is gone from Ann's count; Bob keeps both.
    assert figures.decisions_in_force(project, "Ann") == 7 and figures.decisions_in_force(project, "Bob") == 2


def test_merge_with_nothing_in_common_loses_nothing(project):
    build_log(project)
    fx = figures.merge_effect(project, MONEY, LISTEN)
    assert fx.collapsed == 0 and fx.lost == 0 and fx.in_force_after == fx.source_in_force + fx.target_in_force == 7
    before = figures.decisions_in_force(project)
    edit.apply_merge(project, MONEY, LISTEN, coder="Ann")
    assert figures.decisions_in_force(project) == before


def test_one_kappa_one_percent_agreement():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1])
    b = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    assert figures.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert ag.cohen_kappa(a, b) == figures.cohen_kappa(a, b)
    assert figures.percent_agreement(a, b) == pytest.approx(5 / 8)
    assert figures.cohen_kappa([1], [0]) is None  # one item: undefined
    assert figures.cohen_kappa([1, 1], [1, 1]) is None
    assert not hasattr(modelview, "_kappa")


def test_model_agreement_is_the_agreement_pages_figure(project):
    build_log(project)
    rep = ag.agreement(project, "Ann", ag.MODEL)
    m = figures.model_agreement(project, "Ann")
    assert m["items"] == rep.overall["items"] == 8
    assert m["kappa"] == rep.overall["pooled_kappa"] and m["percent_agreement"] == rep.overall["pooled_percent_agreement"]
    # By hand: Ann said yes on 0, 1, 2 (Money, suggested), 7 (Time, suggested), Money on 7 and
    # Listening on 6 (not suggested), no on 3 (Money, suggested) and Time on 6 (suggested).
    ann = [1, 1, 1, 1, 1, 1, 0, 0]
    model = [1, 1, 1, 1, 0, 0, 1, 1]
    assert m["percent_agreement"] == pytest.approx(4 / 8)
    assert m["kappa"] == pytest.approx(cohen_kappa_score(ann, model))


def test_learnability_follows_the_learner(project):
    assert figures.MIN_CLASS == learn.MIN_CLASS
    build_log(project)
    t = figures.learnability(project).table.set_index("code_id")
    # Money: positives 0, 1, 2, 7 (Bob's accept of 0 is the same pair: the latest wins), negative 3.
    assert (t.loc[MONEY, "positives"], t.loc[MONEY, "negatives"]) == (4, 1)
    assert (t.loc[MONEY, "accepts_needed"], t.loc[MONEY, "rejects_needed"]) == (0, 2)
    # Time: positive 7; negatives 6 (Ann) and 8 (Bob).
    assert (t.loc[TIME, "accepts_needed"], t.loc[TIME, "rejects_needed"]) == (2, 1)
    assert figures.learnability(project).n_learnable == 0
    report = modelview.code_report(project).set_index("code_id")
    assert report.loc[MONEY, "needs"] == "needs 2 more rejects"
    assert report.loc[LISTEN, "needs"] == "needs 2 more accepts and 3 more rejects"


def test_a_retrain_that_learned_no_code_is_not_presented_as_learned(project):
    add_suggestions(project, [(0, MONEY, 0.6)])
    nothing = learned_card(5, [(MONEY, None, "needs more decisions"), (TIME, None, "needs more decisions")])
    project.add_model_version("learned", "enc", nothing)
    versions = modelview.model_versions_table(project)
    row = versions.iloc[-1]
    assert row["kind_label"] == modelview.NOT_ENOUGH and row["codes_learned"] == 0 and row["decisions"] == 5
    assert modelview.learning_curve(project).empty  # no point for it
    assert figures.trained_on(project) == 5  # but it was a retrain: the count starts again from it
    some = learned_card(9, [(MONEY, 0.6, "needs more decisions"), (TIME, None, "needs more decisions")])
    project.add_model_version("learned", "enc", some)
    assert modelview.model_versions_table(project).iloc[-1]["kind_label"] == modelview.LEARNED
    assert list(modelview.learning_curve(project)["decisions"]) == [9]


def test_card_text_says_what_each_code_needs():
    from coder_assist.core.template import parse_template
    import yaml

    from tests.unit.app.test_modelview import TEMPLATE

    template = parse_template(yaml.safe_load(TEMPLATE))
    codes = [{"code_id": MONEY, "n_pos": 1, "n_neg": 3, "weight": 0.0, "precision": None, "recall": None, "f1": None, "verdict": "needs more decisions"},
             {"code_id": TIME, "n_pos": 0, "n_neg": 0, "weight": 0.0, "precision": None, "recall": None, "f1": None, "verdict": "needs more decisions"}]
    card = {"encoder": "enc", "features": "emb", "C": 1.0, "cv_folds": 3, "n_decisions": 4, "n_labels": 4, "target": 0.7, "codes": codes}
    text = learn.model_card_text(card, template)
    assert "needs 2 more accepts" in text and "needs 3 more accepts and 3 more rejects" in text
    assert "no classifier was trained" in " ".join(text.split())
    assert "sample" not in text  # no code past the cap
    codes[0].update(n_pos=300, n_neg=4_700, weight=0.5, precision=0.8, recall=0.7, f1=0.75, verdict="reliable")
    flat = " ".join(learn.model_card_text(card, template).split())
    assert f"more than {learn.MAX_ROWS:,} decided passages was trained on a sample" in flat
    assert f"cross-validated on {learn.CAPPED_CV_FOLDS} folds (1 code)" in flat
    # Beside a code matcher the codes' classifiers leave the previous turn's embedding to it;
    # a card from before that (no code_features) names the features they all had.
    card.update(features="emb+prev+ngrams", matcher_codes=[MONEY, TIME])
    flat = " ".join(learn.model_card_text(card, template).split())
    assert "features: segment embedding, previous-turn embedding, TF-IDF" in flat
    card["code_features"] = "emb+ngrams"
    flat = " ".join(learn.model_card_text(card, template).split())
    assert "features: segment embedding, TF-IDF word and character n-grams of the passage and word n-grams of the previous turn." in flat
    assert "embedding times the code's prototype and the previous turn's embedding times the prototype" in flat


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_logs_every_count_agrees_with_a_direct_count(project, seed):
    """Random accepts, rejects, skips, undos and "Different code..." pairs by two coders: the
    figures, the review queue's fast in-memory counts and a count written from scratch agree."""
    rng = np.random.default_rng(seed)
    rows = [(i, MONEY, 0.6) for i in range(12)] + [(i, TIME, 0.4) for i in range(12)]
    _, sids = add_suggestions(project, rows)
    for _ in range(60):
        coder = ["Ann", "Bob"][int(rng.integers(2))]
        sid = int(sids[int(rng.integers(len(sids)))])
        move = rng.choice(["accept", "reject", "skip", "undo", "other"], p=[0.35, 0.25, 0.1, 0.15, 0.15])
        if move == "undo":
            review.undo_last(project, coder)
        elif move == "other":
            try:
                review.choose_other_code(project, sid, LISTEN, coder)
            except Exception:  # already decided: refused, as on the page
                pass
        else:
            review.decide(project, sid, str(move), coder)
    pool = {(int(s), c) for s, c in project.conn.execute("SELECT segment_id, code_id FROM suggestions")}
    for coder in ("Ann", "Bob"):
        assert figures.decisions_in_force(project, coder) == _in_force_sql(project, coder)
        cur = project.current_decisions(coder)
        on_pool = sum((int(s), c) in pool and a in ("accept", "reject") for s, c, a in zip(cur["segment_id"], cur["code_id"], cur["action"]))
        q = figures.queue_progress(project, coder)
        assert q["suggestions_decided"] == on_pool and q["to_go"] == len(pool) - on_pool
    assert figures.decisions_in_force(project) == _in_force_sql(project) == modelview.n_decisions(project)
    assert figures.log_entries(project) == project.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
