"""Progress of long commands on a terminal: the stage, counts, rate and time left.

A :class:`Progress` shows one line per stage ("Reading transcripts 12/133 files", "Loading
model", "Coding segments 4,100/9,699 seg 210 seg/s 00:27 left"), redrawn at least twice a
second so that a stage without counts still shows its clock moving from its first second. When
stderr is not a terminal (a pipe, a log file, a test) it writes nothing, so logs stay clean.

The library takes ``progress`` arguments as ``None`` (show on a terminal only), a bool, or a
:class:`Progress` the caller already holds (so one display spans several library calls).
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import IO, Iterator

class Stage:
    """One stage's counter. ``update(n)`` adds finished items; ``add_total(n)`` grows the total
    when the work is only known piece by piece (e.g. one encoder call after another)."""

    def __init__(self, bar=None):
        self._bar = bar
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)

    __call__ = update  # a Stage is also a plain ``progress(n)`` callback

    def add_total(self, n: int) -> None:
        if self._bar is not None:
            self._bar.total = (self._bar.total or 0) + n
            self._bar.refresh()

    def note(self, text: str) -> None:
        """Extra words after the counts (e.g. "cache hits 812")."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=True)


class Progress:
    """Terminal progress for one command. ``enabled=None``: only when ``file`` is a terminal."""

    def __init__(self, enabled: bool | None = None, file: IO[str] | None = None):
        self.file = file or sys.stderr
        isatty = getattr(self.file, "isatty", None)
        self.enabled = bool(isatty and isatty()) if enabled is None else bool(enabled)

    @contextmanager
    def stage(self, desc: str, total: int | None = None, unit: str = "it") -> Iterator[Stage]:
        if not self.enabled:
            yield Stage()
            return
        from tqdm import tqdm

        if total is None and unit == "it":
            fmt = "{desc}... {elapsed}{postfix}"  # no counts: what it is doing and for how long
        else:
            fmt = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining} left, {rate_fmt}{postfix}]"
        bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, dynamic_ncols=True, leave=True,
                   mininterval=0.2, bar_format=fmt, unit_scale=False)
        stop = threading.Event()

        def tick() -> None:
            # tqdm redraws only on update(); a stage that is busy in one long call (loading a
            # model, fitting) would look frozen without this.
            while not stop.wait(0.5):
                bar.refresh()

        ticker = threading.Thread(target=tick, name="progress-tick", daemon=True)
        ticker.start()
        try:
            yield Stage(bar)
        finally:
            stop.set()
            ticker.join(1.0)
            bar.close()

    def echo(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.file, flush=True)


def as_progress(progress: "bool | None | Progress") -> Progress:
    return progress if isinstance(progress, Progress) else Progress(progress)


class ProgressEncoder:
    """Wraps an encoder (same ``encode``, ``model_id``, ``dim``) so every ``encode`` call counts
    on a stage of ``progress``: for code that encodes in several calls the caller does not see
    (training, simulation, consistency checks). Not an ``Encoder`` subclass, so that importing
    this module stays free of numpy and the embedding code."""

    def __init__(self, inner, progress: Progress, desc: str = "Encoding texts"):
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self._progress = progress
        self._desc = desc
        self._stage: Stage | None = None
        self._cm = None

    def __getattr__(self, name):  # stats, cache and other attributes of the wrapped encoder
        return getattr(self.inner, name)

    def encode(self, texts, progress=None):
        if self._stage is None:
            self._cm = self._progress.stage(self._desc, total=0, unit="text")
            self._stage = self._cm.__enter__()
        self._stage.add_total(len(texts))

        def both(n: int) -> None:
            self._stage.update(n)
            if progress:
                progress(n)

        return self.inner.encode(texts, progress=both)

    def close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._stage = None


@contextmanager
def counting(encoder, progress: Progress, desc: str):
    """``encoder``, counted on a stage of ``progress`` while the block runs (as is when quiet)."""
    if not progress.enabled:
        yield encoder
        return
    wrapped = ProgressEncoder(encoder, progress, desc)
    try:
        yield wrapped
    finally:
        wrapped.close()
