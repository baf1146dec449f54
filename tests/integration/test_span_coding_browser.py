"""Hand coding of any span on the Transcripts page, in a real browser (issue 13).

`streamlit run` on a port of 8661-8669, headless Debian chromium through Python playwright. The
transcript has CRLF line ends, accents, a dash and an emoji (two UTF-16 units, one Python
character), so an offset counted in the rendered HTML or in JS string units would be off.

A coder selects a phrase with the mouse and codes it; selects text across two passages (a
selection set from page JS, announced with the reading view's event) and codes it with two
codes; undoes the last of those; fits a pending suggestion to its last sentence and accepts it.
After each step the database must hold exactly those offsets, and an export to .qdpx must hold
PlainTextSelections at exactly those startPosition / endPosition.
"""

from __future__ import annotations

import os
import socket
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from lxml import etree

from coder_assist.app import export
from coder_assist.core.coding import ORIGIN_HAND, ORIGIN_SUGGESTION
from coder_assist.core.segment import Segmenter
from coder_assist.core.template import parse_template
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.store.project import Project
from tests.integration.test_browser import CHROMIUM, CHROMIUM_ARGS, _idle, _serve

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(8661, 8670)
CODER = "Robin Test"
MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"
TEMPLATE = {"name": "Spans", "codes": [
    {"name": "Barriers", "children": [{"name": "Money", "description": "Funding is short."},
                                      {"name": "Time", "description": "Waiting, delays."}]},
    {"name": "Enablers", "children": [{"name": "Listening", "description": "Being heard."}]},
]}
TEXT = ("Interviewer: How did the year go?\r\n\r\n"
        "P1: The café budget was cut — again 😀. We waited for months. Nobody from the council called.\r\n\r\n"
        "Interviewer: And the staff?\r\n\r\n"
        "P1: Staff left één by één.\r\nMorale fell. Then the new director listened.\r\n")
PHRASE = "budget was cut — again 😀"
REFI_NS = "urn:QDA-XML:project:1.0"


def _port() -> int:
    for port in PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("browser test skipped: ports 8661-8669 are all in use")


@pytest.fixture
def project_dir(tmp_path) -> Path:
    folder = tmp_path / "proj"
    p = Project.create(folder, parse_template(TEMPLATE, source="test"))
    t = Transcript("café interview", TEXT, parse_speaker_text(TEXT, "café interview"))
    p.add_transcripts([t], {t.name: Segmenter().segments(t)})
    segs = p.segments().sort_values("start")
    assert len(segs) == 2, segs  # each answer is one passage
    assert p.transcript_text(int(segs.iloc[0]["transcript_id"])) == TEXT  # CRLF kept as stored
    mv = p.add_model_version("test", "none")
    p.add_suggestions(mv, pd.DataFrame([{"segment_id": int(segs.iloc[1]["id"]), "code_id": LISTEN, "rank": 1, "confidence": 0.9,
                                         "similarity": 0.9, "evidence": "e", "evidence_source": "illustrative",
                                         "evidence_similarity": 0.5}]))
    p.close()
    return folder


@pytest.fixture
def server(project_dir, tmp_path):
    yield from _serve(project_dir, tmp_path, port=_port())


# In the reading view's frame: the DOM boundary (text node, UTF-16 index) of a Python offset, and
# the on-screen box of the character at an offset. Written against the page as a user sees it.
_JS_POINT = """() => {
window.__point = function (pos) {
  for (const p of document.querySelectorAll('.ca-x')) {
    const a = Number(p.dataset.s), b = Number(p.dataset.e);
    if (pos < a || pos > b) continue;
    const t = p.firstChild; let i = 0, n = a;
    while (n < pos) { const c = t.data.charCodeAt(i); i += (c >= 0xD800 && c <= 0xDBFF) ? 2 : 1; n++; }
    return [t, i];
  }
  return null;
};
window.__charBox = function (pos) {
  const [t, i] = window.__point(pos);
  const c = t.data.charCodeAt(i), w = (c >= 0xD800 && c <= 0xDBFF) ? 2 : 1;
  const r = document.createRange(); r.setStart(t, i); r.setEnd(t, i + w);
  const b = r.getBoundingClientRect(); return {x: b.left, y: b.top, w: b.width, h: b.height};
};
}"""


def _codings(project_dir: Path) -> pd.DataFrame:
    with Project.open(project_dir) as p:
        return p.codings()


