"""Score segments against codes and turn the scores into suggestions with evidence.

:class:`ExampleSimilarityScorer` is the cold-start scorer: each code is represented by its
example excerpts and its description. A segment's similarity to a code blends the cosine to
the code's prototype (mean of its examples and description) with the cosine to its nearest
single example (which is also the evidence shown to the researcher). On AnnoMI (4 therapist
codes, 5 examples each, fold 0, 10 draws) prototype alone ranked the gold code first for
0.50 of utterances, nearest-example alone 0.47, the blend 0.49, the description alone 0.26
(chance 0.25): the blend keeps the prototype's accuracy and gives a concrete piece of evidence.

Confidence is calibrated on the template itself: every example is scored leave-one-out
against its own code (a positive) and against every other code (negatives), and one logistic
curve is fitted to those pooled scores. A confidence of 0.2 therefore reads "excerpts of the
template that score like this belong to the code about 20% of the time", the same for every
code. Each excerpt belongs to one of K codes, so the base rate is 1/K: with the 49-code study
template, cold-start confidences are honest and low (median top confidence about 0.04 on the
demo), and the default threshold is relative to that base rate (:func:`auto_threshold`). The
learning loop replaces this with calibration on the researcher's own decisions.

Any :class:`Scorer` (e.g. a classifier trained on decisions) plugs into :func:`suggest`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.template import Code, Template
from .encoder import Encoder

#: Weight of the nearest-example cosine against the prototype cosine.
NEAREST_WEIGHT = 0.5
#: How strongly a closer counter-example pulls a code's score down.
COUNTER_PENALTY = 0.5
#: Used when the template has too few examples to fit a calibration curve (slope, intercept).
FALLBACK_CALIBRATION = (6.0, -5.5)
#: The default threshold is this many times the 1/K base rate of a code.
AUTO_THRESHOLD_LIFT = 2.0


def auto_threshold(n_codes: int) -> float:
    """Default minimum confidence: twice the chance rate of a code (0.04 for 49 codes, 0.5 for 4)."""
    return min(0.5, AUTO_THRESHOLD_LIFT / max(n_codes, 1))


@dataclass
class Inputs:
    """What a scorer may look at for n segments: their embeddings and texts, and the previous
    turn's (context). The example-similarity scorer needs only ``X``."""

    X: np.ndarray
    texts: list[str] | None = None
    X_prev: np.ndarray | None = None
    prev_texts: list[str] | None = None

    @classmethod
    def of(cls, value: "Inputs | np.ndarray") -> "Inputs":
        return value if isinstance(value, Inputs) else cls(X=np.asarray(value))


@dataclass
class Scores:
    """Scores of n segments against k codes."""

    code_ids: list[str]
    confidence: np.ndarray  # (n, k) in [0, 1], comparable across codes
    similarity: np.ndarray  # (n, k) raw blended cosine
    evidence_text: np.ndarray  # (n, k) object: nearest example (or description) text
    evidence_source: np.ndarray  # (n, k) object: "example" / "description" / its source note
    evidence_similarity: np.ndarray  # (n, k) cosine to that evidence
    #: Per-code decision thresholds (k,), where the scorer has learned them; else None and
    #: :func:`suggest` uses one threshold for all codes.
    thresholds: np.ndarray | None = None

    def decision_margin(self) -> np.ndarray:
        """(n, k) how far each confidence is above its code's threshold, in log-odds: a code
        with a high base rate needs more confidence than a rare one to be the best pick."""
        t = self.thresholds if self.thresholds is not None else np.full(len(self.code_ids), 0.5)
        p = np.clip(self.confidence, 1e-6, 1 - 1e-6)
        tt = np.clip(t, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)) - np.log(tt / (1 - tt))


