"""Background retraining: one job at a time per project folder, shared by every caller of this
process (each browser session of a Streamlit server, a script).

A job runs in a daemon thread with its own connection to the project: a SQLite connection
and the store's transactions belong to the thread that opened them. A job is either a retrain
(:func:`coder_assist.app.training.train_project`: learn from the decisions, re-score every
passage, the new version becomes the active one as it is saved) or a fine-tune of the encoder
on the decisions followed by that retrain with the new encoder (:func:`start_finetune`).
Errors end up in :attr:`TrainJob.error` instead of vanishing with the thread.

The registry keeps the last job of each folder only, so a page can show how the last retrain
went; nothing here is written to disk besides what the retrain itself saves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import CoderAssistError
from ..store.project import Project
from . import modelview

__all__ = ["TrainJob", "current_job", "start_retrain", "start_finetune", "maybe_auto_retrain"]


@dataclass
class TrainJob:
    """One background retrain (``trigger``: ``"button"``, ``"auto"``) or fine-tune + retrain
    (``"finetune"``) of the project in ``folder``. ``seconds`` is set when it ends; then
    ``version`` (the new model version) or ``error`` says how."""

    folder: str
    trigger: str
    started: float = field(default_factory=time.time)
    n_decisions: int = 0
    version: int | None = None
    error: str | None = None
    seconds: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.seconds is None

    def elapsed(self) -> float:
        return self.seconds if self.seconds is not None else time.time() - self.started


# A plain module-level registry: Python imports a module once per process, so every session of
# a server sees the same jobs (what "one retrain at a time per project" needs).
_lock = threading.Lock()
_jobs: dict[str, TrainJob] = {}


def current_job(folder: Path | str) -> TrainJob | None:
    """The last job started on the project in ``folder`` (running or ended), None if none."""
    with _lock:
        return _jobs.get(str(folder))


def _run(job: TrainJob, encoder) -> None:
    from .training import train_project

    t0 = time.perf_counter()
    try:
        with Project.open(job.folder) as project:
            if job.trigger == "finetune":
                from ..ml.embed import load_encoder
                from .training import finetune_project

                # The project switches to the new encoder; the retrain re-embeds with it.
                finetune_project(project, use=True)
                encoder = load_encoder(project.meta("model"))
            job.version = train_project(project, encoder)
    except CoderAssistError as exc:
        job.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported by the job instead of vanishing with the thread
        job.error = f"{type(exc).__name__}: {exc}"
    finally:
        job.seconds = time.perf_counter() - t0


def _start(project: Project, encoder, trigger: str) -> TrainJob | None:
    folder = str(project.folder)
    with _lock:
        old = _jobs.get(folder)
        if old is not None and old.running:
            return None
        job = TrainJob(folder, trigger, n_decisions=modelview.n_decisions(project))
        what = "finetune" if trigger == "finetune" else "retrain"
        job.thread = threading.Thread(target=_run, args=(job, encoder), name=f"coder-assist-{what}-{project.folder.name}", daemon=True)
        _jobs[folder] = job
        job.thread.start()
    return job


def start_retrain(project: Project, encoder, trigger: str = "button") -> TrainJob | None:
    """Start retraining ``project`` with ``encoder`` in the background; None if a job on it is
    running already."""
    return _start(project, encoder, trigger)


def start_finetune(project: Project) -> TrainJob | None:
    """Start a contrastive fine-tune of the project's encoder on its decisions, then a retrain
    with the fine-tuned encoder (minutes on a laptop CPU); None if a job on it is running."""
    return _start(project, None, "finetune")


def maybe_auto_retrain(project: Project, encoder_for: Callable[[str | None], object]) -> TrainJob | None:
    """Call after recording a decision: starts a background retrain when automatic retraining
    is on and enough decisions were made since the last one, and returns it (else None).

    ``encoder_for(model)`` loads the project's embedding model (its ``model`` setting); it is
    only called when a retrain is due, and what it raises propagates (the caller says that the
    model did not load). Cheap when automatic retraining is off (one settings read).
    """
    try:
        if not modelview.needs_auto_retrain(project):
            return None
    except CoderAssistError:
        return None
    job = current_job(project.folder)
    if job is not None and job.running:
        return None
    return start_retrain(project, encoder_for(project.meta("model")), trigger="auto")
