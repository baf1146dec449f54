"""The code matcher: one model of passage-code match shared by every code, so a code with few
decisions gains from the others' (coder_assist.ml.matching)."""

import numpy as np
import pandas as pd
import pytest

from coder_assist.ml.classifier import LearnedScorer
from coder_assist.ml.matching import CodeMatcher
from coder_assist.ml.suggest import unit_rows
from coder_assist.ml.suggest import Inputs
from tests.unit.ml.test_suggest_calibration import ClusterEncoder, passages, template


def _nuisance_world(k=12, d=32, per=30, seed=0):
    """Codes differ in the first half of the dimensions only; the second half is loud noise
    that every passage and example carries (a speaker's style, say). Cosine similarity to a
    code's examples is swamped by it; decisions on any code show which half matters."""
    rng = np.random.default_rng(seed)
    half = d // 2
    centres = np.zeros((k, d))
    centres[:, :half] = rng.normal(size=(k, half))

    def draw(code, n):
        v = centres[code] + 0.35 * rng.normal(size=(n, d))
        v[:, half:] = 3.0 * rng.normal(size=(n, d - half))
        return unit_rows(v).astype(np.float32)

    examples = [draw(c, 5) for c in range(k)]
    X = np.vstack([draw(c, per) for c in range(k)])
    gold = np.repeat(np.arange(k), per)
    return examples, X, gold


def _auc(pos, neg):
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_a_code_without_decisions_gains_from_the_other_codes_decisions():
    k = 12
    examples, X, gold = _nuisance_world(k=k)
    # Every passage of codes 0-10 confirmed (positive for its code, negative for the rest);
    # none of code 11's: it has its five template examples only.
    decided = np.flatnonzero(gold < k - 1)
    rows = np.repeat(decided, k)
    codes = np.tile(np.arange(k), len(decided))
    y = (gold[rows] == codes).astype(int)
    m = CodeMatcher().fit(X, np.zeros_like(X), rows, codes, y, examples)
    p = m.predict_proba(X)[:, k - 1]
    proto = unit_rows(examples[k - 1].mean(axis=0))
    cos = X @ proto
    rare = gold == k - 1
    auc_matcher, auc_cosine = _auc(p[rare], p[~rare]), _auc(cos[rare], cos[~rare])
    # Cosine to code 11's examples is swamped by the shared noise; the matcher learned from the
    # other eleven codes to weigh the dimensions that separate codes.
    assert auc_cosine < 0.9 and auc_matcher > 0.98, (auc_matcher, auc_cosine)


def test_log_odds_for_all_codes_equal_the_pair_features_model():
    # decision_function scores every code with two matrix products; it must be the logistic
    # regression of the pair features it was fitted on.
    examples, X, gold = _nuisance_world(k=5, per=10)
    P = np.roll(X, 1, axis=0)
    rows = np.repeat(np.arange(len(X)), 5)
    codes = np.tile(np.arange(5), len(X))
    y = (gold[rows] == codes).astype(int)
    m = CodeMatcher().fit(X, P, rows, codes, y, examples)
    z = m.decision_function(X[:7], P[:7])
    for c in range(5):
        R = np.broadcast_to(unit_rows(m.sums_[c]), (7, X.shape[1]))
        F = m._pair_features(X[:7], P[:7], R, m._nearest(X[:7], m.near_vecs_[c]), np.full(7, c), 5)
        assert np.allclose(z[:, c], F @ m.coef_ + m.intercept_, atol=1e-4)


def test_a_passage_is_not_its_own_nearest_example():
    # A confirmed passage joins its code's prototype and nearest vectors. Were it left in them
    # for its own training pair, every positive would find itself at similarity 1.0 and the
    # matcher would learn that "similar to a confirmed passage" means a match, even where the
    # labels are noise. Random vectors, random labels: nothing to learn, so no weight on the
    # nearest-vector column and fresh passages at the base rate.
    rng = np.random.default_rng(1)
    k, n, d = 6, 300, 32
    X = unit_rows(rng.normal(size=(n, d))).astype(np.float32)
    examples = [unit_rows(rng.normal(size=(5, d))).astype(np.float32) for _ in range(k)]
    rows = np.repeat(np.arange(n), k)
    codes = np.tile(np.arange(k), n)
    gold = rng.integers(0, k, size=n)
    y = (gold[rows] == codes).astype(int)
    m = CodeMatcher().fit(X, np.zeros_like(X), rows, codes, y, examples)
    w_near = m.coef_[2 * d + 1]
    assert abs(w_near) < 1.0, w_near
    fresh = unit_rows(rng.normal(size=(200, d))).astype(np.float32)
    assert abs(m.predict_proba(fresh).mean() - 1 / k) < 0.03


