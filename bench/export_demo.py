"""Export: the demo project to every format, and export speed on a large synthetic project.

Prints one JSON object (and writes it with ``--out``). Run:

    .venv/bin/python bench/export_demo.py --out bench/results/export_demo.json

* **demo**: builds the demo project (``pipeline.build_demo_project``, the bundled model) unless
  ``--project`` names one, records decisions as two coders would (Alex accepts two of every
  three top-ranked suggestions and rejects some others, Bea accepts every fourth top-ranked
  one), and exports CSV, XLSX, Word (zip) and the report (sector x level) into ``--dir``,
  timing each. The report folder is what docs/export.md describes.
* **scale**: a synthetic project of ``--segments`` segments (``bench/review_synth.py``, no
  model) with accepts by two coders on a fifth of the suggestions; medians of ``--repeats``
  for the codings frame, CSV, XLSX and the report, and Word per transcript. The CSV's formula
  neutralisation is given as a ratio to a plain ``DataFrame.to_csv`` of the same frame in the
  same run (the machine is shared and noisy: compare ratios, not seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from benchio import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from coder_assist.app import export, review  # noqa: E402
from coder_assist.store.project import Project, now  # noqa: E402


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3), out


def record_demo_decisions(p: Project) -> dict:
    if not p.current_decisions().empty:
        return {"note": "project already had decisions; none added"}
    s = p.suggestions()
    n = {"Alex accept": 0, "Alex reject": 0, "Bea accept": 0}
    for i, r in enumerate(s.itertuples()):
        if r.rank == 1 and i % 3 != 2:
            review.decide(p, r.suggestion_id, "accept", "Alex")
            n["Alex accept"] += 1
        elif i % 7 == 0:
            review.decide(p, r.suggestion_id, "reject", "Alex")
            n["Alex reject"] += 1
        if r.rank == 1 and i % 4 == 0:
            review.decide(p, r.suggestion_id, "accept", "Bea")
            n["Bea accept"] += 1
    return n


def demo(project_dir: Path | None, out_dir: Path) -> dict:
    from coder_assist.app.pipeline import build_demo_project

    out_dir.mkdir(parents=True, exist_ok=True)
    if project_dir is None:
        project_dir = out_dir / "project"
        shutil.rmtree(project_dir, ignore_errors=True)
        t, p = timed(lambda: build_demo_project(project_dir, progress=False))
        build_s = t
    else:
        p, build_s = Project.open(project_dir), None
    decisions = record_demo_decisions(p)
    result: dict = {"project": str(project_dir), "build_s": build_s, "decisions": decisions, "exports": {}}
    for fmt, target, include in [("csv", "codings.csv", "accepted"), ("xlsx", "codings.xlsx", "suggested"),
                                 ("docx", "word.zip", "accepted"), ("report", "report", "accepted")]:
        t, res = timed(lambda: export.export(p, fmt, out_dir / target, include=include,
                                             attributes=["sector", "level"] if fmt == "report" else None))
        result["exports"][fmt] = {"seconds": t, "rows": res.rows, "include": include, "path": str(out_dir / target)}
    rep = export.build_report(p, export.codings_frame(p), ["sector", "level"])
    result["report"] = {"cells": len(rep.cell_sizes), "codes": len(rep.counts), "accepted_passages": rep.scope["accepted_passages"],
                        "codes_used": int((rep.frequencies["passages"] > 0).sum())}
    p.close()
    return result


def add_synthetic_accepts(p: Project, share: float = 0.2) -> int:
    rows = p.conn.execute("SELECT id, segment_id, code_id, model_version_id FROM suggestions ORDER BY id").fetchall()
    stamp = now()
    picked = rows[:: int(round(1 / share))]
    with p.transaction():
        p.conn.executemany(
            "INSERT INTO decisions(segment_id, code_id, action, coder, created_at, suggestion_id, model_version_id) "
            "VALUES (?, ?, 'accept', ?, ?, ?, ?)",
            [(r[1], r[2], coder, stamp, r[0], r[3]) for r in picked for coder in ("Alex", "Bea")],
        )
    return 2 * len(picked)


def scale(n_segments: int, repeats: int) -> dict:
    import review_synth

    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        tmp = Path(tmp)
        t_build, p = timed(lambda: review_synth.build(tmp / "proj", n_segments))
        n_dec = add_synthetic_accepts(p)
        out: dict = {"segments": n_segments, "transcripts": p.counts()["transcripts"], "suggestions": p.counts()["suggestions"],
                     "accept_decisions": n_dec, "build_s": t_build, "repeats": repeats}
        t, frame = timed(lambda: export.codings_frame(p), repeats)
        out["codings_frame_accepted_s"], out["rows_accepted"] = t, len(frame)
        t, big = timed(lambda: export.codings_frame(p, include="suggested"), repeats)
        out["codings_frame_suggested_s"], out["rows_suggested"] = t, len(big)
        t_plain, _ = timed(lambda: frame.to_csv(tmp / "plain.csv", index=False), repeats)
        t_csv, _ = timed(lambda: export.write_csv(frame, tmp / "c.csv"), repeats)
        out["csv_s"], out["csv_plain_to_csv_s"] = t_csv, t_plain
        out["csv_ratio_to_plain_to_csv"] = round(t_csv / t_plain, 2) if t_plain else None
        out["xlsx_s"], _ = timed(lambda: export.write_xlsx(frame, tmp / "c.xlsx"), 1)
        out["report_build_s"], rep = timed(lambda: export.build_report(p, frame, ["sector", "level"]), repeats)
        out["heatmap_s"], _ = timed(lambda: export.heatmap(rep, tmp / "h.png"), 1)
        names = p.transcripts()["name"].head(5).tolist()
        t_docx, _ = timed(lambda: export.write_docx(p, frame, tmp / "word", transcripts=names), 1)
        out["docx_per_transcript_s"] = round(t_docx / len(names), 3)
        out["segments_per_transcript"] = round(n_segments / out["transcripts"])
        p.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="write the JSON here too")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "coder-assist-export-demo", help="demo exports go here")
    ap.add_argument("--project", type=Path, help="use this demo project instead of building one")
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    result: dict = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    if args.skip_demo and args.out and args.out.exists():  # keep the earlier demo figures
        result["demo"] = json.loads(args.out.read_text(encoding="utf-8")).get("demo")
    if not args.skip_demo:
        result["demo"] = demo(args.project, args.dir)
    if args.segments:
        result["scale"] = scale(args.segments, args.repeats)
    emit(result, args.out)


if __name__ == "__main__":
    main()
