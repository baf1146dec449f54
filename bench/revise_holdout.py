"""Does the revision report find the codes a template is missing? Hold codes out and see.

For each dataset (fold 0 held out as in every other benchmark; the other folds are the pool):
the template is the codebook without the held-out codes, with 5 example excerpts per code from
the pool (as coder_assist.eval.simulate builds it). The simulated researcher of coder_assist.eval.simulate
then decides ``--decisions`` pool passages with the product's own loop (uncertainty + diversity
batches of 50, retrain after each): the queue shows its top suggestion; the oracle accepts it
when it is a gold code of the passage, else rejects it and, when one of the passage's gold
codes is in the template, picks that code instead ("Different code...": a reject plus an
accept). The final model's suggestions (codes at or above their learned thresholds, top 3) and
those decisions go into :func:`coder_assist.ml.revision.revise`, exactly as a project's would.

Reported per held-out code: of the proposed clusters, the one with the best F1 on that code's
passages among the passages revise clustered (precision = share of the cluster that is the
code; recall = share of the code's passages in the clustered set that the cluster holds), its
rank among the proposed clusters, and how many of the code's pool passages reached the set at
all. For confusions: where known confusable pairs (reflection:simple / reflection:complex) rank.

    nice -n 19 .venv/bin/python bench/revise_holdout.py --out bench/results/revise_holdout.json

Embeddings come through the default encoder's on-disk cache (a rerun encodes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coder_assist.core.template import iter_code_texts, parse_template  # noqa: E402
from coder_assist.ml.embed import load_encoder  # noqa: E402
from coder_assist.ml.classifier import LearnedScorer  # noqa: E402
from coder_assist.ml.features import DEFAULT_FEATURES, Featurizer, labels_from_decisions  # noqa: E402
from coder_assist.ml.query import uncertainty_diversity  # noqa: E402
from coder_assist.ml.revision import RevisionInputs, revise  # noqa: E402
from coder_assist.eval.simulate import load_dataset  # noqa: E402
from coder_assist.ml.suggest import Inputs, Scores  # noqa: E402

#: Held-out codes. nhs-fft: three topical codes of middling frequency (transport, food,
#: activities: what a first template plausibly leaves out). AnnoMI fine: three therapist
#: behaviours, one of each family that keeps a sibling in the template (closed questions
#: beside open ones; information and advice beside the other inputs).
HELD_OUT = {
    "nhs-fft": ["Transport to/ from services", "Food & drink provision & facilities", "Activities & access to fresh air"],
    "annomi-therapist-fine": ["question:closed", "input:information", "input:advice"],
}
KNOWN_PAIRS = {"annomi-therapist-fine": [("reflection:complex", "reflection:simple")]}


def template_without(ds, pool: pd.DataFrame, held: list[str], n_examples: int, seed: int):
    rng = np.random.default_rng(seed)
    codes = []
    for r in ds.codebook.itertuples(index=False):
        if r.code in held:
            continue
        cands = pool.index[pool["codes"].map(lambda cs: r.code in cs)].to_numpy()
        pick = rng.choice(cands, size=min(n_examples, len(cands)), replace=False)
        codes.append({"name": r.code, "id": r.code, "description": r.description, "examples": pool.loc[pick, "text"].tolist()})
    return parse_template({"name": ds.name, "codes": [{"name": ds.name, "description": ds.name, "exclusive": ds.single_label, "children": codes}]})


def simulate_decisions(pool: pd.DataFrame, X: np.ndarray, P: np.ndarray, template, encoder, *, n_decisions: int, batch: int, seed: int):
    """The product's loop on the pool; returns (decisions frame, final confidences, thresholds, code ids)."""
    inputs = Inputs(X=X, texts=pool["text"].tolist(), X_prev=P, prev_texts=pool["prev_text"].tolist())
    scorer = LearnedScorer(features=DEFAULT_FEATURES, seed=seed).fit(template, encoder)
    featurizer = Featurizer(DEFAULT_FEATURES)
    F = featurizer.fit_transform(inputs)
    prior_conf = scorer.prior.score(inputs).confidence
    code_ids = scorer.code_ids
    conf = prior_conf
    gold = pool["codes"].tolist()
    asked = np.zeros(len(pool), dtype=bool)
    rows: list[tuple] = []  # (id, segment_id, code_id, action, coder)
    n_passages = 0
    while n_passages < n_decisions:
        avail = np.flatnonzero(~asked)
        k = min(batch, n_decisions - n_passages, len(avail))
        if k == 0:
            break
        pick = avail[uncertainty_diversity(conf[avail], X[avail], k, seed=seed)]
        t = scorer.thresholds() if scorer.coef else None
        margin = Scores(code_ids, conf, conf, conf, conf, conf, t).decision_margin()
        for i in pick:
            asked[i] = True
            n_passages += 1
            shown = code_ids[int(margin[i].argmax())]
            if shown in gold[i]:
                rows.append((len(rows), int(i), shown, "accept", "oracle"))
                continue
            rows.append((len(rows), int(i), shown, "reject", "oracle"))
            other = next((c for c in gold[i] if c in template.codes), None)
            if other is not None:
                rows.append((len(rows), int(i), other, "accept", "oracle"))
        dec = pd.DataFrame(rows, columns=["id", "segment_id", "code_id", "action", "coder"])
        labels = labels_from_decisions(dec, template)
        scorer.fit_labels(inputs, labels, row_of={i: i for i in range(len(pool))}, featurizer=featurizer, F=F, prior_conf=prior_conf)
        conf = scorer.score_features(F, scorer.base_confidence(inputs, prior_conf))
    return dec, conf, scorer.thresholds(), code_ids


