"""Getting the coding out: the codings frame (one row per coding, as a span) and the use case
that writes it as CSV, XLSX, Word, a report, or REFI-QDA.

Everything starts from :func:`codings_frame`, one row per coding:

- ``accepted``: a coding in force (:meth:`Project.codings`): an accepted suggestion (the
  passage's span, or the span the coder widened or narrowed it to), a code added by hand to a
  passage or to any span selected on the Transcripts page, or an imported coding (its own span).
  Several coders: one row each. ``start``/``end`` are the coding's offsets into the stored
  transcript text and ``text`` is exactly that span.
- ``rejected``: a coder's current reject (exported only with ``include="all"``).
- ``suggested``: the active model version's suggestion of a code for a passage that no coder has
  accepted or rejected yet (a skip is not a decision). These are machine output, never a coder's
  judgement; every writer labels them as such.

The writers are pure and live in :mod:`coder_assist.formats`: :mod:`~coder_assist.formats.tables`
(CSV / XLSX, formula neutralisation, safe file names), :mod:`~coder_assist.formats.word` and
:mod:`~coder_assist.formats.report`. Transcript text, names, attributes, coder names and code
names are all user input, and those writers treat them as hostile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.coding import ORIGIN_HAND, ORIGIN_IMPORTED
from ..core.errors import InputError, ProjectError
from ..formats import report as _report
from ..formats.word import WordSource
from ..formats import word as _word
# The writers the CLI, the Export page and bench reach through this use-case module.
from ..formats.report import Report, heatmap, md_escape, report_markdown  # noqa: F401
from ..formats.tables import safe_filename, write_csv, write_xlsx  # noqa: F401
from ..store.project import Project

FORMATS = ("qdpx", "qdc", "csv", "xlsx", "docx", "report")
INCLUDES = ("accepted", "suggested", "all")
STATUSES = ("accepted", "suggested", "rejected")

BASE_COLUMNS = [
    "transcript",
    "segment_id",
    "speaker",
    "start",
    "end",
    "text",
    "code_id",
    "code_path",
    "status",
    "coder",
    "time",
    "confidence",
    "model_version",
    "origin",
    "decision_id",
]
_STATUS_ORDER = {s: i for i, s in enumerate(STATUSES)}
_MANUAL_PREFIX = "manual:"
_OTHER_CODE_RE = re.compile(r"^different code for suggestion \d+")


# --------------------------------------------------------------------------- the codings frame


def codings_frame(project: Project, *, include: str = "accepted", threshold: float | None = None) -> pd.DataFrame:
    """One row per coding: transcript, the participant attributes (one column each, after
    ``transcript``), segment_id (the passage the coding is attached to: the one it overlaps
    most), speaker (of that passage), start/end (the coding's character offsets into the
    transcript text), text (exactly ``text[start:end]``), code_id, code_path, status (accepted /
    suggested / rejected), coder, time (of the decision; of the model version for suggestions),
    confidence (of the model's suggestion, where there was one), model_version (that made the
    suggestion), origin (suggestion, by hand, different code, imported from FILE, machine) and
    decision_id.

    ``include``: "accepted" (the default), "suggested" (accepted plus the undecided machine
    suggestions with confidence >= ``threshold``) or "all" (also the rejected ones).
    """
    if include not in INCLUDES:
        raise ProjectError(f"unknown scope {include!r}; use one of {', '.join(INCLUDES)}")
    if threshold is not None and not (0.0 <= float(threshold) <= 1.0):
        raise ProjectError(f"threshold {threshold} is not a confidence between 0 and 1")
    codes = _codes(project)
    segs = project.segments()[["id", "transcript", "speaker", "start", "end"]].rename(
        columns={"id": "segment_id", "start": "seg_start", "end": "seg_end"})
    all_current = project.current_decisions()
    parts = [_accepted_rows(project, all_current)]
    if include == "all":
        parts.append(_rejected_rows(project, all_current))
    if include != "accepted":
        parts.append(_undecided_suggestions(project, threshold, set(codes.index[codes["active"] == 1]), all_current))
    parts = [p for p in parts if not p.empty]
    rows = pd.concat(parts, ignore_index=True) if parts else _empty_rows()
    rows = rows.merge(segs, on="segment_id", how="inner")
    # Suggestions and rejects are on their passage's span; codings carry their own.
    rows["start"] = rows["start"].fillna(rows["seg_start"]).astype("int64")
    rows["end"] = rows["end"].fillna(rows["seg_end"]).astype("int64")
    rows["text"] = _span_texts(project, rows)
    rows["code_path"] = rows["code_id"].map(codes["path"])
    rows["_order"] = rows["status"].map(_STATUS_ORDER)
    rows = rows.sort_values(["transcript", "start", "end", "code_path", "_order", "coder"], na_position="last", kind="stable")
    out = rows[BASE_COLUMNS].reset_index(drop=True)
    out["coder"] = out["coder"].fillna("")

    # Participant attributes go right after the transcript they describe. A key that clashes
    # with a fixed column keeps its value under "<key> (attribute)".
    attrs = project.attributes()
    attrs = attrs.rename(columns={c: f"{c} (attribute)" for c in attrs.columns if c in BASE_COLUMNS})
    attr_cols = list(attrs.columns)
    if attr_cols:
        out = out.join(attrs, on="transcript")
        out = out[["transcript", *attr_cols, *BASE_COLUMNS[1:]]]
    out.attrs.update(include=include, threshold=threshold, attributes=attr_cols, model_version=project.latest_model_version())
    return out


def _accepted_rows(project: Project, all_current: pd.DataFrame) -> pd.DataFrame:
    """The codings in force, as spans, with what the decision log says of each (its
    suggestion's confidence and model version, how it came to be)."""
    cod = project.codings()
    if cod.empty:
        return pd.DataFrame()
    ids = cod["decision_id"].astype(int)
    cols = ["suggestion_id", "model_version_id", "note"]
    log = all_current.set_index("id")[cols]
    if not ids.isin(log.index).all():  # an earlier span of the same code, coder and passage
        log = project.decisions().set_index("id")[cols]
    log = log.reindex(ids)
    conf = _confidences(project, log["suggestion_id"].dropna().astype(int).unique())
    return pd.DataFrame(
        {
            "segment_id": cod["segment_id"].astype("int64").values,
            "start": cod["start"].astype("int64").values,
            "end": cod["end"].astype("int64").values,
            "code_id": cod["code_id"].values,
            "status": "accepted",
            "coder": cod["coder"].values,
            "time": cod["time"].values,
            "confidence": log["suggestion_id"].map(conf).astype("float64").values,
            "model_version": log["model_version_id"].astype("Int64").values,
            "origin": [_origin(n, s, o) for n, s, o in zip(log["note"], log["suggestion_id"], cod["origin"])],
            "decision_id": cod["decision_id"].astype("Int64").values,
        }
    )


def _rejected_rows(project: Project, all_current: pd.DataFrame) -> pd.DataFrame:
    cur = all_current[all_current["action"] == "reject"]
    if cur.empty:
        return pd.DataFrame()
    conf = _confidences(project, cur["suggestion_id"].dropna().astype(int).unique())
    return pd.DataFrame(
        {
            "segment_id": cur["segment_id"].astype("int64"),
            "start": cur["span_start"].astype("Int64"),
            "end": cur["span_end"].astype("Int64"),
            "code_id": cur["code_id"],
            "status": "rejected",
            "coder": cur["coder"],
            "time": cur["created_at"],
            "confidence": cur["suggestion_id"].map(conf).astype("float64"),
            "model_version": cur["model_version_id"].astype("Int64"),
            "origin": [_origin(n, s) for n, s in zip(cur["note"], cur["suggestion_id"])],
            "decision_id": cur["id"].astype("Int64"),
        }
    )


def _span_texts(project: Project, rows: pd.DataFrame) -> list[str]:
    """Each row's ``text[start:end]`` of its transcript's stored text."""
    ids = project.transcripts().set_index("name")["id"]
    texts = {name: project.transcript_text(int(ids[name])) for name in rows["transcript"].unique()}
    return [texts[t][int(a):int(b)] for t, a, b in zip(rows["transcript"], rows["start"], rows["end"])]


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment_id": pd.Series(dtype="int64"),
            "start": pd.Series(dtype="Int64"),
            "end": pd.Series(dtype="Int64"),
            "code_id": pd.Series(dtype="object"),
            "status": pd.Series(dtype="object"),
            "coder": pd.Series(dtype="object"),
            "time": pd.Series(dtype="object"),
            "confidence": pd.Series(dtype="float64"),
            "model_version": pd.Series(dtype="Int64"),
            "origin": pd.Series(dtype="object"),
            "decision_id": pd.Series(dtype="Int64"),
        }
    )


