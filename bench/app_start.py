"""Time to the first suggestion in the review app: from the `make run` command on a cold
server, and for a new visitor on a running one. Prints JSON (and writes it with --out):

    nice -n 19 .venv/bin/python bench/app_start.py --out bench/results/app_start.json
    nice -n 19 .venv/bin/python bench/app_start.py --quick

A copy of the demo project (built once, before timing) is served with the command `make run`
runs (`streamlit run app.py ... -- --project DIR`). Headless Chromium is already open (a user's
browser is); the clock starts when the server command starts, Chromium asks for the page as
soon as the server answers its health check, and the clock stops when the first suggestion
card (`.ca-code`, triage) or the passage's codes with their Confirm button (passage review,
the default) are visible. "New visitor": a fresh browser context (no cookies, a new
Streamlit session) on the running server, from the request to the card. Targets (issue 14):
cold <= 6 s, new visitor <= 1.5 s. Side by side, the same visit to a two-line Streamlit app that
draws one card: what any Streamlit page costs a new visitor here, the floor under the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
CODER = "Bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_project(folder: Path) -> None:
    from coder_assist.app.pipeline import build_demo_project

    build_demo_project(folder, progress=False).close()


def first_card(page, url: str, timeout_s: float = 300) -> float:
    """Seconds from the request to the first visible suggestion card. A visitor without a coder
    name is asked for one first: the name is typed at once, as a returning user's browser would
    fill it; that wait is part of the figure."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    # Triage draws a suggestion card; passage review (the default mode) its ticked codes and the
    # Confirm button under them.
    card = page.locator(".ca-code, .st-key-passage_confirm button").first
    name_box = page.locator(".st-key-coder_input input")
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        if card.is_visible():
            return time.perf_counter() - t0
        if name_box.is_visible() and not name_box.input_value():
            name_box.fill(CODER)
            name_box.press("Enter")
        page.wait_for_timeout(25)
    raise SystemExit(f"no suggestion card at {url} after {timeout_s}s")


def one_cold_start(project: Path, port: int, browser, log_path: Path, visitors: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [str(ROOT / ".venv" / "bin" / "streamlit"), "run", "app.py", "--server.address", "127.0.0.1", "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false", "--", "--project", str(project)]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None:
                    raise SystemExit(f"streamlit exited:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.05)
            t_health = time.perf_counter() - t0
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            t_req = time.perf_counter() - t0
            card_s = first_card(page, url + "/")
            cold = t_req + card_s
            ctx.close()
            visitors_s = []
            for _ in range(visitors):
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                visitors_s.append(round(first_card(ctx.new_page(), url + "/"), 2))
                ctx.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {"cold_first_suggestion_s": round(cold, 2), "server_health_s": round(t_health, 2),
            "new_visitor_s": visitors_s, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


EMPTY_APP = """import streamlit as st
st.markdown('<div class="ca-code">first card</div>', unsafe_allow_html=True)
"""


def empty_app_visitors(tmp: Path, browser, visitors: int) -> list[float]:
    """What Streamlit itself costs a new visitor: a two-line app that draws one `.ca-code` card,
    served and visited exactly as the real app is. The floor under the real app's figure."""
    app = tmp / "empty_app.py"
    app.write_text(EMPTY_APP)
    cmd = [str(ROOT / ".venv" / "bin" / "streamlit"), "run", str(app), "--server.address", "127.0.0.1", "--server.port", str(port := free_port()),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        out = []
        for _ in range(visitors + 1):  # the first warms the server, as the real app's cold visit does
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            out.append(round(first_card(ctx.new_page(), url + "/"), 2))
            ctx.close()
        return out[1:]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--visitors", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 cold start, 2 visitors.")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.quick:
        args.runs, args.visitors = 1, 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="app-start-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("CODER_ASSIST_CACHE_DIR", str(tmp / "cache"))
        build_project(tmp / "built")
        runs = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                empty = empty_app_visitors(tmp, browser, args.visitors * args.runs)
                print(json.dumps({"empty_streamlit_app_new_visitor_s": empty}), file=sys.stderr, flush=True)
                for r in range(args.runs):
                    project = tmp / f"project-{r}"
                    shutil.copytree(tmp / "built", project)  # the same project each time, never a used one
                    runs.append(one_cold_start(project, free_port(), browser, tmp / f"streamlit-{r}.log", args.visitors))
                    print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
            finally:
                browser.close()
    cold = statistics.median(r["cold_first_suggestion_s"] for r in runs)
    visitor = statistics.median(v for r in runs for v in r["new_visitor_s"])
    result = {
        "benchmark": "app_start",
        "command": "nice -n 19 .venv/bin/python bench/app_start.py" + (" --quick" if args.quick else ""),
        "machine": {"cpus": os.cpu_count(), "load_average_1m_5m_15m_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "shared machine: other jobs ran at the same time; see each run's load_before/load_after"},
        "runs": runs,
        "cold_first_suggestion_s_median": round(cold, 2),
        "new_visitor_s_median": round(visitor, 2),
        "empty_streamlit_app_new_visitor_s": empty,
        "empty_streamlit_app_new_visitor_s_median": round(statistics.median(empty), 2),
        "new_visitor_over_empty_app": round(visitor / statistics.median(empty), 2),
        "targets": {"cold_first_suggestion_s": 6.0, "new_visitor_s": 1.5},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
