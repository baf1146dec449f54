"""End-to-end batch pre-coding speed by encoder backend, and where the time goes.

Prints one JSON object (and writes it with --out). Run:
    .venv/bin/python bench/precode_speed.py --out bench/results/precode_speed.json

Corpora: the demo transcripts (data/demo) and transcripts rebuilt from AnnoMI utterances
(/work/shared/eval/annomi-client/segments.csv, written to a temporary folder, never kept).
End to end = read files -> segments -> embeddings -> suggestions -> CSV on disk, with the
template's examples encoded too, the model already loaded (load time is reported apart) and no
embedding cache (the cache is measured on its own). Speeds are ratios against plain
sentence-transformers (torch fp32) in the same run, medians of interleaved repeats, because
the machine is shared and noisy. Agreement: the top suggestion per segment (threshold 0,
top 1) compared with torch fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coder_assist import load_template, precode  # noqa: E402
from coder_assist.ml.embed import CachedEncoder, EmbeddingCache, load_encoder  # noqa: E402
from coder_assist.ml.encoder import Encoder  # noqa: E402
from coder_assist.formats.transcripts import load_transcripts  # noqa: E402
from coder_assist.app.pipeline import DEMO_DIR  # noqa: E402
from coder_assist.core.segment import Segmenter  # noqa: E402
from coder_assist.ml.suggest import ExampleSimilarityScorer, suggest  # noqa: E402

ANNOMI = Path("/work/shared/eval/annomi-client/segments.csv")
BACKENDS = ["torch", "onnx", "onnx-int8"]


class Recording(Encoder):
    """Pass-through that keeps every vector, so agreement needs no extra encoding."""

    def __init__(self, inner: Encoder):
        self.inner, self.model_id, self.dim, self.seen = inner, inner.model_id, inner.dim, {}

    def encode(self, texts, progress=None):
        v = self.inner.encode(texts, progress)
        self.seen.update(zip(texts, v))
        return v


class Lookup(Encoder):
    def __init__(self, seen: dict, model_id: str, dim: int):
        self.seen, self.model_id, self.dim = seen, model_id, dim

    def encode(self, texts, progress=None):
        return np.stack([self.seen[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def annomi_corpus(folder: Path, n_transcripts: int) -> int:
    df = pd.read_csv(ANNOMI, dtype={"text": str}).dropna(subset=["text"])
    ids = sorted(df["transcript_id"].unique())[:n_transcripts]
    for tid in ids:
        rows = df[df["transcript_id"] == tid]
        lines = [f"{'Interviewer' if s == 'therapist' else 'Participant'}: {t}" for s, t in zip(rows["speaker"], rows["text"])]
        (folder / f"annomi_{tid:03d}.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return len(ids)


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    return out, wall, (time.process_time() - c0) / wall  # cores busy on average


def median(xs):
    return statistics.median(xs)


def load_time(backend: str) -> float:
    """Fresh process: import + model ready + one sentence encoded (the export already cached)."""
    code = (
        "import time; t=time.perf_counter(); from coder_assist.ml.embed import load_encoder; "
        f"e=load_encoder('all-MiniLM-L6-v2', backend={backend!r}, cache=False); e.encode(['hello']); print(time.perf_counter()-t)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--annomi-transcripts", type=int, default=30)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    backends = args.backends.split(",")
    template = load_template()
    # MiniLM's backends compared (the default USE has one form only); exports on first use.
    encoders = {b: load_encoder("all-MiniLM-L6-v2", backend=b, cache=False) for b in backends}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpora = {"demo": [DEMO_DIR]}
        if ANNOMI.is_file():
            (tmp / "annomi").mkdir()
            annomi_corpus(tmp / "annomi", args.annomi_transcripts)
            corpora["annomi"] = [tmp / "annomi"]
        result: dict = {
            "benchmark": "precode_speed",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                        "load_average_at_start": os.getloadavg()[0]},
            "repeats": args.repeats,
            "model": encoders[backends[0]].model_id,
        }
        texts_by_corpus = {}
        for name, paths in corpora.items():
            segs = Segmenter().frame(load_transcripts(paths))
            texts = segs["text"].tolist()
            texts_by_corpus[name] = texts
            walls: dict[str, list[float]] = {b: [] for b in backends}
            cores: dict[str, list[float]] = {b: [] for b in backends}
            rec = {b: Recording(encoders[b]) for b in backends}
            for r in range(args.repeats):
                for b in backends:
                    out_csv = tmp / f"{name}-{b}.csv"
                    _, wall, busy = timed(lambda: precode(paths, template, encoder=rec[b], progress=False).to_csv(out_csv, index=False))
                    walls[b].append(wall)
                    cores[b].append(busy)
            # Agreement of the top suggestion per segment with torch fp32.
            agree = {}
            if "torch" in backends:
                tops = {}
                for b in backends:
                    enc = Lookup(rec[b].seen, rec[b].model_id, rec[b].dim)
                    scorer = ExampleSimilarityScorer().fit(template, enc)
                    s = suggest(scorer.score(enc.encode(texts)), threshold=0.0, top_k=1)
                    tops[b] = s.set_index("segment")["code_id"].reindex(range(len(texts)))
                ref_vecs = np.stack([rec["torch"].seen[t] for t in texts])
                for b in backends:
                    if b == "torch":
                        continue
                    cos = (np.stack([rec[b].seen[t] for t in texts]) * ref_vecs).sum(1)
                    agree[b] = {"top1_same_as_torch": round(float((tops[b] == tops["torch"]).mean()), 4),
                                "cosine_mean": round(float(cos.mean()), 4), "cosine_min": round(float(cos.min()), 4)}
            base = median(walls["torch"]) if "torch" in backends else None
            result[f"end_to_end_{name}"] = {
                "transcripts": int(segs["transcript"].nunique()),
                "segments": len(segs),
                "unique_segment_texts": len(set(texts)),
                **{b: {"seconds_median": round(median(walls[b]), 2), "segments_per_s": round(len(segs) / median(walls[b]), 1),
                       "cores_busy": round(median(cores[b]), 2),
                       **({"speedup_vs_torch": round(base / median(walls[b]), 2)} if base else {}), **agree.get(b, {})}
                   for b in backends},
            }
            print(json.dumps({name: result[f"end_to_end_{name}"]}), file=sys.stderr)

        # Encoder-only ablations on the larger corpus: sorting, dedup, threads.
        texts = texts_by_corpus.get("annomi", texts_by_corpus["demo"])
        if "onnx" in backends:
            from coder_assist.ml.onnx_backend import OnnxEncoder

            variants = {
                "onnx (dedup, length-sorted, 2 threads)": encoders["onnx"],
                "onnx without dedup": OnnxEncoder(None, dedup=False),
                "onnx without length sorting": OnnxEncoder(None, sort_by_length=False),
                "onnx 1 thread": OnnxEncoder(None, threads=1),
            }
            if "torch" in backends:
                variants["torch (sentence-transformers)"] = encoders["torch"]
            walls = {k: [] for k in variants}
            busy = {k: [] for k in variants}
            for r in range(args.repeats):
                for k, enc in variants.items():
                    _, w, c = timed(lambda: enc.encode(texts))
                    walls[k].append(w)
                    busy[k].append(c)
            ref = median(walls["onnx (dedup, length-sorted, 2 threads)"])
            result["encoder_only"] = {
                "texts": len(texts), "unique_texts": len(set(texts)),
                **{k: {"seconds_median": round(median(v), 2), "texts_per_s": round(len(texts) / median(v), 1),
                       "cores_busy": round(median(busy[k]), 2), "relative_to_default_onnx": round(ref / median(v), 2)} for k, v in walls.items()},
            }
            # The SQLite embedding cache: cold (empty) and warm (second run, same texts).
            cold, warm = [], []
            for r in range(args.repeats):
                enc = CachedEncoder(encoders["onnx"], EmbeddingCache(tmp / f"cache-{r}.sqlite"))
                cold.append(timed(lambda: enc.encode(texts))[1])
                warm.append(timed(lambda: enc.encode(texts))[1])
            result["embedding_cache_onnx"] = {"cold_s_median": round(median(cold), 2), "warm_s_median": round(median(warm), 3),
                                              "warm_speedup": round(median(cold) / median(warm), 1)}
        result["process_start_to_first_vector_s"] = {b: round(median([load_time(b) for _ in range(2)]), 2) for b in backends}
    out = json.dumps(result, indent=2)
    print(out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out + "\n")


if __name__ == "__main__":
    main()
