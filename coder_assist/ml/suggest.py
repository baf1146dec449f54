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
demo). The learning loop replaces this with calibration on the researcher's own decisions.

The decisions at cold start come from per-code thresholds, set from the same leave-one-out
scores (:meth:`ExampleSimilarityScorer._fit_thresholds`): each code's F1-best threshold on its
own examples, shrunk toward the pooled one (five examples are too few to trust alone; codes of
an exclusive group keep :func:`auto_threshold` and the argmax), and a passage's best code is
suggested when it is within :data:`TOP_MARGIN` log-odds of its threshold. Where the template's
examples do not separate their codes left out (leave-one-out AUC at or below 0.5, a falling
curve, or too few examples) the scorer is ``calibrated = False``: its confidences stay near the
base rate in the order of the similarities, every passage's best code is shown, and the app
says the number ranks and is not a probability.
See docs/calibration.md for the rules that were compared and the benchmark behind the choice.

Any :class:`Scorer` (e.g. a classifier trained on decisions) plugs into :func:`suggest`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.template import Code, Template
from .calibration import auc as loo_auc
from .calibration import f1_threshold, shrink_threshold
from .encoder import Encoder

#: Weight of the nearest-example cosine against the prototype cosine.
NEAREST_WEIGHT = 0.5
#: How strongly a closer counter-example pulls a code's score down.
COUNTER_PENALTY = 0.5
#: Slope of the ranking curve of an uncalibrated scorer: confidences stay near the 1/K base rate
#: (about half to twice it over the whole cosine range) and only order the codes.
RANK_SLOPE = 1.0
#: Where the ranking curve gives the base rate when there are no leave-one-out scores to centre it.
TYPICAL_SIMILARITY = 0.3
#: The default threshold is this many times the 1/K base rate of a code.
AUTO_THRESHOLD_LIFT = 2.0
#: A code's own leave-one-out threshold counts as this many examples against the pooled one
#: (logit average): with 5 examples a code's own F1-best threshold is one third of its threshold.
THRESHOLD_SHRINK = 10.0
#: Multi-label: a passage's best code is suggested when its log-odds are at most this far below
#: its threshold (a 40-code scheme's per-code thresholds alone leave most passages with nothing).
TOP_MARGIN = 1.0


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
    #: Per-code decision thresholds (k,) of the scorer; None: :func:`suggest` uses
    #: :func:`auto_threshold` for all codes.
    thresholds: np.ndarray | None = None
    #: A passage's best code is suggested when its :meth:`decision_margin` is at least
    #: ``-top_margin`` even if below its threshold (``inf``: always, the ranking mode of an
    #: uncalibrated scorer); None: only codes at or above their thresholds.
    top_margin: float | None = None

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


def unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1; a zero row stays zero rather than becoming NaN."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n == 0, 1.0, n)


