"""The model as an eleventh coder: its agreement with each of AnnoMI's 10 annotators, against theirs
with each other.

AnnoMI's seven multiply-coded transcripts (``../shared/eval/annomi-agreement``) were coded by
10 annotators. This benchmark holds them out, runs the simulated researcher (the product's
queue, passage review, retraining every batch) on every other transcript of the same scheme,
and at each checkpoint codes the seven transcripts with the product's own decision rule. The
model is then compared with each annotator exactly as the annotators are compared with each
other: Cohen's kappa over the utterances both coded, for the 10 model-annotator pairs and the 45
annotator pairs. A model "as reliable as a human coder" has a median kappa with the annotators
at the median of theirs with each other.

    .venv/bin/python bench/agreement_model.py --out bench/results/agreement_model.json

Therapist behaviour (4 codes, ``annomi-therapist``) and client talk type (3 codes,
``annomi-client``); ``--model`` picks the encoder (default: the product's).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coder_assist.core.defaults import DEFAULT_TOP_K  # noqa: E402
from coder_assist.eval.simulate import CHECKPOINTS, load_dataset, pool_template, run_loop  # noqa: E402
from coder_assist.ml.embed import load_encoder  # noqa: E402
from coder_assist.ml.suggest import Scores, decide  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"
SCHEMES = {"therapist": "annomi-therapist", "client": "annomi-client"}


def model_codes(code_ids: list[str], conf: np.ndarray, rule: dict) -> np.ndarray:
    """The product's single-label decision per utterance: the top code where it is shown,
    else "" (no code)."""
    margin, chosen = decide(Scores(code_ids, conf, conf, conf, conf, conf, rule["thresholds"], rule["top_margin"]), top_k=DEFAULT_TOP_K)
    top = margin.argmax(axis=1)
    return np.where(chosen[np.arange(len(top)), top], np.asarray(code_ids, dtype=object)[top], "")


def _kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa of two coders over the rows both coded."""
    both = a.notna() & b.notna()
    return float(cohen_kappa_score([str(x) for x in a[both]], [str(x) for x in b[both]]))


def human_agreement(codes: pd.DataFrame) -> tuple[dict, np.ndarray]:
    """The annotators' (columns of ``codes``, rows = utterances) pairwise kappas, computed once
    per scheme: their median and range, and each annotator's mean kappa with the others."""
    n = codes.shape[1]
    K = np.full((n, n), np.nan)
    for i, j in itertools.combinations(range(n), 2):
        K[i, j] = K[j, i] = _kappa(codes.iloc[:, i], codes.iloc[:, j])
    pairs = K[np.triu_indices(n, 1)].tolist()
    return ({"annotator_pairs": len(pairs), "human_kappa_median": round(statistics.median(pairs), 4),
             "human_kappa_min": round(min(pairs), 4), "human_kappa_max": round(max(pairs), 4)}, np.nanmean(K, axis=1))


def model_agreement(codes: pd.DataFrame, pred: pd.Series, annotator_means: np.ndarray) -> dict:
    """The model's kappa with each annotator, and where its mean falls among each annotator's
    mean kappa with the other nine: "k of 11" (1 = agrees best with the rest)."""
    mk = [_kappa(pred, codes[a]) for a in codes.columns]
    rank = 1 + sum(x > float(np.mean(mk)) for x in annotator_means)
    return {"model_kappa_median": round(statistics.median(mk), 4), "model_kappa_min": round(min(mk), 4),
            "model_kappa_max": round(max(mk), 4), "model_rank_among_coders": f"{rank} of {len(annotator_means) + 1}"}


def run(scheme: str, speaker: str, encoder, raw: pd.DataFrame, *, budget: int, seed: int, log) -> dict:
    ds = load_dataset(EVAL / scheme)
    held = set(raw["transcript_id"].unique())
    units = ds.units.assign(row=np.arange(len(ds.units)))
    emb = {"X": encoder.encode(units["text"].tolist()), "P": encoder.encode(units["prev_text"].tolist())}
    test = units[units["transcript_id"].isin(held)]
    pool = units[~units["transcript_id"].isin(held)]
    wide = raw[raw["speaker"] == speaker].pivot_table(index=["transcript_id", "turn_index"], columns="annotator_id", values="code", aggfunc="first")
    key = pd.MultiIndex.from_arrays([test["transcript_id"], test["turn_index"]])
    codes = wide.reindex(key)
    keep = codes.notna().any(axis=1).to_numpy()
    log(f"{scheme}: pool {len(pool)} units, held out {int(keep.sum())} utterances of {len(held)} transcripts coded by {codes.shape[1]} annotators")
    tpl = pool_template(ds, pool, 5, seed)
    coded = codes[keep]
    human, annotator_means = human_agreement(coded)
    # "" is "no code" (a category of its own), never a missing answer.
    gold = pd.Series([c[0] if c else "" for c in test["codes"]], index=codes.index, dtype=object)[keep]
    points: dict[int, dict] = {}

    def at(n: int, conf: np.ndarray, rule: dict) -> None:
        pred = pd.Series(model_codes(rule["code_ids"], conf, rule), index=codes.index, dtype=object)[keep]
        points[n] = {"decisions": n, **human, **model_agreement(coded, pred, annotator_means),
                     "model_vs_gold_kappa": round(float(cohen_kappa_score(list(gold), list(pred))), 4)}
        log(f"  {n:4d} decisions: model-annotator kappa median {points[n]['model_kappa_median']:.3f} "
            f"(annotators {points[n]['human_kappa_median']:.3f}), rank {points[n]['model_rank_among_coders']}")

    curve = run_loop(ds, pool, test, tpl, encoder, budget=budget, checkpoints=[c for c in CHECKPOINTS if c <= budget], batch=50,
                     strategy="uncertainty_diversity", features="emb+prev+ngrams", seed=seed, embeddings=emb, protocol="passage",
                     on_checkpoint=at)
    return {"scheme": scheme, "speaker": speaker, "pool_units": len(pool), "held_out_utterances": int(keep.sum()),
            "annotators": int(codes.shape[1]), "checkpoints": [points[r["decisions"]] for r in curve]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=EVAL / "annomi-agreement")
    ap.add_argument("--model", help="encoder (default: the product's)")
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    raw = pd.read_csv(args.data / "annotations_multi_annotator.csv")
    encoder = load_encoder(args.model)
    t0 = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    result = {
        "benchmark": "agreement_model",
        "encoder": encoder.model_id,
        "protocol": "passage",
        "budget": args.budget,
        "schemes": {sp: run(name, sp, encoder, raw, budget=args.budget, seed=args.seed, log=log) for sp, name in SCHEMES.items()},
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
