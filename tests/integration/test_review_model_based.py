"""The review page against a reference model of the decision log (issue 11).

Random sequences of what a coder does on the review page (accept, reject, skip, undo,
"Different code..." with a typed search, reloads, queue order and filter changes, a visit to
another page), driven through AppTest with the browser's habit of re-sending widget values
(:class:`tests.integration.review_driver.Tab`). After every step, the page must show the
suggestion the model says is next, and the log must hold exactly the rows that step must have
written: which suggestion, which code, which action, nothing more; the decisions in force must
be the model's own replay. Fixed seeds and a bounded number of steps.

The first test is the scenario of issue 11 item 1: "Different code..." followed by Accept (the
shortcut A and a click are the same button here; test_browser.py presses the key).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from coder_assist.app import review
from coder_assist.store.project import Project
from tests.integration.review_driver import CODER, OTHER_PAGE, REVIEW_PAGE, Model, Row, Tab, build_project, copy_project

SEEDS = [1, 2, 3, 4, 5, 6]
STEPS = 60


@pytest.fixture(scope="module")
def base_project(tmp_path_factory):
    return build_project(tmp_path_factory.mktemp("model-based"))


@pytest.fixture
def project_dir(base_project, tmp_path, monkeypatch):
    dest = copy_project(base_project, tmp_path / "proj")
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(dest))
    return dest


def _log(project_dir):
    with Project.open(project_dir) as p:
        return p.decisions()


def test_different_code_then_accept_records_what_was_shown(project_dir):
    tab = Tab()
    model = Model(project_dir)
    first = model.head()
    assert tab.shown() == int(first["suggestion_id"])

    # D, type "value", the first match: "Co-production as a value" leads the word matches.
    tab.click("btn_other")
    box = tab.at.text_input(key=f"review_other_search_{int(first['suggestion_id'])}")
    tab.set(box, "value")
    assert tab.first_match().endswith("> Co-production as a value")
    with Project.open(project_dir) as p:
        chosen = next(c for c, path in review.leaf_codes(p) if path == tab.first_match())
    tab.click(f"review_other_pick_{int(first['suggestion_id'])}_0")
    model.check("other", model.expect("other", first, code_id=chosen), first)

    second = model.head()
    assert tab.shown() == int(second["suggestion_id"]) != int(first["suggestion_id"])
    tab.click("btn_accept")
    model.check("accept", model.expect("accept", second), second)
    assert not tab.at.info, [i.value for i in tab.at.info]  # no "already decided in another tab"

    third = model.head()
    assert tab.shown() == int(third["suggestion_id"])
    tab.click("btn_accept")
    model.check("accept", model.expect("accept", third), third)

    log = _log(project_dir)
    assert [(a, c) for a, c in zip(log["action"], log["code_id"])] == [
        ("reject", first["code_id"]), ("accept", chosen), ("accept", second["code_id"]), ("accept", third["code_id"])]

    # U takes back exactly the last action, then the one before; the toast names the chosen code.
    tab.click("btn_undo")
    model.check("undo", [Row(int(third["segment_id"]), str(third["code_id"]), "undo", None, int(log.iloc[3]["id"]))], None)
    assert tab.shown() == int(third["suggestion_id"])
    tab.click("btn_undo")
    tab.click("btn_undo")
    log = _log(project_dir)
    assert list(log["action"]) == ["reject", "accept", "accept", "accept", "undo", "undo", "undo", "undo"]
    assert [int(u) for u in log["undoes"][4:]] == [int(i) for i in log["id"][[3, 2, 1, 0]]]
    toasts = [t.value for t in tab.at.toast]
    assert any("Undone: different code (Co-production as a value)" in t for t in toasts), toasts
    assert tab.shown() == int(first["suggestion_id"])


def _random_filter(rng, opts: dict) -> tuple[str, object]:
    kind = str(rng.choice(["code_id", "transcript", "speaker"]))
    values = {"code_id": [c for c, _ in opts["codes"]], "transcript": opts["transcripts"], "speaker": opts["speakers"]}[kind]
    return kind, (None if rng.random() < 0.3 else values[int(rng.integers(len(values)))])


_FILTER_KEYS = {"code_id": "review_filter_code", "transcript": "review_filter_transcript", "speaker": "review_filter_speaker"}


def run_sequence(project_dir, seed: int, steps: int) -> dict[str, int]:
    """One random sequence; returns how often each step ran."""
    rng = np.random.default_rng(seed)
    tab = Tab()
    model = Model(project_dir)
    with Project.open(project_dir) as p:
        opts = review.filter_options(p)
        leaves = review.leaf_codes(p)
    counts: dict[str, int] = {}
    steps_kinds = ["accept", "reject", "skip", "undo", "other", "reload", "order", "filter", "page"]
    weights = np.array([5, 3, 3, 3, 3, 1, 1, 1.5, 1], dtype=float)
    for n in range(steps):
        shown = model.head()
        assert tab.shown() == (None if shown is None else int(shown["suggestion_id"])), f"seed {seed} step {n}: page shows another suggestion"
        step = str(rng.choice(steps_kinds, p=weights / weights.sum()))
        if shown is None and step in ("accept", "reject", "skip", "other"):
            step = str(rng.choice(["undo", "filter"]))  # nothing on screen (filters, or all decided)
        if step in ("accept", "reject", "skip"):
            expected = model.expect(step, shown)  # before the step: a repeated skip depends on the log before it
            tab.click(f"btn_{step}")
        elif step == "undo":
            expected = model.expect(step, shown)
            # Undo is offered exactly when the model has something to take back.
            assert tab.at.button(key="btn_undo").disabled == (not model.actions), f"seed {seed} step {n}"
            if model.actions:
                tab.click("btn_undo")
        elif step == "other":
            code_id, path = leaves[int(rng.integers(len(leaves)))]
            if code_id == shown["code_id"]:
                code_id, path = next(c for c in leaves if c[0] != shown["code_id"])
            # Type a word of the code's name (or all of it when that word matches too many codes).
            words = [w for w in path.split(" > ")[-1].split() if len(w) > 3] or [path.split(" > ")[-1]]
            query = str(rng.choice(words))
            with Project.open(project_dir) as p:
                cands = [c for c in review.leaf_codes(p) if c[0] != shown["code_id"]]
            if path not in [pp for _, pp in review.search_codes(cands, query)[: review_page_matches()]]:
                query = path.split(" > ")[-1]
            expected = model.expect(step, shown, code_id=code_id)
            tab.other(path, query)
        elif step == "reload":
            tab = Tab()
            model.order, model.filters, model.pin = "likely", {}, None
        elif step == "order":
            order = str(rng.choice([o for o in review.ORDERS if o != model.order]))
            tab.set(tab.at.radio(key="review_order"), order)
            model.order = order
        elif step == "filter":
            kind, value = _random_filter(rng, opts)
            if value is None and tab.has_button("review_clear_filters"):
                tab.click("review_clear_filters")
                model.filters = {}
            else:
                tab.set(tab.at.selectbox(key=_FILTER_KEYS[kind]), value)
                model.filters = {k: v for k, v in {**model.filters, kind: value}.items() if v is not None}
        elif step == "page":
            tab.switch(OTHER_PAGE)
            tab.switch(REVIEW_PAGE)
            # Widget state lives with the page's widgets: order and filters start afresh.
            model.order, model.filters = "likely", {}
        if step in ("reload", "order", "filter", "page"):
            expected = []
        model.check(step, expected, shown)
        counts[step] = counts.get(step, 0) + 1
    return counts


def review_page_matches() -> int:
    from ui import review as page

    return page.OTHER_MATCHES


@pytest.mark.parametrize("seed", SEEDS)
def test_random_review_sequences_match_the_model(project_dir, seed):
    t0 = time.monotonic()
    counts = run_sequence(project_dir, seed, STEPS)
    print(f"seed {seed}: {STEPS} steps in {time.monotonic() - t0:.1f} s: {counts}")
    assert sum(counts.values()) == STEPS
    assert {"accept", "other", "undo"} <= set(counts)
