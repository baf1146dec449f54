"""The app's side: upload limits on the Import page (count, per-file and total size, with
clear messages) and the sidebar's backup button (AppTest, no browser)."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from coder_assist.formats.transcripts import MAX_FILE_BYTES
from coder_assist.store.project import Project
from tests.conftest import ROOT
from ui import import_page

GOOD = ("ok.txt", b"Interviewer: Hello?\n\nP3: Hello, it went fine.\n")


def test_too_many_files_refused_with_the_limit(project_dir):
    with Project.open(project_dir) as p:
        files = [(f"t{i}.txt", GOOD[1]) for i in range(import_page.MAX_UPLOAD_FILES + 1)]
        check = import_page.check_files(p, files, None, "")
    assert not check["ok"]
    assert f"limit is {import_page.MAX_UPLOAD_FILES}" in check["extra_problem"]


def test_oversized_file_marked_and_import_blocked(project_dir):
    with Project.open(project_dir) as p:
        big = ("huge.txt", b"P3: " + b"x" * MAX_FILE_BYTES)
        check = import_page.check_files(p, [GOOD, big], None, "")
    assert not check["ok"]
    problems = {r["file"]: r["problem"] for r in check["rows"]}
    assert problems["ok.txt"] is None
    assert "limit is 20 MB" in problems["huge.txt"]


def test_total_upload_limit(project_dir, monkeypatch):
    monkeypatch.setattr(import_page, "MAX_UPLOAD_TOTAL_BYTES", len(GOOD[1]) + 1)
    with Project.open(project_dir) as p:
        check = import_page.check_files(p, [GOOD, ("b.txt", GOOD[1])], None, "")
    assert not check["ok"] and "in all" in check["extra_problem"]


def test_backup_button(project_dir, monkeypatch):
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(project_dir))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception, at.exception
    at.sidebar.button(key="backup_project").click().run()
    assert not at.exception, at.exception
    backups = list((project_dir / "backups").iterdir())
    assert len(backups) == 1
    with Project.open(backups[0]) as b, Project.open(project_dir) as p:
        assert b.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert b.counts() == p.counts()
    assert any("Backup written" in s.value for s in at.sidebar.success)
