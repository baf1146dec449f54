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

import numpy as np
import pandas as pd
import pytest

from coder_assist.app import review
from coder_assist.store.project import Project
from tests.unit.app.test_review import make_project

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CODER_ASSIST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CODER = "Robin Test"
SEARCH = "[class*='st-key-review_other_search_'] input"  # the code search of "Different code..."


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
    yield from _serve(project_dir, tmp_path)


def _serve(project_dir: Path, tmp_path: Path, port: int | None = None):
    _requirements()
    port = port or _free_port()
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
            page.goto(server + "/review?mode=triage")  # the one-suggestion view (Passage is the default)
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
            expect(page.locator(SEARCH)).to_be_focused(timeout=10000)
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


# --------------------------------------------------------------------------- issue 11: every action records what it says


@pytest.fixture(scope="module")
def demo_like_base(tmp_path_factory) -> Path:
    from tests.integration.review_driver import build_project

    return build_project(tmp_path_factory.mktemp("browser-model"))


@pytest.fixture
def demo_like_server(demo_like_base, tmp_path):
    dest = tmp_path / "proj"
    shutil.copytree(demo_like_base, dest)
    for url in _serve(dest, tmp_path):
        yield url, dest


class _Browser:
    """One tab in chromium on the review page, with the waits a step needs."""

    def __init__(self, page, url: str, project_dir: Path, coder: str):
        self.page, self.url, self.project_dir, self.coder = page, url, project_dir, coder

    def open(self) -> None:
        from playwright.sync_api import expect

        self.page.goto(self.url + "/review?mode=triage")  # the one-suggestion view (Passage is the default)
        box = self.page.locator(".st-key-coder_input input")
        box.wait_for(timeout=30000)
        box.fill(self.coder)
        box.press("Enter")
        expect(self.page.get_by_text(f"Coding as {self.coder}")).to_be_visible(timeout=20000)
        self.ready()

    def ready(self) -> None:
        from playwright.sync_api import expect

        _idle(self.page)
        expect(self.page.locator(".st-key-btn_accept button").first).to_be_enabled(timeout=20000)

    def shows(self, sid: int | None) -> None:
        from playwright.sync_api import expect

        if sid is None:
            expect(self.page.locator(".ca-card")).to_have_count(0, timeout=20000)
        else:
            expect(self.page.locator(".ca-card").first).to_have_attribute("data-suggestion", str(sid), timeout=20000)

    def key(self, k: str) -> None:
        self.page.locator("h1").first.click()  # focus on the page, not in a text box
        self.page.keyboard.press(k)

    def click(self, key: str) -> None:
        self.page.locator(f".st-key-{key} button").first.click()

    def other(self, query: str, by_mouse: bool) -> None:
        """D (or a click on "Different code..."), type, then Enter (or a click on the first match)."""
        from playwright.sync_api import expect

        if by_mouse:
            self.click("btn_other")
            self.page.locator(SEARCH).click(timeout=10000)
        else:
            self.key("d")
            expect(self.page.locator(SEARCH)).to_be_focused(timeout=10000)
        self.page.keyboard.type(query, delay=30)
        if by_mouse:
            marker = self.page.locator("[data-stale='false'] .ca-other-q").first
            expect(marker).to_have_attribute("data-q", " ".join(query.lower().split()), timeout=10000)
            self.page.locator(f".st-key-{marker.get_attribute('data-pick')} button").first.click()
        else:
            self.page.keyboard.press("Enter")

    def settle(self, n_rows: int) -> pd.DataFrame:
        """The log once the step is done: at least ``n_rows`` rows, the app idle, and no row
        arriving late (the bug of issue 11 wrote its extra rows in the same rerun)."""
        log = _wait_for(self.project_dir, n_rows)
        _idle(self.page)
        self.page.wait_for_timeout(400)
        _idle(self.page)
        return _decisions(self.project_dir)


def test_different_code_then_accept_in_a_real_browser(demo_like_server, tmp_path):
    """Issue 11, item 1, as seen: D + type + Enter, then A, then a click on Accept, then U."""
    from playwright.sync_api import sync_playwright

    from tests.integration.review_driver import Model, Row

    url, project_dir = demo_like_server
    model = Model(project_dir, coder=CODER)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab = _Browser(page, url, project_dir, CODER)
            tab.open()
            first = model.head()
            tab.shows(int(first["suggestion_id"]))
            with Project.open(project_dir) as p:
                cands = [c for c in review.leaf_codes(p) if c[0] != first["code_id"]]
            chosen = review.search_codes(cands, "value")[0]
            assert chosen[1].endswith("> Co-production as a value")

            tab.other("value", by_mouse=False)
            tab.settle(2)
            model.check("other", model.expect("other", first, code_id=chosen[0]), first)
            page.screenshot(path=str(tmp_path / "after-different-code.png"), full_page=True)

            second = model.head()
            tab.shows(int(second["suggestion_id"]))
            tab.key("a")
            tab.settle(3)
            model.check("accept", model.expect("accept", second), second)
            assert page.get_by_text("already decided in another tab").count() == 0

            third = model.head()
            tab.shows(int(third["suggestion_id"]))
            tab.click("btn_accept")
            log = tab.settle(4)
            model.check("accept", model.expect("accept", third), third)
            assert [(a, c, None if pd.isna(s) else int(s)) for a, c, s in zip(log["action"], log["code_id"], log["suggestion_id"])] == [
                ("reject", first["code_id"], int(first["suggestion_id"])),
                ("accept", chosen[0], review.suggestion_for_pair(Project.open(project_dir), int(first["segment_id"]), chosen[0])),
                ("accept", second["code_id"], int(second["suggestion_id"])),
                ("accept", third["code_id"], int(third["suggestion_id"])),
            ]

            tab.shows(int(model.head()["suggestion_id"]))
            tab.key("u")
            log = tab.settle(5)
            model.check("undo", [Row(int(third["segment_id"]), str(third["code_id"]), "undo", None, int(log.iloc[3]["id"]))], None)
            tab.shows(int(third["suggestion_id"]))
        finally:
            browser.close()