class Scorer(ABC):
    """Maps segment embeddings to per-code confidences with evidence."""

    code_ids: list[str]
    version: str = "example-similarity"
    #: Whether :meth:`score` uses the texts and the previous turn, not just the embeddings.
    needs_context: bool = False

    @abstractmethod
    def fit(self, template: Template, encoder: Encoder) -> "Scorer": ...

    @abstractmethod
    def score(self, inputs: Inputs | np.ndarray) -> Scores:
        """Score segments given as :class:`Inputs` (or just their embedding matrix)."""


@dataclass
class _CodeModel:
    code: Code
    ex_vecs: np.ndarray  # (m, d) examples, then the description last if present
    ex_texts: list[str]
    ex_sources: list[str]
    prototype: np.ndarray  # (d,)
    counter_vecs: np.ndarray  # (c, d)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n == 0, 1.0, n)


class ExampleSimilarityScorer(Scorer):
    """Cold-start scorer from the template's examples and descriptions."""

    def __init__(self, nearest_weight: float = NEAREST_WEIGHT, counter_penalty: float = COUNTER_PENALTY):
        self.nearest_weight = nearest_weight
        self.counter_penalty = counter_penalty
        self.calibration: tuple[float, float] = FALLBACK_CALIBRATION
        self.calibration_n: tuple[int, int] = (0, 0)  # positives, negatives used

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, template: Template, encoder: Encoder) -> "ExampleSimilarityScorer":
        leaves = template.leaves()
        texts: list[str] = []
        for c in leaves:
            texts += [e.text for e in c.examples] + ([c.description] if c.description else []) + [e.text for e in c.counter_examples]
        vecs = encoder.encode(texts)
        pos = 0
        self._models: list[_CodeModel] = []
        for c in leaves:
            n_ex, n_desc, n_ctr = len(c.examples), int(bool(c.description)), len(c.counter_examples)
            ex = vecs[pos : pos + n_ex + n_desc]
            ctr = vecs[pos + n_ex + n_desc : pos + n_ex + n_desc + n_ctr]
            pos += n_ex + n_desc + n_ctr
            self._models.append(
                _CodeModel(
                    code=c,
                    ex_vecs=ex,
                    ex_texts=[e.text for e in c.examples] + ([c.description] if c.description else []),
                    ex_sources=[e.source or "example" for e in c.examples] + (["description"] if c.description else []),
                    prototype=_unit(ex.mean(axis=0)),
                    counter_vecs=ctr,
                )
            )
        self.code_ids = [m.code.id for m in self._models]
        self.template = template
        self.encoder_id = encoder.model_id
        self._fit_calibration()
        return self

    def _raw(self, X: np.ndarray, ex: np.ndarray, proto: np.ndarray, ctr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sims = X @ ex.T  # (n, m)
        nearest = sims.max(axis=1)
        s = self.nearest_weight * nearest + (1 - self.nearest_weight) * (X @ proto)
        if len(ctr):
            excess = np.clip((X @ ctr.T).max(axis=1) - nearest, 0, None)
            s = s - self.counter_penalty * excess
        return s, sims

    def _fit_calibration(self) -> None:
        """Leave-one-out scores of the template's own examples: positives for their code,
        negatives for every other code; one logistic curve for all codes."""
        pos_scores: list[float] = []
        queries: list[np.ndarray] = []
        owner: list[int] = []
        for i, m in enumerate(self._models):
            n_ex = len(m.code.examples)
            for j in range(n_ex):
                x = m.ex_vecs[j : j + 1]
                keep = np.arange(len(m.ex_vecs)) != j
                if keep.sum() == 0:
                    continue
                rest = m.ex_vecs[keep]
                s, _ = self._raw(x, rest, _unit(rest.mean(axis=0)), m.counter_vecs)
                pos_scores.append(float(s[0]))
                queries.append(m.ex_vecs[j])
                owner.append(i)
        neg_scores: list[float] = []
        if queries:
            # Every example against every other code in one product per code (not one per
            # pair: 12,000 tiny products took 2-4 s of each run); row-major order keeps the
            # negatives in the order of the pairwise loop.
            Q = np.stack(queries)
            S = np.column_stack([self._raw(Q, o.ex_vecs, o.prototype, o.counter_vecs)[0] for o in self._models])
            neg_scores = [float(v) for v in S[np.asarray(owner)[:, None] != np.arange(len(self._models))[None, :]]]
        self.calibration_n = (len(pos_scores), len(neg_scores))
        if len(pos_scores) < 5 or len(neg_scores) < 5:
            self.calibration = FALLBACK_CALIBRATION
            return
        from sklearn.linear_model import LogisticRegression

        x = np.array(pos_scores + neg_scores)[:, None]
        y = np.r_[np.ones(len(pos_scores)), np.zeros(len(neg_scores))]
        # No class re-weighting: the 1-in-K base rate of the pooled pairs is the honest prior
        # for a passage that carries about one code.
        lr = LogisticRegression(C=10.0).fit(x, y)
        self.calibration = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))

    # -- scoring ---------------------------------------------------------------------------
    def score(self, inputs: Inputs | np.ndarray) -> Scores:
        X = Inputs.of(inputs).X
        n, k = len(X), len(self._models)
        sim = np.zeros((n, k), dtype=np.float32)
        ev_text = np.empty((n, k), dtype=object)
        ev_src = np.empty((n, k), dtype=object)
        ev_sim = np.zeros((n, k), dtype=np.float32)
        for j, m in enumerate(self._models):
            s, sims = self._raw(X, m.ex_vecs, m.prototype, m.counter_vecs)
            sim[:, j] = s
            best = sims.argmax(axis=1)
            ev_sim[:, j] = sims[np.arange(n), best]
            ev_text[:, j] = np.asarray(m.ex_texts, dtype=object)[best]
            ev_src[:, j] = np.asarray(m.ex_sources, dtype=object)[best]
        a, b = self.calibration
        conf = 1.0 / (1.0 + np.exp(-(a * sim + b)))
        return Scores(self.code_ids, conf.astype(np.float32), sim, ev_text, ev_src, ev_sim)