def test_sampled_pairs_keep_the_base_rate():
    k = 12
    examples, X, gold = _nuisance_world(k=k, per=40)
    rows = np.repeat(np.arange(len(X)), k)
    codes = np.tile(np.arange(k), len(X))
    y = (gold[rows] == codes).astype(int)
    full = CodeMatcher().fit(X, np.zeros_like(X), rows, codes, y, examples)
    capped = CodeMatcher(max_pairs=1500).fit(X, np.zeros_like(X), rows, codes, y, examples)
    # 480 positives kept of 1,500 pairs (base rate 1/12 becomes 1/3), weighted back.
    assert abs(capped.predict_proba(X).mean() - 1 / k) < 0.03
    assert abs(full.predict_proba(X).mean() - 1 / k) < 0.03


def test_arrays_round_trip():
    examples, X, gold = _nuisance_world(k=5, per=10)
    rows = np.repeat(np.arange(len(X)), 5)
    codes = np.tile(np.arange(5), len(X))
    m = CodeMatcher().fit(X, np.zeros_like(X), rows, codes, (gold[rows] == codes).astype(int), examples)
    back = CodeMatcher.from_arrays(m.to_arrays())
    assert np.array_equal(back.predict_proba(X), m.predict_proba(X))


def _scorer_with_decisions(tmp_path, matcher=True):
    enc = ClusterEncoder(spread=2.5, k=13)  # 13 directions: a test adds a code later
    tpl = template(k=12)
    scorer = LearnedScorer(features="emb", matcher=matcher).fit(tpl, enc)
    texts, gold = passages(k=12, per=8)
    inputs = Inputs(X=enc.encode(texts), texts=texts)
    rows = np.flatnonzero(gold < 6)
    labels = pd.DataFrame([(int(r), c, int(c == f"code{gold[r]}")) for r in rows for c in scorer.code_ids],
                          columns=["segment_id", "code_id", "label"])
    scorer.fit_labels(inputs, labels, row_of={i: i for i in range(len(texts))})
    return scorer, enc, tpl, inputs


def test_the_learned_scorer_saves_and_loads_its_matcher(tmp_path):
    scorer, enc, tpl, inputs = _scorer_with_decisions(tmp_path)
    assert scorer.matcher_ is not None and scorer.card()["matcher"] is True
    scorer.save(tmp_path)
    back = LearnedScorer.load(tmp_path, tpl, enc)
    assert back.matcher_ is not None
    assert np.array_equal(back.thresholds(), scorer.thresholds())
    assert np.allclose(back.score(inputs).confidence, scorer.score(inputs).confidence, atol=1e-6)


def test_a_code_added_since_the_retrain_is_served_by_the_prior(tmp_path):
    scorer, enc, tpl, inputs = _scorer_with_decisions(tmp_path)
    scorer.save(tmp_path)
    # A code added to the template since the retrain: the matcher has no prototype for it, so
    # the prior serves it (confidence and threshold); every other code keeps its matcher base,
    # which its classifier's blend and calibration were fitted on.
    bigger = template(k=13)
    back = LearnedScorer.load(tmp_path, bigger, enc)
    assert back.matcher_ is not None and back.matcher_codes_.tolist() == [True] * 12 + [False]
    before, after = scorer.score(inputs).confidence, back.score(inputs).confidence
    assert after.shape == (len(inputs.X), 13)
    assert np.allclose(after[:, :12], before, atol=1e-6)
    assert np.allclose(after[:, 12], back.prior.score(inputs).confidence[:, 12])
    assert back.thresholds()[12] == back.prior.thresholds[12]
    assert np.array_equal(back.thresholds()[:12], scorer.thresholds())
    # Saved again (a rescore does) and loaded again: the same.
    again = tmp_path / "again"
    again.mkdir()
    back.save(again)
    third = LearnedScorer.load(again, bigger, enc)
    assert np.allclose(third.score(inputs).confidence, after, atol=1e-6)