def _wait_codings(project_dir: Path, n: int, timeout_s: float = 20) -> pd.DataFrame:
    deadline = time.monotonic() + timeout_s
    while True:
        c = _codings(project_dir)
        if len(c) == n:
            return c
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} codings in the database, found {len(c)}:\n{c[['start', 'end', 'code_id', 'coder']]}")
        time.sleep(0.1)


def _qdpx_selections(project_dir: Path, out: Path) -> set[tuple[int, int, str]]:
    """(startPosition, endPosition, code name) of every coded PlainTextSelection in an export."""
    with Project.open(project_dir) as p:
        export.export(p, "qdpx", out)
    with zipfile.ZipFile(out) as z:
        root = etree.fromstring(z.read("project.qde"))
    names = {c.get("guid"): c.get("name") for c in root.iter(f"{{{REFI_NS}}}Code")}
    got = set()
    for sel in root.iter(f"{{{REFI_NS}}}PlainTextSelection"):
        for ref in sel.iter(f"{{{REFI_NS}}}CodeRef"):
            got.add((int(sel.get("startPosition")), int(sel.get("endPosition")), names[ref.get("targetGUID")]))
    return got


def _frame(page):
    """The reading view's frame, with the test's helpers loaded."""
    frame = page.locator("iframe[title*='span_select']").element_handle().content_frame()
    frame.wait_for_selector(".ca-x", state="attached")
    frame.evaluate(_JS_POINT)
    return frame


def _click(page, selector: str, timeout_s: float = 60) -> None:
    """Click the one element ``selector`` names, once the app has finished its run (while a run
    is in progress Streamlit can show the old copy of a widget beside the new one). 60 s: the
    first sentence fit loads the sentencizer in the server, slow on a loaded machine."""
    _idle(page, timeout_s)
    loc = page.locator(selector).locator("visible=true")
    deadline = time.monotonic() + timeout_s
    while loc.count() != 1:
        if time.monotonic() > deadline:
            html = page.evaluate(f"() => [...document.querySelectorAll({selector!r})].map(e => e.outerHTML.slice(0, 300))")
            raise AssertionError(f"{loc.count()} visible elements match {selector}: {html}")
        page.wait_for_timeout(100)
    loc.click()
    _idle(page, timeout_s)


def _pick_codes(page, names: list[str]) -> None:
    for name in names:
        page.locator("[class*='st-key-tr_span_codes_'] input").click()
        page.keyboard.type(name)
        page.get_by_role("option", name=name).first.click()
        _idle(page)
    page.keyboard.press("Escape")


