"""The simulated researcher: learning curves of the product's own loop against baselines.

Reads a folder in the evaluation format (segments.csv with transcript_id, turn_index, speaker,
unit, text, code; codebook.csv; folds.csv). For each held-out fold: the other folds are the
pool; the template is the codebook descriptions plus ``n_examples`` excerpts per code drawn from
the pool (fixed seed). Then the product's queue picks a batch of passages, an oracle answers
them the way the chosen review protocol lets a researcher answer (see ``PROTOCOLS``), and the
product retrains. Quality on the held-out fold is measured at fixed numbers of decisions.

Units whose gold code is empty ("no code applies") stay in pool and test: the oracle answers
them like any other passage (a reject, or under ``passage`` an all-negative complete label) and
``metrics`` scores them (see there).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, f1_score

from ..core.defaults import DEFAULT_TOP_K
from ..core.template import parse_template
from ..ml.calibration import reliability
from ..ml.encoder import Encoder
from ..core.errors import InputError
from ..ml.classifier import LearnedScorer
from ..ml.features import DEFAULT_FEATURES, Featurizer, labels_from_decisions
from ..ml.query import strategy as query_strategy
from ..ml.suggest import ExampleSimilarityScorer, Inputs, Scores, decide

CHECKPOINTS = (0, 50, 100, 200, 300, 500, 1000)

PROTOCOLS = ("binary", "corrective", "passage")
"""How the simulated researcher answers one queued passage; each answer is one decision.

``binary``: the queue shows the passage's top code; the oracle accepts it if it is a gold code,
else rejects it. Effort: one key press (accept or reject).

``corrective``: as binary, but a reject names a gold code ("Different code..."): the shown code
is rejected and the gold code ranked highest by the current model is accepted, one decision.
Effort: an accept is one key; a reject of a passage with no gold code is one key; a correction
is one key (Different code) plus one key to pick the gold code when it is among the
``N_CANDIDATES`` codes ranked after the shown one, else one search and one key to pick the
result.

``passage``: the oracle confirms the gold set of the shown passage. The passage becomes a
complete label: every gold code positive, every other code negative (all negative when the gold
is empty). Pre-ticked are the codes the product would suggest (decision margin >= 0; single-label:
only the top code, if it passes); the candidate list is the next ``N_CANDIDATES`` codes by
margin. Effort: one toggle (key) per pre-ticked wrong code, one toggle per missing gold code in
the candidate list, one search plus one key to pick the result per missing gold code outside it,
and one Enter.

Typing a search term is counted as one search, not as key presses.
"""

N_CANDIDATES = 5


@dataclass
class Dataset:
    name: str
    units: pd.DataFrame  # unit rows: transcript_id, text, prev_text, codes (list, [] = no code applies), fold
    codebook: pd.DataFrame
    single_label: bool

    @property
    def has_uncoded(self) -> bool:
        """Whether some unit's gold is "no code applies" (an empty code)."""
        return bool((self.units["codes"].str.len() == 0).any())


def load_dataset(folder: str | Path) -> Dataset:
    folder = Path(folder)
    try:
        seg = pd.read_csv(folder / "segments.csv", keep_default_na=False, dtype={"code": str, "text": str})
        cb = pd.read_csv(folder / "codebook.csv", keep_default_na=False)
        folds = pd.read_csv(folder / "folds.csv")
    except FileNotFoundError as exc:
        raise InputError(exc.filename, "missing: an evaluation folder needs segments.csv, codebook.csv and folds.csv") from exc
    need = {"transcript_id", "turn_index", "unit", "text", "code"}
    if not need <= set(seg.columns):
        raise InputError(folder / "segments.csv", f"needs columns {sorted(need)}; found {list(seg.columns)}")
    seg = seg.sort_values(["transcript_id", "turn_index"]).reset_index(drop=True)
    # The previous row of the same transcript is the context ("Yeah." after a question).
    prev = seg.groupby("transcript_id")["text"].shift(1).fillna("")
    seg["prev_text"] = prev
    seg = seg.merge(folds, on="transcript_id", how="left")
    units = seg[seg["unit"] == 1].copy()
    units["codes"] = units["code"].map(lambda c: [x for x in c.split("|") if x])
    single = bool((units["codes"].str.len() <= 1).all())
    return Dataset(folder.name, units.reset_index(drop=True), cb, single)


