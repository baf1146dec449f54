"""Calibration of the learned scorer's blended log-odds (Platt scaling) and the clipped logit
both sides of the blend use; the threshold helpers of the cold-start prior (AUC, F1-best
threshold, shrinkage toward a pooled threshold); and the reliability table that checks either.

The cold-start scorer's one curve (:meth:`coder_assist.ml.suggest.ExampleSimilarityScorer._fit_calibration`)
is not merged here: it is scikit-learn's lbfgs LogisticRegression(C=10) on pooled template
scores, and swapping in :func:`platt` would move cold-start confidences in the last digits.
"""

from __future__ import annotations

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] before a logit, so a 0 or 1 cannot become infinite.
EPS = 1e-4


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def platt(z: np.ndarray, y: np.ndarray, C: float = 1.0) -> tuple[float, float]:
    """Platt scaling: p = sigmoid(a z + b), fitted by Newton's method on the objective of
    sklearn's LogisticRegression(C) (L2 on the slope, none on the intercept), which this
    replaces because 245 tiny sklearn fits a retrain cost more than the classifiers."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = b = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-(a * z + b)))
        r = p - y
        g = np.array([a + C * (r @ z), C * r.sum()])
        w = p * (1 - p)
        H = np.array([[1 + C * (w @ (z * z)), C * (w @ z)], [C * (w @ z), C * w.sum() + 1e-12]])
        step = np.linalg.solve(H, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def apply_platt(z: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    a, b = ab
    return 1 / (1 + np.exp(-(a * z + b)))


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half): the ROC AUC."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    r = rankdata(np.r_[pos, neg])
    n1, n2 = len(pos), len(neg)
    return float((r[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))


def f1_threshold(pos: np.ndarray, neg: np.ndarray) -> float:
    """The threshold, one of the scores, at which ``pos`` against ``neg`` have the best F1
    (score >= threshold is a yes); of equally good ones the lowest."""
    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    cands = np.unique(np.r_[pos, neg])
    # Counts at or above each candidate by binary search on the sorted scores: the code matcher
    # asks this of 245,000 held-out pairs, where a candidates x scores comparison needs 50 GiB.
    tp = len(pos) - np.searchsorted(np.sort(pos), cands, side="left")
    fp = len(neg) - np.searchsorted(np.sort(neg), cands, side="left")
    f1 = 2 * tp / np.maximum(2 * tp + fp + (len(pos) - tp), 1)
    return float(cands[int(np.argmax(f1))])


def shrink_threshold(own: float, pooled: float, n: int, shrink: float) -> float:
    """A probability threshold estimated from ``n`` examples, pulled toward ``pooled``: the
    log-odds average with weights n and ``shrink`` (n = 0 gives ``pooled``)."""
    w = n / (n + shrink) if n + shrink > 0 else 0.0
    z = w * float(logit(np.float64(own))) + (1 - w) * float(logit(np.float64(pooled)))
    return float(1 / (1 + np.exp(-z)))


def reliability(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> list[dict]:
    """A reliability table: ``confidence`` in ``bins`` equal-width bins, each with n,
    mean_confidence and hit_rate (the share of ``hit`` that is true). A calibrated model has
    hit_rate close to mean_confidence in every bin. Empty bins are left out."""
    c = np.asarray(confidence, dtype=np.float64).ravel()
    h = np.asarray(hit, dtype=np.float64).ravel()
    if c.shape != h.shape:
        raise ValueError(f"confidence and hit differ in size: {c.shape} vs {h.shape}")
    idx = np.clip((c * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "n": int(m.sum()),
                        "mean_confidence": round(float(c[m].mean()), 4), "hit_rate": round(float(h[m].mean()), 4)})
    return out


__all__ = ["EPS", "logit", "platt", "apply_platt", "auc", "f1_threshold", "shrink_threshold", "reliability"]


def cap_rows(y: np.ndarray, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """Which of the labelled rows ``y`` (1/0) to train on when there are more than ``cap``:
    every positive up to half the cap (more when negatives are few), negatives at random for
    the rest; and the weights (positive, negative) that give the sample the full counts, so
    calibrated confidences keep the full base rate. A code's classifier and the code matcher
    sample this way."""
    if len(y) <= cap:
        return np.arange(len(y)), (1.0, 1.0)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    k_pos = min(len(pos), max(cap // 2, cap - len(neg)))
    k_neg = min(len(neg), cap - k_pos)
    idx = np.sort(np.r_[rng.choice(pos, k_pos, replace=False), rng.choice(neg, k_neg, replace=False)])
    return idx, (len(pos) / max(k_pos, 1), len(neg) / max(k_neg, 1))
