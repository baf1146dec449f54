"""Export page: the coding out of the app, as a spreadsheet, Word files with the codings as
comments, a report (frequencies, code x attribute matrix, heatmap, quotes), or REFI-QDA for
NVivo / ATLAS.ti / MAXQDA. Accepted codings only by default; machine suggestions above a
confidence threshold on request, labelled as such in every format.

Everything is built by :mod:`coder_assist.app.export`. Files are made when a download button is
clicked, on Streamlit's download thread, with their own connection to the project (the page's
connection stays with the page's thread), in a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from coder_assist.app import export
from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import Project
from ui import common

INCLUDE_KEY = "export_include"
THRESHOLD_KEY = "export_threshold"
ATTRS_KEY = "export_attributes"
PREVIEW_KEY = "export_preview"  # session_state: [cache key, Report, heatmap PNG bytes or None]

INCLUDE_LABELS = {
    "accepted": "Accepted codings",
    "suggested": "Accepted codings + machine suggestions",
    "all": "Everything (rejections too)",
}


@dataclass(frozen=True)
class Format:
    key: str
    label: str
    suffix: str
    mime: str
    what: str


FORMATS = [
    Format("xlsx", "Excel", ".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
           "One row per coding (transcript, attributes, speaker, offsets, text, code, status, coder, time, confidence), "
           "plus a sheet of code frequencies."),
    Format("csv", "CSV", ".csv", "text/csv", "The same rows as the Excel file, for R, Python or SPSS."),
    Format("docx", "Word", ".zip", "application/zip",
           "One Word file per transcript, each coding a comment on its passage by the coder (a zip)."),
    Format("report", "Report", ".zip", "application/zip",
           "report.md with code frequencies, the code × attribute matrix and quotes per code and cell; the matrices "
           "as CSV; heatmap.png (a zip)."),
    Format("qdpx", "REFI-QDA project", ".qdpx", "application/zip",
           "Transcripts, codes and codings for NVivo, ATLAS.ti, MAXQDA or QualCoder."),
    Format("qdc", "REFI-QDA codebook", ".qdc", "application/xml", "The template alone, for another QDA tool."),
]


# --------------------------------------------------------------------------- building files


def build_file(folder: str | Path, fmt: str, include: str = "accepted", threshold: float | None = None,
               attributes: list[str] | None = None) -> bytes:
    """The bytes of one export (a folder or several files come zipped), made with a
    connection of its own."""
    with tempfile.TemporaryDirectory(prefix="coder-assist-export-") as tmp, Project.open(folder) as project:
        spec = next(f for f in FORMATS if f.key == fmt)
        target = Path(tmp) / ("out" if spec.suffix == ".zip" else f"out{spec.suffix}")
        res = export.export(project, fmt, target, include=include, threshold=threshold, attributes=attributes)
        if spec.suffix != ".zip":
            return res.paths[0].read_bytes()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(target).as_posix())
        return buf.getvalue()


def file_name(project: Project, fmt: str) -> str:
    spec = next(f for f in FORMATS if f.key == fmt)
    stem = export.safe_filename(project.folder.name, max_len=60)
    kind = {"docx": "word", "qdc": "codebook", "qdpx": "project"}.get(fmt, "codings" if fmt in ("csv", "xlsx") else fmt)
    return f"{stem}-{kind}{spec.suffix}"


def _data_key(project: Project) -> str:
    """Changes whenever a decision, the model or the template changes (for the preview cache)."""
    mark = project.decisions_mark()
    raw = f"{project.folder}|{mark}|{project.latest_model_version()}|{project.meta('template')}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def _preview(project: Project, frame: pd.DataFrame, include: str, threshold: float | None, attributes: list[str]):
    """The report's numbers for the preview, cached in the session until the data or the
    choices change; the heatmap is drawn later (it is the slow part), see :func:`_heatmap_png`."""
    key = (_data_key(project), include, threshold, tuple(attributes))
    cached = st.session_state.get(PREVIEW_KEY)
    if cached is not None and cached[0] == key:
        return cached[1]
    rep = export.build_report(project, frame, attributes)
    st.session_state[PREVIEW_KEY] = [key, rep, None]
    return rep


def _heatmap_png(rep: export.Report) -> bytes | None:
    cached = st.session_state.get(PREVIEW_KEY)
    if cached is None or cached[1] is not rep or not len(rep.shares):
        return None
    if cached[2] is None:
        with tempfile.TemporaryDirectory() as tmp, st.spinner("Drawing the heatmap…"):
            cached[2] = export.heatmap(rep, Path(tmp) / "heatmap.png").read_bytes()
    return cached[2]


# --------------------------------------------------------------------------- page


def render() -> None:
    project, _ = common.page_context()
    st.header("Export", anchor=False)
    st.caption("Take the coding to a spreadsheet, to Word, into a report, or to another QDA tool. "
               "Files are made on this machine when you click a download button.")
    scope = _scope(project)
    if scope is None:
        return
    frame, include, threshold = scope
    attributes = _downloads(project, include, threshold)
    _preview_section(project, frame, include, threshold, attributes)


def _scope(project: Project) -> tuple[pd.DataFrame, str, float | None] | None:
    """What to export, and how many codings that is; None (with the error shown) if the
    codings cannot be read."""
    left, right = st.columns([1, 1], gap="large")
    with left:
        include = st.radio("What to export", list(INCLUDE_LABELS), format_func=INCLUDE_LABELS.get, key=INCLUDE_KEY,
                           help="Accepted: every coder's current accepts (suggestions accepted, codes added by hand). "
                                "Machine suggestions: the active model's suggestions that no coder has accepted or rejected yet.")
        threshold = None
        if include != "accepted":
            threshold = st.slider("Only suggestions with confidence at least", 0.0, 1.0, 0.0, 0.01, key=THRESHOLD_KEY)
            st.warning("Machine suggestions are the model's guesses, not a coder's judgement. They are exported with "
                       "status **suggested** (spreadsheets), as comments by *coder-assist model (machine suggestion)* "
                       "(Word), counted and marked separately (report), and under their own user (REFI-QDA).",
                       icon=":material/smart_toy:")
    try:
        frame = export.codings_frame(project, include=include, threshold=threshold)
    except CoderAssistError as exc:
        st.error(str(exc))
        return None
    with right:
        counts = frame["status"].value_counts()
        c1, c2, c3 = st.columns(3)
        c1.metric("Accepted codings", int(counts.get("accepted", 0)), help="One per coder and passage and code")
        c2.metric("Machine suggestions", int(counts.get("suggested", 0)) if include != "accepted" else "–")
        c3.metric("Coders", frame.loc[frame["status"] == "accepted", "coder"].nunique())
        if frame.empty:
            st.info("Nothing to export in this scope yet: accept suggestions on the Review page or code passages on "
                    "the Transcripts page, or include machine suggestions.")
    return frame, include, threshold


def _downloads(project: Project, include: str, threshold: float | None) -> list[str]:
    """The report's attributes and one download button per format. Returns the attributes."""
    attr_options = list(project.attributes().columns)
    st.subheader("Download", anchor=False)
    attributes: list[str] = []
    if attr_options:
        attributes = st.multiselect("Report: attributes for the code × attribute matrix", attr_options,
                                    default=[a for a in export.default_attributes(project) if a in attr_options],
                                    key=ATTRS_KEY, help="Each combination of their values is one column of the matrix "
                                                        "(e.g. sector × staff level).")
    folder = str(project.folder)
    for spec in FORMATS:
        a, b = st.columns([1, 3], vertical_alignment="center")
        with a:
            st.download_button(
                f"{spec.label} ({spec.suffix})",
                data=_deferred(folder, spec.key, include, threshold, attributes),
                file_name=file_name(project, spec.key),
                mime=spec.mime,
                key=f"export_dl_{spec.key}",
                on_click="ignore",
                icon=":material/download:",
                width="stretch",
            )
        b.caption(spec.what)
    return attributes