def _names(code_ids: Sequence[str]) -> list[str]:
    """Gold code names of template code ids. ``_template`` gives each code its codebook name as
    id, and a name may hold a "/" ("Transport to/ from services"), so an id is not split."""
    return list(code_ids)


def pool_template(ds: Dataset, pool: pd.DataFrame, n_examples: int, seed: int, *, examples: bool = True):
    """The simulated researcher's template: one code per codebook row with its description and
    ``n_examples`` excerpts drawn from ``pool`` (``seed``), under one parent that is exclusive
    when the scheme is single-label."""
    rng = np.random.default_rng(seed)
    codes = []
    for r in ds.codebook.itertuples(index=False):
        node = {"name": r.code, "id": r.code, "description": r.description}
        if examples:
            cands = pool.index[pool["codes"].map(lambda cs: r.code in cs)].to_numpy()
            pick = rng.choice(cands, size=min(n_examples, len(cands)), replace=False)
            node["examples"] = pool.loc[pick, "text"].tolist()
        codes.append(node)
    # Single-label schemes are mutually exclusive groups: an accept also rules out the siblings.
    return parse_template({"name": ds.name, "codes": [{"name": ds.name, "description": ds.name, "exclusive": ds.single_label, "children": codes}]})


def metrics(
    ds: Dataset, code_ids: list[str], conf: np.ndarray, gold: pd.Series, thresholds: np.ndarray | None = None,
    *, top_margin: float | None = None, top_k: int | None = None,
) -> dict:
    """Macro-F1, Cohen's kappa and per-code F1 of confidences ``conf`` (n, codes ``code_ids``)
    against the gold codes of the same n units (``gold``: a list of codes per unit).

    The decisions are the product's (:func:`coder_assist.ml.suggest.decide` with ``thresholds``,
    ``top_margin`` and ``top_k``; the loop passes the scorer's, as the app shows them).
    Single-label: the top suggestion (largest log-odds above its code's threshold).
    Multi-label: every suggested code. ``thresholds`` None: 0.5 for all, no best-code rule.

    An empty gold ("no code applies"). Multi-label: a row with no positive; a code predicted
    there is a false positive of that code, no code predicted costs nothing. Single-label, where
    the dataset has such units: "no code" is predicted when no code reaches its threshold; macro-F1
    averages over the codes only (a wrong code on an empty unit is that code's false positive, a
    missed code is a false negative), kappa counts "no code" as one more category. A single-label
    dataset without empty golds keeps the plain argmax, as before."""
    names = _names(code_ids)
    t = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds)
    margin, chosen = decide(Scores(code_ids, conf, conf, conf, conf, conf, t, top_margin if thresholds is not None else None), top_k=top_k)
    if ds.single_label:
        y_true = gold.map(lambda cs: cs[0] if cs else "").to_numpy()
        top = margin.argmax(axis=1)
        y_pred = np.asarray(names, dtype=object)[top]
        if ds.has_uncoded:
            y_pred = np.where(chosen[np.arange(len(top)), top], y_pred, "")
        per = f1_score(y_true, y_pred, labels=names, average=None, zero_division=0)
        return {
            "macro_f1": round(float(per.mean()), 4),
            "kappa": round(float(cohen_kappa_score(y_true, y_pred)), 4),
            "per_code_f1": {n: round(float(v), 4) for n, v in zip(names, per)},
        }
    Y = np.array([[n in cs for n in names] for cs in gold])
    P = chosen
    per = f1_score(Y, P, average=None, zero_division=0)
    kap = [cohen_kappa_score(Y[:, j], P[:, j]) if Y[:, j].any() or P[:, j].any() else 0.0 for j in range(len(names))]
    return {"macro_f1": round(float(per.mean()), 4), "kappa": round(float(np.mean(kap)), 4), "per_code_f1": {n: round(float(v), 4) for n, v in zip(names, per)}}


@dataclass
class Effort:
    """What answering the queue cost the simulated researcher (see ``PROTOCOLS``)."""

    keys: int = 0
    searches: int = 0

    def add(self, keys: int, searches: int = 0) -> None:
        self.keys += keys
        self.searches += searches

    def as_dict(self) -> dict:
        return {"keys": self.keys, "searches": self.searches}


