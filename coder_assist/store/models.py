"""The ``models/`` folder of a project, written down once.

    models/
      v{N}/               one folder per recorded model version N (the ``model_versions`` row)
        model.json        the scorer's description (coder_assist.ml.classifier writes it)
        weights.npz       its arrays (never pickle)
        card.json         the model card, card.txt its readable text
        queue.npy         segment ids in review order (int64)
      encoder-{stamp}/    a fine-tuned sentence-transformers encoder
      .tmp-*              a save in progress, or the leftover of a killed one

A version's folder appears under its final name only inside the transaction that records the
version (:func:`save_version`): a crash leaves both or neither, plus an ignorable ``.tmp-*``.
Standard library only: the review queue reads ``queue.npy``'s path without scikit-learn.
``project`` below is a :class:`coder_assist.store.project.Project` or, for the paths, a
project folder (not imported: project.py uses these paths for its backup).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core.errors import ProjectError

MODELS_DIR = "models"
#: The scorer's own description file; its presence marks a version that has a trained model.
MODEL_FILE = "model.json"
CARD_FILE = "card.json"
CARD_TEXT_FILE = "card.txt"
#: Segment ids in review order (int64, .npy).
QUEUE_FILE = "queue.npy"
#: A temporary model folder untouched this long is the leftover of a killed save, not one in progress.
STALE_TMP_S = 3600


def _folder(project) -> Path:
    """A project's folder, from the project or the folder itself (the store's backup names a
    destination folder that is not an open project)."""
    return Path(getattr(project, "folder", project))


def models_dir(project) -> Path:
    return _folder(project) / MODELS_DIR


def version_dir(project, version: int) -> Path:
    return models_dir(project) / f"v{version}"


def encoder_dir(project, stamp: str) -> Path:
    return models_dir(project) / f"encoder-{stamp}"


def card_path(project, version: int, *, text: bool = False) -> Path:
    """``card.json`` of a version, or its readable ``card.txt`` with ``text``."""
    return version_dir(project, version) / (CARD_TEXT_FILE if text else CARD_FILE)


def queue_path(project, version: int) -> Path:
    return version_dir(project, version) / QUEUE_FILE


def model_path(project, version: int) -> Path:
    return version_dir(project, version) / MODEL_FILE


def has_model(project, version: int | None) -> bool:
    """Whether version ``version`` has a saved trained model (the template-only versions have none)."""
    return version is not None and model_path(project, version).exists()


def _sweep_leftovers(models: Path) -> None:
    """Remove ``.tmp-*`` folders a killed retrain or fine-tune left behind (never a recorded
    version: those only ever exist under their final name)."""
    for d in models.glob(".tmp-*"):
        try:
            if d.is_dir() and time.time() - d.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def save_version(
    project, kind: str, encoder: str, card: dict, suggestions: pd.DataFrame, write: Callable[[Path], None],
    *, fresh_verdicts: bool = True,
) -> int:
    """Record a model version with its suggestions and its folder: complete or absent.

    ``write(folder)`` writes the version's files into a temporary folder; then one transaction
    records the version and its suggestions, clears the stale-verdict list with
    ``fresh_verdicts`` (verdicts measured against the current template) and, as its last step,
    renames the folder to ``v{N}``. Returns N."""
    models = models_dir(project)
    models.mkdir(exist_ok=True)
    _sweep_leftovers(models)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=models))
    try:
        write(tmp)
        with project.transaction():
            mv = project.add_model_version(kind, encoder, card)
            project.add_suggestions(mv, suggestions)
            if fresh_verdicts:
                project.set_meta("stale_verdicts", "[]")
            target = version_dir(project, mv)
            if target.exists():
                # Ids are reused after a rolled-back transaction: a folder under this id is an
                # orphan of a crash between rename and commit, never a recorded version.
                shutil.rmtree(target)
            os.replace(tmp, target)  # last step: if it fails, the transaction rolls back
    except OSError as exc:  # disk full, permissions: say where, not a traceback
        shutil.rmtree(tmp, ignore_errors=True)
        raise ProjectError(f"{models}: cannot save the model version ({exc.strerror or exc}); nothing was recorded") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return mv


def use_encoder(project, path: str | Path) -> None:
    """Switch the project to the encoder in ``path`` (its meta ``model``): the next retrain
    re-embeds every passage with it."""
    project.set_meta("model", str(Path(path).resolve()))


__all__ = [
    "MODELS_DIR", "MODEL_FILE", "CARD_FILE", "CARD_TEXT_FILE", "QUEUE_FILE", "STALE_TMP_S",
    "models_dir", "version_dir", "encoder_dir", "card_path", "queue_path", "model_path", "has_model",
    "save_version", "use_encoder",
]
