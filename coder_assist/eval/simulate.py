"""The simulated researcher: learning curves of the product's own loop against baselines.

Reads a folder in the evaluation format (segments.csv with transcript_id, turn_index, speaker,
unit, text, code; codebook.csv; folds.csv). For each held-out fold: the other folds are the
pool; the template is the codebook descriptions plus ``n_examples`` excerpts per code drawn from
the pool (fixed seed). Then the product's queue picks a batch of suggestions, an oracle accepts
when the gold code matches and rejects otherwise, and the product retrains. Quality on the
held-out fold is measured at fixed numbers of decisions.
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

from ..core.template import parse_template
from ..ml.encoder import Encoder
from ..core.errors import InputError
from ..ml.classifier import LearnedScorer
from ..ml.features import DEFAULT_FEATURES, Featurizer, labels_from_decisions
from ..ml.query import strategy as query_strategy
from ..ml.suggest import ExampleSimilarityScorer, Inputs, Scores

CHECKPOINTS = (0, 50, 100, 200, 300, 500, 1000)


@dataclass
class Dataset:
    name: str
    units: pd.DataFrame  # coded rows: transcript_id, text, prev_text, codes (list), fold
    codebook: pd.DataFrame
    single_label: bool


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
    units = seg[(seg["unit"] == 1) & (seg["code"] != "")].copy()
    units["codes"] = units["code"].str.split("|")
    single = bool((units["codes"].str.len() == 1).all())
    return Dataset(folder.name, units.reset_index(drop=True), cb, single)


def _template(ds: Dataset, pool: pd.DataFrame, n_examples: int, seed: int, *, examples: bool = True):
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


def metrics(ds: Dataset, code_ids: list[str], conf: np.ndarray, gold: pd.Series, thresholds: np.ndarray | None = None) -> dict:
    """Macro-F1, Cohen's kappa and per-code F1 of confidences ``conf`` (n, codes ``code_ids``)
    against the gold codes of the same n units (``gold``: a list of codes per unit).

    Single-label: the product's top suggestion (largest log-odds above its code's threshold).
    Multi-label: every code at or above its threshold. ``thresholds`` None: 0.5 for all."""
    names = [c.split("/")[-1] for c in code_ids]
    t = np.full(len(names), 0.5) if thresholds is None else np.asarray(thresholds)
    margin = Scores(code_ids, conf, conf, conf, conf, conf, t).decision_margin()
    if ds.single_label:
        y_true = gold.map(lambda cs: cs[0]).to_numpy()
        y_pred = np.asarray(names)[margin.argmax(axis=1)]
        per = f1_score(y_true, y_pred, labels=names, average=None, zero_division=0)
        return {
            "macro_f1": round(float(per.mean()), 4),
            "kappa": round(float(cohen_kappa_score(y_true, y_pred)), 4),
            "per_code_f1": {n: round(float(v), 4) for n, v in zip(names, per)},
        }
    Y = np.array([[n in cs for n in names] for cs in gold])
    P = margin >= 0
    per = f1_score(Y, P, average=None, zero_division=0)
    kap = [cohen_kappa_score(Y[:, j], P[:, j]) if Y[:, j].any() or P[:, j].any() else 0.0 for j in range(len(names))]
    return {"macro_f1": round(float(per.mean()), 4), "kappa": round(float(np.mean(kap)), 4), "per_code_f1": {n: round(float(v), 4) for n, v in zip(names, per)}}


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
    log: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """One learning curve: query, oracle, retrain; metrics on ``test`` at each checkpoint."""
    picker = query_strategy(strategy, seed=seed)
    corpus = pd.concat([pool, test])
    inputs = Inputs(X=embeddings["X"][corpus["row"]], texts=corpus["text"].tolist(), X_prev=embeddings["P"][corpus["row"]], prev_texts=corpus["prev_text"].tolist())
    n_pool = len(pool)
    scorer = LearnedScorer(features=features, seed=seed).fit(template, encoder)
    featurizer = Featurizer(features)
    F = featurizer.fit_transform(inputs)
    prior_conf = scorer.prior.score(inputs).confidence
    code_ids = scorer.code_ids
    conf = prior_conf
    asked = np.zeros(n_pool, dtype=bool)
    decisions: list[tuple[int, str, str, int]] = []  # (row, code_id, action, id)
    shown = accepted = 0
    curve = []
    pool_codes = pool["codes"].tolist()
    for target in [c for c in checkpoints if c <= budget]:
        while len(decisions) < target:
            k = min(batch, target - len(decisions))
            avail = np.flatnonzero(~asked)
            if len(avail) == 0:
                break
            pick = avail[picker.query(conf[avail], inputs.X[avail], k)]
            margin = Scores(code_ids, conf, conf, conf, conf, conf, scorer.thresholds() if scorer.coef else None).decision_margin()
            for i in pick:
                asked[i] = True
                code = code_ids[int(margin[i].argmax())]  # what the queue would show: the top suggestion
                ok = code.split("/")[-1] in pool_codes[i]
                decisions.append((int(i), code, "accept" if ok else "reject", len(decisions)))
                shown += 1
                accepted += ok
            dec = pd.DataFrame(decisions, columns=["segment_id", "code_id", "action", "id"])
            labels = labels_from_decisions(dec, template)
            scorer.fit_labels(inputs, labels, row_of={i: i for i in range(len(corpus))}, featurizer=featurizer, F=F, prior_conf=prior_conf)
            conf = scorer.score_features(F, prior_conf)
        m = metrics(ds, code_ids, conf[n_pool:], test["codes"], scorer.thresholds() if scorer.coef else None)
        row = {"decisions": len(decisions), "macro_f1": m["macro_f1"], "kappa": m["kappa"], "accept_rate": round(accepted / shown, 4) if shown else None, "per_code_f1": m["per_code_f1"],
               "reliability": reliability_table(conf[n_pool:], code_ids, test["codes"])}
        log(f"  {strategy:>10s} {row['decisions']:5d} decisions: macro-F1 {row['macro_f1']:.3f} kappa {row['kappa']:.3f} accept {row['accept_rate']}")
        curve.append(row)
    return curve


def reliability_table(conf: np.ndarray, code_ids: list[str], gold: pd.Series, bins: int = 10) -> list[dict]:
    """Calibration check: every (passage, code) confidence, binned, against how often the code
    is the gold code. Well calibrated means mean_confidence ~= accept_rate in every bin."""
    names = [c.split("/")[-1] for c in code_ids]
    hit = np.array([[n in cs for n in names] for cs in gold], dtype=float).ravel()
    c = conf.ravel()
    idx = np.minimum((c * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "n": int(m.sum()), "mean_confidence": round(float(c[m].mean()), 4), "accept_rate": round(float(hit[m].mean()), 4)})
    return out


def fit_all(ds: Dataset, Xtr, ytr, Xte) -> np.ndarray:
    """The "all labels" baseline: logistic regression on every training unit's gold codes
    (``ytr``: a list of codes per row of ``Xtr``), confidences (n, codes) for ``Xte`` in the
    codebook's order. Single-label: one multinomial model; multi-label: one model per code."""
    names = list(ds.codebook["code"])
    if ds.single_label:
        clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(Xtr, [c[0] for c in ytr])
        proba = clf.predict_proba(Xte)
        out = np.zeros((Xte.shape[0], len(names)))
        for j, c in enumerate(clf.classes_):
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
    zs = ExampleSimilarityScorer().fit(_template(ds, pool, 0, seed, examples=False), encoder)
    corpus = Inputs(X=emb["X"][units["row"]], texts=units["text"].tolist(), X_prev=emb["P"][units["row"]], prev_texts=units["prev_text"].tolist())
    ngrams = Featurizer("emb+prev+ngrams").fit(corpus)
    tf_only = lambda rows: ngrams.ngrams(Inputs(X=emb["X"][rows["row"]], texts=rows["text"].tolist()))  # noqa: E731
    names = list(ds.codebook["code"])
    return {
        "zero_shot": metrics(ds, zs.code_ids, zs.score(emb["X"][test["row"]]).confidence, test["codes"]),
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
            "per_code_f1": {k: round(float(np.mean([r["per_code_f1"][k] for r in rows])), 4) for k in rows[0]["per_code_f1"]},
        })
    return out