def _preview_section(project: Project, frame: pd.DataFrame, include: str, threshold: float | None, attributes: list[str]) -> None:
    st.subheader("Preview: codes × " + (" × ".join(attributes) if attributes else "all transcripts"), anchor=False)
    try:
        rep = _preview(project, frame, include, threshold, attributes)
    except CoderAssistError as exc:
        st.error(str(exc))
        return
    share_tab, count_tab, heat_tab, freq_tab = st.tabs(["Share of transcripts", "Coded passages", "Heatmap", "Code frequencies"])
    with share_tab:
        sizes = rep.cell_sizes
        st.dataframe(
            (rep.shares * 100).rename(columns=lambda c: f"{c} (n={sizes[c]})"),
            column_config={c: st.column_config.ProgressColumn(c, format="%.0f%%", min_value=0, max_value=100)
                           for c in [f"{c} (n={sizes[c]})" for c in rep.shares.columns]},
            key="export_share_table",
        )
        st.caption("Share of the cell's transcripts with at least one passage coded with the code.")
    with count_tab:
        st.dataframe(rep.counts, key="export_count_table")
        st.caption("Coded passages per cell; a passage accepted by several coders counts once.")
    with freq_tab:
        st.dataframe(rep.frequencies, hide_index=True, key="export_freq_table",
                     column_order=["code_path", "passages", "accepted_passages", "suggested_passages", "codings", "rejected",
                                   "transcripts", "share_of_transcripts"])
    # Last: the slow part, drawn once the tables are on the page.
    with heat_tab:
        png = _heatmap_png(rep)
        if png is not None:
            st.image(png, caption="heatmap.png, as in the report")


def _deferred(folder: str, fmt: str, include: str, threshold: float | None, attributes: list[str]):
    """A no-argument callable for st.download_button: the file is built only when clicked."""
    attrs = list(attributes)

    def make() -> bytes:
        return build_file(folder, fmt, include, threshold, attrs)

    return make