def _codes(project: Project) -> pd.DataFrame:
    """Every code ever in the template (retired ones keep their decisions), by template order."""
    return project.codes_table()


def _confidences(project: Project, suggestion_ids) -> dict[int, float]:
    if len(suggestion_ids) == 0:
        return {}
    df = project.suggestion_confidences(suggestion_ids)
    return dict(zip(df["suggestion_id"].astype(int).tolist(), df["confidence"].astype(float).tolist()))


def _origin(note, suggestion_id, stored=None) -> str:
    if isinstance(stored, str) and stored.startswith(ORIGIN_IMPORTED):
        return stored
    if stored == ORIGIN_HAND:
        return "by hand"
    note = note if isinstance(note, str) else ""
    if note.startswith(_MANUAL_PREFIX):
        return "by hand"
    if _OTHER_CODE_RE.match(note):
        return "different code"
    return "suggestion" if pd.notna(suggestion_id) else "by hand"


def _undecided_suggestions(project: Project, threshold: float | None, active_codes: set[str], cur: pd.DataFrame) -> pd.DataFrame:
    mv = project.latest_model_version()
    if mv is None:
        return pd.DataFrame()
    sugg = project.suggestions(mv)
    if sugg.empty:
        return pd.DataFrame()
    sugg = sugg[sugg["code_id"].isin(active_codes)]
    if threshold is not None:
        sugg = sugg[sugg["confidence"] >= float(threshold)]
    # Decided by anyone (accept or reject, not undone) means it is no longer a suggestion: it
    # is in the frame as that coder's coding instead.
    done = cur[cur["action"].isin(["accept", "reject"])]
    decided = set(zip(done["segment_id"].astype(int), done["code_id"]))
    keep = pd.Series([(int(s), c) not in decided for s, c in zip(sugg["segment_id"], sugg["code_id"])], index=sugg.index, dtype=bool)
    sugg = sugg.loc[keep]
    versions = project.model_versions().set_index("id")["created_at"]
    return pd.DataFrame(
        {
            "segment_id": sugg["segment_id"].astype("int64"),
            "start": pd.array([pd.NA] * len(sugg), dtype="Int64"),
            "end": pd.array([pd.NA] * len(sugg), dtype="Int64"),
            "code_id": sugg["code_id"],
            "status": "suggested",
            "coder": "",
            "time": versions.get(mv, ""),
            "confidence": sugg["confidence"].astype("float64"),
            "model_version": pd.array([mv] * len(sugg), dtype="Int64"),
            "origin": "machine",
            "decision_id": pd.array([pd.NA] * len(sugg), dtype="Int64"),
        }
    )