def _mean_point(points: list[dict]) -> dict:
    return {"macro_f1": round(float(np.mean([p["macro_f1"] for p in points])), 4), "kappa": round(float(np.mean([p["kappa"] for p in points])), 4)}


def _pooled_reliability(curves: list[list[dict]]) -> list[dict]:
    """Reliability of the final model, pooled over folds (bins summed, not averaged)."""
    pooled: dict[str, list] = {}
    for c in curves:
        for r in c[-1]["reliability"]:
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
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Run the simulated researcher and the baselines; every figure is the mean over folds."""
    t0 = time.perf_counter()
    ds = _sample(load_dataset(folder), max_units, seed)
    units = ds.units
    folds = sorted(units["fold"].unique()) if folds is None else list(folds)
    checkpoints = sorted({c for c in checkpoints if c <= budget} | {0})
    log(f"{ds.name}: {len(units)} coded units, {len(ds.codebook)} codes, folds {[int(f) for f in folds]}; embedding ...")
    units = units.assign(row=np.arange(len(units)))
    emb = {"X": encoder.encode(units["text"].tolist()), "P": encoder.encode(units["prev_text"].tolist())}
    per_fold: dict[str, list] = {"curve": [], "random_order": [], "zero_shot": [], "tfidf_lr_all": [], "embedding_lr_all": []}
    for f in folds:
        pool = units[units["fold"] != f]
        test = units[units["fold"] == f]
        log(f"fold {f}: pool {len(pool)}, test {len(test)}")
        tpl = _template(ds, pool, n_examples, seed)
        common = dict(budget=budget, checkpoints=checkpoints, batch=batch, features=features, seed=seed, embeddings=emb, log=log)
        for key, value in (_fold_curves(ds, pool, test, tpl, encoder, **common) | _baselines(ds, units, pool, test, encoder, emb, seed)).items():
            per_fold[key].append(value)
        log(f"  baselines: zero-shot {per_fold['zero_shot'][-1]['macro_f1']:.3f}, tfidf+LR all {per_fold['tfidf_lr_all'][-1]['macro_f1']:.3f}, embedding+LR all {per_fold['embedding_lr_all'][-1]['macro_f1']:.3f}")
    summary = _summarise(per_fold)
    return {
        "dataset": ds.name,
        "folds": [int(f) for f in folds],
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
