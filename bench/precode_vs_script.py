"""`coder-assist precode` against the plain sentence-transformers script a researcher would write
(bench/researcher_script.py), end to end on the same files with a cold embedding cache.

One command, printing JSON (and writing it with --out):
    nice -n 19 .venv/bin/python bench/precode_vs_script.py --out bench/results/precode_vs_script.json
    nice -n 19 .venv/bin/python bench/precode_vs_script.py --quick     # 20 transcripts, 2 runs

Files: the AnnoMI sessions (/work/shared/eval/annomi-client/segments.csv, 133 sessions, 9,699
turns) written as "Interviewer: ..." / "Participant: ..." .txt transcripts into a temporary
folder (never kept). Each run is a fresh process for both sides, timed from the command to
its exit (imports, model load, reading, encoding, scoring, CSV written):

- precode: `coder-assist precode DIR --out X.csv --unit turn --threshold 0 --top-k 1` with an
  empty embedding cache ($CODER_ASSIST_CACHE_DIR is a new folder each run). It codes the
  participant's turns (the interviewer's are context, its default).
- script (every turn): the baseline the issue names: load the bundled MiniLM with
  sentence-transformers, encode every turn and every template example, nearest example.
- script (coded turns): the same script given only the turns precode codes (--coded-only): the
  like-for-like comparison of the work both do.

Runs alternate the order of the three, so a change in machine load hits all of them; the
one-minute load average is recorded before and after each run. Agreement: precode's top
suggestion against the script's nearest example on the same participant turns (the scorer
differs on purpose: nearest example blended with the code's prototype and its
counter-examples, and calibrated; so agreement below 100% is expected, not a defect).
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

ROOT = Path(__file__).resolve().parent.parent
ANNOMI = Path("/work/shared/eval/annomi-client/segments.csv")
if not ANNOMI.is_file():
    ANNOMI = ROOT.parent / "shared" / "eval" / "annomi-client" / "segments.csv"
SCRIPT = ROOT / "bench" / "researcher_script.py"
TEMPLATE = ROOT / "data" / "templates" / "coproduction.yaml"
PY = Path(sys.executable)
CLI = PY.parent / "coder-assist"


def write_corpus(folder: Path, n: int | None) -> dict:
    import pandas as pd

    df = pd.read_csv(ANNOMI, dtype={"text": str}).dropna(subset=["text"])
    ids = sorted(df["transcript_id"].unique())[:n] if n else sorted(df["transcript_id"].unique())
    turns = coded = 0
    for tid in ids:
        rows = df[df["transcript_id"] == tid]
        lines = [f"{'Interviewer' if s == 'therapist' else 'Participant'}: {' '.join(t.split())}" for s, t in zip(rows["speaker"], rows["text"])]
        (folder / f"annomi_{tid:03d}.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
        turns += len(rows)
        coded += int((rows["speaker"] == "client").sum())
    return {"transcripts": len(ids), "turns": turns, "participant_turns": coded}


def timed_run(cmd: list[str], env: dict) -> dict:
    import resource

    load_before = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds (user + system) of the command: on a shared machine the wall time mostly
    # says how much of the cores the run was given; the CPU time says what the work cost.
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "stderr_tail": r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else []}


def agreement(precode_csv: Path, script_csv: Path) -> dict:
    import pandas as pd

    p = pd.read_csv(precode_csv, dtype=str, keep_default_na=False)
    p = p[p["rank"].astype(int) == 1][["transcript", "text", "code_path"]].drop_duplicates(["transcript", "text"])
    s = pd.read_csv(script_csv, dtype=str, keep_default_na=False)
    s = s[s["speaker"] != "Interviewer"][["transcript", "text", "code_path"]].drop_duplicates(["transcript", "text"])
    m = p.merge(s, on=["transcript", "text"], suffixes=("_precode", "_script"))
    return {"compared_turns": len(m), "precode_turns": len(p), "script_turns": len(s),
            "top1_same_as_script": round(float((m["code_path_precode"] == m["code_path_script"]).mean()), 4) if len(m) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--transcripts", type=int, default=None, help="First N AnnoMI sessions (default: all 133).")
    ap.add_argument("--quick", action="store_true", help="20 transcripts, 2 runs.")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--model", help="precode's --model (default: its own default encoder); the script always uses MiniLM.")
    args = ap.parse_args()
    if args.out is None and not args.quick:
        args.out = ROOT / "bench" / "results" / "precode_vs_script.json"
    if args.quick:
        args.runs, args.transcripts = min(args.runs, 2), args.transcripts or 20
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("CODER_ASSIST_BACKEND", None)  # the default path is what is measured
    with tempfile.TemporaryDirectory(prefix="precode-vs-script-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "transcripts"
        corpus.mkdir()
        sizes = write_corpus(corpus, args.transcripts)
        sides = {
            "precode": lambda out: [str(CLI), "precode", str(corpus), "--out", str(out), "--unit", "turn", "--threshold", "0", "--top-k", "1"]
                                + (["--model", args.model] if args.model else []),
            "script_every_turn": lambda out: [str(PY), str(SCRIPT), str(TEMPLATE), str(corpus), str(out)],
            "script_coded_turns": lambda out: [str(PY), str(SCRIPT), str(TEMPLATE), str(corpus), str(out), "--coded-only"],
        }
        runs: dict[str, list[dict]] = {k: [] for k in sides}
        outputs = {}
        order = list(sides)
        for r in range(args.runs):
            for name in order if r % 2 == 0 else order[::-1]:
                out = tmp / f"{name}-{r}.csv"
                run_env = dict(env, CODER_ASSIST_CACHE_DIR=str(tmp / f"cache-{name}-{r}"))  # cold: a new, empty cache
                runs[name].append(timed_run(sides[name](out), run_env))
                outputs[name] = out
                print(json.dumps({"run": r, name: runs[name][-1]}), file=sys.stderr, flush=True)
        med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items()}
        cpu = {k: statistics.median(x["cpu_seconds"] for x in v) for k, v in runs.items()}
        result = {
            "benchmark": "precode_vs_script",
            "command": " ".join(["nice -n 19 .venv/bin/python bench/precode_vs_script.py"] + (["--quick"] if args.quick else [])
                                + ([f"--transcripts {args.transcripts}"] if args.transcripts and not args.quick else [])
                                + ([f"--runs {args.runs}"] if args.runs != 3 and not args.quick else [])
                                + ([f"--model {args.model}"] if args.model else [])),
            "precode_model": args.model or "default",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                        "load_average_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()],
                        "note": "shared machine: other jobs ran at the same time; see each run's load_before/load_after"},
            "corpus": {"source": "AnnoMI sessions as .txt transcripts", **sizes},
            "runs": runs,
            "seconds_median": {k: round(v, 2) for k, v in med.items()},
            "speedup_vs_script_every_turn": round(med["script_every_turn"] / med["precode"], 2),
            "speedup_vs_script_coded_turns": round(med["script_coded_turns"] / med["precode"], 2),
            "cpu_seconds_median": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_ratio_vs_script_every_turn": round(cpu["script_every_turn"] / cpu["precode"], 2),
            "cpu_ratio_vs_script_coded_turns": round(cpu["script_coded_turns"] / cpu["precode"], 2),
            "target": "precode >= 3x faster than the script (issue 14)",
            "agreement": agreement(outputs["precode"], outputs["script_coded_turns"]),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
