"""The app's retrain end to end (``app.training.train_project``), as the Model page's button and
the automatic retrain run it, on a synthetic project.

Prints one JSON object (and writes it with ``--out``). Run:

    .venv/bin/python bench/retrain_app.py --out bench/results/retrain_app.json

A project of ``--segments`` passages (bench/review_synth.py: the default template's 49 codes)
in which ``--passages`` passages are confirmed through passage review (``review.confirm_passage``:
one or two codes ticked, every other code a negative, 49 decision rows each). Vectors come
from the hashing stand-in encoder of bench/retrain.py (no model is loaded; encoding is cached
in the app and not what is measured). Timed: the first retrain in a fresh process (every
passage's n-grams hashed), then ``--repeats`` more in the same process, each after a batch
of ``--batch`` more passages confirmed (drawn from all of them, so some are revised; what a
retrain reads again and what it keeps from the one before, as a review server keeps them),
whole: reading the decisions and passages, featurising, fitting, scoring every passage,
saving the version and its suggestions.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from benchio import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import review_synth  # noqa: E402
from retrain import HashEncoder  # noqa: E402

from coder_assist.app import review, training  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=20_000)
    ap.add_argument("--passages", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=20, help="passages confirmed between two retrains")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        project = review_synth.build(Path(tmp) / "proj", args.segments)
        leaves = [c.id for c in project.template().leaves()]
        seg_ids = [r[0] for r in project.conn.execute("SELECT id FROM segments ORDER BY id")]
        rng = random.Random(0)
        for sid in rng.sample(seg_ids, args.passages):
            review.confirm_passage(project, sid, rng.sample(leaves, rng.choice([1, 1, 2])), "coder")
        build_s = time.perf_counter() - t
        encoder = HashEncoder()
        times = []
        for i in range(1 + args.repeats):
            if i:
                for sid in rng.sample(seg_ids, args.batch):
                    review.confirm_passage(project, sid, rng.sample(leaves, rng.choice([1, 1, 2])), "coder")
            t = time.perf_counter()
            training.train_project(project, encoder)
            times.append(time.perf_counter() - t)
        rows = project.conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        project.close()
    warm = statistics.median(times[1:])
    out = {
        "benchmark": "retrain_app",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "segments": args.segments,
        "passages_confirmed": args.passages,
        "batch_between_retrains": args.batch,
        "decision_rows": rows,
        "codes": len(leaves),
        "project_build_s": round(build_s, 1),
        "first_retrain_s": round(times[0], 2),
        "retrain_s": [round(x, 2) for x in times[1:]],
        "retrain_median_s": round(warm, 2),
        "target_s": 5.0,
        "target_met": warm <= 5.0,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    emit(out, args.out)


if __name__ == "__main__":
    main()
