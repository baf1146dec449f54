"""Memory of a project of 1,000,000 segments: open it and serve the first review-queue page.

Prints one JSON object (and writes it with ``--out``). Run:

    .venv/bin/python bench/million.py --project /tmp/million --out bench/results/million.json

Builds (once; reused when ``--project`` already holds it) a synthetic project of ``--segments``
segments with bench/review_synth.py (about 1.15 suggestions a segment) and its segment vectors
in a :class:`coder_assist.scale.vectors.VectorStore` (384-d, float16, memory-mapped, beside
project.db). Then, each in a fresh process (peak RSS from ``resource.getrusage``):

* **compact**: open the project and the vector store, build the review queue pool, draw the
  first page (``review.page_data``: progress, next suggestion, context) in "most likely" and
  "most uncertain" order, and pick the first active-learning batch
  (``vectors.rank_queue``, uncertainty_diversity over the memory-mapped vectors, which reads
  only the candidates' rows);
* **float32 in memory** (the plain approach, for the ratio): the same, with the vectors loaded
  into memory as a float32 array instead of memory-mapped float16.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from benchio import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DIM = 384
GIB = 2**30


def build(folder: Path, n: int) -> dict:
    import numpy as np

    import review_synth
    from coder_assist.scale.vectors import VectorStore

    t = time.perf_counter()
    if not (folder / "project.db").exists():
        review_synth.build(folder, n).close()
    db_s = time.perf_counter() - t
    t = time.perf_counter()
    vs_dir = VectorStore.path(folder)
    if not (vs_dir / "vectors.json").exists():
        import sqlite3

        ids = np.array([r[0] for r in sqlite3.connect(folder / "project.db").execute("SELECT id FROM segments ORDER BY id")], dtype=np.int64)
        store = VectorStore.create(vs_dir, DIM, model="synthetic", capacity=len(ids))
        rng = np.random.default_rng(0)
        for i in range(0, len(ids), 100_000):
            v = rng.normal(size=(min(100_000, len(ids) - i), DIM)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            store.append(ids[i : i + len(v)], v)
        store.close()
    return {"db_build_s": round(db_s, 1), "vectors_build_s": round(time.perf_counter() - t, 1)}


def serve(folder: Path, mode: str) -> dict:
    """Runs in a fresh process: open, first page, first batch; report time and peak RSS."""
    import numpy as np

    from coder_assist.app import review
    from coder_assist.store.project import Project
    from coder_assist.ml import classifier  # noqa: F401  (imports are not what is timed: sklearn alone takes seconds)
    from coder_assist.scale.vectors import VectorStore, rank_queue

    t0 = time.perf_counter()
    project = Project.open(folder)
    store = VectorStore.open(VectorStore.path(folder))
    X = store.vectors if mode == "compact" else np.asarray(store.vectors, dtype=np.float32)
    t_open = time.perf_counter() - t0
    data = review.page_data(project, "Bench Coder", "likely")
    t_page = time.perf_counter() - t0
    review.page_data(project, "Bench Coder", "uncertain")
    # The first active-learning batch over the pool's segments: confidences as a (segments,
    # codes) matrix would be 1M x 49 floats; the pool's per-suggestion confidences are what the
    # queue has, so rank the pool's segments by their best two.
    pool = review.warm_queue(project)
    o = np.lexsort((-pool.confidence, pool.segment_id))
    seg_sorted, conf_sorted = pool.segment_id[o], pool.confidence[o]
    start = np.r_[True, seg_sorted[1:] != seg_sorted[:-1]]
    first = np.flatnonzero(start)
    seg_ids = seg_sorted[first]
    conf = np.zeros((len(seg_ids), 2), dtype=np.float32)
    conf[:, 0] = conf_sorted[first]
    nxt = first + 1
    has2 = nxt < len(seg_sorted)
    has2[has2] &= ~start[nxt[has2]]
    conf[has2, 1] = conf_sorted[nxt[has2]]
    q = rank_queue(conf, order="uncertainty_diversity", X=_LazyRows(X, store.rows(seg_ids)), batch=200)
    t_batch = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    project.close()
    return {
        "mode": mode,
        "segments_in_store": len(store),
        "pool_suggestions": len(pool),
        "first_suggestion": data.row is not None,
        "open_s": round(t_open, 2),
        "first_page_s": round(t_page, 2),
        "first_batch_s": round(t_batch, 2),
        "first_batch_size": int(min(200, len(q.rows))),
        "peak_rss_gib": round(peak / GIB, 3),
    }


class _LazyRows:
    """Rows of a memory-mapped matrix through an index, read only when indexed (so the
    uncertainty_diversity candidates are the only vectors paged in)."""

    def __init__(self, X, rows):
        self.X, self.r = X, rows

    def __getitem__(self, idx):
        return self.X[self.r[idx]]

    def __len__(self):
        return len(self.r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=1_000_000)
    ap.add_argument("--project", type=Path, required=True, help="folder for the project (kept, reused)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--serve", choices=["compact", "float32"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        print(json.dumps(serve(args.project, args.serve)))
        return
    result = {"benchmark": "million", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "segments": args.segments}
    result["build"] = build(args.project, args.segments)
    sizes = {p.name: p.stat().st_size for p in [args.project / "project.db", *(args.project / "vectors").glob("*.npy")]}
    result["files_mib"] = {k: round(v / 2**20) for k, v in sizes.items()}
    for mode in ("compact", "float32"):
        r = subprocess.run([sys.executable, __file__, "--project", str(args.project), "--serve", mode], capture_output=True, text=True, check=True)
        result[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    result["rss_ratio_float32_over_compact"] = round(result["float32"]["peak_rss_gib"] / result["compact"]["peak_rss_gib"], 2)
    result["target_gib"] = 2.0
    result["target_met"] = result["compact"]["peak_rss_gib"] < 2.0
    emit(result, args.out)


if __name__ == "__main__":
    main()
