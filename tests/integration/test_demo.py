"""The demo build shared by ``coder-assist demo`` and the app's first start
(:mod:`coder_assist.app.demo`): only into an absent or empty folder, built aside and renamed
into place, so a stopped build leaves nothing half made."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from coder_assist import load_template
from coder_assist.app import demo
from coder_assist.cli import main
from coder_assist.core.errors import InputError
from coder_assist.store.project import Project


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def test_builds_once_then_rebuilds_with_force(tmp_path, encoder):
    folder = tmp_path / "demo"
    steps = []
    assert demo.ensure_demo_project(folder, load_encoder=lambda: encoder, on_step=steps.append, progress=False)
    assert steps == ["Loading the embedding model…", "Reading, segmenting and scoring the invented demo interviews…"]
    with Project.open(folder) as p:
        counts = p.counts()
        segment = int(p.segments().iloc[0]["id"])
        code = p.template().leaves()[0].id
        p.record_decision(segment, code, "accept", "Ann")
    assert counts["transcripts"] > 0 and counts["segments"] > 0 and counts["suggestions"] > 0
    assert _siblings(folder) == []

    # Built already: nothing is loaded, the decision stands.
    assert not demo.ensure_demo_project(folder, load_encoder=lambda: pytest.fail("loaded the model"), progress=False)
    with Project.open(folder) as p:
        assert p.counts()["decisions"] == 1

    assert demo.ensure_demo_project(folder, load_encoder=lambda: encoder, progress=False, force=True)
    with Project.open(folder) as p:
        assert p.counts() == counts  # a new demo: the decision went with the old one
    assert _siblings(folder) == []


def test_empty_folder_gets_the_demo_and_a_stopped_build_leaves_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "empty"
    folder.mkdir()

    def stopped(target, **kwargs):
        Project.create(target, load_template()).close()
        raise KeyboardInterrupt  # Ctrl+C half way

    monkeypatch.setattr(demo, "build_demo_project", stopped)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_project(folder, load_encoder=lambda: None, progress=False)
    assert folder.is_dir() and not any(folder.iterdir())  # still empty: no half-made project to open
    assert _siblings(folder) == []


def test_folder_with_other_files_is_left_alone(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "interview.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match="not empty"):
        demo.ensure_demo_project(folder, load_encoder=lambda: pytest.fail("loaded the model"), progress=False, force=True)
    assert [p.name for p in folder.iterdir()] == ["interview.txt"]

    result = CliRunner().invoke(main, ["demo", str(folder), "--force"])
    assert result.exit_code == 2
    assert f"{folder}: has no project.db, and it is not empty" in result.output
    assert (folder / "interview.txt").read_text(encoding="utf-8") == "mine"
    assert _siblings(folder) == []