class ExampleSimilarityScorer(Scorer):
    """Cold-start scorer from the template's examples and descriptions."""

    def __init__(self, nearest_weight: float = NEAREST_WEIGHT, counter_penalty: float = COUNTER_PENALTY):
        self.nearest_weight = nearest_weight
        self.counter_penalty = counter_penalty
        self.calibration: tuple[float, float] = (RANK_SLOPE, 0.0)  # (slope, intercept), set by fit
        self.calibration_n: tuple[int, int] = (0, 0)  # positives, negatives used
        #: Whether the template's leave-one-out scores gave a usable curve (else: rank only).
        self.calibrated = False
        #: Leave-one-out AUC of the pooled template scores (None: too few examples).
        self.loo_auc: float | None = None
        self.thresholds: np.ndarray = np.zeros(0)  # (k,) per-code decision thresholds
        self.top_margin: float | None = float("inf")  # see Scores.top_margin

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
                    prototype=unit_rows(ex.mean(axis=0)),
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

    def _loo_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out scores of the template's examples: (S, owner), S[i, j] the score of
        example i against code j (its own code without it), owner[i] the code it illustrates."""
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
                s, _ = self._raw(x, rest, unit_rows(rest.mean(axis=0)), m.counter_vecs)
                pos_scores.append(float(s[0]))
                queries.append(m.ex_vecs[j])
                owner.append(i)
        k = len(self._models)
        if not queries:
            return np.zeros((0, k)), np.zeros(0, dtype=int)
        # Every example against every other code in one product per code (not one per pair:
        # 12,000 tiny products took 2-4 s of each run).
        Q = np.stack(queries)
        S = np.column_stack([self._raw(Q, o.ex_vecs, o.prototype, o.counter_vecs)[0] for o in self._models]).astype(np.float64)
        own = np.asarray(owner, dtype=int)
        S[np.arange(len(own)), own] = pos_scores
        return S, own

    def _fit_calibration(self) -> None:
        """Leave-one-out scores of the template's own examples: positives for their code,
        negatives for every other code; one logistic curve for all codes, then the per-code
        thresholds (:meth:`_fit_thresholds`)."""
        S, owner = self._loo_scores()
        k = len(self._models)
        is_own = owner[:, None] == np.arange(k)[None, :]
        pos_scores, neg_scores = S[is_own], S[~is_own]
        self.calibration_n = (len(pos_scores), len(neg_scores))
        # Rank until a curve is fitted: confidences near the 1/K base rate in the order of the
        # similarities, so nothing but the best code reaches twice the base rate and every
        # passage's best code is shown (an uncalibrated number cannot say which others apply).
        # After a retrain a code that is not learned yet is shown at the same threshold as before.
        centre = float(S.mean()) if S.size else TYPICAL_SIMILARITY
        self.calibration = (RANK_SLOPE, _logit(1.0 / max(k, 1)) - RANK_SLOPE * centre)
        self.calibrated, self.loo_auc = False, None
        self.thresholds = np.full(k, auto_threshold(k))
        self.top_margin = float("inf")
        if len(pos_scores) < 5 or len(neg_scores) < 5:
            return
        from sklearn.linear_model import LogisticRegression

        x = np.r_[pos_scores, neg_scores][:, None]
        y = np.r_[np.ones(len(pos_scores)), np.zeros(len(neg_scores))]
        self.loo_auc = loo_auc(pos_scores, neg_scores)
        # No class re-weighting: the 1-in-K base rate of the pooled pairs is the honest prior
        # for a passage that carries about one code.
        lr = LogisticRegression(C=10.0).fit(x, y)
        slope = float(lr.coef_[0, 0])
        # A curve that falls with similarity, or examples that score their own code no better
        # than the others (AnnoMI client talk: AUC 0.36-0.51 over three draws of 5 examples),
        # is no calibration: the scorer ranks by similarity and says so.
        if slope <= 0 or self.loo_auc <= 0.5:
            return
        self.calibration, self.calibrated = (slope, float(lr.intercept_[0])), True
        self._fit_thresholds(S, owner)

    def _fit_thresholds(self, S: np.ndarray, owner: np.ndarray) -> None:
        """Per-code thresholds from the leave-one-out confidences. A code outside an exclusive
        group: its own F1-best threshold (its examples against the other codes' examples),
        averaged in log-odds with the pooled F1-best one weighted as :data:`THRESHOLD_SHRINK`
        examples. A code in an exclusive group keeps :func:`auto_threshold`: there the best
        code is the decision (argmax), per-code offsets from five examples a code were noise
        (annomi-therapist, three draws: +0.09, -0.07, +0.01 macro-F1), and a lower common
        threshold only shows more of the three suggestions that cannot all apply."""
        a, b = self.calibration
        P = 1.0 / (1.0 + np.exp(-(a * S + b)))
        k = P.shape[1]
        is_own = owner[:, None] == np.arange(k)[None, :]
        pooled = f1_threshold(P[is_own], P[~is_own])
        t = np.full(k, auto_threshold(k))
        for j, m in enumerate(self._models):
            pos, neg = P[owner == j, j], P[owner != j, j]
            if len(pos) == 0 or len(neg) == 0 or self.template.exclusive_siblings(m.code.id):
                continue
            t[j] = shrink_threshold(f1_threshold(pos, neg), pooled, len(pos), THRESHOLD_SHRINK)
        self.thresholds = t
        self.top_margin = TOP_MARGIN

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
        return Scores(self.code_ids, conf.astype(np.float32), sim, ev_text, ev_src, ev_sim, self.thresholds.copy(), self.top_margin)


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


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


def decide(scores: Scores, *, threshold: float | None = None, top_k: int | None = 3) -> tuple[np.ndarray, np.ndarray]:
    """The product's decision rule, shared by :func:`suggest`, the review queue and the
    simulated researcher: (margin (n, k), suggested (n, k) bool). A code is suggested when it is
    at or above its threshold, or when it is the passage's best code and within the scores'
    ``top_margin`` of its threshold; at most ``top_k`` per passage, best margin first. The
    threshold is ``threshold`` when given (and then no best-code rule), else the scorer's
    per-code thresholds, else :func:`auto_threshold`."""
    conf = scores.confidence
    n, k = conf.shape
    top_margin = None
    if threshold is not None or scores.thresholds is None:
        t = np.full(k, auto_threshold(len(scores.code_ids)) if threshold is None else threshold)
    else:
        t, top_margin = scores.thresholds, scores.top_margin
    margin = Scores(scores.code_ids, conf, conf, conf, conf, conf, t).decision_margin()
    chosen = margin >= 0
    if top_margin is not None and n and k:
        best = margin.argmax(axis=1)
        rows = np.arange(n)
        chosen[rows, best] |= margin[rows, best] >= -top_margin
    if top_k is not None and top_k < k:
        rest = np.argsort(-margin, axis=1, kind="stable")[:, top_k:]
        np.put_along_axis(chosen, rest, False, axis=1)
    return margin, chosen


def suggest(scores: Scores, *, threshold: float | None = None, top_k: int | None = 3) -> pd.DataFrame:
    """Pick suggestions by :func:`decide`, best first (by log-odds above the threshold), at
    most ``top_k`` per segment (multi-label). ``segment`` is the row index into the scored
    segments."""
    conf = scores.confidence
    if conf.size == 0:
        return pd.DataFrame(columns=SUGGESTION_COLUMNS)
    margin, chosen = decide(scores, threshold=threshold, top_k=top_k)
    order = np.argsort(-margin, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :top_k]
    rows, ranks = np.nonzero(np.take_along_axis(chosen, order, axis=1))
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
