"""Query strategies: which passages a coder is asked about next (one home, small-text style).

A :class:`QueryStrategy` looks at the current confidences (n, k) and the embeddings (n, d) and
returns the rows to ask about, most useful first. The strategies are the subclasses below,
registered by name in :data:`STRATEGIES` (what the simulated researcher and the benchmarks
pick by); :func:`uncertainty`, :func:`uncertainty_diversity` and :func:`query_order` are the
plain functions they are made of, for callers that hold arrays only (scale/vectors.py re-ranks
a memory-mapped million with them).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd

from .suggest import Scores

#: Share of each active-learning batch drawn at random. On AnnoMI therapist fold 0 (500
#: decisions) pure uncertainty sampling reached macro-F1 0.49, random order 0.58, half and
#: half 0.64: the random half keeps the labelled sample representative for calibration.
#: Under the passage protocol (complete labels), fold 0, 300 decisions, mean of seeds, macro-F1
#: against random order: annomi-therapist 0.677 vs 0.647 (3 seeds), annomi-client 0.491 vs
#: 0.476 (3), nhs-fft 0.274 vs 0.267 (3). Tried and dropped there: per-code exploration (half of
#: each batch the likeliest passage of the codes with fewest positives, the rest random):
#: 0.666 / 0.465 (3 seeds) / 0.239 (seed 0; the queue 0.269), worse on every set, as a complete label already gives a rare code its
#: positives whenever one is shown; multi-label uncertainty (summed per-code entropy) on nhs-fft
#: 0.268 vs 0.277 (seeds 1-2).
#: Kept again with the USE encoder (passage protocol, 5 folds, budget 500, macro-F1 at 50 / 100 /
#: 200 / 300 / 500): it beats random order on therapist (.669 .690 .721 .724 .746 against .632
#: .663 .713 .719 .730) and nhs-fft (folds 0-1, .327 against .301 at 500) and loses on client
#: (.342 .398 .423 .461 .487 against .363 .400 .468 .479 .491). Tried and dropped, each winning
#: somewhere and losing elsewhere: k-means of the pool, each cluster's most uncertain core member
#: (client .421 .436 .490 .480 .499, therapist .641 .669 .686 .694 .725, nhs-fft .289 at 500);
#: the member nearest each centre (client .503, therapist .725 at 500); the random half replaced
#: by k-means centres (client .391 .420 .456 .468 .483, therapist .617 .688 .721 .723 .734, fine
#: codes .369 against random .351 at 500, nhs-fft .302); by each cluster's most uncertain core
#: member (client .354 .411 .443 .482 .495, therapist .650 .697 .715 .729 .747, fine codes .253
#: .290 .329 .336 .358 against random .265 .297 .323 .338 .351); uncertainty-weighted k-means of
#: the 10k most uncertain (Zhdanov 2019; client .333 .406 .435 .468 .499, therapist .632 .696
#: .719 .711 .736), and that with a random half (client .475 at 500). Client's codes are the
#: noisiest (human kappa .47): the passages a model is least sure of are those its coders
#: disagree on, and their labels teach least. With reproducible curves (one-thread fits), a
#: random share of 0.75 instead of 0.5 (macro-F1 at 500): client .491 against .481 (random order
#: .491), therapist .736 against .745, fine codes .356 against .370, nhs-fft .323 against .326.
EXPLORE = 0.5
#: The review app's "most uncertain first" queue after a retrain: this many segments are
#: picked by :func:`uncertainty_diversity` (the strategy the simulated researcher measures),
#: about a retraining's worth of decisions; the rest follow by uncertainty alone.
QUEUE_HEAD = 200


def uncertainty(conf: np.ndarray) -> np.ndarray:
    """Higher = less sure: one minus the margin between the two most likely codes, so a passage
    the model cannot place between two codes comes first."""
    if conf.shape[1] < 2:
        return 1 - np.abs(2 * conf[:, 0] - 1)
    top2 = -np.sort(-conf, axis=1)[:, :2]
    return 1 - (top2[:, 0] - top2[:, 1])


def uncertainty_diversity(
    conf: np.ndarray, X: np.ndarray, k: int, *, pool_factor: int = 5, explore: float = EXPLORE, seed: int = 0
) -> np.ndarray:
    """Pick ``k`` rows: the ``k * pool_factor`` most uncertain, then a diverse subset of them
    (greedy farthest-point in embedding space, starting from the most uncertain), so a batch
    does not spend decisions on near-duplicates. A share ``explore`` of the batch is drawn at
    random from the rest, which keeps the labelled set representative (pure uncertainty
    sampling biases the sample the calibration is fitted on)."""
    n = len(conf)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng(seed)
    n_random = int(round(k * explore))
    k_unc = k - n_random
    u = uncertainty(conf)
    if k_unc == 0:
        return rng.choice(n, size=min(k, n), replace=False)
    cand = np.argsort(-u, kind="stable")[: min(n, k_unc * pool_factor)]
    chosen = [int(cand[0])]
    dist = 1 - X[cand] @ X[cand[0]]
    while len(chosen) < min(k_unc, len(cand)):
        # Farthest from everything chosen, ties broken towards more uncertain.
        score = dist + 1e-3 * u[cand]
        score[np.isin(cand, chosen)] = -np.inf
        nxt = int(cand[int(np.argmax(score))])
        chosen.append(nxt)
        dist = np.minimum(dist, 1 - X[cand] @ X[nxt])
    rest = np.setdiff1d(np.arange(n), chosen)
    if n_random and len(rest):
        chosen += rng.choice(rest, size=min(n_random, len(rest)), replace=False).tolist()
    return np.array(chosen, dtype=int)


def query_order(conf: np.ndarray, X: np.ndarray, *, head: int = QUEUE_HEAD, explore: float = EXPLORE, seed: int = 0) -> np.ndarray:
    """A review order over all rows: the first ``head`` by :func:`uncertainty_diversity`
    (what a coder decides before the next retrain), then the rest, least sure first."""
    n = len(conf)
    first = uncertainty_diversity(conf, X, min(head, n), explore=explore, seed=seed)
    rest = np.setdiff1d(np.arange(n), first)
    rest = rest[np.argsort(-uncertainty(conf[rest]), kind="stable")]
    return np.r_[first, rest].astype(np.int64)


def with_probes(sugg: pd.DataFrame, scores: Scores, rows: Sequence[int]) -> pd.DataFrame:
    """Add each row's best code as a suggestion where ``rows`` have none above threshold: the
    query strategy asks about passages the model is least sure of, which are often below
    every threshold, and the review queue can only show what is stored as a suggestion."""
    from .suggest import SUGGESTION_COLUMNS

    missing = np.setdiff1d(np.asarray(rows, dtype=int), sugg["segment"].to_numpy(dtype=int))
    if not len(missing):
        return sugg
    cols = scores.decision_margin()[missing].argmax(axis=1)
    extra = pd.DataFrame(
        {
            "segment": missing,
            "code_id": np.asarray(scores.code_ids, dtype=object)[cols],
            "rank": 1,
            "confidence": scores.confidence[missing, cols].astype(float),
            "similarity": scores.similarity[missing, cols].astype(float),
            "evidence": scores.evidence_text[missing, cols],
            "evidence_source": scores.evidence_source[missing, cols],
            "evidence_similarity": scores.evidence_similarity[missing, cols].astype(float),
        },
        columns=SUGGESTION_COLUMNS,
    )
    return pd.concat([sugg, extra], ignore_index=True).sort_values(["segment", "rank"], kind="stable").reset_index(drop=True)


class QueryStrategy(ABC):
    """Picks ``k`` rows of a pool to ask about, from confidences ``conf`` (n, k codes) and unit
    embeddings ``X`` (n, d). Returns row indices into the pool, without repeats."""

    name: ClassVar[str] = ""

    @abstractmethod
    def query(self, conf: np.ndarray, X: np.ndarray, k: int) -> np.ndarray: ...


@dataclass
class RandomSampling(QueryStrategy):
    """Rows drawn at random (the baseline). One generator per instance: successive batches
    continue its stream, so a run is reproducible from ``seed``."""

    seed: int = 0
    name: ClassVar[str] = "random"
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def query(self, conf: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
        n = len(conf)
        return self._rng.choice(n, size=min(k, n), replace=False)


@dataclass
class LeastConfident(QueryStrategy):
    """The ``k`` rows with the smallest margin between their two most likely codes."""

    name: ClassVar[str] = "uncertainty"

    def query(self, conf: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
        return np.argsort(-uncertainty(conf), kind="stable")[: max(k, 0)]


@dataclass
class UncertaintyDiversity(QueryStrategy):
    """:func:`uncertainty_diversity`: the product's strategy (diverse uncertain rows plus a
    random share ``explore``). ``seed`` is the same for every batch, as the product does."""

    pool_factor: int = 5
    explore: float = EXPLORE
    seed: int = 0
    name: ClassVar[str] = "uncertainty_diversity"

    def query(self, conf: np.ndarray, X: np.ndarray, k: int) -> np.ndarray:
        return uncertainty_diversity(conf, X, k, pool_factor=self.pool_factor, explore=self.explore, seed=self.seed)


#: Strategy classes by name (``simulate(strategy=...)``, benchmarks).
STRATEGIES: dict[str, type[QueryStrategy]] = {c.name: c for c in (RandomSampling, LeastConfident, UncertaintyDiversity)}


def strategy(name: str, **params) -> QueryStrategy:
    """A fresh strategy by name, with its parameters (e.g. ``seed``)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown query strategy {name!r}; known: {sorted(STRATEGIES)}") from None
    return cls(**params)


__all__ = [
    "EXPLORE",
    "QUEUE_HEAD",
    "QueryStrategy",
    "RandomSampling",
    "LeastConfident",
    "UncertaintyDiversity",
    "STRATEGIES",
    "strategy",
    "uncertainty",
    "uncertainty_diversity",
    "query_order",
    "with_probes",
]
