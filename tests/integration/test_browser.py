"""End to end in a real browser: `streamlit run` on a free localhost port, driven by headless
Debian chromium through Python playwright (never `playwright install`: the system chromium is
used). A small project is built here with suggestions inserted directly (no model), so the
test is quick.

The coder enters a name, accepts three suggestions and rejects one with the keyboard, uses
"Different code..." once (with the keyboard too), reloads the page, and the database must hold exactly those
decisions, under that name. A screenshot of the review page is saved under the test's tmp
folder, and copied to $CODER_ASSIST_ARTIFACTS when that is set.

Skipped, with the reason, where chromium or playwright is missing (``.ci/run`` installs
chromium, so CI runs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from coder_assist.app import review
from coder_assist.store.project import Project
from tests.unit.test_review import make_project

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CODER_ASSIST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CODER = "Robin Test"


def _requirements() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser test skipped: Python playwright is not installed (pip install -e '.[test]')")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"browser test skipped: no chromium at {CHROMIUM} (Debian: apt-get install -y chromium; .ci/run does this)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def project_dir(tmp_path) -> Path:
    p = make_project(tmp_path / "build")
    segs = p.segments()
    codes = ["barriers/money", "barriers/time", "enablers/listening"]
    rows = []
    conf = 0.95
    for i in range(len(segs)):
        for code in codes[: 2 if i % 2 else 1]:
            rows.append({"segment_id": int(segs.iloc[i]["id"]), "code_id": code, "rank": 1, "confidence": round(conf, 3),
                         "similarity": None, "evidence": f"An example of {code}", "evidence_source": "illustrative",
                         "evidence_similarity": 0.5})
            conf -= 0.07
    mv = p.add_model_version("test", "none")
    p.add_suggestions(mv, pd.DataFrame(rows))
    assert len(rows) >= 7
    p.close()
    return tmp_path / "build" / "proj"


@pytest.fixture
def server(project_dir, tmp_path):
    _requirements()
    port = _free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
         "--", "--project", str(project_dir)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"streamlit did not start:\n{(tmp_path / 'streamlit.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _idle(page, timeout_s: float = 20) -> None:
    """Wait until the app has finished its run (Streamlit's running indicator is gone)."""
    page.wait_for_timeout(150)
    deadline = time.monotonic() + timeout_s
    while page.query_selector("[data-testid='stStatusWidget']") is not None:
        if time.monotonic() > deadline:
            raise AssertionError("the app kept running")
        page.wait_for_timeout(100)


def _decisions(project_dir: Path) -> pd.DataFrame:
    with Project.open(project_dir) as p:
        return p.decisions()


def _wait_for(project_dir: Path, n: int, timeout_s: float = 20) -> pd.DataFrame:
    deadline = time.monotonic() + timeout_s
    while True:
        log = _decisions(project_dir)
        if len(log) >= n:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} decisions in the database, found {len(log)}")
        time.sleep(0.1)


def _card_code(page) -> str:
    return page.locator(".ca-code").first.inner_text()


def test_review_in_a_real_browser(server, project_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with Project.open(project_dir) as p:
        queue = review.review_queue(p, CODER)
    expected = [int(s) for s in queue["suggestion_id"][:5]]
    leaf = lambda path: path.split(" > ")[-1]  # noqa: E731
    paths = {int(s): leaf(c) for s, c in zip(queue["suggestion_id"], queue["code_path"])}

    shot = tmp_path / "review-page.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server + "/")
            # The coder names themself once, in the sidebar.
            box = page.locator(".st-key-coder_input input")
            box.wait_for(timeout=30000)
            box.fill(CODER)
            box.press("Enter")
            expect(page.get_by_text(f"Coding as {CODER}")).to_be_visible(timeout=20000)
            _idle(page)
            expect(page.locator(".st-key-btn_accept button")).to_be_enabled(timeout=20000)

            # Three accepts and one reject, with the keyboard only.
            for n, key in enumerate(["a", "a", "a", "r"], start=1):
                expect(page.locator(".ca-code").first).to_have_text(paths[expected[n - 1]], timeout=20000)
                page.locator("h1").first.click()  # focus on the page, not in a text box
                page.keyboard.press(key)
                _wait_for(project_dir, n)
                _idle(page)

            # "Different code..." on the fifth suggestion, keyboard only: D opens it with the
            # cursor in the code search; type, and Enter picks the code (recorded at once).
            expect(page.locator(".ca-code").first).to_have_text(paths[expected[4]], timeout=20000)
            page.locator("h1").first.click()
            page.keyboard.press("d")
            expect(page.locator(".st-key-review_other_code input")).to_be_focused(timeout=10000)
            page.keyboard.type("Listening")
            page.keyboard.press("Enter")
            _wait_for(project_dir, 6)
            _idle(page)

            # Reload: the decisions are on disk, the name is kept, the queue moves on.
            page.reload()
            expect(page.get_by_text(f"Coding as {CODER}")).to_be_visible(timeout=20000)
            _idle(page)
            expect(page.locator(".st-key-btn_accept button")).to_be_enabled(timeout=20000)
            expect(page.get_by_text("5 of", exact=False).first).to_be_visible()
            page.screenshot(path=str(shot), full_page=True)
            with Project.open(project_dir) as p:
                nxt = review.next_suggestion(p, CODER)
            assert nxt is not None and _card_code(page) == leaf(nxt["code_path"])
        finally:
            browser.close()

    artifacts = os.environ.get("CODER_ASSIST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)

    log = _decisions(project_dir)
    assert len(log) == 6, log[["action", "code_id", "suggestion_id"]]
    assert set(log["coder"]) == {CODER}
    assert list(log["action"]) == ["accept", "accept", "accept", "reject", "reject", "accept"]
    assert [int(s) for s in log["suggestion_id"][:5]] == expected
    other = log.iloc[5]
    assert other["code_id"] == "enablers/listening" and int(other["segment_id"]) == int(log.iloc[4]["segment_id"])
    assert "different code" in str(other["note"])
    assert log["undoes"].isna().all()