def complete_labels(segment_ids: Sequence[int], gold: Sequence[Sequence[str]], code_ids: Sequence[str]) -> pd.DataFrame:
    """Confirmed passages as the learner's label frame (segment_id, code_id, label, source):
    each passage positive for its gold codes (names, the last part of a code id) and negative for
    every other code; an empty gold is negative for every code."""
    names = _names(code_ids)
    rows = [(int(s), cid, int(n in set(g)), "passage") for s, g in zip(segment_ids, gold) for cid, n in zip(code_ids, names)]
    return pd.DataFrame(rows, columns=["segment_id", "code_id", "label", "source"])


def passage_effort(gold: Sequence[str], ranked: Sequence[str], preticked: Sequence[str], n_candidates: int = N_CANDIDATES) -> tuple[int, int]:
    """(keys, searches) to turn the pre-ticked codes into the gold set and confirm: ``ranked``
    is every code name by decision margin, best first; the candidate list is the first
    ``n_candidates`` names of ``ranked`` that are not pre-ticked."""
    gold, pre = set(gold), set(preticked)
    listed = [n for n in ranked if n not in pre][:n_candidates]
    missing = gold - pre
    found = len(missing & set(listed))
    searched = len(missing) - found
    return len(pre - gold) + found + searched + 1, searched


def corrective_pick(gold: Sequence[str], ranked: Sequence[str], shown: str, n_candidates: int = N_CANDIDATES) -> tuple[str | None, int, int]:
    """The gold code a "Different code..." names after ``shown`` was wrong (the one the model
    ranks highest; None when the gold is empty) and its (keys, searches)."""
    if not gold:
        return None, 1, 0
    rest = [n for n in ranked if n != shown]
    pick = min(gold, key=lambda n: rest.index(n) if n in rest else len(rest))
    if pick in rest[:n_candidates]:
        return pick, 2, 0
    return pick, 2, 1


@dataclass
class Answer:
    """The oracle's answer to one queued passage: one decision."""

    events: list[tuple[str, str]]  # (code_id, "accept"|"reject") for the decision log
    complete: bool  # passage protocol: the passage is a complete label of its gold codes
    top_ok: bool  # the top suggestion is a gold code (accept_rate counts these)
    keys: int
    searches: int


def answer(
    protocol: str, gold: Sequence[str], ranked: Sequence[str], margins: Sequence[float], *, single_label: bool,
    suggested: Sequence[bool] | None = None,
) -> Answer:
    """How the simulated researcher answers a passage under ``protocol`` (see ``PROTOCOLS``).

    ``gold``: the passage's gold code names ([]: no code applies); ``ranked``: every code id,
    best decision margin first; ``margins``: those margins, in the same order; ``suggested``:
    whether the product suggests each (None: margin >= 0), pre-ticked under ``passage``."""
    names = _names(ranked)
    top_ok = names[0] in gold
    if protocol == "passage":
        shown = [m >= 0 for m in margins] if suggested is None else suggested
        pre = [n for n, ok in zip(names, shown) if ok]
        pre = pre[:1] if single_label else pre
        return Answer([], True, top_ok, *passage_effort(gold, names, pre))
    first = (ranked[0], "accept" if top_ok else "reject")
    if top_ok or protocol == "binary":
        return Answer([first], False, top_ok, 1, 0)
    right, keys, searches = corrective_pick(gold, names, names[0])
    events = [first] if right is None else [first, (ranked[names.index(right)], "accept")]
    return Answer(events, False, top_ok, keys, searches)


