"""Terminal progress: stages with counts on a terminal, nothing at all when not a terminal."""

import io
import time

from coder_assist.app.progress import Progress, ProgressEncoder, as_progress, counting


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_quiet_when_not_a_terminal():
    buf = io.StringIO()
    p = Progress(file=buf)
    assert not p.enabled
    with p.stage("Coding segments", total=10, unit="seg") as st:
        st.update(10)
    p.echo("resuming")
    assert buf.getvalue() == ""
    assert not as_progress(None).enabled or as_progress(None).file.isatty()


def test_stage_shows_what_counts_and_rate_on_a_terminal():
    buf = FakeTTY()
    p = Progress(file=buf)
    assert p.enabled
    with p.stage("Coding segments", total=40, unit="seg") as st:
        for _ in range(4):
            st.update(10)
    out = buf.getvalue()
    assert "Coding segments" in out and "40/40 seg" in out and "seg/s" in out


def test_stage_without_counts_shows_its_clock_moving():
    buf = FakeTTY()
    with Progress(file=buf).stage("Loading the embedding model"):
        time.sleep(1.2)  # no update() calls: the ticker must redraw it anyway
    frames = [f for f in buf.getvalue().replace("\r", "\n").splitlines() if "Loading the embedding model" in f]
    assert any("00:01" in f for f in frames), frames


class Tiny:
    model_id, dim = "tiny", 2

    def encode(self, texts, progress=None):
        import numpy as np

        if progress:
            progress(len(texts))
        return np.ones((len(texts), 2), dtype=np.float32)


def test_counting_encoder_adds_every_call_to_one_stage():
    buf = FakeTTY()
    p = Progress(file=buf)
    with counting(Tiny(), p, "Training") as enc:
        assert isinstance(enc, ProgressEncoder)
        enc.encode(["a", "b"])
        enc.encode(["c", "d", "e"])
        assert enc.model_id == "tiny"
    assert "5/5 text" in buf.getvalue()
    quiet = Tiny()
    with counting(quiet, Progress(False), "Training") as enc:
        assert enc is quiet  # nothing wrapped when nothing is shown