def suggestions_frame(conf: np.ndarray, thresholds: np.ndarray, code_ids: list[str], top_k: int = 3) -> pd.DataFrame:
    margin = Scores(code_ids, conf, conf, conf, conf, conf, thresholds).decision_margin()
    order = np.argsort(-margin, axis=1, kind="stable")[:, :top_k]
    r, k = np.nonzero(np.take_along_axis(margin, order, axis=1) >= 0)
    cols = order[r, k]
    return pd.DataFrame({"segment_id": r, "code_id": np.asarray(code_ids, dtype=object)[cols], "rank": k + 1, "confidence": conf[r, cols]})


def run(name: str, encoder, *, fold: int, n_decisions: int, batch: int, seed: int, method: str, log) -> dict:
    t0 = time.perf_counter()
    ds = load_dataset(ROOT.parent / "shared" / "eval" / name)
    held = HELD_OUT[name]
    units = ds.units
    pool = units[units["fold"] != fold].reset_index(drop=True)
    log(f"{name}: pool {len(pool)} passages, held out {held}; embedding (cached) ...")
    X = encoder.encode(pool["text"].tolist())
    P = encoder.encode(pool["prev_text"].tolist())
    template = template_without(ds, pool, held, 5, seed)
    t1 = time.perf_counter()
    dec, conf, thresholds, code_ids = simulate_decisions(pool, X, P, template, encoder, n_decisions=n_decisions, batch=batch, seed=seed)
    t2 = time.perf_counter()
    log(f"  {dec['segment_id'].nunique()} passages decided ({len(dec)} decisions) in {t2 - t1:.0f} s; revising ...")
    sugg = suggestions_frame(conf, thresholds, code_ids)
    segments = pd.DataFrame({"segment_id": np.arange(len(pool)), "transcript": pool["transcript_id"].astype(str), "idx": pool["turn_index"].astype(int), "text": pool["text"]})
    tr_path = ROOT.parent / "shared" / "eval" / name / "transcripts.csv"
    attrs = pd.read_csv(tr_path, dtype=str, keep_default_na=False).set_index("transcript_id") if tr_path.exists() else pd.DataFrame()
    keep = [c for c in ("trust", "service_type_1", "mi_quality", "topic") if c in attrs.columns]
    attrs = attrs[keep]
    ex = pd.DataFrame(list(iter_code_texts(template.leaves())), columns=["code_id", "kind", "text"])
    E = encoder.encode(ex["text"].tolist())
    codes = template.frame()[["id", "name", "path", "parent_id", "is_leaf"]]
    inputs = RevisionInputs(segments, X, codes, ex, E, sugg, dec, attrs)
    rev = revise(inputs, method=method, by=[])
    t3 = time.perf_counter()
    clustered = set()
    for c in rev.missing:
        clustered |= set(c.segment_ids)
    from coder_assist.ml.revision import missed_passages

    missed = set(np.flatnonzero(missed_passages(segments, sugg, dec)).tolist())
    decided = set(dec["segment_id"])
    per_code = []
    for h in held:
        G = set(np.flatnonzero(pool["codes"].map(lambda cs: h in cs).to_numpy()).tolist())
        Gm = G & missed
        best = None
        for c in rev.missing:
            S = set(c.segment_ids)
            tp = len(S & G)
            prec = tp / len(S)
            rec = tp / len(Gm) if Gm else 0.0
            f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
            if best is None or f1 > best["f1"]:
                best = {"rank": c.rank, "size": len(S), "precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3),
                        "recall_of_decided": round(len(S & G & decided) / len(G & decided), 3) if G & decided else None,
                        "words": c.words[:6], "name": c.suggested_name}
        per_code.append({"code": h, "pool_passages": len(G), "decided_passages": len(G & decided), "in_missed_set": len(Gm),
                         "best_cluster": best, "meets_target": bool(best and best["precision"] >= 0.5 and best["recall"] >= 0.5)})
        b = best or {}
        log(f"  {h}: {len(Gm)}/{len(G)} passages in the missed set; best cluster rank {b.get('rank')} of {len(rev.missing)}, "
            f"P {b.get('precision')} R {b.get('recall')} ({', '.join(b.get('words', []))})")
    pairs = [(p.code_a, p.code_b) for p in rev.confusions]
    known = []
    for a, b in KNOWN_PAIRS.get(name, []):
        k = tuple(sorted((a, b)))
        rank = next((i + 1 for i, pr in enumerate(pairs) if pr == k), None)
        known.append({"pair": list(k), "rank": rank})
        log(f"  confusion {k[0]} / {k[1]}: rank {rank} of {len(pairs)}")
    return {
        "dataset": name,
        "fold_held_out": fold,
        "held_out_codes": held,
        "template_codes": len(template.leaves()),
        "pool_passages": len(pool),
        "passages_decided": int(dec["segment_id"].nunique()),
        "decisions": len(dec),
        "passages_no_code_fits": rev.n_missed,
        "clusters": len(rev.missing),
        "clustered_passages": len(clustered),
        "method": method,
        "held_out": per_code,
        "held_out_meeting_target": sum(c["meets_target"] for c in per_code),
        "top_clusters": [{"rank": c.rank, "size": c.size, "cohesion": c.cohesion, "words": c.words[:6],
                          "held_out_share": {h: round(len(set(c.segment_ids) & set(np.flatnonzero(pool["codes"].map(lambda cs, h=h: h in cs).to_numpy()).tolist())) / c.size, 3) for h in held}}
                         for c in rev.missing[:8]],
        "confusions_top": [{"rank": p.rank, "pair": [p.code_a, p.code_b], "score": p.score, "passages": p.passages,
                            "rejected_then_chose": p.decisions, "model": p.model_a_coder_b + p.model_b_coder_a,
                            "coded_both": p.coded_both, "template": p.template} for p in rev.confusions[:8]],
        "known_pairs": known,
        "seconds": {"simulate": round(t2 - t1, 1), "revise": round(t3 - t2, 1), "total": round(time.perf_counter() - t0, 1)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(HELD_OUT))
    ap.add_argument("--decisions", type=int, default=500)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--method", choices=["hdbscan", "agglomerative"], default="hdbscan")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    encoder = load_encoder()
    results = [run(n, encoder, fold=args.fold, n_decisions=args.decisions, batch=args.batch, seed=args.seed, method=args.method, log=log) for n in args.datasets]
    out = {"benchmark": "revise_holdout", "encoder": encoder.model_id, "decisions": args.decisions, "seed": args.seed,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "results": results}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
