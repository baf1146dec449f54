import numpy as np
import pytest

from coder_assist.ml.calibration import auc, f1_threshold, reliability, shrink_threshold


def test_reliability_bins_and_rates():
    conf = np.array([0.05, 0.08, 0.55, 0.61, 0.64, 0.99, 1.0])
    hit = np.array([0, 0, 1, 1, 0, 1, 1], dtype=bool)
    rows = reliability(conf, hit)
    assert [r["bin"] for r in rows] == ["0.0-0.1", "0.5-0.6", "0.6-0.7", "0.9-1.0"]  # empty bins left out, 1.0 in the last
    assert [r["n"] for r in rows] == [2, 1, 2, 2]
    assert [r["hit_rate"] for r in rows] == [0.0, 1.0, 0.5, 1.0]
    assert rows[2]["mean_confidence"] == pytest.approx(0.625)
    assert reliability(np.zeros(0), np.zeros(0)) == []
    with pytest.raises(ValueError):
        reliability(conf, hit[:3])


def test_f1_threshold_and_auc():
    pos, neg = np.array([0.9, 0.8, 0.3]), np.array([0.5, 0.2, 0.1, 0.05])
    # >= 0.8: P 1, R 2/3, F1 0.8; >= 0.3: 3 TP 1 FP (0.5), F1 6/7 -- the best.
    assert f1_threshold(pos, neg) == pytest.approx(0.3)
    assert auc(pos, neg) == pytest.approx(11 / 12)
    assert auc(np.array([1.0, 1.0]), np.array([1.0])) == pytest.approx(0.5)  # ties count half


def test_f1_threshold_matches_counting_every_candidate_with_ties():
    # Counts by binary search (the code matcher asks this of 245,000 pairs) must equal counting
    # every score against every candidate, ties and the lowest-of-equals rule included.
    rng = np.random.default_rng(0)
    for _ in range(200):
        pos = np.round(rng.random(rng.integers(0, 25)), 1)
        neg = np.round(rng.random(rng.integers(1, 40)) * 0.8, 1)
        cands = np.unique(np.r_[pos, neg])
        tp = (pos[None, :] >= cands[:, None]).sum(axis=1)
        fp = (neg[None, :] >= cands[:, None]).sum(axis=1)
        f1 = 2 * tp / np.maximum(2 * tp + fp + (len(pos) - tp), 1)
        assert f1_threshold(pos, neg) == cands[int(np.argmax(f1))]


def test_shrink_threshold_pulls_few_examples_toward_pooled():
    own, pooled = 0.4, 0.05
    assert shrink_threshold(own, pooled, 0, 10) == pytest.approx(pooled)
    few, many = shrink_threshold(own, pooled, 2, 10), shrink_threshold(own, pooled, 200, 10)
    assert pooled < few < many < own
    assert abs(many - own) < 0.04 < abs(few - own)
    # The average is in log-odds: 5 of 15 toward 0.4 from 0.05.
    lo = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert lo(shrink_threshold(own, pooled, 5, 10)) == pytest.approx(lo(own) / 3 + 2 * lo(pooled) / 3)
