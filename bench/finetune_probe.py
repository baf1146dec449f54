"""Is a SetFit-style contrastive fine-tune of the encoder worth its CPU minutes?

One fold of an evaluation folder (default: AnnoMI therapist, fold 0), N labelled pool
passages drawn at random (fixed seed; the issue's probe used 500). For each encoder (the
bundled MiniLM, then MiniLM fine-tuned on pairs from those N labels with a few pair budgets):
embed the corpus, train the product's logistic regression on the same N labels with
"emb" and "emb+prev+ngrams" features, and score the held-out fold (macro-F1, Cohen's kappa).
Prints JSON and writes bench/results/finetune_probe.json.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/finetune_probe.py [DATASET_DIR] [--labels 500] [--fold 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from coder_assist.ml.embed import SentenceTransformerEncoder  # noqa: E402
from coder_assist.ml.finetune import FinetuneConfig, contrastive_finetune  # noqa: E402
from coder_assist.ml.features import Featurizer  # noqa: E402
from coder_assist.eval.simulate import fit_all, load_dataset, metrics  # noqa: E402
from coder_assist.ml.suggest import Inputs  # noqa: E402


def evaluate(ds, units, train, test, encoder) -> dict:
    t0 = time.perf_counter()
    X = encoder.encode(units["text"].tolist())
    P = encoder.encode(units["prev_text"].tolist())
    enc_s = time.perf_counter() - t0
    corpus = Inputs(X=X, texts=units["text"].tolist(), X_prev=P, prev_texts=units["prev_text"].tolist())
    out = {"encode_seconds": round(enc_s, 1)}
    names = list(ds.codebook["code"])
    for feats in ("emb", "emb+prev+ngrams"):
        F = Featurizer(feats).fit(corpus).transform(corpus).tocsr()
        conf = fit_all(ds, F[train], units["codes"].iloc[train].tolist(), F[test])
        m = metrics(ds, names, conf, units["codes"].iloc[test])
        out[feats] = {"macro_f1": m["macro_f1"], "kappa": m["kappa"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?", default=str(ROOT.parent / "shared" / "eval" / "annomi-therapist"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--labels", type=int, default=500)
    ap.add_argument("--budgets", default="2,4", help="pairs per labelled passage to try")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "finetune_probe.json"))
    args = ap.parse_args()

    ds = load_dataset(args.dataset)
    units = ds.units.reset_index(drop=True)
    pool = np.flatnonzero(units["fold"].to_numpy() != args.fold)
    test = np.flatnonzero(units["fold"].to_numpy() == args.fold)
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(pool, size=min(args.labels, len(pool)), replace=False))
    result = {"dataset": ds.name, "fold": args.fold, "labels": len(train), "test": len(test), "cpu_count": os.cpu_count(), "runs": []}

    base = SentenceTransformerEncoder()
    result["runs"].append({"encoder": "MiniLM-L6 (bundled)", "finetune_seconds": 0.0} | evaluate(ds, units, train, test, base))
    print(json.dumps(result["runs"][-1]), flush=True)

    texts = units["text"].tolist()
    labels = pd.DataFrame({"item": train, "code": [units["codes"].iloc[i][0] for i in train], "label": 1})
    for budget in [int(b) for b in args.budgets.split(",") if b]:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = FinetuneConfig(pairs_per_label=budget, max_seq_length=128)
            fr = contrastive_finetune(texts, labels, Path(tmp) / "enc", config=cfg)
            enc = SentenceTransformerEncoder(fr.path)
            row = {"encoder": f"MiniLM-L6 fine-tuned, {budget} pairs/label", "pairs": fr.pairs_trained, "finetune_seconds": fr.seconds, "final_loss": fr.final_loss}
            result["runs"].append(row | evaluate(ds, units, train, test, enc))
            print(json.dumps(result["runs"][-1]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
