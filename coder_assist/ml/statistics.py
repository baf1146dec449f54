"""Agreement statistics, one home for them: percent agreement, Cohen's kappa (scikit-learn's),
Krippendorff's alpha (nominal, ``krippendorff`` package) and Fleiss' kappa. Pure: arrays and
frames of answers in, numbers out; ``None`` where a figure is undefined. Who the raters are and
what counts as an item is :mod:`coder_assist.app.agreement`'s business.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd


def percent_agreement(a: Sequence, b: Sequence) -> float | None:
    """Share of items on which both raters gave the same answer (None: no items). The one
    percent agreement every page shows."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        raise ValueError("both raters need an answer on every item")
    return float((a == b).mean()) if len(a) else None


def cohen_kappa(a: Sequence, b: Sequence) -> float | None:
    """Cohen's kappa of two raters' categorical answers on the same items: scikit-learn's
    ``cohen_kappa_score``, the one kappa every page shows. None where it is undefined: fewer
    than two items, or one and the same answer from both throughout (chance agreement is then
    already perfect)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a), np.asarray(b)
    if len(a) != len(b):
        raise ValueError("both raters need an answer on every item")
    if len(a) < 2 or len(np.union1d(a, b)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        k = float(cohen_kappa_score(a, b))
    return None if math.isnan(k) else k


def krippendorff_alpha(data: Sequence[Sequence] | np.ndarray) -> float | None:
    """Krippendorff's alpha, nominal, for a raters x items table of category codes (numbers;
    NaN where a rater gave no answer). None where undefined (fewer than two categories, or no
    item with two answers)."""
    import krippendorff

    arr = np.asarray(data, dtype=float)
    if arr.ndim != 2 or arr.shape[1] == 0:
        return None
    pairable = (~np.isnan(arr)).sum(axis=0) >= 2
    values = arr[:, pairable]
    if not pairable.any() or len(np.unique(values[~np.isnan(values)])) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=arr, level_of_measurement="nominal"))


def fleiss_kappa(ratings: pd.DataFrame | np.ndarray) -> float | None:
    """Fleiss' kappa for an items x raters table of categories (every item rated by the same
    number of raters; rows with a missing rating are dropped)."""
    # Items are numbered afresh: counts are grouped by item below, and an index with several
    # levels (transcript, turn) would group by its first level only.
    df = pd.DataFrame(ratings).dropna(axis=0, how="any").reset_index(drop=True)
    if df.empty or df.shape[1] < 2:
        return None
    counts = pd.get_dummies(df.stack()).groupby(level=0).sum().to_numpy(dtype=float)  # items x categories
    n = df.shape[1]
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    pe = float((p_j**2).sum())
    if pe >= 1.0 - 1e-12:
        return None
    return (float(p_i.mean()) - pe) / (1.0 - pe)


def binary_figures(a: np.ndarray, b: np.ndarray) -> dict:
    """The agreement table of two raters' yes (1) / no (0) answers on the same items and its
    figures: n, both_yes, a_only, b_only, both_no, percent_agreement, kappa, alpha."""
    n = len(a)
    return {
        "n": n,
        "both_yes": int(((a == 1) & (b == 1)).sum()),
        "a_only": int(((a == 1) & (b == 0)).sum()),
        "b_only": int(((a == 0) & (b == 1)).sum()),
        "both_no": int(((a == 0) & (b == 0)).sum()),
        "percent_agreement": percent_agreement(a, b),
        "kappa": cohen_kappa(a, b),
        "alpha": krippendorff_alpha(np.vstack([a, b])) if n else None,
    }


__all__ = ["binary_figures", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha", "percent_agreement"]