def run_loop(
    ds: Dataset,
    pool: pd.DataFrame,
    test: pd.DataFrame,
    template,
    encoder: Encoder,
    *,
    budget: int,
    checkpoints: Sequence[int],
    batch: int,
    strategy: str,
    features: str,
    seed: int,
    embeddings: dict[str, np.ndarray],
    protocol: str = "binary",
    log: Callable[[str], None] = lambda s: None,
    on_checkpoint: Callable[[int, np.ndarray, dict], None] | None = None,
) -> list[dict]:
    """One learning curve: query, oracle (``protocol``, see ``PROTOCOLS``), retrain; metrics on
    ``test`` at each checkpoint, with the cumulative effort. ``on_checkpoint(decisions, conf,
    rule)`` receives the test rows' confidences (columns ``rule["code_ids"]``) and the decision
    rule (``thresholds``, ``top_margin``) at each checkpoint, for figures other than these metrics."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    picker = query_strategy(strategy, seed=seed)
    corpus = pd.concat([pool, test])
    inputs = Inputs(X=embeddings["X"][corpus["row"]], texts=corpus["text"].tolist(), X_prev=embeddings["P"][corpus["row"]], prev_texts=corpus["prev_text"].tolist())
    n_pool = len(pool)
    # One thread: a reproducible curve (see LearnedScorer's n_jobs).
    scorer = LearnedScorer(features=features, seed=seed, n_jobs=1).fit(template, encoder)
    featurizer = Featurizer(features)
    F = featurizer.fit_transform(inputs)
    prior_conf = scorer.prior.score(inputs).confidence
    code_ids = scorer.code_ids
    conf = prior_conf
    asked = np.zeros(n_pool, dtype=bool)
    events: list[tuple[int, str, str, int]] = []  # (row, code_id, action, id): the decision log
    confirmed: list[int] = []  # passage protocol: rows confirmed as complete labels
    n_decisions = 0
    effort = Effort()
    shown = accepted = 0
    curve = []
    pool_codes = pool["codes"].tolist()
    for target in [c for c in checkpoints if c <= budget]:
        while n_decisions < target:
            k = min(batch, target - n_decisions)
            avail = np.flatnonzero(~asked)
            if len(avail) == 0:
                break
            pick = avail[picker.query(conf[avail], inputs.X[avail], k)]
            margin, chosen = decide(Scores(code_ids, conf, conf, conf, conf, conf, scorer.thresholds(), scorer.top_margin), top_k=DEFAULT_TOP_K)
            for i in pick:
                asked[i] = True
                order = np.argsort(-margin[i], kind="stable")
                a = answer(protocol, pool_codes[i], [code_ids[j] for j in order], margin[i, order], single_label=ds.single_label, suggested=chosen[i, order])
                n_decisions += 1
                shown += 1
                accepted += a.top_ok
                effort.add(a.keys, a.searches)
                if a.complete:
                    confirmed.append(int(i))
                events.extend((int(i), c, act, len(events) + n) for n, (c, act) in enumerate(a.events))
            if protocol == "passage":
                labels = complete_labels(confirmed, [pool_codes[i] for i in confirmed], code_ids)
            else:
                labels = labels_from_decisions(pd.DataFrame(events, columns=["segment_id", "code_id", "action", "id"]), template)
            scorer.fit_labels(inputs, labels, row_of={i: i for i in range(len(corpus))}, featurizer=featurizer, F=F, prior_conf=prior_conf)
            conf = scorer.score_features(F, scorer.base_confidence(inputs, prior_conf))
        # The thresholds the product would use now: the prior's at 0 decisions, learned ones after.
        rule = dict(thresholds=scorer.thresholds(), top_margin=scorer.top_margin)
        if on_checkpoint is not None:
            on_checkpoint(n_decisions, conf[n_pool:], dict(rule, code_ids=code_ids))
        m = metrics(ds, code_ids, conf[n_pool:], test["codes"], **rule, top_k=DEFAULT_TOP_K)
        row = {"decisions": n_decisions, "macro_f1": m["macro_f1"], "kappa": m["kappa"], "accept_rate": round(accepted / shown, 4) if shown else None,
               "effort": effort.as_dict(), "per_code_f1": m["per_code_f1"], "reliability": reliability_table(conf[n_pool:], code_ids, test["codes"]),
               "reliability_shown": shown_reliability(conf[n_pool:], code_ids, test["codes"], **rule)}
        log(f"  {protocol}/{strategy:>10s} {row['decisions']:5d} decisions: macro-F1 {row['macro_f1']:.3f} kappa {row['kappa']:.3f} accept {row['accept_rate']} "
            f"keys {effort.keys} searches {effort.searches}")
        curve.append(row)
    return curve


def _gold_matrix(code_ids: list[str], gold: pd.Series) -> np.ndarray:
    names = _names(code_ids)
    return np.array([[n in cs for n in names] for cs in gold], dtype=bool).reshape(len(gold), len(names))


def _as_accept_rate(rows: list[dict]) -> list[dict]:
    # The simulated researcher accepts exactly the gold codes, so a bin's hit rate is its accept rate.
    return [{"bin": r["bin"], "n": r["n"], "mean_confidence": r["mean_confidence"], "accept_rate": r["hit_rate"]} for r in rows]


def reliability_table(conf: np.ndarray, code_ids: list[str], gold: pd.Series, bins: int = 10) -> list[dict]:
    """Calibration check: every (passage, code) confidence, binned, against how often the code
    is the gold code. Well calibrated means mean_confidence ~= accept_rate in every bin."""
    return _as_accept_rate(reliability(conf, _gold_matrix(code_ids, gold), bins))


def shown_reliability(
    conf: np.ndarray, code_ids: list[str], gold: pd.Series, *, thresholds: np.ndarray, top_margin: float | None,
    top_k: int | None = DEFAULT_TOP_K, bins: int = 10,
) -> list[dict]:
    """Calibration of what the researcher sees: only the suggestions the product would show
    (:func:`coder_assist.ml.suggest.decide`), confidence-binned, against how often the shown
    code is gold (what the researcher would accept)."""
    _, chosen = decide(Scores(code_ids, conf, conf, conf, conf, conf, thresholds, top_margin), top_k=top_k)
    return _as_accept_rate(reliability(conf[chosen], _gold_matrix(code_ids, gold)[chosen], bins))


def fit_all(ds: Dataset, Xtr, ytr, Xte) -> np.ndarray:
    """The "all labels" baseline: logistic regression on every training unit's gold codes
    (``ytr``: a list of codes per row of ``Xtr``), confidences (n, codes) for ``Xte`` in the
    codebook's order. Single-label: one multinomial model; multi-label: one model per code."""
    names = list(ds.codebook["code"])
    if ds.single_label:
        clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(Xtr, [c[0] if c else "" for c in ytr])
        proba = clf.predict_proba(Xte)
        out = np.zeros((Xte.shape[0], len(names)))
        for j, c in enumerate(clf.classes_):
            if c in names:  # "" (no code applies) is a class of its own, with no column
                out[:, names.index(c)] = proba[:, j]
        return out
    out = np.zeros((Xte.shape[0], len(names)))
    for j, n in enumerate(names):
        y = np.array([n in cs for cs in ytr])
        if y.any() and not y.all():
            out[:, j] = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(Xtr, y).predict_proba(Xte)[:, 1]
    return out