SUGGESTION_COLUMNS = [
    "segment",
    "code_id",
    "rank",
    "confidence",
    "similarity",
    "evidence",
    "evidence_source",
    "evidence_similarity",
]


def suggest(scores: Scores, *, threshold: float | None = None, top_k: int | None = 3) -> pd.DataFrame:
    """Pick suggestions: every code at or above its threshold, best first (by log-odds above the
    threshold), at most ``top_k`` per segment (multi-label). The threshold is ``threshold`` when
    given, else the scorer's learned per-code thresholds, else :func:`auto_threshold`.
    ``segment`` is the row index into the scored segments."""
    conf = scores.confidence
    if conf.size == 0:
        return pd.DataFrame(columns=SUGGESTION_COLUMNS)
    if threshold is not None or scores.thresholds is None:
        t = np.full(conf.shape[1], auto_threshold(len(scores.code_ids)) if threshold is None else threshold)
    else:
        t = scores.thresholds  # learned per-code thresholds
    margin = Scores(scores.code_ids, conf, conf, conf, conf, conf, t).decision_margin()
    order = np.argsort(-margin, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    rows, ranks = np.nonzero(np.take_along_axis(margin, order, axis=1) >= 0)
    cols = order[rows, ranks]
    return pd.DataFrame(
        {
            "segment": rows,
            "code_id": np.asarray(scores.code_ids, dtype=object)[cols],
            "rank": ranks + 1,
            "confidence": conf[rows, cols].astype(float),
            "similarity": scores.similarity[rows, cols].astype(float),
            "evidence": scores.evidence_text[rows, cols],
            "evidence_source": scores.evidence_source[rows, cols],
            "evidence_similarity": scores.evidence_similarity[rows, cols].astype(float),
        },
        columns=SUGGESTION_COLUMNS,
    )