def test_random_review_sequence_in_a_real_browser(demo_like_server, tmp_path):
    """A shorter random sequence than the AppTest ones, with real keys and clicks (A/R/S/U/D
    keys, button clicks, the mouse in the code search, reloads, queue order, another page and
    back), checked against the same reference model after every step."""
    from playwright.sync_api import sync_playwright

    from tests.integration.review_driver import Model

    url, project_dir = demo_like_server
    model = Model(project_dir, coder=CODER)
    rng = np.random.default_rng(7)
    kinds = ["accept", "reject", "skip", "undo", "other", "reload", "order", "page"]
    weights = np.array([5, 3, 2, 3, 3, 1, 2, 1], dtype=float)
    labels = dict(review.ORDERS)
    steps = 20
    done: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab = _Browser(page, url, project_dir, CODER)
            tab.open()
            for n in range(steps):
                shown = model.head()
                tab.shows(None if shown is None else int(shown["suggestion_id"]))
                step = str(rng.choice(kinds, p=weights / weights.sum()))
                if shown is None and step in ("accept", "reject", "skip", "other"):
                    step = "undo"
                mouse = bool(rng.random() < 0.4)
                expected = []
                if step in ("accept", "reject", "skip"):
                    expected = model.expect(step, shown)
                    tab.click(f"btn_{step}") if mouse else tab.key(step[0])
                elif step == "undo":
                    expected = model.expect(step, shown)
                    tab.click("btn_undo") if mouse and model.actions else tab.key("u")
                elif step == "other":
                    with Project.open(project_dir) as p:
                        cands = [c for c in review.leaf_codes(p) if c[0] != shown["code_id"]]
                    leaf = cands[int(rng.integers(len(cands)))][1].split(" > ")[-1]
                    query = str(rng.choice([w for w in leaf.split() if len(w) > 3] or [leaf]))
                    expected = model.expect(step, shown, code_id=review.search_codes(cands, query)[0][0])
                    tab.other(query, by_mouse=mouse)
                elif step == "reload":
                    page.reload()
                    tab.ready()
                    model.order, model.filters, model.pin = "likely", {}, None
                elif step == "order":
                    order = str(rng.choice([o for o in review.ORDERS if o != model.order]))
                    page.locator(".st-key-review_order").get_by_text(labels[order]).click()
                    model.order = order
                elif step == "page":
                    page.get_by_role("link", name="Transcripts").first.click()
                    page.get_by_role("heading", name="Transcripts").first.wait_for(timeout=20000)
                    _idle(page)
                    page.get_by_role("link", name="Review").first.click()
                    tab.ready()
                    model.order, model.filters = "likely", {}
                tab.settle(model.seen + len(expected))
                model.check(step, expected, shown)
                done.append(step + (" (mouse)" if mouse and step in ("accept", "reject", "skip", "undo", "other") else ""))
            page.screenshot(path=str(tmp_path / "after-random-sequence.png"), full_page=True)
        finally:
            browser.close()
    print(f"{steps} steps in chromium: {done}")
    assert {"accept", "other", "undo", "order"} <= {d.split()[0] for d in done}


def test_transcripts_page_scrolls_to_the_passage_picked(demo_like_server, tmp_path):
    """Issue 11, item 5: picking a passage brings it into the reading pane, down and up again;
    at 1400 px the text column is wide enough to read and no button label is cut."""
    from playwright.sync_api import expect, sync_playwright

    url, project_dir = demo_like_server
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + f"/transcripts?coder={CODER.replace(' ', '+')}")
            expect(page.get_by_role("heading", name="Transcripts").first).to_be_visible(timeout=30000)
            _idle(page)
            with Project.open(project_dir) as p:
                tid = int(p.transcripts().iloc[0]["id"])
                segs = review.transcript_segments(p, tid)
            # The reading pane is the reading view's frame (a component: it reports text
            # selections as offsets), scrolled inside.
            pane = page.locator("iframe[title*='span_select']")
            doc = pane.content_frame
            for n in (5, min(30, len(segs)), 5, 12):
                seg_id = int(segs.iloc[n - 1]["id"])
                page.locator(".st-key-tr_segment input").click()
                page.keyboard.type(f"{n} · ")
                page.get_by_role("option").first.click()
                _idle(page)
                page.wait_for_timeout(800)
                el, box = doc.locator(f"#seg-{seg_id}").bounding_box(), pane.bounding_box()
                assert el is not None and box is not None
                assert box["y"] <= el["y"] and el["y"] < box["y"] + box["height"] - 40, f"passage {n} is out of view: {el} in {box}"
                assert doc.locator(f"#seg-{seg_id}.ca-sel").count() == 1
            text = doc.locator(f"#seg-{seg_id} > div").nth(1).bounding_box()
            assert text["width"] > 400, f"the text column is {text['width']:.0f} px wide"
            # No cut labels: every button's text fits its button.
            cut = page.evaluate("""() => [...document.querySelectorAll('.stMain button .stMarkdownEllipsis')]
                .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""")
            assert not cut, f"cut button labels: {cut}"
            page.screenshot(path=str(tmp_path / "transcripts.png"))
        finally:
            browser.close()
