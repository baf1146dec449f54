"""Passage review (the Review page's default mode) end to end in a real browser: `streamlit run`
on a free localhost port (test_browser's _serve), headless Debian chromium through Python
playwright (never `playwright install`), on three demo interviews under the default template
(48 leaf codes; review_driver.build_project: made-up suggestions, no model loaded).

Keyboard only: the coder unticks a pre-ticked code with its number, adds a code with D + search
+ Enter, confirms with Enter; the database must then hold exactly one unit: an accept of every
ticked code and a reject of every other leaf code. U takes the whole unit back (the database
again), and the passage comes back with the codes it had ticked; the next passage is the one
the queue says. Screenshots: /tmp/passage_*.png.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from coder_assist.app import review
from coder_assist.store.project import ORIGIN_PASSAGE, Project
from tests.integration.test_browser import CHROMIUM, CHROMIUM_ARGS, _decisions, _idle, _serve

CODER = "Pat Passage"
SEARCH = "[class*='st-key-passage_search_'] input"
SHOTS = Path("/tmp")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from tests.integration.review_driver import build_project

    return build_project(tmp_path_factory.mktemp("passage-base"))


@pytest.fixture
def served(base, tmp_path):
    dest = tmp_path / "proj"
    shutil.copytree(base, dest)
    for url in _serve(dest, tmp_path):
        yield url, dest


def _wait_rows(project_dir: Path, n: int, timeout_s: float = 30) -> pd.DataFrame:
    deadline = time.monotonic() + timeout_s
    while True:
        log = _decisions(project_dir)
        if len(log) >= n:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} log rows, found {len(log)}")
        time.sleep(0.1)


def _box(page, seg: int, code_id: str):
    from ui.review import box_key

    # Not the disabled copy: under load the render from before the coder's name (boxes
    # disabled) can still be on the page beside the new one (CI: two inputs for one key).
    return page.locator(f".st-key-{box_key(seg, code_id)} input:not([disabled])")


def _shown_segment(page) -> int:
    return int(page.locator("[data-stale='false'] .ca-pass-keys, .ca-pass-keys").first.get_attribute("data-seg"))


def _key(page, k: str) -> None:
    page.locator("h1").first.click()  # focus on the page, not in a box
    page.keyboard.press(k)


def test_confirm_a_passage_by_keyboard_then_undo_it(served):
    from playwright.sync_api import expect, sync_playwright

    url, project_dir = served
    with Project.open(project_dir) as p:
        first = review.next_passage(p, CODER)
        leaves = [c for c, _ in review.leaf_codes(p)]
        listed = {c.code_id for c in first.candidates}
        pre = [c.code_id for c in first.candidates if c.ticked]
        # A code that is not listed, found by its name (an exact name match is the first match).
        extra_id, extra_path = next((c, path) for c, path in review.leaf_codes(p) if c not in listed and len(path.split(" > ")[-1]) < 30)
        query = extra_path.split(" > ")[-1]
        assert review.search_codes(review.leaf_codes(p), query)[0][0] == extra_id, "the search's first match is the code added"
    assert pre, "the first passage has a likely code to untick"
    seg = first.segment_id
    untick = pre[0]
    want = (set(pre) - {untick}) | {extra_id}

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/")
            box = page.locator(".st-key-coder_input input")
            box.wait_for(timeout=30000)
            box.fill(CODER)
            box.press("Enter")
            expect(page.get_by_text(f"Coding as {CODER}")).to_be_visible(timeout=20000)
            _idle(page)
            expect(page.locator(".st-key-passage_confirm button").first).to_be_enabled(timeout=20000)
            assert _shown_segment(page) == seg
            for c in pre:
                expect(_box(page, seg, c)).to_be_checked(timeout=10000)
            page.screenshot(path=str(SHOTS / "passage_1_shown.png"), full_page=True)

            # 1: untick the first likely code (it is number 1).
            _key(page, "1")
            expect(_box(page, seg, untick)).not_to_be_checked(timeout=10000)
            _idle(page)

            # D: the search opens with the cursor in it; type, Enter ticks the first match.
            _key(page, "d")
            expect(page.locator(SEARCH)).to_be_focused(timeout=10000)
            page.keyboard.type(query, delay=30)
            page.keyboard.press("Enter")
            expect(_box(page, seg, extra_id)).to_be_checked(timeout=10000)
            expect(page.locator(SEARCH)).to_have_count(0, timeout=10000)
            _idle(page)
            page.screenshot(path=str(SHOTS / "passage_2_ticked.png"), full_page=True)
            assert _decisions(project_dir).empty, "nothing is recorded before the passage is confirmed"

            # Enter confirms: one unit, a complete label.
            _key(page, "Enter")
            log = _wait_rows(project_dir, len(leaves))
            _idle(page)
            page.wait_for_timeout(400)
            log = _decisions(project_dir)
            assert len(log) == len(leaves), "exactly one row per leaf code, nothing more"
            assert set(log["coder"]) == {CODER} and set(log["segment_id"]) == {seg}
            assert log["unit_id"].nunique() == 1 and int(log["unit_id"].iloc[0]) == int(log["id"].min())
            assert set(log["origin"]) == {ORIGIN_PASSAGE} and log["undoes"].isna().all()
            assert set(log.loc[log["action"] == "accept", "code_id"]) == want
            assert set(log.loc[log["action"] == "reject", "code_id"]) == set(leaves) - want
            assert sorted(log["code_id"]) == sorted(leaves)

            # The next passage is the one the queue says.
            with Project.open(project_dir) as p:
                nxt = review.next_passage(p, CODER)
            assert nxt is not None and nxt.segment_id != seg
            expect(page.locator(f"[data-stale='false'] .ca-pass-keys[data-seg='{nxt.segment_id}']")).to_have_count(1, timeout=20000)
            page.screenshot(path=str(SHOTS / "passage_3_next.png"), full_page=True)

            # U undoes the whole passage; it comes back with the codes it had ticked.
            _key(page, "u")
            log = _wait_rows(project_dir, 2 * len(leaves))
            _idle(page)
            page.wait_for_timeout(400)
            log = _decisions(project_dir)
            assert len(log) == 2 * len(leaves)
            undo = log[log["action"] == "undo"]
            unit_ids = set(log.loc[log["unit_id"].notna(), "id"].astype(int))
            assert set(undo["undoes"].astype(int)) == unit_ids and len(unit_ids) == len(leaves)
            with Project.open(project_dir) as p:
                assert p.current_decisions(CODER).empty
            expect(page.locator(f"[data-stale='false'] .ca-pass-keys[data-seg='{seg}']")).to_have_count(1, timeout=20000)
            for c in want:
                expect(_box(page, seg, c)).to_be_checked(timeout=10000)
            expect(_box(page, seg, untick)).not_to_be_checked()
            page.screenshot(path=str(SHOTS / "passage_4_undone.png"), full_page=True)
        finally:
            browser.close()
