"""Fixtures of the reliability suite: a small real project (the demo interviews, suggestions
from a stand-in encoder), fresh copies of it, and the zygote that forks killable workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_DIR, ROOT
from tests.reliability.workers import HashEncoder


@pytest.fixture(scope="session")
def base_project(tmp_path_factory) -> Path:
    from coder_assist.app.pipeline import import_files, init_project, suggest_project

    folder = tmp_path_factory.mktemp("rel-base") / "proj"
    with init_project(folder) as p:
        import_files(p, [DEMO_DIR])
        suggest_project(p, encoder=HashEncoder(), threshold=0.0, progress=False)
    return folder


@pytest.fixture
def project_dir(base_project, tmp_path) -> Path:
    """A private copy of the base project (closed, so project.db is complete on its own)."""
    dest = tmp_path / "proj"
    shutil.copytree(base_project, dest)
    return dest


class Zygote:
    def __init__(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.workers"], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]
        self.pids: set[int] = set()

    def _ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the worker zygote died")
        return json.loads(line)

    def fork(self, mode: str, **kw) -> int:
        pid = self._ask(op="fork", mode=mode, kw=kw)["pid"]
        self.pids.add(pid)
        return pid

    def kill(self, pid: int) -> int:
        """SIGKILL the worker; returns its exit code as the zygote saw it (-9 when killed)."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.wait(pid)

    def wait(self, pid: int) -> int:
        code = self._ask(op="wait", pid=pid)["exit"]
        self.pids.discard(pid)
        return code

    def close(self) -> None:
        for pid in list(self.pids):
            self.kill(pid)
        try:
            self._ask(op="exit")
        except (RuntimeError, BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def pytest_terminal_summary(terminalreporter):
    """The suite's own counts (docs/reliability.md quotes them)."""
    import importlib

    lines = []
    for mod, name in (("test_crash", "FAULTS"), ("test_faults", "FAULTS"), ("test_hostile_input", "TRIED"), ("test_concurrency", "STATS")):
        try:
            counts = getattr(importlib.import_module(f"tests.reliability.{mod}"), name)
        except ImportError:
            continue
        if any(counts.values()):
            lines.append(f"{mod}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if lines:
        terminalreporter.write_sep("-", "reliability counts")
        for line in lines:
            terminalreporter.write_line(line)
