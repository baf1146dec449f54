"""REFI-QDA export and import speed: the demo interviews copied N times, two coders' accepted
codings on a share of the segments -> export_qdpx -> import_qdpx into a fresh project.

Baseline in the same run: importing the same transcripts as plain files (import_files), which
segments the same text; the JSON gives medians of repeats and the ratio to that baseline.

Real exports (``--real``, default ../shared/refi-qda/real): each NVivo file -> ``init --from``
(init_from_qdpx) -> export_qdpx, timed, with what came in per kind and the share of the file's
codings that the export holds with the same start, end, code and user. spaCy's one-time load
is timed apart (the app and a CLI run pay it once); the machine's load average is recorded,
since the 2 cores here are shared.
Run: nice -n 19 .venv/bin/python bench/refi_roundtrip.py [--copies 10] [--repeats 3] [--out bench/results/refi_roundtrip.json]
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

from coder_assist.app import importing  # noqa: E402
from coder_assist.app.pipeline import DEMO_DIR, import_files, init_project  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.5, help="share of segments each coder codes")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "refi-qda" / "real")
    args = ap.parse_args()
    load_before = os.getloadavg()
    from coder_assist.core.segment import sentence_pipeline

    t0 = time.perf_counter()
    sentence_pipeline()
    spacy_load_s = time.perf_counter() - t0
    real = real_files(args.real, args.repeats) if args.real.is_dir() else {}
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
            out = importing.export_qdpx(p, tmp / f"x{i}.qdpx")
            export_s.append(time.perf_counter() - t0)
            q = init_project(tmp / f"fresh{i}")
            t0 = time.perf_counter()
            rep = importing.import_qdpx(q, out)
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
            "spacy_load_s (once per process)": round(spacy_load_s, 3),
            "real_exports": real,
            "load_average_1min (before, after)": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
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


def _codings(path: Path) -> list[tuple]:
    import zipfile

    from lxml import etree

    ns = "{urn:QDA-XML:project:1.0}"
    with zipfile.ZipFile(path) as z:
        root = etree.fromstring(z.read([n for n in z.namelist() if n.endswith(".qde")][0]))
    g = lambda v: (v or "").strip("{}").lower()  # noqa: E731
    users = {g(u.get("guid")): u.get("name") for u in root.iter(ns + "User")}
    return sorted((g(src.get("guid")), sel.get("startPosition"), sel.get("endPosition"), g(c.find(ns + "CodeRef").get("targetGUID")),
                   users.get(g(c.get("creatingUser"))))
                  for src in root.iter(ns + "TextSource") for sel in src.iter(ns + "PlainTextSelection") for c in sel.iter(ns + "Coding"))


def real_files(folder: Path, repeats: int) -> dict:
    out = {}
    for f in sorted(folder.glob("*.qdpx")):
        tmp = Path(tempfile.mkdtemp(prefix="refi-real-"))
        try:
            import_s, export_s = [], []
            for i in range(repeats):
                t0 = time.perf_counter()
                p, rep = importing.init_from_qdpx(tmp / f"p{i}", f)
                import_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                back = importing.export_qdpx(p, tmp / f"back{i}.qdpx")
                export_s.append(time.perf_counter() - t0)
                n_segments = len(p.segments())
                n_codes = len(p.template().codes)
                p.close()
            # Cold, as a researcher runs it: a new process (Python, imports, spaCy) doing init --from.
            import resource
            import subprocess

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([str(Path(sys.executable).with_name("coder-assist")), "init", str(tmp / "cold"), "--from", str(f)],
                           check=True, capture_output=True)
            cold_s = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            want, got = _codings(f), _codings(back)
            kept = sum(1 for c in want if c in set(got))
            out[f.name] = {
                "file_bytes": f.stat().st_size,
                "text_sources": rep.transcripts_added, "segments": n_segments, "codes": n_codes,
                "codings_in_file": rep.codings_read, "codings_imported": rep.decisions_added,
                "users": len(rep.users), "sources_kept_as_is": len(rep.sources_kept), "kept": rep.kept,
                "sources_from_docx": len(rep.sources_from_docx), "sources_in_full": len(rep.sources_in_full),
                "round_trip_codings_same_span_code_user_pct": round(100 * kept / len(want), 1) if want else None,
                "round_trip_codings": [kept, len(want), len(got)],
                "import_s_median": round(statistics.median(import_s), 3), "import_s_all": [round(x, 3) for x in import_s],
                "export_s_median": round(statistics.median(export_s), 3),
                "cli_init_from_cold_wall_s": round(cold_s, 3),
                "cli_init_from_cold_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3),
            }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