# --------------------------------------------------------------------------- report and Word


def default_attributes(project: Project, max_values: int = 6, max_attributes: int = 2) -> list[str]:
    """Attributes worth a matrix when none are named: those with 2..``max_values`` distinct
    values (participant ids and free text are not), at most ``max_attributes``."""
    attrs = project.attributes()
    return [c for c in attrs.columns if 2 <= attrs[c].nunique() <= max_values][:max_attributes]

def build_report(project: Project, frame: pd.DataFrame, attributes: Sequence[str] | None = None, *, quotes_per_cell: int = 2) -> Report:
    """Frequencies, the code x attribute matrix (coded passages, and the share of the cell's
    transcripts with the code) and quotes per code and cell, from a :func:`codings_frame`
    (see :func:`coder_assist.formats.report.build`)."""
    attr_frame = project.attributes()
    attributes = list(default_attributes(project) if attributes is None else attributes)
    unknown = [a for a in attributes if a not in attr_frame.columns]
    if unknown:
        have = ", ".join(attr_frame.columns) or "none"
        raise ProjectError(f"{project.folder}: no attribute {', '.join(map(repr, unknown))} (the project has: {have})")
    return _report.build(frame, _codes(project), project.transcripts()["name"], attr_frame, attributes, quotes_per_cell=quotes_per_cell)


