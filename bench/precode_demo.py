"""Throughput of batch pre-coding on the demo set, cold (empty embedding cache) and warm.

Prints one JSON object. Run: .venv/bin/python bench/precode_demo.py [--repeats 3]
Model loading is timed separately; the figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coder_assist import load_template, precode  # noqa: E402
from coder_assist.ml.embed import CachedEncoder, EmbeddingCache, load_encoder  # noqa: E402
from coder_assist.app.pipeline import DEMO_DIR  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = load_encoder(cache=False)
    load_s = time.perf_counter() - t0
    template = load_template()
    cold, warm = [], []
    stats = {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            enc = CachedEncoder(base, EmbeddingCache(Path(d) / "c.sqlite"))
            t = time.perf_counter()
            df = precode(DEMO_DIR, template, encoder=enc, progress=False)
            cold.append(time.perf_counter() - t)
            encoded_cold = enc.stats.encoded
            before = enc.stats.encoded
            hits_before, unique_before = enc.stats.cache_hits, enc.stats.unique
            t = time.perf_counter()
            precode(DEMO_DIR, template, encoder=enc, progress=False)
            warm.append(time.perf_counter() - t)
            stats = {
                "segments": int(df.attrs["n_segments"]),
                "suggestions": len(df),
                "texts_encoded_cold": encoded_cold,
                "texts_encoded_rerun": enc.stats.encoded - before,
                "cache_hit_rate_rerun": (enc.stats.cache_hits - hits_before) / (enc.stats.unique - unique_before),
            }
    n = stats["segments"]
    print(json.dumps({
        "benchmark": "precode_demo",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "model": base.model_id,
        "model_load_s": round(load_s, 2),
        "repeats": args.repeats,
        **stats,
        "cold_s_median": round(statistics.median(cold), 2),
        "warm_s_median": round(statistics.median(warm), 2),
        "cold_segments_per_s": round(n / statistics.median(cold), 1),
        "warm_segments_per_s": round(n / statistics.median(warm), 1),
        "warm_speedup_vs_cold": round(statistics.median(cold) / statistics.median(warm), 2),
    }, indent=2))


if __name__ == "__main__":
    main()
