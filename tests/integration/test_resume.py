"""Batch pre-coding and project suggestion runs survive a real SIGKILL: the rerun continues
where the killed run stopped, encodes none of the finished transcripts again, and leaves no
duplicate or half-written row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pytest

from coder_assist.app import pipeline
from coder_assist.ml.encoder import Encoder
from coder_assist.formats.transcripts import load_transcripts
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import Project
from coder_assist.ml.suggest import ExampleSimilarityScorer

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "data" / "demo"
DONE_BEFORE_KILL = 3
# A resumed run is compared row for row with a fresh one, which needs an encoder whose vector of
# a text does not depend on the texts batched with it: MiniLM (fp32 ONNX). The default USE is
# int8 with activations quantised per batch (cosine >= 0.996 to the text alone), so other chunk
# boundaries can move a suggestion across its threshold. What is tested here is the bookkeeping.
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def base_encoder(minilm_encoder):
    return minilm_encoder

# The child blocks at the start of its 4th chunk (after 3 committed ones) and says so; the
# parent then kills it with SIGKILL: no cleanup, no atexit, no flush runs in the child.
_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from coder_assist.app import pipeline
from coder_assist.ml.embed import load_encoder

calls = 0
def blocking(real):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls > {done}:
            print("BLOCKED", flush=True)
            time.sleep(600)
        return real(*args, **kwargs)
    return wrapper

encoder = load_encoder({model!r}, cache=False)
{body}
"""

_PRECODE = """
pipeline.precode_to_csv({demo!r}, {out!r}, encoder=encoder, chunk_segments=1, on_chunk=blocking(lambda names: None))
"""

_SUGGEST = """
from coder_assist.store.project import Project
pipeline.score_frame = blocking(pipeline.score_frame)
with Project.open({project!r}) as p:
    pipeline.suggest_project(p, encoder=encoder, chunk_segments=1)
"""


class CountingEncoder(Encoder):
    """Records every text sent to the model."""

    def __init__(self, inner: Encoder):
        self.inner, self.model_id, self.dim = inner, inner.model_id, inner.dim
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.texts += list(texts)
        return self.inner.encode(texts, progress=progress)


def _run_and_kill(body: str, tmp_path: Path) -> None:
    script = _CHILD.format(root=str(ROOT), done=DONE_BEFORE_KILL, model=MODEL, body=textwrap.dedent(body))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "BLOCKED", f"child did not reach the 4th chunk: {line!r} {proc.stderr.read()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _example_texts(template, base_encoder) -> list[str]:
    counter = CountingEncoder(base_encoder)
    ExampleSimilarityScorer().fit(template, counter)
    return counter.texts


def _segment_texts(names) -> list[str]:
    seg = Segmenter()
    return [s.text for t in load_transcripts([DEMO_DIR]) if t.name in names for s in seg.segments(t)]


def test_precode_killed_midway_resumes_without_reencoding(base_encoder, template, tmp_path):
    out = tmp_path / "out.csv"
    _run_and_kill(_PRECODE.format(demo=str(DEMO_DIR), out=str(out)), tmp_path)

    ckpt = json.loads(pipeline.checkpoint_path(out).read_text())
    assert len(ckpt["done"]) == DONE_BEFORE_KILL
    assert not out.exists()  # only a complete output gets the final name
    partial = out.with_name(out.name + ".partial")
    assert partial.stat().st_size == ckpt["bytes"]
    # A chunk that was being written when the power went: a half row past the commit point.
    with open(partial, "a", encoding="utf-8") as f:
        f.write('P9_half_written,Participant,"an unterminated')

    counter = CountingEncoder(base_encoder)
    run = pipeline.precode_to_csv(DEMO_DIR, out, encoder=counter, chunk_segments=1)
    assert run.resumed and run.skipped == DONE_BEFORE_KILL and run.scored == run.transcripts - DONE_BEFORE_KILL
    remaining = {t.name for t in load_transcripts([DEMO_DIR])} - set(ckpt["done"])
    # Encoded on the rerun: the template's examples (the scorer is fitted once per run) and
    # the segments of the unfinished transcripts, nothing else.
    assert sorted(counter.texts) == sorted(_example_texts(template, base_encoder) + _segment_texts(remaining))
    assert not pipeline.checkpoint_path(out).exists() and not partial.exists()

    resumed = pd.read_csv(out)
    fresh = pipeline.precode(DEMO_DIR, encoder=base_encoder).astype(str)
    assert len(resumed) == run.rows
    assert not resumed.duplicated().any()
    key = ["transcript", "start", "code_id"]
    a = resumed.astype(str).sort_values(key).reset_index(drop=True)
    b = fresh[resumed.columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key + ["rank", "text"]], b[key + ["rank", "text"]])
    np.testing.assert_allclose(a["confidence"].astype(float), b["confidence"].astype(float), rtol=1e-5)


def test_precode_with_other_settings_starts_afresh(base_encoder, tmp_path):
    out = tmp_path / "out.csv"
    _run_and_kill(_PRECODE.format(demo=str(DEMO_DIR), out=str(out)), tmp_path)
    counter = CountingEncoder(base_encoder)
    run = pipeline.precode_to_csv(DEMO_DIR, out, encoder=counter, top_k=1, chunk_segments=1000)
    assert not run.resumed and run.skipped == 0
    df = pd.read_csv(out)
    assert df.groupby(["transcript", "start"]).size().max() == 1  # top_k=1 throughout: nothing kept from the old run


@pytest.fixture
def demo_project(tmp_path):
    p = pipeline.init_project(tmp_path / "proj", model=MODEL)
    pipeline.import_files(p, [DEMO_DIR])
    yield p
    p.close()


def _suggestions(p: Project, mv: int) -> pd.DataFrame:
    return pd.read_sql_query(
        "SELECT segment_id, code_id, rank, confidence FROM suggestions WHERE model_version_id = ? ORDER BY segment_id, code_id",
        p.conn, params=(mv,),
    )


def test_suggest_project_killed_midway_resumes(base_encoder, template, demo_project, tmp_path):
    p = demo_project
    v1 = pipeline.suggest_project(p, encoder=base_encoder)  # a complete run to compare with
    _run_and_kill(_SUGGEST.format(project=str(p.folder)), tmp_path)

    state = json.loads(p.meta(pipeline.SUGGEST_RUN_KEY))
    assert len(state["done"]) == DONE_BEFORE_KILL
    v2 = state["model_version"]
    assert v2 != v1 and p.latest_model_version() == v1  # the queue kept serving the complete version
    done_segments = p.segments()[lambda s: s["transcript_id"].isin(state["done"])]
    assert set(_suggestions(p, v2)["segment_id"]) <= set(done_segments["id"])  # committed chunks only

    counter = CountingEncoder(base_encoder)
    assert pipeline.suggest_project(p, encoder=counter, chunk_segments=1) == v2
    remaining = set(p.segments()["transcript"]) - set(done_segments["transcript"])
    assert sorted(counter.texts) == sorted(_example_texts(template, base_encoder) + _segment_texts(remaining))
    assert p.meta(pipeline.SUGGEST_RUN_KEY) is None and p.latest_model_version() == v2
    a, b = _suggestions(p, v2), _suggestions(p, v1)
    pd.testing.assert_frame_equal(a[["segment_id", "code_id", "rank"]], b[["segment_id", "code_id", "rank"]])
    np.testing.assert_allclose(a["confidence"], b["confidence"], rtol=1e-5)
    card = json.loads(p.conn.execute("SELECT card FROM model_versions WHERE id = ?", (v2,)).fetchone()[0])
    assert card["suggestions"] == len(a) and "incomplete" not in card
