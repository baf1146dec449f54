"""The learned scorer: per-code classifiers on the researcher's partial labels, a per-code
blend with a base (the code matcher of :mod:`coder_assist.ml.matching`, trained on every
decision; the template's example-similarity prior before there are any) decided by held-out
performance, calibration, a per-code threshold and verdict, and the model's files (arrays and
JSON, never pickle) in a folder the caller names. No project here: :mod:`coder_assist.app.training` reads the decisions
and :mod:`coder_assist.store.models` owns the folder layout.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from ..core.defaults import available_cores
from ..core.errors import ProjectError
from ..core.template import Template
from .calibration import EPS, apply_platt, cap_rows, f1_threshold, logit, shrink_threshold
from .calibration import platt as fit_platt
from .embed import Encoder
from .features import DEFAULT_FEATURES, FeatureSet, Featurizer
from .matching import CodeMatcher
from .suggest import THRESHOLD_SHRINK, ExampleSimilarityScorer, Inputs, Scorer, Scores, auto_threshold

#: Below this many positives or negatives a code's classifier is not trained: the base serves.
MIN_CLASS = 3
#: At most this many of a code's decided passages train its classifier. A confirmed passage
#: labels every code, so after 5,000 passages each of 49 codes has 5,000 rows (one retrain
#: took minutes); above the cap every positive is kept (up to half the cap) and negatives are
#: drawn at random, and calibration and the threshold are weighted back to the full counts.
#: Below it (every checkpoint of the 500-passage benchmark) nothing changes.
MAX_ROWS = 1000
#: Held-out folds for a code whose rows were capped at MAX_ROWS: two, not cv_folds. Each
#: held-out copy still learns from 500 rows, and a fit fewer per code is a quarter of the
#: per-code solver work: with it (and the matcher no longer scoring the whole corpus) a retrain
#: of 5,000 confirmed passages of 49 codes took 3.8 s against 5.2 s, run alternately. Only codes
#: past the cap use it, so no checkpoint of the 500- or 1,000-passage benchmarks moves.
CAPPED_CV_FOLDS = 2
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: liblinear's stopping tolerance. scikit-learn's default (1e-4) is a thousand times tighter
#: than liblinear's own for the dual problem (0.1); at 1e-3 a retrain of 5,000 confirmed passages
#: is about 15% faster and the simulated researcher's macro-F1 and kappa at 300 and 500 random
#: passages are the same to three decimals on all four shared sets (5 folds).
TOL = 1e-3
FORMAT_VERSION = 1
#: Held-out folds (by passage) for the code matcher's confidences on the decided passages,
#: which the per-code blends and the thresholds of codes not yet learned are chosen on: three,
#: and two from MATCHER_TWO_FOLDS decided passages on, where half of them is plenty to fit each
#: held-out copy and a fit fewer keeps a retrain of 5,000 passages within 5 s. Two folds at
#: every size cost nhs-fft .212 / .231 / .341 at 50 / 100 / 500 passages against .263 / .289 /
#: .352 with three (the held-out copies at 50 passages learned from 25).
MATCHER_FOLDS = 3
MATCHER_TWO_FOLDS = 1000
#: The code matcher is fitted once there are this many labelled pairs (decisions' and the
#: template examples') per weight it fits: fewer, and its thousand weights learn the sample.
#: With 50 confirmed passages, a 40-code template has 2,000 decided pairs and 9,600 example
#: pairs for its 1,066 weights (the matcher then lifts nhs-fft's macro-F1 at 50 passages from
#: .203 to .263); a 3-code one has 150 and 54 for 1,029, and a matcher fitted on those cost
#: annomi-client .032 at 50 passages and .014 at 500.
MATCHER_PAIRS_PER_WEIGHT = 2


@dataclass
class CodeReport:
    code_id: str
    n_pos: int
    n_neg: int
    weight: float  # share of the classifier in the blend (0 = prior only)
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    threshold: float = 0.5
    verdict: str = "needs more decisions"


def _f1_at(y: np.ndarray, p: np.ndarray, t: float, w: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float, float]:
    """Precision, recall, F1 of ``p >= t``; ``w``: weights of a (positive, negative) row, where
    the rows are a sample of the code's decisions (:func:`~coder_assist.ml.calibration.cap_rows`)."""
    pred = p >= t
    tp = w[0] * float((pred & (y == 1)).sum())
    fp = w[1] * float((pred & (y == 0)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (w[0] * (y == 1).sum()) if (y == 1).sum() else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def _used_columns(M: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``M`` without its all-zero columns, and the kept columns' indices. A mask and a
    monotone renumbering of the stored indices, not ``np.unique`` plus a column slice: at 1,000
    rows a code those were half of its non-solver time, and the renumbering keeps each row's
    indices in the order they had, so a sorted ``M`` gives a sorted result (liblinear sorts
    an unsorted matrix on every fit)."""
    used = np.bincount(M.indices, minlength=M.shape[1]) > 0
    cols = np.flatnonzero(used)
    new_index = np.cumsum(used, dtype=np.int64) - 1
    out = sp.csr_matrix((M.data, new_index[M.indices].astype(M.indices.dtype), M.indptr), shape=(M.shape[0], len(cols)))
    out.has_sorted_indices = M.has_sorted_indices
    if not out.has_sorted_indices:
        out.data = out.data.copy()  # sorting in place would reorder the caller's values
        out.sort_indices()
    return out, cols


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass
class _Examples:
    """The template's example excerpts as training rows: their code and feature matrix."""

    code: np.ndarray  # (m,) object: the code each excerpt illustrates
    F: sp.csr_matrix  # (m, features)


@dataclass
class _Pairs:
    """The code matcher's training pairs: each decided (passage row, code index) and its label,
    and the template's example vectors per code."""

    rows: np.ndarray
    codes: np.ndarray
    y: np.ndarray
    examples: list[np.ndarray]


@dataclass
class _CodeFit:
    """One code's classifier before its blend with the base: the rows of its labels it kept
    (:func:`~coder_assist.ml.calibration.cap_rows`; ``None``: too few to learn), their
    weights, labels and held-out predictions, and the classifier fitted on all of them."""

    report: CodeReport
    keep: np.ndarray | None = None
    wts: tuple[float, float] = (1.0, 1.0)
    y: np.ndarray | None = None
    oof: np.ndarray | None = None
    coef: np.ndarray | None = None
    intercept: float = 0.0


class LearnedScorer(Scorer):
    """Per-code logistic regression on the researcher's decisions, blended per code with a base
    (the code matcher, fitted on all decisions at once; the example-similarity prior where
    there are too few) and calibrated on held-out folds of those decisions, with a per-code
    threshold chosen on the same held-out predictions. A code without a classifier yet is
    served by the base alone."""

    version = "learned"
    needs_context = True

    def __init__(self, features: FeatureSet = DEFAULT_FEATURES, C: float = 1.0, target: float = 0.7, cv_folds: int = 3, seed: int = 0,
                 n_jobs: int | None = None, matcher: bool = True):
        self.features = features
        self.C = C
        self.target = target  # precision and recall a code needs to count as "reliable"
        self.cv_folds = cv_folds
        self.seed = seed
        # Threads fitting codes at once (None: one per CPU this process may use). liblinear draws its coordinate
        # order from one generator shared by every thread, so threaded fits agree only to about
        # 1e-6 from run to run; 1 makes a fit reproducible bit for bit, at about twice the time
        # on two cores. The simulated researcher uses 1: its active-learning loop feeds each
        # fit's confidences into the next query, and 1e-6 was enough to change later picks.
        self.n_jobs = n_jobs
        # Whether decisions also train the code matcher (coder_assist.ml.matching), which then
        # takes the template prior's place as every code's base.
        self.matcher = matcher
        self.matcher_: CodeMatcher | None = None
        self.matcher_thresholds_: np.ndarray | None = None
        # Which codes the matcher serves: all of them, unless the template gained codes since.
        self.matcher_codes_: np.ndarray | None = None
        self.prior: ExampleSimilarityScorer | None = None
        self.featurizer = Featurizer(features)
        # The features the codes' own classifiers were fitted on (beside a matcher, without
        # the previous turn's embedding: see fit_labels).
        self.code_features_: str = features
        self.coef: dict[str, np.ndarray] = {}
        self.intercept: dict[str, float] = {}
        self.platt: dict[str, tuple[float, float]] = {}  # code -> (a, b) on the blended logit
        self.reports: dict[str, CodeReport] = {}

    # -- Scorer interface ------------------------------------------------------------------
    def fit(self, template: Template, encoder: Encoder) -> "LearnedScorer":
        """Fit the prior only (the template); :meth:`fit_labels` adds the decisions."""
        self.prior = ExampleSimilarityScorer().fit(template, encoder)
        self.code_ids = list(self.prior.code_ids)
        return self

    def fit_labels(
        self,
        corpus: Inputs,
        labels: pd.DataFrame,
        *,
        row_of: dict[int, int],
        featurizer: Featurizer | None = None,
        F: sp.csr_matrix | None = None,
        prior_conf: np.ndarray | None = None,
    ) -> "LearnedScorer":
        """Train on partial labels.

        ``corpus``: every segment of the project (IDF is fitted on all of them, unlabelled);
        ``labels``: segment_id, code_id, label (1/0); ``row_of``: segment_id -> row in corpus.
        A caller that retrains often on the same corpus passes the fitted ``featurizer``, its
        matrix ``F`` and the prior's confidences so they are computed once.
        """
        if self.prior is None:
            raise ProjectError("LearnedScorer.fit(template, encoder) must come before fit_labels")
        if featurizer is not None:
            self.featurizer = featurizer
            F = featurizer.transform(corpus) if F is None else F
        else:
            self.featurizer = Featurizer(self.features)
            if F is None:
                F = self.featurizer.fit_transform(corpus)
            else:
                self.featurizer.fit(corpus)
        prior_conf = self.prior.score(corpus).confidence if prior_conf is None else prior_conf
        # Each label's row of the corpus, once for the matcher and every code's fit.
        labels = labels.reset_index(drop=True)
        label_rows = np.array([row_of[s] for s in labels["segment_id"]], dtype=np.int64)
        label_y = labels["label"].to_numpy(dtype=np.int64)
        self.matcher_, self.matcher_thresholds_, self.matcher_codes_ = None, None, None

        pairs = self._matcher_pairs(labels, label_rows, label_y, corpus.X.shape[1])

        def fit_matcher() -> np.ndarray:
            return prior_conf if pairs is None else self._fit_matcher(pairs, corpus, prior_conf)

        # In place and once (a no-op for the featurizer's own output): every code's rows are
        # then sorted as they are sliced out (see _used_columns).
        F.sort_indices()
        self.coef, self.intercept, self.platt, self.reports = {}, {}, {}, {}
        examples = self._examples(corpus.X.shape[1])
        by_code = {c: g.index.to_numpy() for c, g in labels.groupby("code_id", sort=False)}
        none = np.zeros(0, dtype=np.int64)

        # Where the code matcher is the base, the previous turn enters the blend through it (its
        # block of the previous turn's embedding times each code's prototype), and the codes'
        # own classifiers learn from the passage's embedding and the n-grams (the previous
        # turn's words among them): its 512 dense columns were a third of their solver's work.
        F_codes = F if pairs is None else self.featurizer.without_prev_embedding(F, corpus.X.shape[1])
        self.code_features_ = self.features if F_codes is F else self.features.replace("+prev", "")

        def fit_code(code: str) -> _CodeFit:
            at = by_code.get(code, none)
            return self._fit_code(code, label_rows[at], label_y[at], F_codes, examples)

        # Codes are independent of each other, so they are fitted in threads (liblinear
        # releases the GIL), unless n_jobs asks for one. Their classifiers do not need the
        # matcher (only their blends do), so the matcher is fitted meanwhile, with BLAS on one
        # thread: OpenBLAS's own threads competing with the pool's for the same two cores made
        # it slower. 5,000 confirmed passages of 49 codes, run alternately: 4.6-5.2 s before,
        # 5.1-6.0 s with the matcher alongside and BLAS free, 3.6-4.1 s with BLAS on one thread.
        workers = max(1, min(len(self.code_ids), self.n_jobs or available_cores()))
        if workers == 1:
            base_conf = fit_matcher()
            fits = [fit_code(c) for c in self.code_ids]
        else:
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=workers) as pool:
                pending = pool.map(fit_code, self.code_ids)
                base_conf = fit_matcher()
                fits = list(pending)
        results = [self._blend_code(fit, base_conf[label_rows[by_code.get(c, none)], j]) for j, (c, fit) in enumerate(zip(self.code_ids, fits))]
        for code, (report, fitted) in zip(self.code_ids, results):
            self.reports[code] = report
            if fitted is not None:
                self.coef[code], self.intercept[code], self.platt[code] = fitted
        return self

    def _matcher_pairs(self, labels: pd.DataFrame, label_rows: np.ndarray, label_y: np.ndarray, dim: int) -> _Pairs | None:
        """The decided (passage, code) pairs the code matcher is fitted on, or None where this
        fit has no matcher (turned off, no decision on a template code, or too few pairs)."""
        if not self.matcher:
            return None
        index = {c: j for j, c in enumerate(self.code_ids)}
        mine = labels["code_id"].isin(index).to_numpy()
        if not mine.any():
            return None
        rows, y = label_rows[mine], label_y[mine]  # one label a passage and code, as every code's own fit takes them
        codes = labels.loc[mine, "code_id"].map(index).to_numpy(dtype=np.int64)
        # Only once some code can be learned (MIN_CLASS positives and negatives): a retrain that
        # learns no code keeps the template's scores, and the app says "template only".
        n_pos = np.bincount(codes[y == 1], minlength=len(self.code_ids))
        n_neg = np.bincount(codes[y == 0], minlength=len(self.code_ids))
        if not ((n_pos >= MIN_CLASS) & (n_neg >= MIN_CLASS)).any():
            return None
        # Enough pairs for its weights: a shared model of two embedding blocks is about a
        # thousand weights, and a template of few codes gives few pairs a passage.
        examples = [m.ex_vecs for m in self.prior._models]
        n_pairs = len(rows) + sum(len(e) for e in examples) * len(examples)
        if n_pairs < MATCHER_PAIRS_PER_WEIGHT * CodeMatcher.n_weights(dim, len(examples)):
            return None
        return _Pairs(rows, codes, y, examples)

    def _fit_matcher(self, pairs: _Pairs, corpus: Inputs, prior_conf: np.ndarray) -> np.ndarray:
        """Fit the code matcher on the decided ``pairs`` and return the base confidences (n, k)
        the per-code blends start from: at the decided pairs, the matcher's held out by passage
        (elsewhere the prior's, which no blend reads: :meth:`base_confidence` scores passages).
        Sets the thresholds of codes without a classifier from the same held-out confidences."""
        rows, codes, y, examples = pairs.rows, pairs.codes, pairs.y, pairs.examples
        X = corpus.X
        P = corpus.X_prev if corpus.X_prev is not None else np.zeros_like(X)

        def matcher() -> CodeMatcher:
            return CodeMatcher(seed=self.seed)

        # Held-out confidences by passage: a pair is scored by a matcher that saw no decision on
        # its passage, as the per-code classifiers' blends are chosen on held-out predictions.
        passages, where = np.unique(rows, return_inverse=True)
        n_folds = MATCHER_FOLDS if len(passages) < MATCHER_TWO_FOLDS else 2
        fold = (np.random.default_rng(self.seed).permutation(len(passages)) % n_folds)[where]
        held = np.zeros(len(rows))
        for f in range(min(n_folds, len(passages))):
            te = fold == f
            m = matcher().fit(X, P, rows[~te], codes[~te], y[~te], examples)
            # Each held-out passage scored once for every code, then its pairs picked out.
            mine, at = np.unique(rows[te], return_inverse=True)
            held[te] = m.predict_proba(X[mine], P[mine])[at, codes[te]]
        # Serial: the four fits in threads were no faster on 2 cores (their BLAS calls compete).
        self.matcher_ = matcher().fit(X, P, rows, codes, y, examples)
        self.matcher_codes_ = np.ones(len(self.code_ids), dtype=bool)
        # The blends read the base at decided pairs only, and all of those are held out: the
        # final matcher scoring every passage of the corpus (0.4 s of a retrain at 20,000) would
        # be thrown away. Elsewhere the prior's confidences stand in, never read.
        base = prior_conf.copy()
        base[rows, codes] = held
        # Thresholds for the codes that have no classifier yet: each code's F1-best on the held-out
        # confidences, pulled toward the pooled one as the prior's are toward theirs.
        pos, neg = held[y == 1], held[y == 0]
        pooled = f1_threshold(pos, neg)
        thr = np.full(len(self.code_ids), pooled)
        for j in range(len(self.code_ids)):
            own = codes == j
            n_pos = int((y[own] == 1).sum())
            if n_pos and (y[own] == 0).any():
                thr[j] = shrink_threshold(f1_threshold(held[own & (y == 1)], held[own & (y == 0)]), pooled, n_pos, THRESHOLD_SHRINK)
        self.matcher_thresholds_ = np.clip(thr, 0.05, 0.95)
        return base

    def base_confidence(self, inputs: Inputs, prior_conf: np.ndarray | None = None) -> np.ndarray:
        """The confidences (n, k) every code's blend starts from: the code matcher's once it is
        fitted, else the template prior's (``prior_conf``, when the caller has them)."""
        if self.matcher_ is not None and self.matcher_codes_.all():
            return self.matcher_.predict_proba(inputs.X, inputs.X_prev)
        if prior_conf is None:
            prior_conf = self.prior.score(inputs).confidence
        if self.matcher_ is None:
            return prior_conf
        out = prior_conf.copy()
        out[:, self.matcher_codes_] = self.matcher_.predict_proba(inputs.X, inputs.X_prev)
        return out

    def _examples(self, dim: int) -> _Examples:
        """The template's example excerpts are labelled data too: positives for their code and,
        under an exclusive parent, negatives for its siblings. They are always in training;
        held-out checks use the researcher's decisions only."""
        models = self.prior._models
        texts = [e.text for m in models for e in m.code.examples]
        code = np.array([m.code.id for m in models for _ in m.code.examples], dtype=object)
        X = np.vstack([m.ex_vecs[: len(m.code.examples)] for m in models]) if texts else np.zeros((0, dim), np.float32)
        F = self.featurizer.transform(Inputs(X=X, texts=texts, X_prev=np.zeros_like(X), prev_texts=[""] * len(texts)))
        F.sort_indices()  # once, so no code's training matrix needs sorting (see _used_columns)
        return _Examples(code, F)

    def _fit_code(self, code: str, rows: np.ndarray, y: np.ndarray, F: sp.csr_matrix, examples: _Examples) -> _CodeFit:
        """One code's classifier and its held-out predictions from its decided ``rows`` of
        ``F`` (labels ``y``); none when it has too few. Nothing here reads the base, so codes
        are fitted while the matcher is (:meth:`_blend_code` then joins them)."""
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        report = CodeReport(code, n_pos, n_neg, 0.0)
        if n_pos < MIN_CLASS or n_neg < MIN_CLASS:
            return _CodeFit(report)
        keep, wts = cap_rows(y, MAX_ROWS, np.random.default_rng(self.seed + zlib.crc32(code.encode())))
        rows, y = rows[keep], y[keep]
        siblings = set(self.prior.template.exclusive_siblings(code))
        ex_rows = np.flatnonzero((examples.code == code) | np.isin(examples.code, list(siblings)))
        ex_y = (examples.code[ex_rows] == code).astype(int)

        # Only the feature columns this code's training rows use: an L2-penalised logistic
        # regression gives every other column a weight of exactly zero, and liblinear's cost
        # grows with the width (98,304 hashed n-gram columns: 0.24 s a fit, against 0.09 s
        # on the ~40,000 a code's rows touch).
        F_code, cols = _used_columns(sp.vstack([F[rows], examples.F[ex_rows]], format="csr"))
        ex_part = np.arange(len(rows), F_code.shape[0])

        def fit_on(idx: np.ndarray) -> LogisticRegression:
            return self._clf().fit(F_code[np.r_[idx, ex_part]], np.r_[y[idx], ex_y])

        oof = self._held_out(fit_on, F_code, rows, y, CAPPED_CV_FOLDS if wts != (1.0, 1.0) else self.cv_folds)
        clf = fit_on(np.arange(len(y)))
        coef = np.zeros(F.shape[1], dtype=np.float32)
        coef[cols] = clf.coef_.ravel()
        return _CodeFit(report, keep, wts, y, oof, coef, float(clf.intercept_[0]))

    def _blend_code(self, fit: _CodeFit, base_p: np.ndarray) -> tuple[CodeReport, tuple[np.ndarray, float, tuple[float, float]] | None]:
        """A fitted code's blend with the base (its confidences ``base_p`` at the code's decided
        rows), calibration and threshold: its report and (coefficients, intercept, Platt)."""
        report = fit.report
        if fit.keep is None:
            return report, None
        w, ab, p_cal = self._blend(fit.oof, fit.y, base_p[fit.keep])
        if fit.wts != (1.0, 1.0):
            # Platt fitted on the sample has the sample's base rate: shift its log-odds by the
            # odds of the sampling, so confidences keep the full decisions' base rate.
            shift = float(np.log(fit.wts[0] / fit.wts[1]))
            ab = (ab[0], ab[1] + shift)
            p_cal = 1 / (1 + np.exp(-(logit(p_cal) + shift)))
        report.weight = w
        self._choose_threshold(report, fit.y, p_cal, fit.wts)
        return report, (fit.coef, fit.intercept, ab)

    def _held_out(self, fit_on: Callable[[np.ndarray], LogisticRegression], F_code: sp.csr_matrix, rows: np.ndarray, y: np.ndarray, folds: int) -> np.ndarray:
        """The classifier's predictions on the code's own decisions, each from a fit that held it out."""
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        k = max(2, min(folds, n_pos, n_neg))
        oof = np.zeros(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=self.seed).split(rows, y):
            oof[te] = fit_on(tr).predict_proba(F_code[te])[:, 1]
        return oof

    def _blend(self, oof: np.ndarray, y: np.ndarray, prior_p: np.ndarray) -> tuple[float, tuple[float, float], np.ndarray]:
        """The blend weight of held-out predictions ``oof`` with the base ``prior_p``, and its
        calibration: (weight, (a, b), calibrated held-out p)."""
        # The blend weight is chosen by held-out log-loss after calibration, not by a count.
        best = None
        for w in BLEND_WEIGHTS:
            z = w * logit(oof) + (1 - w) * logit(prior_p)
            ab = fit_platt(z, y)
            p = apply_platt(z, ab)
            loss = _logloss(y, p)
            if best is None or loss < best[0] - 1e-9:
                best = (loss, w, ab, p)
        _, w, ab, p_cal = best
        return w, ab, p_cal

    def _choose_threshold(self, report: CodeReport, y: np.ndarray, p_cal: np.ndarray, wts: tuple[float, float] = (1.0, 1.0)) -> None:
        """The code's threshold maximises held-out F1 (a frequent code needs more confidence
        than a rare one); clipped so a handful of decisions cannot push it to an extreme. Sets
        the report's threshold, precision, recall, F1 and verdict."""
        cands = np.unique(np.clip(p_cal, 0.05, 0.95))
        report.threshold = float(max(cands, key=lambda t: (_f1_at(y, p_cal, t, wts)[2], -abs(t - 0.5)))) if len(cands) else 0.5
        prec, rec, f1 = _f1_at(y, p_cal, report.threshold, wts)
        report.precision, report.recall, report.f1 = round(prec, 4), round(rec, 4), round(f1, 4)
        report.verdict = "reliable" if prec >= self.target and rec >= self.target else "needs more decisions"

    def _clf(self) -> LogisticRegression:
        # The dual problem: a code's rows (hundreds to thousands) are far fewer than its
        # feature columns (10,000-17,000 hashed n-grams plus the embeddings), where liblinear's
        # dual coordinate descent reaches the same optimum (held-out probabilities equal to
        # 1e-4) 2x faster at 300 rows and 5-7x at 3,000. A confirmed passage labels every code,
        # so under passage review every code has as many rows as there are passages.
        # Seeded so its row order does not draw on numpy's global generator (codes fitted in
        # threads still share liblinear's C generator: see n_jobs).
        return LogisticRegression(C=self.C, class_weight="balanced", solver="liblinear", dual=True, max_iter=200, random_state=self.seed, tol=TOL)

    def score(self, inputs: Inputs | np.ndarray, *, features: sp.csr_matrix | None = None, prior: Scores | None = None) -> Scores:
        """``features``: this featurizer's matrix of ``inputs``, and ``prior``: the template
        prior's scores of them, when the caller has them already (a retrain scores the prior
        once, for its fit and for its suggestions)."""
        if self.prior is None:
            raise ProjectError("the learned scorer has no template prior; call fit() first")
        inputs = Inputs.of(inputs)
        base = self.prior.score(inputs) if prior is None else prior  # its evidence: each code's nearest example
        if not self.coef and self.matcher_ is None:
            return base
        start = self.base_confidence(inputs, base.confidence)
        conf = self.score_features(self.featurizer.transform(inputs) if features is None else features, start)
        return Scores(base.code_ids, conf, base.similarity, base.evidence_text, base.evidence_source, base.evidence_similarity, self.thresholds(), self.top_margin)

    def thresholds(self) -> np.ndarray:
        """Per-code thresholds: learned where a classifier exists, else those of the base that
        serves the code (the matcher's, else the prior's: a code with no positives yet keeps the
        cold-start rule instead of a threshold made for another curve)."""
        if self.matcher_thresholds_ is not None:
            prior = self.matcher_thresholds_
        else:
            prior = self.prior.thresholds if self.prior is not None else np.full(len(self.code_ids), auto_threshold(len(self.code_ids)))
        return np.array([self.reports[c].threshold if c in self.coef else float(prior[j]) for j, c in enumerate(self.code_ids)])

    @property
    def top_margin(self) -> float | None:
        """The prior's best-code rule (:attr:`Scores.top_margin`) until a code is learned; then
        none, as learned thresholds are F1-best on the decisions themselves (fold 0, passage
        protocol, with the rule kept against without: annomi-therapist-fine 0.265/0.316 against
        0.283/0.340 macro-F1 at 100/300 decisions, nhs-fft 0.252/0.304 against 0.253/0.298).
        A ranking prior (uncalibrated) keeps it: its codes' threshold of 1 would never be met."""
        if self.prior is None or self.matcher_ is not None:
            return None
        return self.prior.top_margin if not self.coef or not self.prior.calibrated else None

    @property
    def calibrated(self) -> bool:
        """Whether a confidence is a calibrated probability: some code is calibrated on the
        researcher's decisions, or the template's examples gave the prior a curve."""
        return bool(self.coef) or self.matcher_ is not None or bool(self.prior is not None and self.prior.calibrated)

    def score_features(self, F: sp.csr_matrix, prior_conf: np.ndarray) -> np.ndarray:
        """Calibrated confidences (n, k) from precomputed features and the base confidences
        (:meth:`base_confidence`)."""
        conf = prior_conf.copy()
        learned = [(j, code) for j, code in enumerate(self.code_ids) if code in self.coef]
        if not learned:
            return conf.astype(np.float32)
        # Every code's log-odds from one pass over F (a sparse-times-dense product), not one
        # pass a code: 1.57 s -> 0.45 s for 49 codes and 20,000 passages; the same sums in the same
        # order (nhs-fft fold 0, 500 passages: confidences bit for bit those of the loop).
        logits = F @ np.stack([self.coef[c] for _, c in learned], axis=1)
        for i, (j, code) in enumerate(learned):
            w = self.reports[code].weight
            clf_p = 1 / (1 + np.exp(-(logits[:, i] + self.intercept[code])))
            z = w * logit(clf_p) + (1 - w) * logit(prior_conf[:, j])
            conf[:, j] = apply_platt(z, self.platt[code])
        return conf.astype(np.float32)

    # -- persistence: arrays + JSON, never pickle ----------------------------------------
    def card(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "scorer": self.version,
            "features": self.features,
            "code_features": self.code_features_,
            "C": self.C,
            "target": self.target,
            "cv_folds": self.cv_folds,
            "n_hash": self.featurizer.n_hash,
            "codes": [asdict(r) for r in self.reports.values()],
            "platt": self.platt,
            "intercept": self.intercept,
            "matcher": self.matcher,
            # Per code the matcher serves (a loaded model may serve fewer than the template has).
            "matcher_codes": None if self.matcher_ is None else [c for c, on in zip(self.code_ids, self.matcher_codes_) if on],
            "matcher_thresholds": None if self.matcher_ is None else [float(t) for t, on in zip(self.matcher_thresholds_, self.matcher_codes_) if on],
        }

    def save(self, folder: Path) -> None:
        arrays = {f"idf__{k}": v for k, v in self.featurizer.idf.items()}
        for code, coef in self.coef.items():
            nz = np.flatnonzero(coef)
            arrays[f"coef_idx__{code}"] = nz.astype(np.int32)
            arrays[f"coef_val__{code}"] = coef[nz]
            arrays[f"coef_len__{code}"] = np.array([len(coef)], dtype=np.int64)
        if self.matcher_ is not None:
            arrays |= {f"matcher__{k}": v for k, v in self.matcher_.to_arrays().items()}
        _save_npz(folder / "weights.npz", arrays)
        (folder / "model.json").write_text(json.dumps(self.card(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, template: Template, encoder: Encoder) -> "LearnedScorer":
        try:
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ProjectError(f"{folder / 'model.json'}: damaged model description ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise ProjectError(f"{folder}: unknown model format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        # A model saved before the matcher existed has none: it keeps the template prior.
        self = cls(meta["features"], meta["C"], meta["target"], meta["cv_folds"], matcher=bool(meta.get("matcher", False))).fit(template, encoder)
        self.featurizer = Featurizer(meta["features"], int(meta["n_hash"]))
        self.code_features_ = str(meta.get("code_features", meta["features"]))  # older models: all of them
        # allow_pickle=False: a model file can never run code when loaded; anything that is not
        # plain numeric arrays is refused.
        try:
            with np.load(folder / "weights.npz", allow_pickle=False) as z:
                matcher = {key.partition("__")[2]: z[key] for key in z.files if key.startswith("matcher__")}
                if matcher:
                    self.matcher_ = CodeMatcher.from_arrays(matcher)
                for key in z.files:
                    kind, _, name = key.partition("__")
                    if kind == "idf":
                        self.featurizer.idf[name] = z[key]
                    elif kind == "coef_len":
                        coef = np.zeros(int(z[key][0]), dtype=np.float32)
                        coef[z[f"coef_idx__{name}"]] = z[f"coef_val__{name}"]
                        self.coef[name] = coef
        except (ValueError, KeyError, OSError, IndexError, EOFError) as exc:
            raise ProjectError(f"{folder / 'weights.npz'}: refusing a damaged or unsafe model file ({exc})") from exc
        self.intercept = {k: float(v) for k, v in meta["intercept"].items()}
        self.platt = {k: (float(v[0]), float(v[1])) for k, v in meta["platt"].items()}
        self.reports = {c["code_id"]: CodeReport(**c) for c in meta["codes"]}
        if self.matcher_ is not None:
            self._align_matcher(list(meta.get("matcher_codes") or []), list(meta.get("matcher_thresholds") or []), folder)
        unknown = set(self.coef) - set(self.code_ids)
        if unknown:
            raise ProjectError(f"{folder}: the model has codes the template no longer has: {sorted(unknown)}")
        return self

    def _align_matcher(self, codes: list[str], thresholds: list[float], folder: Path) -> None:
        """Line the loaded matcher up with the template's codes: a code added since the fit
        is served by the prior (its confidence and threshold) until the next retrain; a code
        removed since is dropped from the matcher."""
        if len(codes) != self.matcher_.k_ or len(thresholds) != len(codes):
            raise ProjectError(f"{folder / 'model.json'}: the code matcher's codes do not match its arrays")
        where = {c: i for i, c in enumerate(codes)}
        self.matcher_codes_ = np.array([c in where for c in self.code_ids], dtype=bool)
        if not self.matcher_codes_.any():
            self.matcher_, self.matcher_codes_ = None, None
            return
        self.matcher_ = self.matcher_.subset([where[c] for c in self.code_ids if c in where])
        self.matcher_thresholds_ = np.array([thresholds[where[c]] if c in where else float(self.prior.thresholds[j])
                                             for j, c in enumerate(self.code_ids)])


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1, not 6: the weights are mostly float32
    coefficients, which deflate barely compresses at any level (6.95 MB against 6.91 MB for 49
    codes learned from 5,000 passages), and level 6 took 0.41 s of each retrain against 0.20 s.
    ``np.load`` reads either."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)


def apply_history(reports: dict[str, CodeReport], history: list[dict], target: float, *, window: int = 3, min_gain: float = 0.03) -> None:
    """Mark codes "not automatable" when their learning curve has flattened below target: over
    the last ``window`` trainings (this one included) labels grew by half or more but F1 rose
    by less than ``min_gain`` and is still below ``target``. ``history``: earlier model cards."""
    for code, rep in reports.items():
        if rep.f1 is None or rep.verdict == "reliable":
            continue
        points = [
            (c["n_pos"] + c["n_neg"], c["f1"])
            for card in history
            for c in card.get("codes", [])
            if c["code_id"] == code and c.get("f1") is not None
        ][-(window - 1):] + [(rep.n_pos + rep.n_neg, rep.f1)]
        if len(points) < window:
            continue
        (n0, f0), (n1, f1) = points[0], points[-1]
        if n1 >= 1.5 * n0 and f1 - f0 < min_gain and f1 < target:
            rep.verdict = "not automatable"


__all__: Sequence[str] = ["MIN_CLASS", "BLEND_WEIGHTS", "FORMAT_VERSION", "CodeReport", "LearnedScorer", "apply_history"]