def _sample(ds: Dataset, max_units: int | None, seed: int) -> Dataset:
    """The dataset with at most ``max_units`` coded units (a fixed-seed sample, in file order)."""
    if max_units is None or len(ds.units) <= max_units:
        return ds
    units = ds.units.sample(max_units, random_state=seed).sort_index()
    return Dataset(ds.name, units.reset_index(drop=True), ds.codebook, ds.single_label)


def _fold_curves(ds: Dataset, pool: pd.DataFrame, test: pd.DataFrame, tpl, encoder: Encoder, **common) -> dict[str, list[dict]]:
    """One fold's learning curves: the product's queue and the same learner in random order."""
    return {
        "curve": run_loop(ds, pool, test, tpl, encoder, strategy="uncertainty_diversity", **common),
        "random_order": run_loop(ds, pool, test, tpl, encoder, strategy="random", **common),
    }


def _baselines(ds: Dataset, units: pd.DataFrame, pool: pd.DataFrame, test: pd.DataFrame, encoder: Encoder, emb: dict[str, np.ndarray], seed: int) -> dict[str, dict]:
    """One fold's fixed points: zero-shot on the descriptions, and TF-IDF or embedding logistic
    regression trained on every pool label."""
    # Zero-shot is scored as the product would show a descriptions-only template: its own rule
    # (no examples: no calibration, the best code of each passage).
    zs = ExampleSimilarityScorer().fit(pool_template(ds, pool, 0, seed, examples=False), encoder)
    zs_scores = zs.score(emb["X"][test["row"]])
    corpus = Inputs(X=emb["X"][units["row"]], texts=units["text"].tolist(), X_prev=emb["P"][units["row"]], prev_texts=units["prev_text"].tolist())
    ngrams = Featurizer("emb+prev+ngrams").fit(corpus)
    tf_only = lambda rows: ngrams.ngrams(Inputs(X=emb["X"][rows["row"]], texts=rows["text"].tolist()))  # noqa: E731
    names = list(ds.codebook["code"])
    return {
        "zero_shot": metrics(ds, zs.code_ids, zs_scores.confidence, test["codes"], zs_scores.thresholds, top_margin=zs_scores.top_margin, top_k=DEFAULT_TOP_K),
        "tfidf_lr_all": metrics(ds, names, fit_all(ds, tf_only(pool), pool["codes"].tolist(), tf_only(test)), test["codes"]),
        "embedding_lr_all": metrics(ds, names, fit_all(ds, emb["X"][pool["row"]], pool["codes"].tolist(), emb["X"][test["row"]]), test["codes"]),
    }


