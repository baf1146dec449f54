"""Disk full and read-only projects: a clear ProjectError naming the database file, nothing
half-written, and the project works again once the fault is gone.

Disk full is injected with SQLite's ``max_page_count`` (the database cannot grow, which is
what a full disk looks like to SQLite) and, for files outside SQLite, with an ENOSPC raised
from the write call. Read-only: ``chmod`` where it binds, else (tests running as root) the
database opened with ``mode=ro``, which is what SQLite does for a file it may not write.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest

from coder_assist.app import training as learn
from coder_assist.app import review
from coder_assist.core.errors import ProjectError
from coder_assist.app.pipeline import import_files
from coder_assist.store.project import DB_NAME, Project
from tests.conftest import DEMO_DIR
from tests.reliability.workers import HashEncoder

FAULTS = {"disk_full": 0, "read_only": 0}


def snapshot(p: Project) -> list[str]:
    return list(p.conn.iterdump())


def fill_up(p: Project) -> None:
    """Make the database 'full': it may not grow by a single page."""
    pages = p.conn.execute("PRAGMA page_count").fetchone()[0]
    p.conn.execute(f"PRAGMA max_page_count = {pages}")


def test_disk_full_decisions_fail_cleanly_and_recover(project_dir, tmp_path):
    with Project.open(project_dir) as p:
        sugg = p.suggestions().head(200)
        first = review.decide(p, int(sugg.iloc[0]["suggestion_id"]), "accept", "ann")
        fill_up(p)
        failures = 0
        # Fill the last free bytes with ever smaller decisions until even a bare one fails.
        for size in (2000, 500, 100, 20, 0):
            for i in range(1, 200):
                try:
                    p.record_decision(int(sugg.iloc[i]["segment_id"]), sugg.iloc[i]["code_id"], "accept", "ann", note="x" * size or None)
                except ProjectError as exc:
                    assert str(project_dir / DB_NAME) in str(exc) and "full" in str(exc), exc
                    assert not p.conn.in_transaction
                    failures += 1
                    break
        assert failures == 5, "the database never filled up"
        FAULTS["disk_full"] += failures
        before = snapshot(p)
        new_file = tmp_path / "late_interview.txt"
        new_file.write_text("Interviewer: How was it?\n\nP9: Fine, mostly. The money ran out in May.\n", encoding="utf-8")
        # Every kind of write either still fits in a page with room left, or fails the same
        # clean way and changes nothing (a big import must fail: next test).
        for write in (
            lambda: review.decide(p, int(sugg.iloc[-1]["suggestion_id"]), "reject", "bob"),
            lambda: review.choose_other_code(p, int(sugg.iloc[-2]["suggestion_id"]), p.template().leaves()[-1].id, "bob"),
            lambda: review.undo_last(p, "ann"),
            lambda: import_files(p, [new_file]),
        ):
            try:
                write()
            except ProjectError as exc:
                assert "full" in str(exc) and str(project_dir / DB_NAME) in str(exc), exc
                FAULTS["disk_full"] += 1
                assert not p.conn.in_transaction
                assert snapshot(p) == before
            before = snapshot(p)
        p.conn.execute("PRAGMA max_page_count = 1073741823")
        again = review.decide(p, int(sugg.iloc[-1]["suggestion_id"]), "reject", "bob")
        assert again > first
    with Project.open(project_dir) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {first, again} <= set(p.decisions()["id"])


def test_disk_full_during_import_imports_nothing(base_project, tmp_path):
    from coder_assist.app.pipeline import init_project

    with init_project(tmp_path / "fresh") as p:
        before = snapshot(p)
        fill_up(p)
        with pytest.raises(ProjectError, match="full"):
            import_files(p, [DEMO_DIR])
        FAULTS["disk_full"] += 1
        assert snapshot(p) == before


def test_disk_full_while_saving_a_model(project_dir, monkeypatch):
    """ENOSPC while the model files are written: no model version, no model folder, and a
    clear error; the next retrain works."""
    with Project.open(project_dir) as p:
        for sid in p.suggestions()["suggestion_id"].head(40):
            review.decide(p, int(sid), "accept" if sid % 3 else "reject", "ann")
        versions = p.model_versions()["id"].tolist()

        def no_space(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device", str(a[0]) if a else None)

        # Where every array of the model's files is written (its weights and its queue).
        monkeypatch.setattr(np.lib.format, "write_array", no_space)
        with pytest.raises(ProjectError) as info:
            learn.train_project(p, HashEncoder())
        FAULTS["disk_full"] += 1
        assert "No space left" in str(info.value) and str(project_dir / "models") in str(info.value)
        assert p.model_versions()["id"].tolist() == versions
        models = project_dir / "models"
        assert not models.exists() or not [f for f in models.iterdir()], list(models.iterdir())
        monkeypatch.undo()
        mv = learn.train_project(p, HashEncoder())
        assert (models / f"v{mv}" / "weights.npz").exists()


def _can_block_writes(folder: Path) -> bool:
    probe = folder / ".probe"
    folder.chmod(0o555)
    try:
        probe.write_text("x")
    except PermissionError:
        return True
    else:
        probe.unlink()
        return False
    finally:
        folder.chmod(0o755)


def test_read_only_project(project_dir, monkeypatch):
    with Project.open(project_dir) as p:
        n = len(p.decisions())
        sid = int(p.suggestions().iloc[0]["suggestion_id"])
    db = project_dir / DB_NAME
    if _can_block_writes(project_dir):
        db.chmod(0o444)
        project_dir.chmod(0o555)
    else:
        # Running as root: permissions do not stop writes, so open the file the way SQLite
        # opens one it may not write.
        real = Project._connect

        def read_only(path):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            return conn

        monkeypatch.setattr(Project, "_connect", staticmethod(read_only))
    try:
        with Project.open(project_dir) as p:
            assert len(p.decisions()) == n  # reading still works
            with pytest.raises(ProjectError) as info:
                review.decide(p, sid, "accept", "ann")
            FAULTS["read_only"] += 1
            assert str(db) in str(info.value) and "read-only" in str(info.value)
            with pytest.raises(ProjectError, match="read-only"):
                review.undo_last(p, "ann") or review.decide(p, sid, "reject", "ann")
            FAULTS["read_only"] += 1
            assert len(p.decisions()) == n
    finally:
        project_dir.chmod(0o755)
        db.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    monkeypatch.undo()
    with Project.open(project_dir) as p:
        assert p.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        review.decide(p, sid, "accept", "ann")
        assert len(p.decisions()) == n + 1
