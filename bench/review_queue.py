"""Speed of the review app on a synthetic project of 100,000 segments.

Prints one JSON object (and writes it with ``--out``). Run:

    .venv/bin/python bench/review_queue.py --out bench/results/review_queue.json

What is measured:

* **action** (the issue's "server side of accept -> next suggestion"): what the server does
  between a key press and the next suggestion being ready to draw: the button's callback
  (``review.decide_once``: check and write the decision, committed) plus everything the review
  page reads for its next run (``review.page_data``: progress, the next suggestion, its context,
  evidence and the coder's decisions on the passage) and the sidebar's counts. p50/p95 over
  ``--actions`` actions (80% accept, 15% reject, 5% skip), for a coder starting fresh and for a
  coder who has already decided ``--prior`` suggestions (the top of the queue, the worst case
  for a queue that skips decided items), after a simulated server restart (caches dropped).
  Also with filters (an attribute, one transcript) and in "most uncertain first" order.
* **script**: the same action through Streamlit's own script runner (``AppTest``: click Accept,
  run app.py), which adds Streamlit's element building; p50/p95 over ``--script-actions``.
* **cold start to first paint**: ``streamlit run app.py`` on the project is started; the time
  until its health endpoint answers, and, in headless Debian chromium driven by playwright
  (started beforehand: the browser is not the app's cost), the time until the app's first
  element (the sidebar title) is drawn and until the first suggestion is drawn. Without
  chromium or playwright only the health-endpoint figure is given (``first_paint`` is null,
  with the reason). The same is measured for a one-element Streamlit app, as the floor that
  Streamlit itself sets on the machine (server start plus its frontend loading).

No model is loaded: suggestions are inserted directly (``bench/review_synth.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from benchio import emit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import review_synth  # noqa: E402

from coder_assist.app import review  # noqa: E402
from coder_assist.store.project import Project  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": round(pct(ms, 0.5), 2), "p95_ms": round(pct(ms, 0.95), 2), "max_ms": round(max(ms), 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def one_action(project: Project, coder: str, row: dict, action: str, order: str, filters: dict | None) -> review.PageData:
    review.decide_once(project, row["suggestion_id"], action, coder)
    data = review.page_data(project, coder, order, filters=filters)
    review.project_summary(project)
    review.progress(project, coder, per_code=False)  # the sidebar's line
    return data


def action_loop(project: Project, coder: str, n: int, *, order: str = "likely", filters: dict | None = None, seed: int = 0) -> dict:
    rng = random.Random(seed)
    t = time.perf_counter()
    data = review.page_data(project, coder, order, filters=filters)
    review.project_summary(project)
    first_ms = (time.perf_counter() - t) * 1000
    times, accept_times = [], []
    for _ in range(n):
        if data.row is None:
            break
        action = rng.choices(["accept", "reject", "skip"], weights=[80, 15, 5])[0]
        t = time.perf_counter()
        data = one_action(project, coder, data.row, action, order, filters)
        ms = (time.perf_counter() - t) * 1000
        times.append(ms)
        if action == "accept":
            accept_times.append(ms)
    return {"first_page_ms": round(first_ms, 1), "all": summary(times), "accept": summary(accept_times)}


def add_prior_decisions(project: Project, coder: str, n: int) -> None:
    """``n`` decisions of this coder on the top of the likely queue, written directly."""
    mv = project.latest_model_version()
    rows = project.conn.execute(
        "SELECT id, segment_id, code_id FROM suggestions WHERE model_version_id = ? ORDER BY confidence DESC, id LIMIT ?", (mv, n)
    ).fetchall()
    rng = random.Random(1)
    with project.transaction():
        project.conn.executemany(
            "INSERT INTO decisions(segment_id, code_id, action, coder, created_at, suggestion_id, model_version_id) "
            "VALUES (?, ?, ?, ?, '2026-01-01T00:00:00.000+00:00', ?, ?)",
            [(seg, code, rng.choice(["accept", "accept", "reject"]), coder, sid, mv) for sid, seg, code in rows],
        )


def script_loop(folder: Path, coder: str, n: int) -> dict:
    """Accept through Streamlit's script runner: click, run app.py, read the next card."""
    from streamlit.testing.v1 import AppTest

    os.environ["CODER_ASSIST_PROJECT"] = str(folder)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["review_mode_kept"] = "triage"  # the one-suggestion view this times (Passage is the default)
    at.run()
    at.sidebar.text_input(key="coder_input").input(coder).run()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        at.button(key="btn_accept").click().run()
        times.append((time.perf_counter() - t) * 1000)
        if at.exception:
            raise RuntimeError(at.exception)
    return summary(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TRIVIAL_APP = """import streamlit as st
with st.sidebar:
    st.title("baseline")
st.write("A one-element Streamlit app: the floor for first paint on this machine.")
"""


def cold_start(folder: Path | None, runs: int, script: Path | None = None) -> dict:
    """``streamlit run`` to health, first element and first suggestion, cold, ``runs`` times.
    With ``script`` (and no project), a baseline app: only health and first paint."""
    script = script or ROOT / "app.py"
    browser_reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        browser_reason = "playwright not installed"
    if sync_playwright is not None and not Path(CHROMIUM).exists():
        sync_playwright, browser_reason = None, f"no chromium at {CHROMIUM}"
    results = []
    pw = sync_playwright().start() if sync_playwright else None
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS) if pw else None
    try:
        for _ in range(runs):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
                 "--browser.gatherUsageStats", "false", *(["--", "--project", str(folder)] if folder else [])],
                cwd=script.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HF_HUB_OFFLINE="1"),
            )
            try:
                while True:
                    try:
                        with urllib.request.urlopen(url + "/_stcore/health", timeout=1) as r:
                            if r.status == 200:
                                break
                    except OSError:
                        time.sleep(0.02)
                    if time.perf_counter() - t0 > 120:
                        raise RuntimeError("streamlit did not start")
                health = time.perf_counter() - t0
                run = {"health_s": round(health, 3)}
                if browser is not None:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(url + "/?coder=Bench%20Viewer&mode=triage", wait_until="commit")
                    t_nav = time.perf_counter()
                    page.wait_for_selector("[data-testid='stSidebar'] h1", timeout=120000)
                    run["first_paint_s"] = round(time.perf_counter() - t0, 3)
                    # The browser's own first contentful paint (Streamlit's loading skeleton).
                    fcp = page.evaluate("() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null")
                    if fcp is not None:
                        run["browser_fcp_s"] = round(t_nav - t0 + fcp / 1000, 3)
                    if folder is None:
                        page.close()
                        results.append(run)
                        continue
                    page.wait_for_selector(".ca-code", timeout=120000)
                    run["first_suggestion_s"] = round(time.perf_counter() - t0, 3)
                    # A second visitor on the now warm server: navigation to first suggestion.
                    page2 = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t1 = time.perf_counter()
                    page2.goto(url + "/?coder=Bench%20Viewer&mode=triage", wait_until="commit")
                    page2.wait_for_selector("[data-testid='stSidebar'] h1", timeout=60000)
                    run["warm_first_paint_s"] = round(time.perf_counter() - t1, 3)
                    page2.wait_for_selector(".ca-code", timeout=60000)
                    run["warm_first_suggestion_s"] = round(time.perf_counter() - t1, 3)
                    page.close()
                    page2.close()
                results.append(run)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
    out = {"runs": results, "method": "browser (headless chromium via playwright)" if browser_reason is None else "health endpoint only"}
    for key in results[0]:
        out[f"{key}_median"] = round(statistics.median(r[key] for r in results), 3)
    if browser_reason:
        out["first_paint"] = None
        out["first_paint_reason"] = browser_reason
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=100_000)
    ap.add_argument("--actions", type=int, default=500)
    ap.add_argument("--prior", type=int, default=20_000, help="decisions already made by the second coder")
    ap.add_argument("--script-actions", type=int, default=100)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--project", type=Path, help="build the project here (kept) instead of a temporary folder; reused if present")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    tmp = None
    folder = args.project
    if folder is None:
        tmp = Path(tempfile.mkdtemp(prefix="coder-assist-bench-"))
        folder = tmp / "proj"
    result: dict = {"benchmark": "review_queue"}
    try:
        built = folder / "project.db"
        t = time.perf_counter()
        if not built.exists():
            review_synth.build(folder, args.segments).close()
        with Project.open(folder) as p:  # also migrates an older database
            build_s = time.perf_counter() - t
            counts = review.project_summary(p)
            result.update({
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
                "project": {**counts, "build_s": round(build_s, 1)},
            })
            review.drop_caches()
            result["action_fresh_coder"] = action_loop(p, "Fresh Coder", args.actions, seed=1)
            add_prior_decisions(p, "Busy Coder", args.prior)
            review.drop_caches()
            busy = action_loop(p, "Busy Coder", args.actions, seed=2)
            busy["prior_decisions"] = args.prior
            result["action_coder_with_prior_decisions"] = busy
            result["action_filter_attribute"] = action_loop(p, "Filter Coder", 200, filters={"attributes": {"sector": "NHS"}}, seed=3)
            one = p.conn.execute("SELECT name FROM transcripts ORDER BY id DESC LIMIT 1").fetchone()[0]
            result["action_filter_transcript"] = action_loop(p, "Filter Coder", 100, filters={"transcript": one}, seed=4)
            result["action_uncertain_order"] = action_loop(p, "Uncertain Coder", 200, order="uncertain", seed=5)
        result["script_run_accept"] = script_loop(folder, "Script Coder", args.script_actions)
        result["cold_start"] = cold_start(folder, args.cold_runs)
        with tempfile.TemporaryDirectory() as d:
            trivial = Path(d) / "trivial_app.py"
            trivial.write_text(_TRIVIAL_APP, encoding="utf-8")
            base = cold_start(None, args.cold_runs, trivial)
            base["what"] = "a one-element Streamlit app (sidebar title), same method: Streamlit's own floor on this machine"
            result["cold_start_baseline_trivial_app"] = base
        result["targets"] = {
            "action_p95_ms": 150,
            "first_paint_s": 3,
            "action_p95_met": all(result[k]["all"]["p95_ms"] < 150 for k in result if k.startswith("action_")),
            "first_paint_met": (result["cold_start"].get("first_paint_s_median") or 1e9) < 3,
        }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    emit(result, args.out)


if __name__ == "__main__":
    main()
