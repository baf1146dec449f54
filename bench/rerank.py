"""Re-ranking the whole review queue after a retrain, from cached features.

Prints one JSON object (and writes it with ``--out``). Run:

    .venv/bin/python bench/rerank.py --out bench/results/rerank.json

A synthetic project of ``--segments`` segments x ``--codes`` codes with the learned scorer's
feature layout (384-d segment and previous-turn embeddings; TF-IDF hashed n-grams with the
non-zeros per row measured on bench/review_synth.py text through ``ml.features.Featurizer``) and a
trained model on every code (dense weights over all features, blend weights, Platt scaling).
What is timed, medians of ``--repeats``:

* **plain**: what the library did after a retrain: ``LearnedScorer.score_features`` (one sparse
  matrix-vector product per code over the hstacked feature matrix, float64), the top-k codes
  per segment by a full sort, and the queue order ``ml.query.query_order`` (uncertainty_diversity
  head, then uncertainty).
* **fast**: ``vectors.learned_confidence`` (embeddings float16, both embedding blocks in one
  float32 sgemm a row block, the n-grams as row x column tiles whose weight rows and result rows
  stay in cache, all codes at once, row blocks on a thread pool) and ``vectors.rank_queue``
  (argpartition top-k, the same queue order). ``fast_1job`` is the same on one thread.

Wall time and CPU time (``time.process_time``: all threads of the process) are reported, with
the load average, because the machine is shared. Both paths get the same inputs: the
embeddings as the vector store holds them (float16), so the confidences must agree to 1e-6
(``max_abs_conf_diff``); ``storage_rounding_conf_diff`` is what float16 storage itself moves
them against float32 embeddings. No model is loaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from benchio import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from coder_assist.ml import query  # noqa: E402
from coder_assist.ml.classifier import BLEND_WEIGHTS, CodeReport, LearnedScorer  # noqa: E402
from coder_assist.ml.features import Featurizer  # noqa: E402
from coder_assist.ml.suggest import Inputs  # noqa: E402
from coder_assist.scale.vectors import CachedFeatures, StackedModel, learned_confidence, rank_queue  # noqa: E402

DIM = 384


def ngram_nnz_per_row(sample: int = 1000) -> float:
    from review_synth import sentence

    rng = random.Random(0)
    texts = [" ".join(sentence(rng) for _ in range(3)) for _ in range(sample)]
    prev = [sentence(rng) for _ in range(sample)]
    X = np.zeros((sample, DIM), np.float32)
    inp = Inputs(X=X, texts=texts, X_prev=X, prev_texts=prev)
    return Featurizer().fit(inp).ngrams(inp).nnz / sample


def synth(n: int, k: int, nnz: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Xp = rng.normal(size=(n, DIM)).astype(np.float32)
    Xp /= np.linalg.norm(Xp, axis=1, keepdims=True)
    n_ng = 3 * 2**15
    cols = np.sort(rng.integers(0, n_ng, size=(n, nnz), dtype=np.int32), axis=1)
    vals = np.full(n * nnz, 0.7 * np.sqrt(3 / nnz), dtype=np.float32)  # unit-ish blocks, as the featurizer
    N = sp.csr_matrix((vals, cols.ravel(), np.arange(0, n * nnz + 1, nnz)), shape=(n, n_ng))
    N.sum_duplicates()
    n_feat = 2 * DIM + n_ng
    scorer = LearnedScorer()
    scorer.code_ids = [f"c{j}" for j in range(k)]
    for j, c in enumerate(scorer.code_ids):
        scorer.coef[c] = (rng.normal(size=n_feat) * 0.3).astype(np.float32)
        scorer.intercept[c] = float(rng.normal() - 2)
        scorer.platt[c] = (float(rng.uniform(0.5, 1.5)), float(rng.normal() * 0.3))
        scorer.reports[c] = CodeReport(c, 10, 10, float(rng.choice(BLEND_WEIGHTS)))
    prior = rng.beta(2, 9, size=(n, k)).astype(np.float32)
    return X, Xp, N, scorer, prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--codes", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    nnz = ngram_nnz_per_row()
    X0, Xp0, N, scorer, prior = synth(args.segments, args.codes, int(round(nnz)))
    X, Xp = X0, Xp0
    head = query.QUEUE_HEAD
    # The plain path's cached features: the featurizer's own matrix (all blocks, float64).
    feats = CachedFeatures(X.astype(np.float16), Xp.astype(np.float16), N)
    X16 = feats.X
    # The plain path's cached features: the featurizer's own matrix (all blocks, float64), of
    # the embeddings as stored.
    X, Xp = X16.astype(np.float32), feats.X_prev.astype(np.float32)
    F = sp.hstack([sp.csr_matrix(X), sp.csr_matrix(0.5 * Xp), N.astype(np.float64)], format="csr")
    t = time.perf_counter()
    feats.ngram_tiles()  # cut once when the cache is built, not per re-rank
    slab_s = time.perf_counter() - t

    def plain():
        conf = scorer.score_features(F, prior)
        top = np.argsort(-conf, axis=1, kind="stable")[:, : args.top_k]
        order = query.query_order(conf, X, head=head)
        return conf, top, order

    parts: dict[str, list[float]] = {"stack_weights": [], "score": [], "rank": []}

    def fast(n_jobs=None):
        t = time.perf_counter()
        model = StackedModel.of(scorer)  # part of the re-rank: a retrain gives new weights
        t1 = time.perf_counter()
        conf = learned_confidence(feats, model, prior, n_jobs=n_jobs)
        t2 = time.perf_counter()
        q = rank_queue(conf, k=args.top_k, order="uncertainty_diversity", X=X16, batch=head)
        if n_jobs is None:
            parts["stack_weights"].append(t1 - t)
            parts["score"].append(t2 - t1)
            parts["rank"].append(time.perf_counter() - t2)
        return conf, q.top_codes, q.rows

    runs = (("plain", plain), ("fast", fast), ("fast_1job", lambda: fast(1)))
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    cpu: dict[str, list[float]] = {name: [] for name, _ in runs}
    loads = []
    results = {}
    for _ in range(args.repeats):
        for name, fn in runs:
            t, c = time.perf_counter(), time.process_time()
            results[name] = fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
        loads.append(os.getloadavg()[0])
    (cp, tp, op), (cf, tf, of_) = results["plain"], results["fast"]
    assert np.array_equal(cf, results["fast_1job"][0]), "threads changed the numbers"
    n_unc = head - int(round(head * query.EXPLORE))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    F32 = sp.hstack([sp.csr_matrix(X0), sp.csr_matrix(0.5 * Xp0), N.astype(np.float64)], format="csr")
    storage_diff = float(np.abs(scorer.score_features(F32, prior) - cp).max())
    out = {
        "benchmark": "rerank",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "segments": args.segments,
        "codes": args.codes,
        "features": {"embedding_dims": 2 * DIM, "ngram_columns": N.shape[1], "ngram_nnz_per_row": round(nnz, 1),
                     "plain_matrix_nnz": int(F.nnz), "plain_matrix_mb": round((F.data.nbytes + F.indices.nbytes) / 2**20),
                     "fast_cache_mb": round((X16.nbytes * 2 + N.data.nbytes + N.indices.nbytes) / 2**20)},
        "cache_build_ngram_tiles_s": round(slab_s, 2),
        "queue_head": head,
        "repeats": args.repeats,
        "load_average_1min": [round(x, 2) for x in loads],
        "wall_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "cpu_s": {k: [round(t, 3) for t in v] for k, v in cpu.items()},
        "plain_median_s": round(med["plain"], 3),
        "fast_median_s": round(med["fast"], 3),
        "fast_1job_median_s": round(med["fast_1job"], 3),
        "plain_median_cpu_s": round(med_cpu["plain"], 3),
        "fast_median_cpu_s": round(med_cpu["fast"], 3),
        "fast_1job_median_cpu_s": round(med_cpu["fast_1job"], 3),
        "speedup": round(med["plain"] / med["fast"], 1),
        "speedup_cpu": round(med_cpu["plain"] / med_cpu["fast"], 1),
        "fast_parts_median_s": {k: round(statistics.median(v), 3) for k, v in parts.items()},
        "check": {
            "max_abs_conf_diff": float(np.abs(cp - cf).max()),
            "within_1e-6": bool(np.abs(cp - cf).max() <= 1e-6),
            "storage_rounding_conf_diff": storage_diff,
            "top1_agreement": float((tp[:, 0] == tf[:, 0]).mean()),
            # The diverse (non-random) part of the head: the same segments, in the same order.
            # Same confidences in, same diverse head out (the random half of the head is drawn
            # differently); on the two paths' own confidences (float32 vs float64) near-ties can
            # swap a candidate, so the heads may differ there.
            "diverse_head_same_on_same_conf": bool(np.array_equal(query.query_order(cf, X16.astype(np.float32), head=head)[:n_unc], of_[:n_unc])),
            "diverse_head_overlap_own_conf": float(len(np.intersect1d(op[:n_unc], of_[:n_unc])) / n_unc),
            "tail_overlap_after_head": float(len(np.intersect1d(op[head : head + 1000], of_[head : head + 1000])) / 1000),
        },
        "target_s": 1.0,
        "target_met_wall": med["fast"] < 1.0,
        "target_met_cpu": med_cpu["fast"] < 1.0,
    }
    emit(out, args.out)


if __name__ == "__main__":
    main()