def _mean_curve(curves: list[list[dict]]) -> list[dict]:
    out = []
    for i in range(min(len(c) for c in curves)):
        rows = [c[i] for c in curves]
        acc = [r["accept_rate"] for r in rows if r["accept_rate"] is not None]
        out.append({
            "decisions": int(np.mean([r["decisions"] for r in rows])),
            "macro_f1": round(float(np.mean([r["macro_f1"] for r in rows])), 4),
            "kappa": round(float(np.mean([r["kappa"] for r in rows])), 4),
            "accept_rate": round(float(np.mean(acc)), 4) if acc else None,
            "effort": {k: round(float(np.mean([r["effort"][k] for r in rows])), 1) for k in ("keys", "searches")},
            "per_code_f1": {k: round(float(np.mean([r["per_code_f1"][k] for r in rows])), 4) for k in rows[0]["per_code_f1"]},
            # Pooled over folds (bins summed): every (passage, code) pair, and what was shown.
            **{key: _pooled_reliability([[r] for r in rows], key) for key in ("reliability", "reliability_shown") if key in rows[0]},
        })
    return out


def _mean_point(points: list[dict]) -> dict:
    return {"macro_f1": round(float(np.mean([p["macro_f1"] for p in points])), 4), "kappa": round(float(np.mean([p["kappa"] for p in points])), 4)}


def _pooled_reliability(curves: list[list[dict]], key: str = "reliability") -> list[dict]:
    """Reliability of the final model, pooled over folds (bins summed, not averaged)."""
    pooled: dict[str, list] = {}
    for c in curves:
        for r in c[-1][key]:
            pooled.setdefault(r["bin"], []).append(r)
    return [
        {"bin": b, "n": sum(r["n"] for r in rs),
         "mean_confidence": round(sum(r["mean_confidence"] * r["n"] for r in rs) / sum(r["n"] for r in rs), 4),
         "accept_rate": round(sum(r["accept_rate"] * r["n"] for r in rs) / sum(r["n"] for r in rs), 4)}
        for b, rs in sorted(pooled.items())
    ]


def _summarise(per_fold: dict[str, list]) -> dict:
    """Every figure as the mean over folds, and how many decisions the loop needs to match
    embedding + LR trained on all pool labels (None: it does not within the budget)."""
    curve = _mean_curve(per_fold["curve"])
    emb_all = _mean_point(per_fold["embedding_lr_all"])
    return {
        "curve": curve,
        "baselines": {
            "random_order": _mean_curve(per_fold["random_order"]),
            "zero_shot": _mean_point(per_fold["zero_shot"]),
            "tfidf_lr_all": _mean_point(per_fold["tfidf_lr_all"]),
            "embedding_lr_all": emb_all,
        },
        "decisions_to_match_embedding_lr_all": next((r["decisions"] for r in curve if r["macro_f1"] >= emb_all["macro_f1"]), None),
        "reliability_final": _pooled_reliability(per_fold["curve"]),
        "reliability_shown_final": _pooled_reliability(per_fold["curve"], "reliability_shown"),
    }


