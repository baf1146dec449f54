"""Several coders writing at once (separate processes, each with its own connection; two of
them the same coder, as two browser tabs), with backups taken meanwhile.

Checked afterwards: no worker saw an error ("database is locked" included), the log holds
exactly the decisions the workers were told were recorded (none lost, none extra), no pair was
decided twice by one coder, and every backup is a consistent prefix of the final log.

The short run (``CODER_ASSIST_CONCURRENCY_SECONDS``, default 12 s) is part of the normal
suite; ``pytest -m soak tests/reliability`` runs the same for ``CODER_ASSIST_SOAK_SECONDS``
(default 300 s).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from coder_assist.store.project import Project
from tests.reliability.test_crash import check_decisions, open_checked
from tests.reliability.workers import read_acks

SHORT = float(os.environ.get("CODER_ASSIST_CONCURRENCY_SECONDS", "12"))
SOAK = float(os.environ.get("CODER_ASSIST_SOAK_SECONDS", "300"))
WRITERS = [("ann", 11), ("ann", 12), ("bob", 13)]
STATS = {"decisions_verified": 0, "backups_verified": 0}


def run_writers(zygote, project: Path, tmp: Path, seconds: float) -> tuple[list[dict], list[Path]]:
    acks = [tmp / f"w{i}.jsonl" for i in range(len(WRITERS))]
    pids = [zygote.fork("decisions", project=str(project), coder=c, seed=s, acks=str(a), seconds=seconds)
            for (c, s), a in zip(WRITERS, acks)]
    backups = []
    deadline = time.monotonic() + seconds
    with Project.open(project) as p:
        while time.monotonic() < deadline - 0.5:
            time.sleep(min(1.0, seconds / 6))
            backups.append(p.backup(tmp / f"backup-{len(backups)}"))
    # The command line too, while the writers still run.
    from coder_assist.cli import main

    res = CliRunner().invoke(main, ["backup", str(project), str(tmp / "backup-cli")])
    assert res.exit_code == 0, res.output
    backups.append(tmp / "backup-cli")
    for pid, a in zip(pids, acks):
        code = zygote.wait(pid)
        err = Path(f"{a}.err")
        assert not err.exists(), err.read_text()
        assert code == 0
    return [x for a in acks for x in read_acks(a)], backups


def verify(project: Path, acks: list[dict], backups: list[Path]) -> None:
    with open_checked(project) as p:
        check_decisions(p, acks, kills=0)  # no kill: nothing beyond the acknowledged
        log = p.decisions()
    decided = log[log["action"].isin(["accept", "reject"])]
    undone = set(log["undoes"].dropna().astype(int))
    # Plain Accept/Reject clicks (no note): "Different code..." may later accept a code the
    # coder rejected before, which is a change of mind, not a duplicate.
    live = decided[~decided["id"].isin(undone) & decided["note"].isna()]
    twice = live.dropna(subset=["suggestion_id"]).groupby(["coder", "suggestion_id"]).size()
    assert (twice <= 1).all(), f"decided twice by one coder: {twice[twice > 1].head()}"
    STATS["decisions_verified"] += len(log)
    for b in backups:
        with open_checked(b) as copy:
            part = copy.decisions()
        assert len(part) <= len(log)
        pd.testing.assert_frame_equal(part, log.iloc[: len(part)].reset_index(drop=True), check_dtype=False)
        STATS["backups_verified"] += 1


def test_concurrent_coders_and_backups(zygote, project_dir, tmp_path):
    acks, backups = run_writers(zygote, project_dir, tmp_path, SHORT)
    assert sum(a["op"] in ("decide", "other", "undo") for a in acks) > 20
    verify(project_dir, acks, backups)


@pytest.mark.soak
def test_concurrent_coders_soak(zygote, project_dir, tmp_path):
    acks, backups = run_writers(zygote, project_dir, tmp_path, SOAK)
    verify(project_dir, acks, backups)
