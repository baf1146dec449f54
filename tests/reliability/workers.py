"""Worker processes for the crash and concurrency tests.

``python -m tests.reliability.workers`` starts a *zygote*: it imports the library once, then
forks a fresh worker process per command it reads on stdin (one JSON object a line) and
answers with the worker's pid. The test kills that pid with SIGKILL: a real process dying at a
random point, without paying the library's import time for every kill. Workers use the library
API the app uses (store, review, edit, learn, pipeline) and append one JSON line to their ack
file *after* each call returns: an ack is what a user was shown as done.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
import traceback
import zlib
from pathlib import Path

import numpy as np

from coder_assist.ml.encoder import Encoder


class HashEncoder(Encoder):
    """A deterministic bag-of-words stand-in for the sentence encoder: the crash tests are
    about the write path, and a real model would spend their time budget on loading torch."""

    model_id = "test-hash-encoder"
    dim = 64

    def encode(self, texts, progress=None):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        if progress:
            progress(len(texts))
        return out


class Acks:
    def __init__(self, path: str):
        self.f = open(path, "a", buffering=1, encoding="utf-8")  # line-buffered: one write() per ack

    def __call__(self, **rec) -> None:
        self.f.write(json.dumps(rec) + "\n")


def read_acks(path: str | Path) -> list[dict]:
    """Complete ack lines (a kill can cut the last line short: that ack was never shown)."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


# --------------------------------------------------------------------------- worker modes


def _decide_step(project, coder: str, rng: random.Random, ack: Acks, i: int) -> None:
    from coder_assist.app import review

    r = rng.random()
    if r < 0.12:
        undone = review.undo_last(project, coder)
        ack(op="undo", undone=[d.id for d in undone])
        return
    row = review.next_suggestion(project, coder, "likely")
    if row is None:
        ack(op="empty")
        time.sleep(0.01)
        return
    sid = int(row["suggestion_id"])
    if r < 0.25:
        leaves = [c for c in project.template().leaves() if c.id != row["code_id"]]
        try:
            rid, aid = review.choose_other_code(project, sid, rng.choice(leaves).id, coder)
        except Exception as exc:  # already decided in another process: refused, nothing written
            from coder_assist.core.errors import CoderAssistError

            if not isinstance(exc, CoderAssistError):
                raise
            ack(op="refused", sid=sid)
            return
        ack(op="other", sid=sid, ids=[rid, aid])
        return
    action = rng.choice(["accept", "accept", "reject", "skip"])
    did = review.decide_once(project, sid, action, coder)
    ack(op="decide", sid=sid, id=did, action=action)


def mode_decisions(project: str, coder: str, seed: int, acks: str, seconds: float = 1e9) -> None:
    from coder_assist.store.project import Project

    rng, ack = random.Random(seed), Acks(acks)
    deadline = time.monotonic() + seconds
    with Project.open(project) as p:
        ack(op="ready")
        i = 0
        while time.monotonic() < deadline:
            _decide_step(p, coder, rng, ack, i)
            i += 1


def mode_retrain(project: str, coder: str, seed: int, acks: str) -> None:
    from coder_assist.app import training as learn
    from coder_assist.store.project import Project

    rng, ack = random.Random(seed), Acks(acks)
    enc = HashEncoder()
    with Project.open(project) as p:
        ack(op="ready")
        i = 0
        while True:
            for _ in range(5):
                _decide_step(p, coder, rng, ack, i)
                i += 1
            mv = learn.train_project(p, enc)
            ack(op="train", mv=mv)


def mode_merge(project: str, coder: str, seed: int, acks: str) -> None:
    from coder_assist.app import edit
    from coder_assist.store.project import Project

    rng, ack = random.Random(seed), Acks(acks)
    with Project.open(project) as p:
        target = p.template().leaves()[0]
        segs = [int(s) for s in p.segments()["id"]]
        ack(op="ready", target=target.id)
        i = 0
        while True:
            cid = edit.apply_add_code(p, f"Temporary {seed} {i}", parent_id=target.parent_id, description="to be merged", coder=coder)
            ack(op="add", code=cid)
            for seg in rng.sample(segs, 3):
                did = p.record_decision(seg, cid, "accept", coder)
                ack(op="decide", id=did, seg=seg, code=cid)
            n = edit.apply_merge(p, cid, target.id, coder=coder)
            ack(op="merge", src=cid, into=target.id, n=n)
            i += 1


def mode_precode(project: str, coder: str, seed: int, acks: str) -> None:
    from coder_assist.app import pipeline
    from coder_assist.store.project import Project

    ack = Acks(acks)
    enc = HashEncoder()
    with Project.open(project) as p:
        ack(op="ready")
        while True:
            mv = pipeline.suggest_project(p, encoder=enc, progress=False)
            ack(op="precode", mv=mv)


def mode_precode_csv(project: str, coder: str, seed: int, acks: str) -> None:
    """Batch pre-coding of transcript files to a CSV (``project`` is the input folder here),
    resumed by each new worker from the previous one's checkpoint."""
    from coder_assist.app import pipeline

    ack = Acks(acks)
    ack(op="ready")
    out = Path(acks).with_name("precode.csv")
    pipeline.precode_to_csv([project], out, encoder=HashEncoder(), threshold=0.0, chunk_segments=20, progress=False)
    ack(op="done")
    time.sleep(3600)  # wait for the kill, as the other modes do


MODES = {"precode_csv": mode_precode_csv, "decisions": mode_decisions, "retrain": mode_retrain, "merge": mode_merge, "precode": mode_precode}


# --------------------------------------------------------------------------- zygote


def _child(cmd: dict) -> None:
    code = 0
    try:
        MODES[cmd["mode"]](**cmd["kw"])
    except BaseException:
        code = 3
        with open(cmd["kw"]["acks"] + ".err", "a", encoding="utf-8") as f:
            f.write(traceback.format_exc())
    finally:
        sys.stdout.flush()
        os._exit(code)


def zygote() -> None:
    # Import everything a worker uses once, here: forked workers start in milliseconds.
    from coder_assist.app import edit, pipeline, review  # noqa: F401
    from coder_assist.app import training  # noqa: F401
    from coder_assist.store import project as store  # noqa: F401

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "fork":
            pid = os.fork()
            if pid == 0:
                _child(cmd)
            print(json.dumps({"pid": pid}), flush=True)
        elif cmd["op"] == "wait":
            _, status = os.waitpid(cmd["pid"], 0)
            print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)
        elif cmd["op"] == "exit":
            break


if __name__ == "__main__":
    zygote()
