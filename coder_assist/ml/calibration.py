"""Calibration of the learned scorer's blended log-odds (Platt scaling) and the clipped logit
both sides of the blend use.

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


__all__ = ["EPS", "logit", "platt", "apply_platt"]