def test_hand_coded_spans_reach_the_database_and_the_qdpx_at_their_exact_offsets(server, project_dir, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    phrase = (TEXT.index(PHRASE), TEXT.index(PHRASE) + len(PHRASE))
    across = (TEXT.index("for months"), TEXT.index("Staff left") + len("Staff left"))
    last = (TEXT.index("Then the new"), TEXT.index("listened.") + len("listened."))
    shots = Path(os.environ.get("CODER_ASSIST_ARTIFACTS", tmp_path))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server + f"/transcripts?coder={CODER.replace(' ', '+')}")
            expect(page.get_by_role("heading", name="Transcripts").first).to_be_visible(timeout=30000)
            _idle(page)
            iframe = page.locator("iframe[title*='span_select']")
            expect(iframe).to_be_visible(timeout=20000)
            expect(iframe.content_frame.locator(".ca-x").first).to_be_attached(timeout=20000)
            frame = _frame(page)
            # The reading view holds the stored text exactly (CR LF included), piece by piece.
            assert frame.evaluate("() => [...document.querySelectorAll('.ca-x')].every(p => p.dataset.s !== undefined)")
            pieces = frame.evaluate("() => [...document.querySelectorAll('.ca-x')].map(p => [Number(p.dataset.s), p.textContent])")
            assert all(TEXT[a:a + len(t)] == t for a, t in pieces) and any("\r\n" in t for _, t in pieces)

            # 1. A phrase selected with the mouse: from the left edge of its first character to
            # the right edge of its last (the emoji).
            box = iframe.bounding_box()
            first, end = frame.evaluate(f"window.__charBox({phrase[0]})"), frame.evaluate(f"window.__charBox({phrase[1] - 1})")
            page.mouse.move(box["x"] + first["x"] + 1, box["y"] + first["y"] + first["h"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + end["x"] + end["w"] / 2, box["y"] + end["y"] + end["h"] / 2, steps=8)
            page.mouse.move(box["x"] + end["x"] + end["w"] - 1, box["y"] + end["y"] + end["h"] / 2, steps=2)
            page.mouse.up()
            expect(page.locator(".st-key-tr_span_box")).to_be_visible(timeout=20000)
            assert frame.evaluate("window.__lastSpan") == {"start": phrase[0], "end": phrase[1]}
            expect(page.locator(".st-key-tr_span_box")).to_contain_text(f"characters {phrase[0]}–{phrase[1]}")
            _pick_codes(page, ["Barriers > Money"])
            _click(page, ".st-key-tr_code_span button")
            cod = _wait_codings(project_dir, 1)
            assert cod[["start", "end", "code_id", "coder", "origin"]].values.tolist() == [[phrase[0], phrase[1], MONEY, CODER, ORIGIN_HAND]]
            assert TEXT[phrase[0]:phrase[1]] == PHRASE
            assert (phrase[0], phrase[1], "Money") in _qdpx_selections(project_dir, tmp_path / "one.qdpx")

            # 2. Across the two passages, selected from page JS and announced with the view's
            # event (what a mouse-up does), coded with two codes at once.
            frame = _frame(page)
            frame.evaluate(f"""() => {{ const [a, i] = window.__point({across[0]}), [b, j] = window.__point({across[1]});
                const r = document.createRange(); r.setStart(a, i); r.setEnd(b, j);
                const s = window.getSelection(); s.removeAllRanges(); s.addRange(r);
                document.dispatchEvent(new Event('ca-select')); }}""")
            expect(page.locator(".st-key-tr_span_box")).to_contain_text(f"characters {across[0]}–{across[1]}", timeout=20000)
            _pick_codes(page, ["Barriers > Time", "Enablers > Listening"])
            _click(page, ".st-key-tr_code_span button")
            cod = _wait_codings(project_dir, 3)
            spans = {(int(r.start), int(r.end), r.code_id) for r in cod.itertuples()}
            assert spans == {(*phrase, MONEY), (*across, TIME), (*across, LISTEN)}
            segs_hit = set(cod.loc[cod["code_id"] == TIME, "segment_id"])
            assert len(segs_hit) == 1  # attached to one passage, though it covers parts of two
            sel = _qdpx_selections(project_dir, tmp_path / "two.qdpx")
            assert {(*phrase, "Money"), (*across, "Time"), (*across, "Listening")} <= sel

            # 3. Undo takes back the last code recorded, and only that.
            _click(page, ".st-key-tr_undo button")
            cod = _wait_codings(project_dir, 2)
            assert {(int(r.start), int(r.end), r.code_id) for r in cod.itertuples()} in (
                {(*phrase, MONEY), (*across, TIME)}, {(*phrase, MONEY), (*across, LISTEN)})

            # 4. A pending suggestion on passage 2, narrowed to its last sentence, then accepted.
            frame.locator(".ca-num").nth(1).click()
            _idle(page)
            page.get_by_text("Fit to sentences before accepting").first.click()
            # Each click moves the start one sentence on: to "Morale fell.", then to "Then the new".
            for start in (TEXT.index("Morale fell."), last[0]):
                _click(page, ".st-key-tr_fit_start_later_1 button")
                expect(page.get_by_text(f"(characters {start}–{last[1]})").first).to_be_visible(timeout=60000)
            cut = page.evaluate("""() => [...document.querySelectorAll('.stMain button .stMarkdownEllipsis')]
                .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)""")
            assert not cut, f"cut button labels: {cut}"
            _click(page, ".st-key-tr_acc_1 button")
            cod = _wait_codings(project_dir, 3)
            acc = cod[cod["origin"] == ORIGIN_SUGGESTION]
            assert acc[["start", "end", "coder"]].values.tolist() == [[last[0], last[1], CODER]]
            with Project.open(project_dir) as p:
                d = p.decisions().iloc[-1]
            assert (d["action"], int(d["span_start"]), int(d["span_end"])) == ("accept", *last) and pd.notna(d["suggestion_id"])
            assert (*last, "Listening") in _qdpx_selections(project_dir, tmp_path / "three.qdpx")
            _idle(page)
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "span_coding.png"), full_page=True)
        finally:
            browser.close()
