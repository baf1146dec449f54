"""The demo project (default template + the invented demo interviews, suggestions computed),
built once into a folder: by ``coder-assist demo`` and by the app on its first start.

Only an absent or empty folder gets the demo: a folder with other files is someone's data,
not a place for invented interviews. The build goes to a hidden sibling folder that is renamed
into place at the end, so a build stopped half way (Ctrl+C, a closed laptop, a full disk) never
leaves a half-made project where the app would open it. One build at a time per process; a
second caller waits and then finds the project built.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from ..core.errors import InputError
from ..store.project import DB_NAME
from .pipeline import build_demo_project

__all__ = ["ensure_demo_project", "check_demo_folder", "has_project"]

_lock = threading.Lock()


def has_project(folder: str | Path) -> bool:
    return (Path(folder) / DB_NAME).is_file()


def check_demo_folder(folder: str | Path) -> None:
    """Raise :class:`InputError` if ``folder`` holds no project and is not empty (or not a
    folder): the demo is not built over other files."""
    folder = Path(folder)
    if has_project(folder) or not folder.exists():
        return
    if not folder.is_dir() or any(folder.iterdir()):
        raise InputError(
            folder,
            f"has no {DB_NAME}, and it is not empty, so the demo project will not be built there. "
            "Point at a project folder (create one with `coder-assist init`), or at a new folder to get the demo."
        )


def ensure_demo_project(
    folder: str | Path,
    *,
    load_encoder: Callable[[], object] | None = None,
    on_step: Callable[[str], None] | None = None,
    progress=None,
    force: bool = False,
) -> bool:
    """Build the demo project into ``folder`` unless it holds a project already (``force``:
    replace that project, which happens only once the new one is complete). Returns True if
    it built one.

    ``load_encoder()`` gives the embedding model (None: the bundled default, loaded by the
    build); ``on_step(text)`` hears what the build is doing, once a build is certain;
    ``progress`` is :func:`build_demo_project`'s progress display. A folder that is not empty
    and holds no project raises :class:`InputError` before anything is loaded.
    """
    folder = Path(folder).expanduser()
    check_demo_folder(folder)
    if has_project(folder) and not force:
        return False
    step = on_step or (lambda text: None)
    with _lock:
        if has_project(folder) and not force:  # another caller built it while this one waited
            return False
        step("Loading the embedding model…")
        encoder = load_encoder() if load_encoder is not None else None
        step("Reading, segmenting and scoring the invented demo interviews…")
        tmp = folder.parent / f".{folder.name}.building-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            build_demo_project(tmp, encoder=encoder, progress=progress).close()
            _swap_in(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


def _swap_in(tmp: Path, folder: Path) -> None:
    """Rename the finished build ``tmp`` to ``folder``; an old project there is moved aside
    first and deleted only after the new one is in place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if has_project(folder):
        old = folder.parent / f".{folder.name}.replaced-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
    elif folder.exists():
        folder.rmdir()  # empty: checked before the build
    try:
        tmp.rename(folder)
    except BaseException:
        if old is not None and not folder.exists():
            old.rename(folder)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