@pytest.mark.parametrize("matcher", [False, True])
def test_a_model_saved_without_a_matcher_loads_without_one(tmp_path, matcher):
    scorer, enc, tpl, inputs = _scorer_with_decisions(tmp_path, matcher=False)
    scorer.save(tmp_path)
    back = LearnedScorer.load(tmp_path, tpl, enc)
    assert back.matcher_ is None
    assert np.allclose(back.score(inputs).confidence, scorer.score(inputs).confidence, atol=1e-6)


def test_a_few_code_template_waits_for_enough_pairs():
    # Three codes give three pairs a confirmed passage: 30 passages are 90 decided and 54
    # example pairs for the matcher's 134 weights (64-d vectors), too few to fit them; 120
    # passages are enough. Codes get their own classifiers either way.
    enc = ClusterEncoder(spread=2.5, k=3)
    tpl = template(k=3)
    texts, gold = passages(k=3, per=40)
    inputs = Inputs(X=enc.encode(texts), texts=texts)

    def fitted(n):
        rows = np.random.default_rng(0).choice(len(texts), n, replace=False)
        labels = pd.DataFrame([(int(r), f"code{j}", int(gold[r] == j)) for r in rows for j in range(3)], columns=["segment_id", "code_id", "label"])
        return LearnedScorer(features="emb").fit(tpl, enc).fit_labels(inputs, labels, row_of={i: i for i in range(len(texts))})

    few, many = fitted(30), fitted(120)
    assert few.matcher_ is None and len(few.coef) == 3
    assert np.array_equal(few.thresholds(), [few.reports[c].threshold for c in few.code_ids])
    assert many.matcher_ is not None and len(many.coef) == 3


@pytest.mark.parametrize("matcher", [False, True])
def test_codes_leave_the_previous_turn_to_the_matcher(matcher, tmp_path):
    # Where the matcher is the base it carries the previous turn's embedding (its block of the
    # previous turn times each prototype), and the codes' own classifiers are fitted without
    # that block; with no matcher they keep it, as it is then the only way the previous turn's
    # meaning reaches a code.
    enc = ClusterEncoder(spread=2.5, k=12)
    tpl = template(k=12)
    texts, gold = passages(k=12, per=8)
    X = enc.encode(texts)
    X_prev = np.roll(X, 1, axis=0)
    inputs = Inputs(X=X, texts=texts, X_prev=X_prev, prev_texts=texts[-1:] + texts[:-1])
    rows = np.flatnonzero(gold < 6)
    scorer = LearnedScorer(features="emb+prev", matcher=matcher).fit(tpl, enc)
    labels = pd.DataFrame([(int(r), c, int(c == f"code{gold[r]}")) for r in rows for c in scorer.code_ids],
                          columns=["segment_id", "code_id", "label"])
    scorer.fit_labels(inputs, labels, row_of={i: i for i in range(len(texts))})
    d = X.shape[1]
    assert (scorer.matcher_ is not None) == matcher and len(scorer.coef) == 6
    for code, w in scorer.coef.items():
        assert w.shape == (2 * d,) and np.any(w[:d] != 0)
        assert np.all(w[d:] == 0) == matcher, code
    conf = scorer.score(inputs).confidence
    assert conf.shape == (len(texts), 12) and np.all((conf > 0) & (conf < 1))
    assert scorer.card()["code_features"] == ("emb" if matcher else "emb+prev")
    scorer.save(tmp_path)
    back = LearnedScorer.load(tmp_path, tpl, enc)
    assert back.card()["code_features"] == scorer.card()["code_features"]
    assert np.allclose(back.score(inputs).confidence, conf, atol=1e-6)
