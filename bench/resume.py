"""Cost of checkpointing in batch pre-coding, and what a resume saves.

Prints one JSON object (and writes it with ``--out``). Run:

    .venv/bin/python bench/resume.py --out bench/results/resume.json

Input: the nine demo interviews copied ``--copies`` times (distinct names). Timed, medians of
``--repeats``, each variant on the same input in the same run:

* **plain**: ``pipeline.precode`` then ``DataFrame.to_csv`` (no checkpoints: a kill loses all);
* **checkpointed**: ``pipeline.precode_to_csv`` with the default chunk size (CHUNK_SEGMENTS);
* **checkpointed per transcript**: the same with one transcript per chunk (the most commits).

With ``--encoder hash`` (default) a hashing stand-in replaces the model, so the ratio is the
bookkeeping's share with encoding at zero cost: an upper bound on the overhead. With
``--encoder model`` the default encoder (USE) encodes (no embedding cache), the real-world ratio.
A resume is measured too: a run stopped after half the chunks (an exception at the start of a
chunk, so what was committed stays) and continued; texts encoded by the continuation are counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from benchio import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from coder_assist.app import pipeline  # noqa: E402
from coder_assist.ml.encoder import Encoder  # noqa: E402

DEMO = ROOT / "data" / "demo"


class Counting(Encoder):
    def __init__(self, inner: Encoder):
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.n = 0

    def encode(self, texts, progress=None):
        self.n += len(texts)
        return self.inner.encode(texts, progress=progress)


class Stop(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encoder", choices=["hash", "model"], default="hash")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    if args.encoder == "hash":
        from retrain import HashEncoder

        base: Encoder = HashEncoder()
    else:
        from coder_assist.ml.embed import load_encoder

        base = load_encoder(cache=False)
    # Random stand-in vectors clear no threshold: keep the top 3 codes of every segment so the
    # CSV holds as many rows as a real run writes at most.
    thr = 0.0 if args.encoder == "hash" else None
    tmp = Path(tempfile.mkdtemp(prefix="coder-assist-resume-"))
    try:
        src = tmp / "in"
        src.mkdir()
        files = [p for p in DEMO.iterdir() if p.suffix in (".txt", ".srt", ".vtt", ".csv") and p.name != "attributes.csv"]
        for c in range(args.copies):
            for p in files:
                shutil.copy(p, src / f"{p.stem}_c{c:02d}{p.suffix}")
        n_files = len(list(src.iterdir()))

        def plain():
            df = pipeline.precode(src, encoder=base, threshold=thr)
            df.to_csv(tmp / "plain.csv", index=False)
            return len(df)

        def ckpt():
            return pipeline.precode_to_csv(src, tmp / "ckpt.csv", encoder=base, threshold=thr, resume=False).rows

        def ckpt_each():
            return pipeline.precode_to_csv(src, tmp / "each.csv", encoder=base, threshold=thr, resume=False, chunk_segments=1).rows

        variants = {"plain": plain, "checkpointed": ckpt, "checkpointed_per_transcript": ckpt_each}
        plain()  # warm-up: spaCy, the template, imports; not part of any variant
        times: dict[str, list[float]] = {k: [] for k in variants}
        rows = {}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                t = time.perf_counter()
                rows[name] = fn()
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}

        # Resume: stop after half the transcripts (chunk per transcript), then continue.
        calls = {"n": 0}

        def stopping(names):
            calls["n"] += 1
            if calls["n"] > n_files // 2:
                raise Stop

        try:
            pipeline.precode_to_csv(src, tmp / "resume.csv", encoder=base, chunk_segments=1, on_chunk=stopping)
        except Stop:
            pass
        counter = Counting(base)
        t = time.perf_counter()
        run = pipeline.precode_to_csv(src, tmp / "resume.csv", encoder=counter, chunk_segments=1)
        resume_s = time.perf_counter() - t
        full = Counting(base)
        pipeline.precode_to_csv(src, tmp / "full.csv", encoder=full, chunk_segments=1, resume=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "benchmark": "resume",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "encoder": args.encoder,
        "transcripts": n_files,
        "rows": rows,
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratio_checkpointed_over_plain": round(med["checkpointed"] / med["plain"], 3),
        "ratio_per_transcript_over_plain": round(med["checkpointed_per_transcript"] / med["plain"], 3),
        "resume": {
            "stopped_after_transcripts": n_files // 2,
            "skipped_on_rerun": run.skipped,
            "texts_encoded_on_rerun": counter.n,
            "texts_encoded_full_run": full.n,
            "rerun_s": round(resume_s, 3),
        },
    }
    emit(out, args.out)


if __name__ == "__main__":
    main()
