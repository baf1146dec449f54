"""What every page shares: which project, which coder, the sidebar, the one-off demo build."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import streamlit as st

from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import DB_NAME, Project
from ui import widgets

DEFAULT_PROJECT = "demo-project"
PROJECT_ENV = "CODER_ASSIST_PROJECT"

_CODER = "coder"  # session_state key of the coder's name (not a widget key, so it survives pages)
_CODER_INPUT = "coder_input"


# --------------------------------------------------------------------------- project path


def project_path(argv: list[str] | None = None) -> Path:
    """``--project PATH`` from the script's arguments (``streamlit run app.py -- --project
    PATH``), else ``$CODER_ASSIST_PROJECT``, else ``demo-project``. Unknown arguments are
    ignored (under pytest, ``sys.argv`` is pytest's)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--" in args:
        args = args[args.index("--") + 1 :]
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--project")
    known, _ = parser.parse_known_args(args)
    return Path(known.project or os.environ.get(PROJECT_ENV) or DEFAULT_PROJECT).expanduser().resolve()


def page_context() -> tuple[Project, str | None]:
    """The project of this browser session (its own connection) and the coder's name, for
    page callbacks."""
    return get_project(Path(st.session_state["project_path"])), coder()


@st.cache_resource(show_spinner=False)
def get_encoder(model: str | None = None):
    """The embedding model (the project's ``model`` setting, e.g. an encoder fine-tuned on its
    decisions; None = the bundled default), loaded once per server process and only by pages
    that need it."""
    from coder_assist.app.pipeline import load_encoder

    return load_encoder(model)


def ensure_demo_project(folder: Path) -> None:
    """Build the demo project into ``folder`` if it holds no project yet, showing progress
    (:func:`coder_assist.app.demo.ensure_demo_project`: only into an absent or empty folder,
    built aside and renamed into place, one build at a time)."""
    from coder_assist.app import demo

    if demo.has_project(folder):
        return
    try:
        demo.check_demo_folder(folder)
    except CoderAssistError:
        st.error(
            f"`{folder}` has no `{DB_NAME}`, and it is not empty, so the demo project will not be built there. "
            f"Start the app with `--project` pointing at a project folder (create one with `coder-assist init`), "
            f"or at a new folder to get the demo."
        )
        st.stop()
    box = None

    def step(text: str) -> None:
        nonlocal box
        if box is None:  # only once a build is certain: a session that waited for another's build shows nothing
            box = st.status("First start: building the demo project (about half a minute)…", expanded=True)
        box.write(text)

    try:
        demo.ensure_demo_project(folder, load_encoder=get_encoder, on_step=step, progress=False)
    except BaseException:
        if box is not None:
            box.update(state="error")
        raise
    if box is not None:
        box.update(label=f"Demo project ready in {folder}", state="complete", expanded=False)


def get_project(folder: Path) -> Project:
    """This browser session's connection to the project (one per session: SQLite connections
    and the store's transactions are not shared between threads)."""
    key = f"_project::{folder}"
    project = st.session_state.get(key)
    if project is None:
        project = st.session_state[key] = Project.open(folder)
    return project


# --------------------------------------------------------------------------- coder


def coder() -> str | None:
    """The coder's name for this session, ``None`` until it is set."""
    name = st.session_state.get(_CODER)
    if name is None:
        # A reload keeps the name: it is mirrored in the page address (?coder=...).
        name = (st.query_params.get("coder") or "").strip() or None
        st.session_state[_CODER] = name
    return name


def _set_coder() -> None:
    name = (st.session_state.get(_CODER_INPUT) or "").strip()
    st.session_state[_CODER] = name or None
    if name:
        st.query_params["coder"] = name


def _clear_coder() -> None:
    st.session_state[_CODER] = None
    st.session_state[_CODER_INPUT] = ""
    st.query_params.pop("coder", None)


def coder_box() -> str | None:
    """Ask for the coder's name once; afterwards show it with a way to change it."""
    name = coder()
    if name:
        st.markdown(f"Coding as **{widgets.md_escape(name)}**")
        st.button(
            "Change coder",
            key="change_coder",
            type="tertiary",
            icon=":material/edit:",
            on_click=_clear_coder,
            help="Record the next decisions under another name",
        )
    else:
        st.text_input(
            "Your name",
            key=_CODER_INPUT,
            on_change=_set_coder,
            placeholder="e.g. Alex",
            help="Every decision is recorded under this name, so two coders can review the same project independently.",
        )
        st.caption("Enter your name (and press Enter) to start deciding.")
    return name


def sidebar_counts(project: Project, name: str | None) -> None:
    from coder_assist.app import figures, review

    try:
        counts = review.project_summary(project)
        mine = figures.tally(project, name) if name else None
        queue = figures.queue_progress(project, name) if name else None
    except CoderAssistError as exc:  # pragma: no cover - shown, not raised
        st.error(str(exc))
        return
    L = figures.label
    lines = [
        f"{L(counts['transcripts'], 'transcript')} · {L(counts['segments'], 'passage')}",
        f"{L(counts['codes'], 'code')} · {L(counts['suggestions'], 'suggestion')}",
    ]
    if mine is not None:
        lines.append(f"You: {L(mine.in_force, 'decision in force', 'decisions in force')} · {L(queue['to_go'], 'suggestion to go', 'suggestions to go')}")
    st.caption("  \n".join(lines), help=(
        "Decisions in force: your accepts and rejects that stand (not undone, not replaced by a later decision on the same "
        "passage and code), whether made on a suggestion, with Different code… or on the Transcripts page. "
        "Suggestions to go: the active model's suggestions you have not accepted or rejected (skipped ones included)."
    ) if mine is not None else None)
    st.button("Back up project", key="backup_project", type="tertiary", icon=":material/backup:", on_click=_backup,
              help="Copy the project (decisions, template, models) to a new folder under backups/, safely while others code")
    widgets.show_flash(_BACKUP_FLASH)


_BACKUP_FLASH = "backup_flash"


def _backup() -> None:
    project, _ = page_context()
    try:
        out = project.backup()
    except CoderAssistError as exc:
        widgets.flash(_BACKUP_FLASH, "error", f"Backup failed: {exc}")
    else:
        widgets.flash(_BACKUP_FLASH, "ok", f"Backup written to `{out}`. Copy that folder to another disk to keep it safe.")


def after_decision(project: Project, name: str | None) -> bool:
    """Run after a decision is committed: starts the automatic retrain ("every N decisions")
    in the background when it is switched on and due, and says so. The decision is already on
    disk, so nothing here can lose it; a failure is shown, not raised. True if a retrain
    started."""
    from coder_assist.app import jobs, modelview

    try:
        started = jobs.maybe_auto_retrain(project, get_encoder)
    except (CoderAssistError, OSError) as exc:
        st.toast(f"Automatic retraining skipped: the embedding model did not load ({exc}).", icon=":material/error:")
        return False
    except Exception as exc:  # pragma: no cover - shown to the coder, the decision stands
        st.toast(f"Automatic retraining did not start: {exc}", icon=":material/error:")
        return False
    if started is not None:
        who = f" ({name})" if name else ""
        st.toast(
            f"{modelview.auto_retrain_every(project)}+ new decisions{who}: retraining the model in the background. "
            "The queue switches to the new model when it is ready.",
            icon=":material/model_training:",
        )
    return started is not None
