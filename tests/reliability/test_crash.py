"""Kill -9 at random points: while reviewing (between click and commit), retraining, merging
codes in the template, and pre-coding. After every kill the project opens, passes SQLite's
integrity check, holds every decision a worker acknowledged (an ack is written only after the
library call returned, i.e. what the user saw as done), shows nothing half-written, and the
interrupted work can be done again.

Kills per scenario: ``CODER_ASSIST_KILLS`` (default 6); seeds are fixed, so a failure replays.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path

import pytest

from coder_assist.app import edit, pipeline
from coder_assist.app import training as learn
from coder_assist.store.project import Project
from tests.reliability.workers import HashEncoder, read_acks

KILLS = int(os.environ.get("CODER_ASSIST_KILLS", "6"))
FAULTS = {"kills": 0, "acked_decisions_verified": 0}


def run_and_kill(zygote, mode: str, project: Path, seed: int, acks: Path, window: tuple[float, float]) -> None:
    """Start a worker, let it work for a random time after it is ready, SIGKILL it."""
    pid = zygote.fork(mode, project=str(project), coder=f"coder{seed % 2}", seed=seed, acks=str(acks))
    deadline = time.monotonic() + 120
    while not any(a["op"] == "ready" for a in read_acks(acks)[-1:] + read_acks(acks)):
        if time.monotonic() > deadline or Path(f"{acks}.err").exists():
            break
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(*window))
    code = zygote.kill(pid)
    err = Path(f"{acks}.err")
    assert not err.exists(), f"worker {mode} failed before the kill:\n{err.read_text()}"
    assert code == -9, f"worker {mode} exited with {code} before it was killed"
    FAULTS["kills"] += 1


def open_checked(folder: Path) -> Project:
    p = Project.open(folder)
    assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert p.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    return p


def check_decisions(p: Project, acks: list[dict], kills: int) -> None:
    """Every acknowledged decision is there as acknowledged; pairs are whole; nothing invented
    beyond the one decision a kill can catch between commit and ack."""
    log = p.decisions().set_index("id")
    acked: set[int] = set()
    for a in acks:
        if a["op"] == "decide" and a.get("id") is not None:
            row = log.loc[a["id"]]
            if "action" in a:
                assert (row["action"], int(row["suggestion_id"])) == (a["action"], a["sid"])
            acked.add(a["id"])
        elif a["op"] == "other":
            rid, aid = a["ids"]
            assert log.loc[rid, "action"] == "reject" and log.loc[aid, "action"] == "accept"
            assert f"replaces decision {rid}" in log.loc[aid, "note"]
            acked |= {rid, aid}
        elif a["op"] == "undo":
            undone = set(log.loc[log["action"] == "undo", "undoes"].dropna().astype(int))
            assert set(a["undone"]) <= undone
    FAULTS["acked_decisions_verified"] += len(acked)
    # "Different code" halves: the accept names its reject, which must exist, and undo takes
    # both or neither.
    undone = set(log.loc[log["action"] == "undo", "undoes"].dropna().astype(int))
    for did, note in log["note"].dropna().items():
        m = re.search(r"replaces decision (\d+)", note)
        if m:
            rid = int(m.group(1))
            assert rid in log.index and log.loc[rid, "action"] == "reject"
            assert (did in undone) == (rid in undone), f"half of a 'different code' pair undone: {rid}, {did}"
    real = set(log.index[log["action"] != "undo"])
    # A kill can land after a commit and before the ack ("Different code" commits two rows).
    assert len(real - acked) <= 2 * kills


def test_kill_during_review(zygote, project_dir, tmp_path):
    acks = tmp_path / "acks.jsonl"
    for k in range(KILLS):
        run_and_kill(zygote, "decisions", project_dir, 100 + k, acks, (0.05, 1.5))
        with open_checked(project_dir) as p:
            check_decisions(p, read_acks(acks), k + 1)
    assert sum(a["op"] in ("decide", "other") for a in read_acks(acks)) > 0


def _check_models(p: Project, acks: list[dict]) -> list[int]:
    versions = p.model_versions()
    learned = [int(v) for v in versions.loc[versions["kind"] == learn.LearnedScorer.version, "id"]]
    for a in acks:
        if a["op"] == "train":
            assert a["mv"] in learned
    for mv in learned:
        folder = p.folder / "models" / f"v{mv}"
        assert {"model.json", "weights.npz", "card.json", "card.txt"} <= {f.name for f in folder.iterdir()}, folder
        assert p.conn.execute("SELECT COUNT(*) FROM suggestions WHERE model_version_id = ?", (mv,)).fetchone()[0] > 0
    return learned


def test_kill_during_retrain(zygote, project_dir, tmp_path):
    acks = tmp_path / "acks.jsonl"
    for k in range(max(2, KILLS // 2)):
        run_and_kill(zygote, "retrain", project_dir, 200 + k, acks, (0.5, 6.0))
        with open_checked(project_dir) as p:
            check_decisions(p, read_acks(acks), k + 1)
            learned = _check_models(p, read_acks(acks))
            if learned:  # the newest complete version loads (np.load without pickle)
                learn.load_model_version(p, learned[-1], HashEncoder())
    # Resume: retraining after the kills works and gives a complete version.
    with open_checked(project_dir) as p:
        mv = learn.train_project(p, HashEncoder())
        assert mv in _check_models(p, [])
        learn.load_model_version(p, mv, HashEncoder())


def test_kill_during_template_merge(zygote, project_dir, tmp_path):
    acks = tmp_path / "acks.jsonl"
    for k in range(KILLS):
        run_and_kill(zygote, "merge", project_dir, 300 + k, acks, (0.05, 1.5))
        all_acks = read_acks(acks)
        with open_checked(project_dir) as p:
            log = p.decisions().set_index("id")
            target = next(a["target"] for a in all_acks if a["op"] == "ready")
            merged = {h["code"] for h in edit.history(p) if h["op"] == "merge"}
            for a in all_acks:
                if a["op"] == "decide":
                    assert log.loc[a["id"], "segment_id"] == a["seg"]
                    assert log.loc[a["id"], "code_id"] in (a["code"], target)
                if a["op"] == "merge":
                    assert a["src"] in merged
            # A merge is whole: the merged code is out of the template and holds no decision.
            tpl = p.template()
            for src in merged:
                assert src not in tpl.codes
                assert p.conn.execute("SELECT COUNT(*) FROM decisions WHERE code_id = ?", (src,)).fetchone()[0] == 0
            active = {r[0] for r in p.conn.execute("SELECT id FROM codes WHERE active = 1")}
            assert active == set(tpl.codes), "the codes table and the template disagree"
            FAULTS["acked_decisions_verified"] += sum(a["op"] == "decide" for a in all_acks)


def test_kill_during_precoding(zygote, project_dir, tmp_path):
    from coder_assist.ml.suggest import ExampleSimilarityScorer

    acks = tmp_path / "acks.jsonl"
    for k in range(max(2, KILLS // 2)):
        run_and_kill(zygote, "precode", project_dir, 400 + k, acks, (0.1, 4.0))
        with open_checked(project_dir) as p:
            _check_precode_versions(p, ExampleSimilarityScorer.version, read_acks(acks))
    with open_checked(project_dir) as p:  # the batch runs again to the end after the kills
        run = json.loads(p.meta("suggest_run") or "null")
        mv = pipeline.suggest_project(p, encoder=HashEncoder(), progress=False)
        if run is not None:
            assert mv == run["model_version"], "an interrupted batch was started over instead of resumed"
        assert p.latest_model_version() == mv
        _check_precode_versions(p, ExampleSimilarityScorer.version, [{"op": "precode", "mv": mv}])


def _check_precode_versions(p: Project, kind: str, acks: list[dict]) -> None:
    """The active model version is always complete; so is every finished one. The one
    unfinished run (if any) is recorded as such and is not what the queue shows."""
    run = json.loads(p.meta("suggest_run") or "null")
    running = run["model_version"] if run else None
    active = p.latest_model_version()
    assert active != running, "the queue would show a half-computed model version"
    done = set()
    for v in p.model_versions().itertuples():
        if v.kind != kind or v.id == running:
            continue
        n = p.conn.execute("SELECT COUNT(*) FROM suggestions WHERE model_version_id = ?", (v.id,)).fetchone()[0]
        assert json.loads(v.card).get("suggestions") == n, f"model version {v.id} is incomplete: {n} suggestions"
        done.add(v.id)
    assert {a["mv"] for a in acks if a["op"] == "precode"} <= done


def test_suggestions_fail_midway_then_resume(project_dir, monkeypatch):
    """Deterministic twin of the kill test: writing the suggestions fails (disk full) after
    the run started. The queue keeps the complete version; the next run finishes the job."""
    from coder_assist.ml.suggest import ExampleSimilarityScorer

    with Project.open(project_dir) as p:
        active = p.latest_model_version()
        real = Project.add_suggestions

        def boom(*a, **k):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Project, "add_suggestions", boom)
        with pytest.raises(Exception):
            pipeline.suggest_project(p, encoder=HashEncoder(), progress=False)
        assert p.latest_model_version() == active
        _check_precode_versions(p, ExampleSimilarityScorer.version, [])
        monkeypatch.setattr(Project, "add_suggestions", real)
        mv = pipeline.suggest_project(p, encoder=HashEncoder(), progress=False)
        assert p.latest_model_version() == mv != active
        _check_precode_versions(p, ExampleSimilarityScorer.version, [{"op": "precode", "mv": mv}])


def test_kill_during_batch_precode_to_csv(zygote, tmp_path):
    """``precode_to_csv`` killed again and again, each new run resuming from the checkpoint:
    the final CSV equals an uninterrupted run's, row for row."""
    import pandas as pd

    from tests.conftest import DEMO_DIR

    reference = tmp_path / "reference.csv"
    pipeline.precode_to_csv([DEMO_DIR], reference, encoder=HashEncoder(), threshold=0.0, chunk_segments=20, progress=False)
    acks = tmp_path / "acks.jsonl"
    out = tmp_path / "precode.csv"
    for k in range(max(2, KILLS // 2)):
        run_and_kill(zygote, "precode_csv", DEMO_DIR, 500 + k, acks, (0.3, 5.0))
        if out.exists():
            break
    assert not any(a["op"] == "done" for a in read_acks(acks)) or out.exists()
    pipeline.precode_to_csv([DEMO_DIR], out, encoder=HashEncoder(), threshold=0.0, chunk_segments=20, progress=False)
    got, want = pd.read_csv(out), pd.read_csv(reference)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