def write_docx(project: Project, frame: pd.DataFrame, out: str | Path, *, transcripts: Sequence[str] | None = None) -> list[Path]:
    """One Word file per transcript with its codings (rows of ``frame``) as comments on their
    spans. ``out``: a folder (created; files named after the transcripts, sanitised), a ``.zip``
    file, or a ``.docx`` file when exactly one transcript is exported. Returns the files
    written (the zip, for a zip)."""
    listing = project.transcripts()
    names = list(transcripts) if transcripts is not None else listing["name"].tolist()
    ids = listing.set_index("name")["id"]
    missing = [n for n in names if n not in ids.index]
    if missing:
        raise ProjectError(f"no transcript named {', '.join(map(repr, missing))}")
    if not names:
        raise ProjectError(f"{project.folder}: no transcripts to export")
    by_name = {n: g for n, g in frame.groupby("transcript", sort=False)}
    attrs = project.attributes()
    sources = []
    for name in names:
        tid = int(ids[name])
        row = attrs.loc[name].dropna() if name in attrs.index else pd.Series(dtype=object)
        sources.append(WordSource(name, project.transcript_text(tid), project.turns(tid), by_name.get(name, frame.iloc[0:0]),
                                  {str(k): str(v) for k, v in sorted(row.items())}))
    return _word.write_docx(sources, out)


def write_report(project: Project, frame: pd.DataFrame, out_dir: str | Path, attributes: Sequence[str] | None = None, *,
                 quotes_per_cell: int = 2, report: Report | None = None) -> Path:
    """A report folder: report.md, code_frequencies.csv, matrix_counts.csv, matrix_share.csv,
    quotes.csv and heatmap.png. Returns the folder."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the report folder: {exc.strerror or exc}") from exc
    rep = report or build_report(project, frame, attributes, quotes_per_cell=quotes_per_cell)
    write_csv(rep.frequencies, out / "code_frequencies.csv")
    write_csv(rep.matrix_with_ids("counts"), out / "matrix_counts.csv")
    write_csv(rep.matrix_with_ids("shares").round(3), out / "matrix_share.csv")
    write_csv(rep.quotes, out / "quotes.csv")
    heatmap(rep, out / "heatmap.png")
    (out / "report.md").write_text(report_markdown(rep, project_name=project.folder.name), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- one entry point


@dataclass
class ExportResult:
    format: str
    paths: list[Path]
    rows: int  # codings exported (0 for a template export)
    report: Report | None = None


def export(project: Project, fmt: str, out: str | Path, *, include: str = "accepted", threshold: float | None = None,
           attributes: Sequence[str] | None = None, transcripts: Sequence[str] | None = None) -> ExportResult:
    """Export ``project`` as ``fmt`` (one of :data:`FORMATS`) to ``out``: what the CLI's
    ``export`` command and the app's Export page call."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ProjectError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out)
    if fmt == "qdc":
        from ..formats.refi import write_qdc

        return ExportResult(fmt, [Path(write_qdc(project.template(), out))], 0)
    if fmt == "qdpx":
        from .importing import export_qdpx

        if include == "accepted":
            threshold_q = None
        else:
            threshold_q = 0.0 if threshold is None else float(threshold)
        return ExportResult(fmt, [Path(export_qdpx(project, out, suggestions_threshold=threshold_q))], 0)
    frame = codings_frame(project, include=include, threshold=threshold)
    if transcripts is not None:
        frame = frame[frame["transcript"].isin(list(transcripts))].reset_index(drop=True)
    if fmt == "csv":
        return ExportResult(fmt, [write_csv(frame, out)], len(frame))
    if fmt == "xlsx":
        rep = build_report(project, frame, attributes=[])
        about = {
            "project": project.folder.name,
            "exported (UTC)": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "scope": include,
            "suggestion threshold": "" if threshold is None else threshold,
            "active model version": frame.attrs.get("model_version") or "",
            "status": "accepted: a coder's current accept; suggested: machine suggestion no coder has decided; "
                      "rejected: a coder's current reject",
        }
        return ExportResult(fmt, [write_xlsx(frame, out, sheets={"Codes": rep.frequencies}, about=about)], len(frame))
    if fmt == "docx":
        return ExportResult(fmt, write_docx(project, frame, out, transcripts=transcripts), len(frame))
    rep = build_report(project, frame, attributes)
    return ExportResult(fmt, [write_report(project, frame, out, report=rep)], len(frame), rep)

