"""The simulated researcher on every shared evaluation set, under every review protocol.

For each set in ``--sets`` and each protocol in ``--protocols``: ``coder_assist.eval.simulate``
(the product's queue and the same learner in random order, plus the zero-shot, TF-IDF + LR and
embedding + LR baselines) on ``--folds``, written as
``bench/results/simulate_<set>_<protocol>.json`` (and a PNG curve). Then one summary,
``bench/results/simulate_summary.json`` and a markdown table (``simulate_summary.md``) with
macro-F1 / kappa at 0 / 100 / 300 / 500 decisions, random order at the last checkpoint, the
baselines, the largest drop between successive checkpoints (the stability target: no
checkpoint more than 0.02 below the one before it) and the issue-12 targets.

    nice -n 19 .venv/bin/python bench/simulate_all.py --folds 0,1,2,3,4 --budget 500
    nice -n 19 .venv/bin/python bench/simulate_all.py --folds 0 --protocols binary,corrective --budget 300

Embeddings come through the default encoder's on-disk cache (a rerun encodes nothing).
``--summary-only`` rebuilds the summary from the result files already written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EVAL = ROOT.parent / "shared" / "eval"
RESULTS = ROOT / "bench" / "results"
SETS = ("annomi-therapist", "annomi-client", "annomi-therapist-fine", "nhs-fft")
PROTOCOLS = ("passage", "corrective", "binary")
#: Issue 12's targets within 500 reviewed passages (macro-F1, kappa); None: no target.
TARGETS = {
    "annomi-therapist": {"macro_f1": 0.81, "kappa": 0.74},
    "annomi-client": {"macro_f1": None, "kappa": 0.47},
    "nhs-fft": {"macro_f1": "tfidf_lr_all", "kappa": None},
}


def result_path(name: str, protocol: str, tag: str = "") -> Path:
    return RESULTS / f"simulate_{name}_{protocol}{'_' + tag if tag else ''}.json"


def _at(curve: list[dict], n: int) -> dict | None:
    return next((r for r in curve if r["decisions"] == n), None)


def largest_drop(curve: list[dict], key: str = "macro_f1") -> float:
    """The largest fall of ``key`` from one checkpoint to the next (0 when it never falls)."""
    vals = [r[key] for r in curve]
    return round(max([0.0] + [a - b for a, b in zip(vals, vals[1:])]), 4)


def summarise(res: dict) -> dict:
    curve, base = res["curve"], res["baselines"]
    last = curve[-1]
    rnd = base["random_order"][-1] if base["random_order"] else None
    row = {
        "set": res["dataset"], "protocol": res["protocol"], "folds": res["folds"], "encoder": res["encoder"],
        "points": {str(n): {"macro_f1": r["macro_f1"], "kappa": r["kappa"]} for n in (0, 100, 300, 500) if (r := _at(curve, n))},
        "last": {"decisions": last["decisions"], "macro_f1": last["macro_f1"], "kappa": last["kappa"], "effort": last["effort"]},
        "random_order_last": {"macro_f1": rnd["macro_f1"], "kappa": rnd["kappa"]} if rnd else None,
        "queue_beats_random": bool(rnd and last["macro_f1"] >= rnd["macro_f1"]),
        "zero_shot": base["zero_shot"], "tfidf_lr_all": base["tfidf_lr_all"], "embedding_lr_all": base["embedding_lr_all"],
        "above_zero_shot_at_0": curve[0]["macro_f1"] > base["zero_shot"]["macro_f1"],
        "largest_drop_macro_f1": largest_drop(curve), "largest_drop_kappa": largest_drop(curve, "kappa"),
        "seconds": res.get("seconds"),
    }
    t = TARGETS.get(res["dataset"])
    if t:
        met = {}
        for key, goal in t.items():
            if goal is None:
                continue
            goal = base[goal]["macro_f1"] if isinstance(goal, str) else goal
            met[key] = {"target": goal, "at_last": last[key], "met": last[key] >= goal}
        row["targets"] = met
    return row


def table(rows: list[dict]) -> str:
    def f(p):
        return f"{p['macro_f1']:.3f} / {p['kappa']:.3f}" if p else ""

    out = ["| set | protocol | folds | 0 | 100 | 300 | 500 | random order (last) | zero-shot | TF-IDF+LR all | emb+LR all | largest drop | keys / searches |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: | ---: |"]
    for r in rows:
        p = r["points"]
        e = r["last"]["effort"]
        out.append(f"| {r['set']} | {r['protocol']} | {len(r['folds'])} | {f(p.get('0'))} | {f(p.get('100'))} | {f(p.get('300'))} | {f(p.get('500'))} | "
                   f"{f(r['random_order_last'])} | {f(r['zero_shot'])} | {f(r['tfidf_lr_all'])} | {f(r['embedding_lr_all'])} | "
                   f"{r['largest_drop_macro_f1']:.3f} | {e['keys']:.0f} / {e['searches']:.0f} |")
    return "\n".join(out) + "\n"


def write_summary(sets, protocols, tag: str = "") -> list[dict]:
    rows = [summarise(json.loads(p.read_text())) for s in sets for pr in protocols if (p := result_path(s, pr, tag)).exists()]
    name = f"simulate_summary{'_' + tag if tag else ''}"
    (RESULTS / f"{name}.json").write_text(json.dumps({"benchmark": "simulate_all", "rows": rows}, indent=1))
    (RESULTS / f"{name}.md").write_text(
        "macro-F1 / kappa, mean over folds (`nice -n 19 .venv/bin/python bench/simulate_all.py`)\n\n" + table(rows))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--folds", default="0")
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--model", help="encoder (default: the product's)")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the result files (e.g. use for --model use-multilingual-v3)")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets, protocols = a.sets.split(","), a.protocols.split(",")
    if not a.summary_only:
        from coder_assist.eval.simulate import plot_curve, simulate, write_result
        from coder_assist.ml.embed import load_encoder

        encoder = load_encoder(a.model)
        folds = [int(x) for x in a.folds.split(",")]
        for s in sets:
            for pr in protocols:
                t0 = time.perf_counter()
                res = simulate(EVAL / s, encoder, folds=folds, budget=a.budget, batch=a.batch, protocol=pr,
                               log=lambda m: print(m, file=sys.stderr, flush=True))
                res["command"] = "nice -n 19 .venv/bin/python bench/simulate_all.py " + " ".join(sys.argv[1:])
                res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
                write_result(res, result_path(s, pr, a.tag))
                plot_curve(res, result_path(s, pr, a.tag).with_suffix(".png"))
                print(f"{s} {pr}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = write_summary(sets, protocols, a.tag)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
