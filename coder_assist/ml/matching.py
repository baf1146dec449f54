"""One model of how well a passage matches a code, shared by every code and learned from every
decision at once: the learned scorer's base. Each code's own classifier is blended with it, and
a code without a classifier yet is served by it alone.

A per-code classifier learns from its own code's decisions only, so a code with two confirmed
passages has nothing but the template's similarity prior. The matcher learns instead which
directions of the embedding matter when a passage is compared with a code's description,
examples and confirmed passages: one logistic regression over (passage, code) pairs whose
features are the passage's embedding times the code's prototype (and the previous turn's times
the prototype), their cosine, the passage's similarity to the code's nearest example or confirmed
passage, and one bias per code. A rare code gains from every other code's decisions.

Measured by the simulated researcher (bench/simulate_all.py, passage review, the product's
queue, 5 folds; macro-F1 at 100 / 300 / 500 passages, with the matcher against without):
nhs-fft (40 codes) .289 / .330 / .352 against .223 / .290 / .326, and no checkpoint below the
one before (the first retrain fell .034 below the cold start without it); the therapist fine
codes (8) .308 / .354 / .371 against .308 / .344 / .373. A template of few codes gives few pairs
a passage, and the matcher waits for two per weight (``MATCHER_PAIRS_PER_WEIGHT`` in
:mod:`coder_assist.ml.classifier`): AnnoMI therapist (4 codes) has them at 500 passages (.744
either way), client (3) not within 500.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from .calibration import cap_rows
from .suggest import unit_rows

#: At most this many (passage, code) pairs train the matcher: every positive up to half of
#: them, negatives at random for the rest, weighted back to their full count. 5,000 confirmed
#: passages of a 49-code template are 245,000 pairs; a sample keeps a retrain within budget.
MAX_PAIRS = 8_000
#: At most this many confirmed passages per code join its examples for the nearest-example
#: feature (the prototype uses them all): the feature's cost grows with their number on every
#: passage scored.
MAX_NEAREST = 30


class CodeMatcher:
    """A logistic regression over (passage, code) pairs shared by every code.

    ``fit`` takes the embeddings of the labelled passages, their previous turns', the labelled
    pairs (row, code index, 0/1) and each code's example vectors (the template's excerpts and
    description); ``predict_proba`` gives (n, k) confidences for any passages. Fitted state ends
    in ``_``; :meth:`to_arrays` and :meth:`from_arrays` keep it as plain numeric arrays."""

    def __init__(self, C: float = 1.0, max_pairs: int = MAX_PAIRS, max_nearest: int = MAX_NEAREST, seed: int = 0):
        self.C = C
        self.max_pairs = max_pairs
        self.max_nearest = max_nearest
        self.seed = seed

    @staticmethod
    def n_weights(d: int, k: int) -> int:
        """Weights fitted for ``d``-dimensional embeddings and ``k`` codes (and an intercept)."""
        return 2 * d + 2 + k + 1

    # -- features --------------------------------------------------------------------------
    def _scale(self, d: int) -> float:
        # Unit vectors' elementwise products are about 1/d each; scaled so the penalty treats
        # them like the cosine and nearest-example columns.
        return float(np.sqrt(d))

    def _pair_features(self, X: np.ndarray, P: np.ndarray, R: np.ndarray, near: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
        """Rows for pairs: passage ``X``/``P`` (n, d) against prototypes ``R`` (n, d)."""
        s = self._scale(X.shape[1])
        onehot = np.zeros((len(X), k), dtype=np.float32)
        onehot[np.arange(len(X)), codes] = 1.0
        cos = np.einsum("ij,ij->i", unit_rows(X), R)
        return np.hstack([X * R * s, P * R * s, cos[:, None], near[:, None], onehot]).astype(np.float32)

    @staticmethod
    def _nearest(Q: np.ndarray, V: np.ndarray, skip: np.ndarray | None = None) -> np.ndarray:
        """Each row of ``Q``'s best cosine with the rows of ``V`` (0 when none); ``skip[i]``:
        a row of ``V`` that row i may not use (itself), or -1."""
        if len(V) == 0:
            return np.zeros(len(Q), dtype=np.float32)
        S = Q @ V.T
        if skip is not None:
            own = np.flatnonzero(skip >= 0)
            S[own, skip[own]] = -np.inf
        best = S.max(axis=1)
        return np.where(np.isfinite(best), best, 0.0).astype(np.float32)

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X: np.ndarray, P: np.ndarray, rows: np.ndarray, codes: np.ndarray, y: np.ndarray, examples: Sequence[np.ndarray]) -> "CodeMatcher":
        """``X``, ``P``: (n, d) embeddings of passages and of their previous turns; ``rows``,
        ``codes``, ``y``: the labelled pairs (one per passage and code); ``examples``: per code,
        its example vectors (m_c, d)."""
        k, d = len(examples), X.shape[1]
        rows, codes, y = np.asarray(rows, dtype=np.int64), np.asarray(codes, dtype=np.int64), np.asarray(y, dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        sums = np.stack([e.sum(axis=0) if len(e) else np.zeros(d, np.float32) for e in examples]).astype(np.float64)
        pos = y == 1
        # Each code's confirmed passages summed by one sparse product (np.add.at took a second
        # at 5,000 passages).
        used, at = np.unique(rows[pos], return_inverse=True)
        member = sp.csr_matrix((np.ones(len(at)), (codes[pos], at)), shape=(k, len(used)))
        sums += member @ X[used].astype(np.float64)
        self.sums_ = sums.astype(np.float32)
        # The nearest-example feature: the template's examples and up to max_nearest confirmed
        # passages of each code.
        near_rows: list[np.ndarray] = []
        for c in range(k):
            r = np.unique(rows[pos & (codes == c)])
            near_rows.append(rng.choice(r, self.max_nearest, replace=False) if len(r) > self.max_nearest else r)
        self.near_vecs_ = [np.vstack([examples[c], X[near_rows[c]]]).astype(np.float32) for c in range(k)]

        # Every candidate pair, decisions' and examples', before any feature is built: the
        # sample is drawn from all of them, so the cost stays flat however many decisions there are.
        ex_vecs = np.vstack(examples).astype(np.float32) if any(len(e) for e in examples) else np.zeros((0, d), np.float32)
        ex_code = np.repeat(np.arange(k), [len(e) for e in examples])
        ex_local = np.concatenate([np.arange(len(e)) for e in examples]) if len(ex_code) else np.zeros(0, dtype=np.int64)
        # An example is a positive for its own code and a negative for every other code (a code
        # with one example has no leave-one-out prototype, so it gives no pairs).
        usable = np.flatnonzero(np.bincount(ex_code, minlength=k)[ex_code] >= 2)
        e_idx = np.repeat(usable, k)
        e_code = np.tile(np.arange(k), len(usable))
        e_y = (ex_code[e_idx] == e_code).astype(np.int64)
        src = np.r_[np.zeros(len(rows), dtype=np.int64), np.ones(len(e_idx), dtype=np.int64)]
        idx, code, target = np.r_[rows, e_idx], np.r_[codes, e_code], np.r_[y, e_y]
        keep, weight = cap_rows(target, self.max_pairs, rng)
        src, idx, code, target = src[keep], idx[keep], code[keep], target[keep]
        self.k_, self.d_ = k, d
        if len(np.unique(target)) < 2:
            # One class only: the base rate, whatever the passage.
            rate = float(np.clip(target.mean() if len(target) else 0.5, 1e-3, 1 - 1e-3))
            self.coef_, self.intercept_ = np.zeros(2 * d + 2 + k, np.float32), float(np.log(rate / (1 - rate)))
            return self
        dec, ex = src == 0, src == 1
        F = np.empty((len(target), 2 * d + 2 + k), dtype=np.float32)
        # A confirmed passage sits in its code's prototype and maybe among its nearest vectors,
        # an example in its own code's: each is left out of its own pair's features (else it
        # would find itself, and the matcher would learn that similarity 1.0 means a match).
        place = [{int(v): j + len(examples[c]) for j, v in enumerate(near_rows[c])} for c in range(k)]
        own_dec = target[dec] == 1
        skip_dec = np.array([place[c].get(int(r), -1) if o else -1 for r, c, o in zip(idx[dec], code[dec], own_dec)], dtype=np.int64)
        F[dec] = self._features(X[idx[dec]], P[idx[dec]], code[dec], own_dec, skip_dec)
        own_ex = ex_code[idx[ex]] == code[ex]
        skip_ex = np.where(own_ex, ex_local[idx[ex]], -1)
        F[ex] = self._features(ex_vecs[idx[ex]], np.zeros((int(ex.sum()), d), np.float32), code[ex], own_ex, skip_ex)
        w = np.where(target == 1, weight[0], weight[1])
        clf = LogisticRegression(C=self.C, max_iter=500).fit(F, target, sample_weight=w)
        self.coef_ = clf.coef_.ravel().astype(np.float32)
        self.intercept_ = float(clf.intercept_[0])
        return self

    def _features(self, Q: np.ndarray, P: np.ndarray, codes: np.ndarray, own: np.ndarray, skip: np.ndarray) -> np.ndarray:
        """Pair features of vectors ``Q`` (previous turns ``P``) against ``codes``; ``own``: the
        vector is in its code's prototype sum (left out); ``skip``: its place among the code's
        nearest vectors, or -1."""
        k, d = self.k_, Q.shape[1]
        out = np.empty((len(Q), 2 * d + 2 + k), dtype=np.float32)
        for c in np.unique(codes):
            m = np.flatnonzero(codes == c)
            S = np.broadcast_to(self.sums_[c], (len(m), d)).copy()
            S[own[m]] -= Q[m[own[m]]]
            near = self._nearest(Q[m], self.near_vecs_[c], skip[m])
            out[m] = self._pair_features(Q[m], P[m], unit_rows(S), near, np.full(len(m), c), k)
        return out

    # -- scoring ---------------------------------------------------------------------------
    def nearest_all(self, X: np.ndarray) -> np.ndarray:
        """(n, k): each passage's best cosine with each code's nearest vectors, from one matrix
        product over all codes' vectors (a product per code cost 20 times more)."""
        sizes = np.array([len(v) for v in self.near_vecs_])
        out = np.zeros((len(X), self.k_), dtype=np.float32)
        has = np.flatnonzero(sizes)
        if len(has) == 0:
            return out
        S = X @ np.vstack([self.near_vecs_[c] for c in has]).T
        starts = np.r_[0, np.cumsum(sizes[has])[:-1]]
        out[:, has] = np.maximum.reduceat(S, starts, axis=1)
        return out

    def decision_function(self, X: np.ndarray, P: np.ndarray | None = None, *, block: int = 8192) -> np.ndarray:
        """Log-odds (n, k) for passages ``X`` (previous turns ``P``), ``block`` rows at a time
        (the nearest-vector products of a million passages would not fit in memory at once)."""
        k, d = self.k_, self.d_
        s = self._scale(d)
        R = unit_rows(self.sums_.astype(np.float32))
        w_x, w_p = self.coef_[:d], self.coef_[d : 2 * d]
        w_cos, w_near, bias = self.coef_[2 * d], self.coef_[2 * d + 1], self.coef_[2 * d + 2 :]
        # The pair features are products with the code's prototype, so every code's log-odds
        # for every passage is two matrix products, not a feature matrix per code.
        Wx, Wp = (R * w_x).T * s, (R * w_p).T * s
        out = np.empty((len(X), k), dtype=np.float32)
        for i0 in range(0, len(X), block):
            x = np.asarray(X[i0 : i0 + block], dtype=np.float32)
            z = x @ Wx + w_cos * (unit_rows(x) @ R.T)
            if P is not None:
                z += np.asarray(P[i0 : i0 + block], dtype=np.float32) @ Wp
            if w_near != 0:
                z += w_near * self.nearest_all(x)
            out[i0 : i0 + block] = z + bias + self.intercept_
        return out

    def predict_proba(self, X: np.ndarray, P: np.ndarray | None = None) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self.decision_function(X, P)))).astype(np.float32)

    def subset(self, codes: Sequence[int]) -> "CodeMatcher":
        """The same matcher for some of its codes, in the order given (a template whose codes
        changed since the fit keeps the matcher for the codes it still has)."""
        codes = list(codes)
        out = CodeMatcher(self.C, self.max_pairs, self.max_nearest, self.seed)
        d = self.d_
        out.coef_ = np.r_[self.coef_[: 2 * d + 2], self.coef_[2 * d + 2 :][codes]].astype(np.float32)
        out.intercept_ = self.intercept_
        out.sums_ = self.sums_[codes]
        out.near_vecs_ = [self.near_vecs_[c] for c in codes]
        out.k_, out.d_ = len(codes), d
        return out

    # -- persistence -----------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        sizes = np.array([len(v) for v in self.near_vecs_], dtype=np.int64)
        return {
            "coef": self.coef_, "intercept": np.array([self.intercept_], dtype=np.float64), "sums": self.sums_,
            "near_vecs": np.vstack(self.near_vecs_) if self.near_vecs_ else np.zeros((0, self.d_), np.float32), "near_sizes": sizes,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "CodeMatcher":
        self = cls()
        self.coef_ = np.asarray(arrays["coef"], dtype=np.float32)
        self.intercept_ = float(arrays["intercept"][0])
        self.sums_ = np.asarray(arrays["sums"], dtype=np.float32)
        self.k_, self.d_ = self.sums_.shape
        ends = np.cumsum(arrays["near_sizes"])
        self.near_vecs_ = np.split(np.asarray(arrays["near_vecs"], dtype=np.float32), ends[:-1]) if len(ends) else []
        return self


__all__ = ["CodeMatcher", "MAX_PAIRS", "MAX_NEAREST"]
