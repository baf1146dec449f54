"""Never lose a decision: several sessions (threads, and separate processes) each with its own
connection, deciding at the same time, two of them as the same coder (two browser tabs).
Afterwards the log holds every decision each session was told was recorded, nothing twice,
and the queue and the counts agree with the log."""

from __future__ import annotations

import multiprocessing as mp
import queue
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from coder_assist.app import review
from coder_assist.store.project import Project
from tests.unit.app.test_review import make_project

N_SUGGESTIONS = 40


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conc")
    p = make_project(folder)
    segs = p.segments()
    codes = ["barriers/money", "barriers/time", "enablers/listening"]
    rng = random.Random(1)
    rows = {(int(segs.iloc[i % len(segs)]["id"]), codes[(i // len(segs)) % 3]) for i in range(N_SUGGESTIONS)}
    mv = p.add_model_version("test", "none")
    p.add_suggestions(mv, pd.DataFrame([
        {"segment_id": s, "code_id": c, "rank": 1, "confidence": rng.random(), "similarity": None, "evidence": "e",
         "evidence_source": "x", "evidence_similarity": None} for s, c in sorted(rows)
    ]))
    p.close()
    return folder / "proj"


def session(folder: str, coder: str, seed: int, steps: int, start: threading.Barrier | None = None) -> list[tuple[str, int]]:
    """One browser session: its own connection; takes the head of its queue and decides it,
    sometimes undoes. Returns what it was told: ("decided", id) / ("undone", id)."""
    rng = random.Random(seed)
    told = []
    with Project.open(folder) as project:
        if start is not None:
            start.wait()
        for _ in range(steps):
            if rng.random() < 0.12:
                told += [("undone", d.id) for d in review.undo_last(project, coder)]
                continue
            row = review.next_suggestion(project, coder, rng.choice(list(review.ORDERS)))
            if row is None:
                break
            action = rng.choice(["accept", "accept", "reject", "skip"])
            did = review.decide_once(project, row["suggestion_id"], action, coder)
            if did is not None:
                told.append(("decided", did))
    return told


def _process_main(folder: str, coder: str, seed: int, steps: int, out) -> None:
    try:
        out.put(("ok", session(folder, coder, seed, steps)))
    except BaseException:  # report it: the parent must not wait for a result that never comes
        import traceback

        out.put(("error", traceback.format_exc()))


def check_log(folder: Path, told: list[tuple[str, int]]) -> None:
    with Project.open(folder) as p:
        log = p.decisions()
        decided = {i for kind, i in told if kind == "decided"}
        undone = {i for kind, i in told if kind == "undone"}
        # Every decision a session was told about is in the log, and nothing else is.
        assert set(log.loc[log["action"] != "undo", "id"]) == decided
        # Every undo a session was told about happened exactly once.
        undo_rows = log[log["action"] == "undo"]
        assert set(undo_rows["undoes"].astype(int)) == undone and undo_rows["undoes"].is_unique
        # Nothing counted twice: per coder and pair, at most one accept/reject not undone.
        live = log[(log["action"].isin(["accept", "reject"])) & ~log["id"].isin(undone)]
        dup = Counter(zip(live["coder"], live["segment_id"], live["code_id"]))
        assert max(dup.values(), default=1) == 1, [k for k, n in dup.items() if n > 1]
        # The page's counts and queue agree with the log.
        for coder in set(log["coder"]):
            q = review.review_queue(p, coder)
            prog = review.progress(p, coder)
            assert prog["queued"] == len(q) and prog["decided"] == len(p.suggestions()) - len(q)
            nxt = review.next_suggestion(p, coder)
            assert (nxt is None) == q.empty and (nxt is None or nxt["suggestion_id"] == int(q.iloc[0]["suggestion_id"]))


def test_threads_two_coders_two_tabs_each(base_db, tmp_path):
    import shutil

    folder = tmp_path / "proj"
    shutil.copytree(base_db, folder)
    sessions = [("Ann", 1), ("Ann", 2), ("Bob", 3), ("Bob", 4)]
    barrier = threading.Barrier(len(sessions))
    results: list[list] = [None] * len(sessions)  # type: ignore[list-item]
    errors = []

    def run(i: int, coder: str, seed: int) -> None:
        try:
            results[i] = session(str(folder), coder, seed, 60, barrier)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c, s)) for i, (c, s) in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    told = [x for r in results for x in r]
    assert sum(k == "decided" for k, _ in told) > 40  # they really worked
    check_log(folder, told)


def test_processes_deciding_at_once(base_db, tmp_path, monkeypatch):
    """Two server processes (say, two `streamlit run` on one project): one coder in both,
    racing for the same queue head, plus another coder."""
    import shutil
    import sys
    import types

    folder = tmp_path / "proj"
    shutil.copytree(base_db, folder)
    # A spawned child re-runs the parent's __main__; after an AppTest in this session that is
    # app.py, which would start building a demo project. The workers need nothing from it.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(str(folder), coder, seed, 50, out))
             for coder, seed in (("Ann", 11), ("Ann", 12), ("Cy", 13))]
    for p in procs:
        p.start()
    told, errors, deadline = [], [], time.monotonic() + 300
    while len(told) + len(errors) < len(procs):
        try:
            kind, payload = out.get(timeout=1)
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            assert not dead, f"a session process died without a report (exit codes {[p.exitcode for p in procs]})"
            assert time.monotonic() < deadline, "session processes took more than 5 minutes"
            continue
        (told.append if kind == "ok" else errors.append)(payload)
    for p in procs:
        p.join(timeout=60)
    assert not errors, "\n".join(errors)
    told = [x for r in told for x in r]
    check_log(folder, told)
