"""Learning from the researcher's decisions: features, per-code classifiers on partial labels,
a per-code blend with the example-similarity prior decided by held-out performance,
calibration, model versions on disk (arrays and JSON, never pickle), and query strategies.

Labels (see :func:`labels_from_decisions`): an accept is a positive for its code; a reject is a
negative for that code only (a partial label: it says nothing about other codes); manual
codings count as accepts; the template's example excerpts are positives; under a parent
marked ``exclusive`` an accept is also a negative for each sibling.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..core.template import Template
from .embed import Encoder
from ..core.errors import ProjectError
from .suggest import ExampleSimilarityScorer, Inputs, Scorer, Scores

FeatureSet = Literal["emb", "emb+prev", "emb+prev+ngrams"]
DEFAULT_FEATURES: FeatureSet = "emb+prev+ngrams"
#: Below this many positives or negatives a code's classifier is not trained: the prior serves.
MIN_CLASS = 3
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Share of each active-learning batch drawn at random. On AnnoMI therapist fold 0 (500
#: decisions) pure uncertainty sampling reached macro-F1 0.49, random order 0.58, half and
#: half 0.64: the random half keeps the labelled sample representative for calibration.
EXPLORE = 0.5
#: The review app's "most uncertain first" queue after a retrain: this many segments are
#: picked by :func:`uncertainty_diversity` (the strategy the simulated researcher measures),
#: about a retraining's worth of decisions; the rest follow by uncertainty alone.
QUEUE_HEAD = 200
#: File in a model version's folder with the segment ids in review order (int64, .npy).
QUEUE_FILE = "queue.npy"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- features


@dataclass
class Featurizer:
    """Turns :class:`Inputs` into a sparse feature matrix.

    ``emb``: the segment embedding. ``emb+prev``: plus the previous turn's embedding (a
    "Yeah." is coded by what came before). ``emb+prev+ngrams``: plus TF-IDF-weighted hashed word
    1-2-grams and character 2-4-grams of the segment and word n-grams of the previous turn.
    Hashing keeps the featurizer stateless except for the IDF weights, which are plain arrays.
    """

    features: FeatureSet = DEFAULT_FEATURES
    n_hash: int = 2**15
    idf: dict[str, np.ndarray] = field(default_factory=dict)

    def _vectorizers(self) -> dict[str, HashingVectorizer]:
        common = dict(n_features=self.n_hash, alternate_sign=False, norm=None, lowercase=True)
        return {
            "word": HashingVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b|[?!]", **common),
            "char": HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), **common),
            "prev_word": HashingVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b|[?!]", **common),
        }

    def _counts(self, inputs: Inputs) -> dict[str, sp.csr_matrix]:
        v = self._vectorizers()
        prev = inputs.prev_texts if inputs.prev_texts is not None else [""] * len(inputs.texts)
        return {
            "word": v["word"].transform(inputs.texts),
            "char": v["char"].transform(inputs.texts),
            "prev_word": v["prev_word"].transform(prev),
        }

    def fit(self, inputs: Inputs, counts: dict[str, sp.csr_matrix] | None = None) -> "Featurizer":
        """Fit IDF weights on unlabelled text (the whole project: no labels are used)."""
        if "ngrams" in self.features:
            n = len(inputs.texts)
            for name, m in (counts or self._counts(inputs)).items():
                df = np.asarray((m > 0).sum(axis=0)).ravel()
                self.idf[name] = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        return self

    def ngrams(self, inputs: Inputs, counts: dict[str, sp.csr_matrix] | None = None) -> sp.csr_matrix:
        """The TF-IDF n-gram blocks alone (needs :meth:`fit` first)."""
        blocks = []
        for name, m in (counts or self._counts(inputs)).items():
            w = m.multiply(self.idf[name]).tocsr()
            norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            # Each n-gram block gets unit length, weighted so no block drowns the embedding.
            blocks.append(sp.diags(0.7 / norms) @ w)
        return sp.hstack(blocks, format="csr")

    def fit_transform(self, inputs: Inputs) -> sp.csr_matrix:
        """:meth:`fit` then :meth:`transform`, hashing the n-grams once (the hashing is most of
        a retrain's featurising: pure-Python n-gram analysis in scikit-learn)."""
        counts = self._counts(inputs) if "ngrams" in self.features else None
        return self.fit(inputs, counts).transform(inputs, counts)

    def transform(self, inputs: Inputs, counts: dict[str, sp.csr_matrix] | None = None) -> sp.csr_matrix:
        blocks: list[sp.spmatrix] = [sp.csr_matrix(inputs.X)]
        if self.features in ("emb+prev", "emb+prev+ngrams"):
            xp = inputs.X_prev if inputs.X_prev is not None else np.zeros_like(inputs.X)
            blocks.append(sp.csr_matrix(0.5 * xp))
        if "ngrams" in self.features:
            blocks.append(self.ngrams(inputs, counts))
        return sp.hstack(blocks, format="csr")


# --------------------------------------------------------------------------- labels


def labels_from_decisions(decisions: pd.DataFrame, template: Template) -> pd.DataFrame:
    """Turn current decisions (segment_id, code_id, action) into partial labels
    (segment_id, code_id, label, source). Skips carry no label. Where coders disagree on a
    pair, the most recent decision wins."""
    rows = []
    dec = decisions[decisions["action"].isin(["accept", "reject"])].sort_values("id")
    for r in dec.itertuples(index=False):
        if r.code_id not in template.codes:
            continue
        if r.action == "accept":
            rows.append((r.segment_id, r.code_id, 1, "accept", r.id))
            for sib in template.exclusive_siblings(r.code_id):
                rows.append((r.segment_id, sib, 0, "exclusive", r.id))
        else:
            rows.append((r.segment_id, r.code_id, 0, "reject", r.id))
    out = pd.DataFrame(rows, columns=["segment_id", "code_id", "label", "source", "order"])
    # Direct decisions outrank labels implied by exclusivity; then the latest wins.
    out["direct"] = out["source"] != "exclusive"
    out = out.sort_values(["direct", "order"]).drop_duplicates(["segment_id", "code_id"], keep="last")
    return out.drop(columns=["order", "direct"]).reset_index(drop=True)


# --------------------------------------------------------------------------- the learned scorer


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


def _f1_at(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float, float]:
    pred = p >= t
    tp = float((pred & (y == 1)).sum())
    prec = tp / pred.sum() if pred.sum() else 0.0
    rec = tp / (y == 1).sum() if (y == 1).sum() else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return prec, rec, f1


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class LearnedScorer(Scorer):
    """Per-code logistic regression on the researcher's decisions, blended per code with the
    example-similarity prior and calibrated on held-out folds of those decisions, with a
    per-code threshold chosen on the same held-out predictions."""

    version = "learned"
    needs_context = True

    def __init__(self, features: FeatureSet = DEFAULT_FEATURES, C: float = 1.0, target: float = 0.7, cv_folds: int = 3, seed: int = 0):
        self.features = features
        self.C = C
        self.target = target  # precision and recall a code needs to count as "reliable"
        self.cv_folds = cv_folds
        self.seed = seed
        self.prior: ExampleSimilarityScorer | None = None
        self.featurizer = Featurizer(features)
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
        self.coef, self.intercept, self.platt, self.reports = {}, {}, {}, {}
        # The template's example excerpts are labelled data too: positives for their code and,
        # under an exclusive parent, negatives for its siblings. They are always in training;
        # held-out checks use the researcher's decisions only.
        template = self.prior.template
        models = self.prior._models
        ex_texts = [e.text for m in models for e in m.code.examples]
        ex_code = np.array([m.code.id for m in models for _ in m.code.examples], dtype=object)
        ex_X = np.vstack([m.ex_vecs[: len(m.code.examples)] for m in models]) if ex_texts else np.zeros((0, corpus.X.shape[1]), np.float32)
        ex_F = self.featurizer.transform(Inputs(X=ex_X, texts=ex_texts, X_prev=np.zeros_like(ex_X), prev_texts=[""] * len(ex_texts)))
        by_code = {c: g for c, g in labels.groupby("code_id", sort=False)}
        empty = labels.iloc[:0]

        def fit_code(j: int, code: str):
            """One code's classifier, blend, calibration and threshold; None when it has too
            few decisions. Independent of every other code, so codes are fitted in threads
            (liblinear releases the GIL)."""
            lab = by_code.get(code, empty)
            rows = np.array([row_of[s] for s in lab["segment_id"]], dtype=int)
            y = lab["label"].to_numpy(dtype=int)
            n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
            report = CodeReport(code, n_pos, n_neg, 0.0)
            if n_pos < MIN_CLASS or n_neg < MIN_CLASS:
                return report, None
            siblings = set(template.exclusive_siblings(code))
            ex_rows = np.flatnonzero((ex_code == code) | np.isin(ex_code, list(siblings)))
            ex_y = (ex_code[ex_rows] == code).astype(int)

            # Only the feature columns this code's training rows use: an L2-penalised logistic
            # regression gives every other column a weight of exactly zero, and liblinear's cost
            # grows with the width (98,304 hashed n-gram columns: 0.24 s a fit, against 0.09 s
            # on the ~40,000 a code's rows touch).
            F_code = sp.vstack([F[rows], ex_F[ex_rows]]).tocsr()
            cols = np.unique(F_code.indices)
            F_code = F_code[:, cols]
            ex_part = np.arange(len(rows), F_code.shape[0])

            def fit_on(idx: np.ndarray) -> LogisticRegression:
                return self._clf().fit(F_code[np.r_[idx, ex_part]], np.r_[y[idx], ex_y])

            prior_p = prior_conf[rows, j]
            # Held-out predictions of the classifier on this code's own decisions.
            k = max(2, min(self.cv_folds, n_pos, n_neg))
            oof = np.zeros(len(y))
            for tr, te in StratifiedKFold(k, shuffle=True, random_state=self.seed).split(rows, y):
                oof[te] = fit_on(tr).predict_proba(F_code[te])[:, 1]
            # The blend weight is chosen by held-out log-loss after calibration, not by a count.
            best = None
            for w in BLEND_WEIGHTS:
                z = w * _logit(oof) + (1 - w) * _logit(prior_p)
                a, b = self._platt(z, y)
                p = 1 / (1 + np.exp(-(a * z + b)))
                loss = _logloss(y, p)
                if best is None or loss < best[0] - 1e-9:
                    best = (loss, w, a, b, p)
            _, w, a, b, p_cal = best
            report.weight = w
            # The code's threshold maximises held-out F1 (a frequent code needs more confidence
            # than a rare one); clipped so a handful of decisions cannot push it to an extreme.
            cands = np.unique(np.clip(p_cal, 0.05, 0.95))
            report.threshold = float(max(cands, key=lambda t: (_f1_at(y, p_cal, t)[2], -abs(t - 0.5)))) if len(cands) else 0.5
            prec, rec, f1 = _f1_at(y, p_cal, report.threshold)
            report.precision, report.recall, report.f1 = round(prec, 4), round(rec, 4), round(f1, 4)
            report.verdict = "reliable" if prec >= self.target and rec >= self.target else "needs more decisions"
            clf = fit_on(np.arange(len(y)))
            coef = np.zeros(F.shape[1], dtype=np.float32)
            coef[cols] = clf.coef_.ravel()
            return report, (coef, float(clf.intercept_[0]), (a, b))

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(len(self.code_ids), os.cpu_count() or 1))) as pool:
            results = list(pool.map(fit_code, range(len(self.code_ids)), self.code_ids))
        for code, (report, fitted) in zip(self.code_ids, results):
            self.reports[code] = report
            if fitted is not None:
                self.coef[code], self.intercept[code], self.platt[code] = fitted
        return self

    def _clf(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, class_weight="balanced", solver="liblinear", max_iter=200)

    @staticmethod
    def _platt(z: np.ndarray, y: np.ndarray, C: float = 1.0) -> tuple[float, float]:
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

    def score(self, inputs: Inputs | np.ndarray, *, features: sp.csr_matrix | None = None) -> Scores:
        """``features``: this featurizer's matrix of ``inputs`` when the caller has it already."""
        if self.prior is None:
            raise ProjectError("the learned scorer has no template prior; call fit() first")
        inputs = Inputs.of(inputs)
        base = self.prior.score(inputs)
        if not self.coef:
            return base
        conf = self.score_features(self.featurizer.transform(inputs) if features is None else features, base.confidence)
        return Scores(base.code_ids, conf, base.similarity, base.evidence_text, base.evidence_source, base.evidence_similarity, self.thresholds())

    def thresholds(self) -> np.ndarray:
        """Per-code thresholds: learned where a classifier exists, else twice the chance rate."""
        from .suggest import auto_threshold

        default = auto_threshold(len(self.code_ids))
        return np.array([self.reports[c].threshold if c in self.coef else default for c in self.code_ids])

    def score_features(self, F: sp.csr_matrix, prior_conf: np.ndarray) -> np.ndarray:
        """Calibrated confidences (n, k) from precomputed features and prior confidences."""
        conf = prior_conf.copy()
        for j, code in enumerate(self.code_ids):
            if code not in self.coef:
                continue
            w = self.reports[code].weight
            clf_p = 1 / (1 + np.exp(-(F @ self.coef[code] + self.intercept[code])))
            z = w * _logit(clf_p) + (1 - w) * _logit(prior_conf[:, j])
            a, b = self.platt[code]
            conf[:, j] = 1 / (1 + np.exp(-(a * z + b)))
        return conf.astype(np.float32)

    # -- persistence: arrays + JSON, never pickle ----------------------------------------
    def card(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "scorer": self.version,
            "features": self.features,
            "C": self.C,
            "target": self.target,
            "cv_folds": self.cv_folds,
            "n_hash": self.featurizer.n_hash,
            "codes": [asdict(r) for r in self.reports.values()],
            "platt": self.platt,
            "intercept": self.intercept,
        }

    def save(self, folder: Path) -> None:
        arrays = {f"idf__{k}": v for k, v in self.featurizer.idf.items()}
        for code, coef in self.coef.items():
            nz = np.flatnonzero(coef)
            arrays[f"coef_idx__{code}"] = nz.astype(np.int32)
            arrays[f"coef_val__{code}"] = coef[nz]
            arrays[f"coef_len__{code}"] = np.array([len(coef)], dtype=np.int64)
        np.savez_compressed(folder / "weights.npz", **arrays)
        (folder / "model.json").write_text(json.dumps(self.card(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, template: Template, encoder: Encoder) -> "LearnedScorer":
        try:
            meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ProjectError(f"{folder / 'model.json'}: damaged model description ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            raise ProjectError(f"{folder}: unknown model format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        self = cls(meta["features"], meta["C"], meta["target"], meta["cv_folds"]).fit(template, encoder)
        self.featurizer = Featurizer(meta["features"], int(meta["n_hash"]))
        # allow_pickle=False: a model file can never run code when loaded; anything that is not
        # plain numeric arrays is refused.
        try:
            with np.load(folder / "weights.npz", allow_pickle=False) as z:
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
        unknown = set(self.coef) - set(self.code_ids)
        if unknown:
            raise ProjectError(f"{folder}: the model has codes the template no longer has: {sorted(unknown)}")
        return self


# --------------------------------------------------------------------------- query strategies


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


def most_likely(conf: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-conf.max(axis=1), kind="stable")[:k]


# --------------------------------------------------------------------------- projects


def project_inputs(project, encoder: Encoder, segments: pd.DataFrame | None = None) -> tuple[pd.DataFrame, Inputs]:
    """Every segment of the project with the text of the turn before its turn, embedded."""
    segs = project.segments() if segments is None else segments
    prev_texts = []
    cache: dict[int, tuple[str, pd.DataFrame]] = {}
    for r in segs.itertuples(index=False):
        if r.transcript_id not in cache:
            cache[r.transcript_id] = (project.transcript_text(int(r.transcript_id)), project.turns(int(r.transcript_id)))
        text, turns = cache[r.transcript_id]
        prev = turns[turns["idx"] < r.turn_idx]
        prev_texts.append(text[int(prev.iloc[-1].start) : int(prev.iloc[-1].end)] if len(prev) else "")
    texts = segs["text"].tolist()
    X = encoder.encode(texts)
    X_prev = encoder.encode(prev_texts)
    return segs, Inputs(X=X, texts=texts, X_prev=X_prev, prev_texts=prev_texts)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def model_card_text(card: dict, template: Template) -> str:
    """A readable model card a researcher can paste into a methods section."""
    import textwrap

    features = "segment embedding" + (", previous-turn embedding" if "prev" in card["features"] else "") + (
        ", TF-IDF word and character n-grams" if "ngrams" in card["features"] else ""
    )
    prose = (
        f"Code suggestions were made with coder-assist. Passages were embedded with {card['encoder']}; features: {features}. "
        f"For each code, a logistic regression (C={card['C']}) trained on the researcher's accept/reject decisions and the "
        f"template's example excerpts was blended with the template's example-similarity scorer at a weight chosen by "
        f"{card['cv_folds']}-fold cross-validated log-loss, and calibrated (Platt) on the held-out folds. The model used "
        f"{card['n_decisions']} decisions ({card['n_labels']} labels including those implied by mutually exclusive codes). "
        f"A code counts as reliable when its held-out precision and recall are at least {card['target']}."
    )
    n_learned = sum(c.get("f1") is not None for c in card["codes"])
    if not n_learned:
        prose += (f" No code had at least {MIN_CLASS} positive and {MIN_CLASS} negative labels, so no classifier was trained: "
                  "every suggestion is the template's example similarity, as before the retrain.")
    lines = [f"coder-assist model card ({card.get('created_at', '')})", "", textwrap.fill(prose, 100), ""]
    lines.append(f"{'code':58s} {'+':>4s} {'-':>4s} {'w':>5s} {'P':>5s} {'R':>5s} {'F1':>5s}  verdict")
    fmt = lambda v: f"{v:5.2f}" if v is not None else "    -"  # noqa: E731
    for c in card["codes"]:
        code = template.codes.get(c["code_id"])
        name = f"{code.path[0]}: {code.name}" if code is not None else c["code_id"]
        name = name if len(name) <= 58 else name[:57] + "\u2026"
        short = [f"{k} more {w}{'s' if k != 1 else ''}" for k, w in ((MIN_CLASS - c["n_pos"], "accept"), (MIN_CLASS - c["n_neg"], "reject")) if k > 0]
        verdict = f"not learned yet: needs {' and '.join(short)}" if short else c["verdict"]
        lines.append(f"{name:58s} {c['n_pos']:4d} {c['n_neg']:4d} {c['weight']:5.2f} {fmt(c['precision'])} {fmt(c['recall'])} {fmt(c['f1'])}  {verdict}")
    lines += ["", "+/-: decided positives/negatives; w: weight of the classifier in the blend (0 = template similarity only);",
              "P/R/F1: held-out precision, recall and F1 at the code's threshold (chosen for held-out F1);",
              f"a code's classifier is trained once it has {MIN_CLASS} positives (accepts) and {MIN_CLASS} negatives (rejects)."]
    return "\n".join(lines) + "\n"


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


def consistency_check(project, encoder: Encoder, *, z_cut: float = -2.0) -> pd.DataFrame:
    """Accepted codings that sit far from the rest of their code, or closer to another code:
    possible miscodings to look at again. Codes are represented by the mean of their accepted
    passages (leave-one-out for the passage being checked) and their template examples."""
    template = project.template()
    cur = project.current_decisions()
    acc = cur[cur["action"] == "accept"]
    if acc.empty:
        return pd.DataFrame(columns=["segment_id", "transcript", "code_id", "code_path", "coder", "text", "similarity", "nearest_other", "similarity_other", "flag"])
    segs = project.segments().set_index("id")
    acc = acc[acc["segment_id"].isin(segs.index) & acc["code_id"].isin(template.codes)].reset_index(drop=True)
    texts = segs.loc[acc["segment_id"], "text"].tolist()
    X = encoder.encode(texts)
    ex = {c.id: encoder.encode([e.text for e in c.examples]) for c in template.leaves() if c.examples}
    sums = {cid: v.sum(axis=0) for cid, v in ex.items()}
    counts = {cid: len(v) for cid, v in ex.items()}
    for i, cid in enumerate(acc["code_id"]):
        sums[cid] = sums.get(cid, 0) + X[i]
        counts[cid] = counts.get(cid, 0) + 1
    codes = sorted(sums)
    rows = []
    for i, r in acc.iterrows():
        own_n = counts[r.code_id] - 1
        own = (sums[r.code_id] - X[i]) / own_n if own_n else None
        sims = {}
        for cid in codes:
            v = own if cid == r.code_id else sums[cid] / counts[cid]
            if v is not None:
                sims[cid] = float(X[i] @ (v / (np.linalg.norm(v) or 1.0)))
        own_sim = sims.get(r.code_id, float("nan"))
        others = {k: v for k, v in sims.items() if k != r.code_id}
        best = max(others, key=others.get) if others else None
        rows.append({
            "segment_id": int(r.segment_id), "transcript": segs.loc[r.segment_id, "transcript"], "code_id": r.code_id,
            "code_path": template.codes[r.code_id].path_str, "coder": r.coder, "text": segs.loc[r.segment_id, "text"],
            "similarity": own_sim, "nearest_other": template.codes[best].path_str if best else None,
            "similarity_other": others[best] if best else float("nan"),
        })
    df = pd.DataFrame(rows)
    z = df.groupby("code_id")["similarity"].transform(lambda s: (s - s.mean()) / s.std(ddof=0) if len(s) > 2 and s.std(ddof=0) > 0 else s * 0)
    df["flag"] = np.where(df["similarity_other"] > df["similarity"], "closer to another code", np.where(z < z_cut, "far from its code", ""))
    return df[df["flag"] != ""].sort_values(["flag", "similarity"]).reset_index(drop=True)


def train_project(project, encoder: Encoder, *, features: FeatureSet = DEFAULT_FEATURES, target: float = 0.7, threshold: float | None = None, top_k: int | None = 3) -> int:
    """Retrain from the project's decisions, save the model version (complete or absent), and
    store its suggestions. Returns the new model version id."""
    template = project.template()
    segs, inputs = project_inputs(project, encoder)
    decisions = project.current_decisions()
    labels = labels_from_decisions(decisions, template)
    row_of = {int(s): i for i, s in enumerate(segs["id"])}
    labels = labels[labels["segment_id"].isin(row_of)]
    scorer = LearnedScorer(features=features, target=target).fit(template, encoder)
    # Featurised once for training and scoring: n-gram hashing is the slow part of a retrain.
    featurizer = Featurizer(features)
    F = featurizer.fit_transform(inputs)
    scorer.fit_labels(inputs, labels, row_of=row_of, featurizer=featurizer, F=F)
    history = [json.loads(c) for k, c in project.model_versions()[["kind", "card"]].itertuples(index=False) if k == LearnedScorer.version]
    history = [c for c in history if "rescored_from" not in c]  # a rescore is not a new point on the curve
    apply_history(scorer.reports, history, target)
    card = scorer.card() | {
        "created_at": _now(),
        "encoder": encoder.model_id,
        "n_decisions": int(decisions["action"].isin(["accept", "reject"]).sum()),
        "n_labels": len(labels),
        "template_sha1": hashlib.sha1(template.to_yaml().encode()).hexdigest(),
    }
    scores = scorer.score(inputs, features=F)
    return _save_version(project, scorer, card, scores, inputs, segs, template, threshold=threshold, top_k=top_k)


def rescore_project(project, encoder: Encoder, *, threshold: float | None = None, top_k: int | None = 3) -> int:
    """Score every segment (new transcripts included) with the active learned model, without
    retraining, and store the result as a new model version that copies its weights: new
    interviews get learned suggestions, and the learning-curve history gains no fake point."""
    source = project.latest_model_version()
    kinds = dict(project.model_versions()[["id", "kind"]].itertuples(index=False))
    if source is None or kinds.get(source) != LearnedScorer.version:
        raise ProjectError(f"{project.folder}: the active model version is not a trained one; run `coder-assist train` first")
    scorer = load_model_version(project, source, encoder)
    src_folder = project.folder / "models" / f"v{source}"
    card = json.loads((src_folder / "card.json").read_text(encoding="utf-8"))
    segs, inputs = project_inputs(project, encoder)
    scores = scorer.score(inputs)
    card = card | {"created_at": _now(), "rescored_from": source, "segments": len(segs)}
    return _save_version(project, scorer, card, scores, inputs, segs, project.template(), threshold=threshold, top_k=top_k, keep_verdicts=True)


#: A temporary model folder untouched this long is the leftover of a killed save, not one in progress.
STALE_TMP_S = 3600


def _sweep_leftovers(models: Path) -> None:
    """Remove ``.tmp-*`` folders a killed retrain or fine-tune left behind (never a recorded
    version: those only ever exist under their final name)."""
    import time

    for d in models.glob(".tmp-*"):
        try:
            if d.is_dir() and time.time() - d.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _save_version(
    project, scorer: LearnedScorer, card: dict, scores: Scores, inputs: Inputs, segs: pd.DataFrame, template: Template,
    *, threshold: float | None, top_k: int | None, keep_verdicts: bool = False,
) -> int:
    """Pick the suggestions and the review order from ``scores``, then write the model
    version's folder and rows: complete or absent."""
    from .suggest import suggest

    order = query_order(scores.confidence, inputs.X)
    sugg = with_probes(suggest(scores, threshold=threshold, top_k=top_k), scores, order[:QUEUE_HEAD])
    sugg["segment_id"] = segs["id"].to_numpy()[sugg["segment"].to_numpy()]
    queue = segs["id"].to_numpy(dtype=np.int64)[order]
    models = project.folder / "models"
    models.mkdir(exist_ok=True)
    _sweep_leftovers(models)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=models))
    try:
        scorer.save(tmp)
        np.save(tmp / QUEUE_FILE, queue, allow_pickle=False)
        (tmp / "card.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
        (tmp / "card.txt").write_text(model_card_text(card, template), encoding="utf-8")
        with project.transaction():
            mv = project.add_model_version(scorer.version, card["encoder"], card)
            project.add_suggestions(mv, sugg)
            if not keep_verdicts:
                # The folder appears under its final name only inside the transaction that
                # records it: a crash leaves either both or an ignorable .tmp folder.
                project._set_meta("stale_verdicts", "[]")  # fresh verdicts against the current template
            target = models / f"v{mv}"
            if target.exists():
                # Ids are reused after a rolled-back transaction: a folder under this id is an
                # orphan of a crash between rename and commit, never a recorded version.
                shutil.rmtree(target)
            os.replace(tmp, target)  # last step: if it fails, the transaction rolls back
    except OSError as exc:  # disk full, permissions: say where, not a traceback
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProjectError(f"{models}: cannot save the model version ({exc.strerror or exc}); nothing was recorded") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return mv


def load_model_version(project, version: int, encoder: Encoder) -> LearnedScorer:
    folder = project.folder / "models" / f"v{version}"
    if not (folder / "model.json").exists():
        raise ProjectError(f"{folder}: no saved model for version {version}")
    return LearnedScorer.load(folder, project.template(), encoder)


def rollback(project, version: int) -> None:
    """Make an earlier model version current again: its saved suggestions feed the queue."""
    project.set_active_model_version(version)


__all__: Sequence[str] = [
    "Featurizer",
    "LearnedScorer",
    "labels_from_decisions",
    "uncertainty_diversity",
    "query_order",
    "most_likely",
    "train_project",
    "rescore_project",
    "load_model_version",
    "rollback",
]