def simulate(
    folder: str | Path,
    encoder: Encoder,
    *,
    folds: Sequence[int] | None = None,
    budget: int = 1000,
    checkpoints: Sequence[int] = CHECKPOINTS,
    batch: int = 50,
    n_examples: int = 5,
    features: str = DEFAULT_FEATURES,
    seed: int = 0,
    max_units: int | None = None,
    protocol: str = "passage",
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Run the simulated researcher (answering as ``protocol``, see ``PROTOCOLS``) and the
    baselines; every figure is the mean over folds. Each curve row carries the cumulative
    ``effort`` (key presses, searches) next to ``decisions``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    t0 = time.perf_counter()
    ds = _sample(load_dataset(folder), max_units, seed)
    units = ds.units
    folds = sorted(units["fold"].unique()) if folds is None else list(folds)
    checkpoints = sorted({c for c in checkpoints if c <= budget} | {0})
    n_uncoded = int((units["codes"].str.len() == 0).sum())
    log(f"{ds.name}: {len(units)} units ({n_uncoded} with no code), {len(ds.codebook)} codes, folds {[int(f) for f in folds]}; embedding ...")
    units = units.assign(row=np.arange(len(units)))
    emb = {"X": encoder.encode(units["text"].tolist()), "P": encoder.encode(units["prev_text"].tolist())}
    per_fold: dict[str, list] = {"curve": [], "random_order": [], "zero_shot": [], "tfidf_lr_all": [], "embedding_lr_all": []}
    fold_sizes = []
    for f in folds:
        pool = units[units["fold"] != f]
        test = units[units["fold"] == f]
        fold_sizes.append({"fold": int(f), "pool": len(pool), "pool_uncoded": int((pool["codes"].str.len() == 0).sum()),
                           "test": len(test), "test_uncoded": int((test["codes"].str.len() == 0).sum())})
        log(f"fold {f}: pool {len(pool)}, test {len(test)}")
        tpl = pool_template(ds, pool, n_examples, seed)
        common = dict(budget=budget, checkpoints=checkpoints, batch=batch, features=features, seed=seed, embeddings=emb, protocol=protocol, log=log)
        for key, value in (_fold_curves(ds, pool, test, tpl, encoder, **common) | _baselines(ds, units, pool, test, encoder, emb, seed)).items():
            per_fold[key].append(value)
        log(f"  baselines: zero-shot {per_fold['zero_shot'][-1]['macro_f1']:.3f}, tfidf+LR all {per_fold['tfidf_lr_all'][-1]['macro_f1']:.3f}, embedding+LR all {per_fold['embedding_lr_all'][-1]['macro_f1']:.3f}")
    summary = _summarise(per_fold)
    return {
        "dataset": ds.name,
        "folds": [int(f) for f in folds],
        "protocol": protocol,
        "units": len(units),
        "units_uncoded": n_uncoded,
        "fold_sizes": fold_sizes,
        "budget": budget,
        "batch": batch,
        "n_examples": n_examples,
        "features": features,
        "strategy": "uncertainty_diversity",
        "encoder": encoder.model_id,
        "curve": summary["curve"],
        "baselines": summary["baselines"],
        "decisions_to_match_embedding_lr_all": summary["decisions_to_match_embedding_lr_all"],
        "reliability_final": summary["reliability_final"],
        "reliability_shown_final": summary["reliability_shown_final"],
        "effort": summary["curve"][-1]["effort"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def plot_curve(result: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label, style in (("curve", "coder-assist queue (half uncertain + diverse, half random)", "o-"), ("random_order", "same learner, random order", "s--")):
        rows = result[key] if key == "curve" else result["baselines"][key]
        ax.plot([r["decisions"] for r in rows], [r["macro_f1"] for r in rows], style, label=label)
    for key, label, color in (("embedding_lr_all", "embedding + LR, all pool labels", "tab:green"), ("tfidf_lr_all", "TF-IDF + LR, all pool labels", "tab:purple"), ("zero_shot", "zero-shot (descriptions)", "tab:gray")):
        ax.axhline(result["baselines"][key]["macro_f1"], color=color, linestyle=":", label=label)
    ax.set_xlabel("researcher decisions")
    ax.set_ylabel("macro-F1 on held-out fold(s)")
    ax.set_title(f"{result['dataset']}: folds {result['folds']}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_result(result: dict, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
