"""REFI-QDA export and import speed: the demo interviews copied N times, two coders' accepted
codings on a share of the segments -> write_qdpx -> import_qdpx into a fresh project.

Baseline in the same run: importing the same transcripts as plain files (import_files), which
segments the same text; the JSON gives medians of repeats and the ratio to that baseline.
Run: .venv/bin/python bench/refi_roundtrip.py [--copies 10] [--repeats 3] [--out bench/results/refi_roundtrip.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coder_assist.formats import refi  # noqa: E402
from coder_assist.app.pipeline import DEMO_DIR, import_files, init_project  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.5, help="share of segments each coder codes")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="refi-bench-"))
    try:
        src = tmp / "transcripts"
        src.mkdir()
        for k in range(args.copies):
            for f in DEMO_DIR.iterdir():
                if f.suffix in (".txt", ".srt", ".vtt", ".csv") and f.name != "attributes.csv":
                    shutil.copy(f, src / f"{f.stem}_copy{k}{f.suffix}")
        p = init_project(tmp / "source")
        import_files(p, [src])
        segs = list(p.segments().id)
        leaves = [c.id for c in p.template().leaves()]
        rng = random.Random(0)
        with p.transaction():
            for coder in ("Ann", "Bob"):
                for sid in rng.sample(segs, int(len(segs) * args.share)):
                    p.record_decision(int(sid), rng.choice(leaves), "accept", coder)
        n_codings = int((p.current_decisions().action == "accept").sum())
        export_s, import_s, files_s = [], [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            out = refi.write_qdpx(p, tmp / f"x{i}.qdpx")
            export_s.append(time.perf_counter() - t0)
            q = init_project(tmp / f"fresh{i}")
            t0 = time.perf_counter()
            rep = refi.import_qdpx(q, out)
            import_s.append(time.perf_counter() - t0)
            assert rep.decisions_added == n_codings and rep.spans_inexact == 0, rep.summary()
            b = init_project(tmp / f"files{i}")
            t0 = time.perf_counter()
            import_files(b, [src])
            files_s.append(time.perf_counter() - t0)
            q.close()
            b.close()
        med = statistics.median
        result = {
            "transcripts": len(p.transcripts()),
            "segments": len(segs),
            "accepted_codings": n_codings,
            "qdpx_bytes": out.stat().st_size,
            "export_s_median": round(med(export_s), 3),
            "import_qdpx_s_median": round(med(import_s), 3),
            "import_files_s_median (baseline)": round(med(files_s), 3),
            "import_qdpx_over_import_files": round(med(import_s) / med(files_s), 2),
            "repeats": args.repeats,
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
        }
        p.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
