"""Human agreement on AnnoMI's 10-annotator transcripts, computed with coder_assist.app.agreement.

1. Fleiss' kappa and Krippendorff's alpha of the 10 annotators on the coarse codes (therapist
   behaviour, 4 codes; client talk type, 3 codes), against the figures the eval README quotes.
2. The blind double-coding workflow end to end at the scale of a real study: the 7 transcripts
   become a project (one segment per utterance), the 8 fine therapist codes its template, and a
   reliability sample of every segment is "coded" by each annotator through
   ``record_answer`` (client utterances and uncoded therapist utterances answered with no
   code). Pairwise agreement over the 45 annotator pairs, with and without the segments
   neither annotator coded: how much uncoded text inflates the figures.

    .venv/bin/python bench/agreement_annomi.py --data /work/shared/eval/annomi-agreement \\
        --out bench/results/agreement_annomi.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from coder_assist.app import agreement as ag
from coder_assist.core.template import parse_template
from coder_assist.core.transcript import Transcript, Turn
from coder_assist.core.segment import Segment
from coder_assist.store.project import Project


def coarse(df: pd.DataFrame) -> dict:
    out = {}
    for speaker in ("therapist", "client"):
        wide = df[df["speaker"] == speaker].pivot_table(index=["transcript_id", "turn_index"], columns="annotator_id",
                                                       values="code", aggfunc="first")
        cats = {c: i for i, c in enumerate(sorted(pd.unique(wide.to_numpy().ravel())))}
        out[speaker] = {
            "utterances": len(wide),
            "fleiss_kappa": round(ag.fleiss_kappa(wide), 4),
            "krippendorff_alpha": round(ag.krippendorff_alpha(wide.replace(cats).to_numpy(dtype=float).T), 4),
        }
    return out


def build_project(df: pd.DataFrame, folder: Path) -> tuple[Project, dict]:
    fine = sorted({c for v in df["fine_codes"].dropna() for c in v.split("|")})
    tpl = parse_template({"name": "AnnoMI fine therapist codes", "codes": [
        {"name": "MI", "description": "therapist behaviour", "children": [{"name": c.replace(":", " "), "description": c} for c in fine]}]})
    ids = {c: next(k for k, v in tpl.codes.items() if v.name == c.replace(":", " ")) for c in fine}
    p = Project.create(folder, tpl)
    utts = df.drop_duplicates(["transcript_id", "turn_index"]).sort_values(["transcript_id", "turn_index"])
    transcripts, segments, keys = [], {}, {}
    for tid, g in utts.groupby("transcript_id"):
        name, text, turns, segs = f"annomi-{tid}", "", [], []
        for i, r in enumerate(g.itertuples()):
            label = f"{r.speaker}: "
            start = len(text) + len(label)
            text += label + r.text + "\n"
            turns.append(Turn(i, r.speaker, start, start + len(r.text), r.text))
            segs.append(Segment(name, i, i, start, start + len(r.text), r.text, r.speaker))
            keys[(name, i)] = (int(tid), int(r.turn_index))
        transcripts.append(Transcript(name, text, turns))
        segments[name] = segs
    p.add_transcripts(transcripts, segments)
    seg_of = {keys[(r.transcript, r.idx)]: int(r.id) for r in p.segments().itertuples()}
    return p, {"codes": ids, "segment_of": seg_of}


def pairwise(df: pd.DataFrame) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        p, m = build_project(df, Path(tmp) / "proj")
        sid = ag.draw_sample(p, 1.0, seed=0, name="all")
        t0 = time.perf_counter()
        for r in df.itertuples():
            codes = [m["codes"][c] for c in str(r.fine_codes).split("|")] if isinstance(r.fine_codes, str) else []
            ag.record_answer(p, sid, m["segment_of"][(int(r.transcript_id), int(r.turn_index))], f"a{r.annotator_id}", codes)
        t_record = time.perf_counter() - t0
        rows = {}
        t0 = time.perf_counter()
        for exclude in (False, True):
            figs = []
            for a, b in itertools.combinations(sorted(df["annotator_id"].unique()), 2):
                rep = ag.agreement(p, f"a{a}", f"a{b}", sample_id=sid, exclude_uncoded=exclude)
                figs.append(rep.overall)
            rows["exclude_uncoded" if exclude else "all_segments"] = {
                "pairs": len(figs),
                "segments_median": statistics.median(f["segments"] for f in figs),
                **{f"{k}_median": round(statistics.median(f[k] for f in figs), 4)
                   for k in ("pooled_percent_agreement", "pooled_kappa", "pooled_alpha", "mean_kappa", "mean_alpha")},
            }
        t_agree = (time.perf_counter() - t0) / (2 * len(figs))
        n_answers, n_segs = len(df), len(m["segment_of"])
        p.close()
    return {"segments": n_segs, "answers": n_answers, "record_answer_ms_mean": round(1000 * t_record / n_answers, 2),
            "agreement_report_ms_mean": round(1000 * t_agree, 1), **rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/eval/annomi-agreement")
    ap.add_argument("--out", default="bench/results/agreement_annomi.json")
    args = ap.parse_args()
    df = pd.read_csv(Path(args.data) / "annotations_multi_annotator.csv")
    result = {
        "dataset": "AnnoMI multi-annotator (7 transcripts, 10 annotators)",
        "coarse_codes_10_annotators": coarse(df),
        "readme_quotes": {"therapist_fleiss_kappa": 0.74, "client_fleiss_kappa": 0.47},
        "fine_therapist_codes_pairwise": pairwise(df),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
