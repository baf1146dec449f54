"""Getting the coding out: the codings frame, CSV / XLSX / Word writers, and the report
(code frequencies, the code x attribute matrix, a heatmap and quotes per code and cell).

Everything starts from :func:`codings_frame`, one row per coding:

- ``accepted``: a coder's current (not undone) accept of a code on a passage, whether it came
  from a suggestion, from "Different code..." or was added by hand. Several coders: one row each.
- ``rejected``: a coder's current reject (exported only with ``include="all"``).
- ``suggested``: the active model version's suggestion of a code for a passage that no coder has
  accepted or rejected yet (a skip is not a decision). These are machine output, never a coder's
  judgement; every writer labels them as such.

Transcript text, names, attributes, coder names and code names are all user input, so the
writers treat them as hostile: spreadsheet cells that could be read as a formula are prefixed
with a quote, characters XML cannot hold are dropped, file names are sanitised and never leave
the chosen export folder, and Markdown is escaped.
"""

from __future__ import annotations

import csv
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ..core.template import PATH_SEP
from ..core.errors import InputError, ProjectError
from ..store.project import Project

FORMATS = ("qdpx", "qdc", "csv", "xlsx", "docx", "report")
INCLUDES = ("accepted", "suggested", "all")
STATUSES = ("accepted", "suggested", "rejected")
#: Author of the Word comments that carry machine suggestions (a coder name cannot be mistaken
#: for it: it names the model version too).
MACHINE_AUTHOR = "coder-assist model v{mv} (machine suggestion)"

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
    ``transcript``), segment_id, speaker, start/end (character offsets into the transcript
    text), text, code_id, code_path, status (accepted / suggested / rejected), coder, time (of
    the decision; of the model version for suggestions), confidence (of the model's suggestion,
    where there was one), model_version (that made the suggestion), origin (suggestion, by
    hand, different code, machine) and decision_id.

    ``include``: "accepted" (the default), "suggested" (accepted plus the undecided machine
    suggestions with confidence >= ``threshold``) or "all" (also the rejected ones).
    """
    if include not in INCLUDES:
        raise ProjectError(f"unknown scope {include!r}; use one of {', '.join(INCLUDES)}")
    if threshold is not None and not (0.0 <= float(threshold) <= 1.0):
        raise ProjectError(f"threshold {threshold} is not a confidence between 0 and 1")
    codes = _codes(project)
    segs = project.segments()[["id", "transcript", "speaker", "start", "end", "text"]].rename(columns={"id": "segment_id"})
    parts = []

    all_current = project.current_decisions()
    cur = all_current[all_current["action"].isin(["accept", "reject"] if include == "all" else ["accept"])]
    if not cur.empty:
        conf = _confidences(project, cur["suggestion_id"].dropna().astype(int).unique())
        dec = pd.DataFrame(
            {
                "segment_id": cur["segment_id"].astype("int64"),
                "code_id": cur["code_id"],
                "status": cur["action"].map({"accept": "accepted", "reject": "rejected"}),
                "coder": cur["coder"],
                "time": cur["created_at"],
                "confidence": cur["suggestion_id"].map(conf).astype("float64"),
                "model_version": cur["model_version_id"].astype("Int64"),
                "origin": [_origin(n, s) for n, s in zip(cur["note"], cur["suggestion_id"])],
                "decision_id": cur["id"].astype("Int64"),
            }
        )
        parts.append(dec)

    if include != "accepted":
        sugg = _undecided_suggestions(project, threshold, set(codes.index[codes["active"] == 1]), all_current)
        if not sugg.empty:
            parts.append(sugg)

    rows = pd.concat(parts, ignore_index=True) if parts else _empty_rows()
    rows = rows.merge(segs, on="segment_id", how="inner")
    rows["code_path"] = rows["code_id"].map(codes["path"])
    rows["_order"] = rows["status"].map(_STATUS_ORDER)
    rows = rows.sort_values(["transcript", "start", "end", "code_path", "_order", "coder"], na_position="last", kind="stable")
    out = rows[BASE_COLUMNS].reset_index(drop=True)
    out["coder"] = out["coder"].fillna("")
    out["start"] = out["start"].astype("int64")
    out["end"] = out["end"].astype("int64")

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


def _empty_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "segment_id": pd.Series(dtype="int64"),
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
    return pd.read_sql_query("SELECT id, path, active, is_leaf, position FROM codes ORDER BY position", project.conn).set_index("id")


def _confidences(project: Project, suggestion_ids) -> dict[int, float]:
    if len(suggestion_ids) == 0:
        return {}
    out: dict[int, float] = {}
    ids = [int(i) for i in suggestion_ids]
    for i in range(0, len(ids), 900):  # SQLite's bound-parameter limit
        chunk = ids[i : i + 900]
        q = f"SELECT id, confidence FROM suggestions WHERE id IN ({','.join('?' * len(chunk))})"
        out.update({int(r[0]): float(r[1]) for r in project.conn.execute(q, chunk)})
    return out


def _origin(note, suggestion_id) -> str:
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


# --------------------------------------------------------------------------- spreadsheet safety

#: Leading characters a spreadsheet reads as the start of a formula (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Characters XML 1.0 cannot hold (XLSX and DOCX are XML): C0 controls but tab/newline/CR.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def neutralise(value):
    """A cell value safe for a spreadsheet: text starting with = + - @ tab or CR gets a leading
    single quote (so it stays text, never a formula); anything else is returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with every text column neutralised; numeric columns stay numeric (a confidence
    of -0.5 is a number, not a formula)."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s):
            hit = s.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)  # vectorised: every value is text
            if hit.any():
                out[col] = s.where(~hit, "'" + s)
        else:
            out[col] = s.map(neutralise, na_action="ignore")
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """UTF-8 CSV (with BOM, so Excel reads accents right) of a neutralised copy of ``frame``."""
    path = Path(path)
    _parent(path)
    spreadsheet_safe(frame).to_csv(path, index=False, encoding="utf-8-sig", quoting=csv.QUOTE_MINIMAL)
    return path


def write_xlsx(frame: pd.DataFrame, path: str | Path, *, sheets: dict[str, pd.DataFrame] | None = None,
               about: dict[str, object] | None = None) -> Path:
    """An XLSX workbook: ``frame`` on the "Codings" sheet, then ``sheets`` (name -> frame), then
    an "About" sheet from ``about``. Every text cell is neutralised and written as text, numbers
    as numbers; nothing is a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    path = Path(path)
    _parent(path)
    wb = Workbook(write_only=True)
    bold = Font(bold=True)

    def add(name: str, df: pd.DataFrame, widths: dict[str, int] | None = None) -> None:
        ws = wb.create_sheet(_sheet_title(name))
        ws.freeze_panes = "A2"
        safe = spreadsheet_safe(df)
        for i, col in enumerate(safe.columns, start=1):
            ws.column_dimensions[get_column_letter(i)].width = (widths or {}).get(df.columns[i - 1], 14)
        header = []
        for col in safe.columns:
            c = WriteOnlyCell(ws, value=_xml_text(col))
            c.font = bold
            header.append(c)
        ws.append(header)
        for row in safe.itertuples(index=False, name=None):
            ws.append([_xlsx_value(v) for v in row])

    add("Codings", frame, {"text": 80, "code_path": 40, "transcript": 22, "time": 24})
    for name, df in (sheets or {}).items():
        add(name, df, {"code_path": 40})
    if about:
        add("About", pd.DataFrame({"item": list(about), "value": [str(v) for v in about.values()]}), {"item": 24, "value": 80})
    wb.save(path)
    return path


def _sheet_title(name: str) -> str:
    return re.sub(r"[\[\]:*?/\\]", "_", name)[:31] or "Sheet"


def _xlsx_value(v):
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    if hasattr(v, "item"):  # numpy scalars
        v = v.item()
    if isinstance(v, str):
        return _xml_text(v)
    return v


def _xml_text(s: str) -> str:
    return _XML_ILLEGAL.sub("", str(s))


def _parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(path, f"cannot create the export folder: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------- file names

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def safe_filename(name: str, suffix: str = "", *, max_len: int = 100) -> str:
    """A file name from user input (a transcript name): letters, digits, ``-``, ``_``, ``.`` and
    spaces only, no leading dot, no path separators, not a reserved device name, never empty."""
    s = unicodedata.normalize("NFKC", str(name))
    s = re.sub(r"[^\w\- .]", "_", s, flags=re.ASCII)
    s = re.sub(r"_+", "_", s).strip(" ._")
    s = s[:max_len].rstrip(" .") or "transcript"
    if s.split(".")[0].upper() in _WINDOWS_RESERVED:
        s = "_" + s
    return s + suffix


def _unique_names(names: Iterable[str], suffix: str) -> list[str]:
    seen: set[str] = set()
    out = []
    for n in names:
        base = safe_filename(n)
        cand, i = base + suffix, 2
        while cand.lower() in seen:
            cand, i = f"{base}-{i}{suffix}", i + 1
        seen.add(cand.lower())
        out.append(cand)
    return out


def _inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that would resolve outside ``folder``."""
    base = folder.resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise InputError(folder, f"refusing to write {name!r} outside the export folder")
    return target


# --------------------------------------------------------------------------- Word


def comment_text(row) -> str:
    """What a Word comment says about one coding."""
    conf = f", confidence {row.confidence:.2f}" if pd.notna(row.confidence) else ""
    if row.status == "suggested":
        return f"Machine suggestion (model v{row.model_version}{conf}), not reviewed by a coder: {row.code_path}"
    if row.status == "rejected":
        return f"Rejected: {row.code_path}"
    how = {"by hand": " (coded by hand)", "different code": " (instead of the suggested code)"}.get(row.origin, "")
    return f"{row.code_path}{how}"


def transcript_docx(project: Project, transcript: str, codings: pd.DataFrame):
    """A python-docx Document of one transcript, turn by turn, with each coding in
    ``codings`` (rows of :func:`codings_frame` for this transcript) as a comment on its
    passage; the comment's author is the coder."""
    from docx import Document
    from docx.shared import Pt

    row = project.conn.execute("SELECT id, text FROM transcripts WHERE name = ?", (transcript,)).fetchone()
    if row is None:
        raise ProjectError(f"no transcript named {transcript!r}")
    tid, text = int(row[0]), row[1]
    turns = project.turns(tid)
    doc = Document()
    doc.core_properties.title = _xml_text(transcript)
    doc.add_heading(_xml_text(transcript), level=1)
    attrs = {k: v for k, v in project.conn.execute("SELECT key, value FROM attributes WHERE transcript_id = ? ORDER BY key", (tid,))}
    if attrs:
        doc.add_paragraph().add_run(_xml_text("; ".join(f"{k}: {v}" for k, v in attrs.items()))).italic = True
    n_sugg = int((codings["status"] == "suggested").sum())
    note = f"{len(codings)} codings as comments (author: the coder)."
    if n_sugg:
        note += f" {n_sugg} of them are machine suggestions not yet reviewed, by author 'coder-assist ... (machine suggestion)'."
    p = doc.add_paragraph(note)
    for r in p.runs:
        r.font.size = Pt(9)

    # Split each turn into runs at every coded passage's boundaries, so that a comment can be
    # anchored to exactly the runs of its passage (Word anchors comments on whole runs).
    bounds = set(codings["start"].astype(int)) | set(codings["end"].astype(int))
    runs: list[tuple[int, int, object]] = []
    for t in turns.itertuples(index=False):
        para = doc.add_paragraph()
        label = para.add_run(_xml_text(f"{t.speaker}: "))
        label.bold = True
        cuts = sorted({t.start, t.end} | {b for b in bounds if t.start < b < t.end})
        for a, b in zip(cuts, cuts[1:]):
            runs.append((a, b, para.add_run(_xml_text(text[a:b]))))
    for c in codings.sort_values(["start", "end"]).itertuples(index=False):
        inside = [r for a, b, r in runs if a >= c.start and b <= c.end]
        if not inside:  # a passage outside every turn (should not happen): nothing to anchor to
            continue
        author = MACHINE_AUTHOR.format(mv=c.model_version) if c.status == "suggested" else str(c.coder)
        comment = doc.add_comment(inside, text=_xml_text(comment_text(c)), author=_xml_text(author), initials=_xml_text(_initials(author)))
        # python-docx stamps a comment with the moment it is written; Word shows that as when the
        # coding was made, so it must be the decision's time (the model version's, for a
        # suggestion). python-docx has no public setter for it.
        when = _comment_time(c.time)
        if when is not None:
            comment._comment_elm.date = when
    return doc


def _comment_time(value) -> datetime | None:
    """A stored time (ISO 8601 text) as an aware UTC datetime to the second (Word's
    w:date has no fractions); None when there is none."""
    if value is None or (not isinstance(value, str) and pd.isna(value)) or not str(value).strip():
        return None
    try:
        ts = pd.Timestamp(str(value))
    except ValueError:
        return None
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor("s").to_pydatetime()


def _initials(name: str) -> str:
    return "".join(w[0] for w in name.split() if w[:1].isalnum())[:4].upper()


def write_docx(project: Project, frame: pd.DataFrame, out: str | Path, *, transcripts: Sequence[str] | None = None) -> list[Path]:
    """One Word file per transcript with its codings as comments. ``out``: a folder (created;
    files named after the transcripts, sanitised), a ``.zip`` file, or a ``.docx`` file when
    exactly one transcript is exported. Returns the files written (the zip, for a zip)."""
    out = Path(out)
    names = list(transcripts) if transcripts is not None else project.transcripts()["name"].tolist()
    known = set(project.transcripts()["name"])
    missing = [n for n in names if n not in known]
    if missing:
        raise ProjectError(f"no transcript named {', '.join(map(repr, missing))}")
    if not names:
        raise ProjectError(f"{project.folder}: no transcripts to export")
    by_name = {n: g for n, g in frame.groupby("transcript", sort=False)}
    empty = frame.iloc[0:0]
    files = _unique_names(names, ".docx")

    if out.suffix.lower() == ".docx":
        if len(names) != 1:
            raise InputError(out, f"{len(names)} transcripts make {len(names)} Word files: give a folder or a .zip instead")
        _parent(out)
        transcript_docx(project, names[0], by_name.get(names[0], empty)).save(out)
        return [out]
    if out.suffix.lower() == ".zip":
        _parent(out)
        import io

        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, fname in zip(names, files):
                buf = io.BytesIO()
                transcript_docx(project, name, by_name.get(name, empty)).save(buf)
                zf.writestr(fname, buf.getvalue())  # fname is sanitised: no folders, no '..'
        return [out]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the export folder: {exc.strerror or exc}") from exc
    written = []
    for name, fname in zip(names, files):
        target = _inside(out, fname)
        transcript_docx(project, name, by_name.get(name, empty)).save(target)
        written.append(target)
    return written


# --------------------------------------------------------------------------- report

ALL_CELL = "all transcripts"


@dataclass
class Report:
    """The numbers behind the report. ``counts`` and ``shares`` are code x cell frames (index:
    code_path), a cell being one combination of the chosen attributes' values."""

    attributes: list[str]
    frequencies: pd.DataFrame
    counts: pd.DataFrame
    shares: pd.DataFrame
    cell_sizes: pd.Series
    quotes: pd.DataFrame
    scope: dict = field(default_factory=dict)

    def matrix_with_ids(self, which: str) -> pd.DataFrame:
        """``counts`` or ``shares`` with code_id and code_path as columns (for CSV)."""
        m = getattr(self, which)
        ids = self.frequencies.set_index("code_path")["code_id"]
        return m.reset_index().rename(columns={"index": "code_path"}).assign(code_id=lambda d: d["code_path"].map(ids))[
            ["code_id", "code_path", *m.columns]
        ]


def default_attributes(project: Project, max_values: int = 6, max_attributes: int = 2) -> list[str]:
    """Attributes worth a matrix when none are named: those with 2..``max_values`` distinct
    values (participant ids and free text are not), at most ``max_attributes``."""
    attrs = project.attributes()
    return [c for c in attrs.columns if 2 <= attrs[c].nunique() <= max_values][:max_attributes]


def build_report(project: Project, frame: pd.DataFrame, attributes: Sequence[str] | None = None, *, quotes_per_cell: int = 2) -> Report:
    """Frequencies, the code x attribute matrix (coded passages, and the share of the cell's
    transcripts with the code) and quotes per code and cell, from a :func:`codings_frame`.

    A passage counts once per code however many coders accepted it; rejected rows never count.
    Machine suggestions in ``frame`` count, and are labelled in the frequencies and quotes.
    """
    attr_frame = project.attributes()
    attributes = list(default_attributes(project) if attributes is None else attributes)
    unknown = [a for a in attributes if a not in attr_frame.columns]
    if unknown:
        have = ", ".join(attr_frame.columns) or "none"
        raise ProjectError(f"{project.folder}: no attribute {', '.join(map(repr, unknown))} (the project has: {have})")
    names = project.transcripts()["name"]
    cells = _cells(names, attr_frame, attributes)
    cell_sizes = cells.value_counts().reindex(_cell_order(cells, attr_frame, attributes))

    coded = frame[frame["status"].isin(["accepted", "suggested"])].copy()
    coded["cell"] = coded["transcript"].map(cells)
    codes = _codes(project)
    show = codes[((codes["is_leaf"] == 1) & (codes["active"] == 1)) | codes.index.isin(coded["code_id"])]
    paths = show["path"]

    # Passage level: one (segment, code) pair, accepted if any coder accepted it.
    pairs = (
        coded.assign(acc=coded["status"] == "accepted", n_acc=(coded["status"] == "accepted").astype(int))
        .groupby(["segment_id", "code_id"], sort=False)
        .agg(transcript=("transcript", "first"), cell=("cell", "first"), accepted=("acc", "any"), coders=("n_acc", "sum"),
             confidence=("confidence", "max"), speaker=("speaker", "first"), text=("text", "first"), start=("start", "first"))
        .reset_index()
    )
    cols = list(cell_sizes.index)
    counts = pairs.pivot_table(index="code_id", columns="cell", values="segment_id", aggfunc="count", fill_value=0)
    counts = counts.reindex(index=show.index, columns=cols, fill_value=0).astype(int)
    with_code = pairs.groupby(["code_id", "cell"])["transcript"].nunique().unstack(fill_value=0)
    with_code = with_code.reindex(index=show.index, columns=cols, fill_value=0).astype(int)
    shares = with_code.div(cell_sizes.replace(0, pd.NA).astype("float64"), axis=1).fillna(0.0)
    counts.index = shares.index = with_code.index = paths.reindex(show.index).values
    counts.columns.name = shares.columns.name = None

    rejected = frame[frame["status"] == "rejected"].groupby("code_id").size()
    per_code = pairs.groupby("code_id")
    freq = pd.DataFrame(
        {
            "code_id": show.index,
            "code_path": paths.values,
            "passages": per_code.size().reindex(show.index, fill_value=0).astype(int).values,
            "accepted_passages": per_code["accepted"].sum().reindex(show.index, fill_value=0).astype(int).values,
            "suggested_passages": (per_code.size() - per_code["accepted"].sum()).reindex(show.index, fill_value=0).astype(int).values,
            "codings": frame[frame["status"] == "accepted"].groupby("code_id").size().reindex(show.index, fill_value=0).astype(int).values,
            "rejected": rejected.reindex(show.index, fill_value=0).astype(int).values,
            "transcripts": pairs.groupby("code_id")["transcript"].nunique().reindex(show.index, fill_value=0).astype(int).values,
        }
    )
    freq["share_of_transcripts"] = (freq["transcripts"] / max(len(names), 1)).round(3)
    freq["active"] = show["active"].astype(bool).values

    # Quotes: the passages most coders agreed on first, then the model's most confident.
    # Template order of codes, matrix order of cells.
    ranked = pairs.assign(_pos=pairs["code_id"].map(codes["position"]), _cell=pairs["cell"].map({c: i for i, c in enumerate(cols)}))
    ranked = ranked.sort_values(["_pos", "_cell", "accepted", "coders", "confidence", "transcript", "start"],
                                ascending=[True, True, False, False, False, True, True], na_position="last")
    quotes = ranked.groupby(["code_id", "cell"], sort=False).head(quotes_per_cell).copy()
    # Who accepted each quoted passage (only for the few quoted: a join per passage is slow at scale).
    acc = coded[(coded["status"] == "accepted") & coded["segment_id"].isin(quotes["segment_id"])]
    who = acc.groupby(["segment_id", "code_id"])["coder"].agg(lambda c: ", ".join(sorted(set(c))))
    quotes["who"] = [who.get((s, c), "") for s, c in zip(quotes["segment_id"], quotes["code_id"])]
    quotes["code_path"] = quotes["code_id"].map(codes["path"])
    quotes["status"] = quotes["accepted"].map({True: "accepted", False: "suggested"})
    quotes = quotes[["code_id", "code_path", "cell", "transcript", "speaker", "start", "text", "status", "who", "coders", "confidence"]]
    quotes = quotes.rename(columns={"who": "coder_names"})

    scope = {
        "include": frame.attrs.get("include"),
        "threshold": frame.attrs.get("threshold"),
        "model_version": frame.attrs.get("model_version"),
        "transcripts": len(names),
        "coders": sorted({c for c in frame.loc[frame["status"] == "accepted", "coder"] if c}),
        "accepted_passages": int(pairs["accepted"].sum()),
        "suggested_passages": int((~pairs["accepted"]).sum()),
    }
    return Report(attributes, freq, counts, shares, cell_sizes.astype(int), quotes.reset_index(drop=True), scope)


def _cells(names: pd.Series, attr_frame: pd.DataFrame, attributes: list[str]) -> pd.Series:
    if not attributes:
        return pd.Series(ALL_CELL, index=names.values)
    a = attr_frame.reindex(names.values)[attributes].fillna("(none)").astype(str)
    return a.apply(lambda r: " / ".join(r.values), axis=1)


def _cell_order(cells: pd.Series, attr_frame: pd.DataFrame, attributes: list[str]) -> list[str]:
    """Cells sorted attribute by attribute (so sector / level reads sector-major)."""
    if not attributes:
        return [ALL_CELL]
    return sorted(set(cells), key=lambda c: tuple(c.split(" / ")))


def heatmap(report: Report, path: str | Path, *, title: str | None = None) -> Path:
    """PNG heatmap of the share of each cell's transcripts with each code, coded cells
    annotated k/N; rows grouped by top-level theme (named on the right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    _parent(path)
    shares = report.shares
    n_rows, n_cols = max(shares.shape[0], 1), max(shares.shape[1], 1)
    parts = [str(p).split(PATH_SEP) for p in shares.index]
    row_labels = [_short(PATH_SEP.join(p[1:]) or p[0], 62) for p in parts]
    col_labels = [_short(c, 30) for c in shares.columns]
    themes = [p[0] for p in parts]

    # Inches, laid out by hand: tight_layout would draw every text twice, and there can be
    # hundreds of them.
    cell_w, cell_h, char_w = 0.95, 0.27, 0.062
    left = 0.3 + char_w * max((len(s) for s in row_labels), default=4)
    right = 0.4 + 1.2 * char_w * max((len(t) for t in themes), default=4)
    bottom = 1.3 + 0.6 * char_w * max((len(s) for s in col_labels), default=4)
    top = 0.75
    w, h = left + cell_w * n_cols + right, bottom + cell_h * n_rows + top
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((left / w, bottom / h, cell_w * n_cols / w, cell_h * n_rows / h))
    values = shares.to_numpy(dtype=float) if shares.size else [[0.0] * n_cols]
    im = ax.imshow(values, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=35, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.tick_params(length=0)
    sizes = report.cell_sizes.reindex(shares.columns).fillna(0).astype(int).to_numpy()
    for i in range(shares.shape[0]):
        for j in range(shares.shape[1]):
            v = float(shares.iat[i, j])
            if v > 0:
                k = int(round(v * sizes[j]))
                ax.text(j, i, f"{k}/{sizes[j]}", ha="center", va="center", fontsize=7, color="white" if v > 0.55 else "black")
    # Top-level themes: a rule between groups, the theme's name on the right.
    starts = [i for i in range(len(themes)) if i == 0 or themes[i] != themes[i - 1]]
    for i in starts[1:]:
        ax.axhline(i - 0.5, color="#555555", linewidth=0.8)
    ends = starts[1:] + [len(themes)]
    side = ax.secondary_yaxis("right")
    side.set_yticks([(a + b - 1) / 2 for a, b in zip(starts, ends)], [_short(themes[a], 40) for a in starts], fontsize=8, fontweight="bold")
    side.tick_params(length=0)
    by = " × ".join(report.attributes) if report.attributes else "all transcripts"
    label = title or f"Share of transcripts with the code, by {by} (k/N: k of the cell's N transcripts)"
    if report.scope.get("suggested_passages"):
        label += "\nincludes machine suggestions not yet reviewed by a coder"
    fig.suptitle(label, fontsize=10, x=0.02, ha="left", y=1 - 0.25 / h, va="top")
    cax = fig.add_axes((left / w, 0.5 / h, min(3.0, cell_w * n_cols) / w, 0.13 / h))
    fig.colorbar(im, cax=cax, orientation="horizontal").set_label("share of the cell's transcripts", fontsize=8)
    cax.tick_params(labelsize=7)
    fig.savefig(path)
    return path


def _short(s: str, n: int) -> str:
    s = str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


# Enough to stop links, images, HTML, emphasis and table breaks; ordinary punctuation stays
# readable in the raw file.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|<>~])")


def md_escape(text: str) -> str:
    """Untrusted text as literal Markdown: no links, images, HTML or formatting; one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


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


def _n(n: int, singular: str, plural: str | None = None) -> str:
    """"1 coded passage", "2 coded passages"."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def report_markdown(rep: Report, *, project_name: str = "") -> str:
    s = rep.scope
    by = " × ".join(md_escape(a) for a in rep.attributes) or "all transcripts"
    lines = [f"# Coding report{': ' + md_escape(project_name) if project_name else ''}", ""]
    scope = {"accepted": "accepted codings only", "suggested": "accepted codings and machine suggestions",
             "all": "accepted codings and machine suggestions (rejections listed, not counted)"}.get(s.get("include"), "")
    lines.append(f"Exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by coder-assist; scope: {scope}.  ")
    lines.append(f"{_n(s['transcripts'], 'transcript')}; {_n(s['accepted_passages'], 'coded passage')} accepted by "
                 f"{_n(len(s['coders']), 'coder')}{' (' + ', '.join(md_escape(c) for c in s['coders']) + ')' if s['coders'] else ''}.")
    if s["suggested_passages"]:
        thr = f" with confidence ≥ {s['threshold']}" if s.get("threshold") is not None else ""
        lines += ["", f"**Includes {_n(s['suggested_passages'], 'machine suggestion')}{thr} (model v{s['model_version']}) that no coder "
                  "has reviewed.** They are counted in the matrix and marked *machine suggestion* in the quotes; they are not "
                  "a coder's judgement."]
    lines += ["", "A passage counts once per code, however many coders accepted it. Share of transcripts: the transcripts "
              "of the cell with at least one passage coded with the code, out of the cell's transcripts.", ""]

    sugg = s.get("include") != "accepted"
    lines += ["## Code frequencies", "", "| code | passages | accepted | " + ("machine suggestions | " if sugg else "")
              + "transcripts | share of transcripts |", "| --- | ---: | ---: | " + ("---: | " if sugg else "") + "---: | ---: |"]
    for r in rep.frequencies.itertuples(index=False):
        retired = " (retired)" if not r.active else ""
        lines.append(f"| {md_escape(r.code_path)}{retired} | {r.passages} | {r.accepted_passages} | "
                     + (f"{r.suggested_passages} | " if sugg else "") + f"{r.transcripts} | {r.share_of_transcripts:.0%} |")

    cols = list(rep.counts.columns)
    header = "| code | " + " | ".join(f"{md_escape(c)} (n={rep.cell_sizes[c]})" for c in cols) + " |"
    sep = "| --- |" + " ---: |" * len(cols)
    lines += ["", f"## Codes × {by}", "", "### Coded passages", "", header, sep]
    for path, row in rep.counts.iterrows():
        lines.append(f"| {md_escape(path)} | " + " | ".join(str(int(v)) for v in row.values) + " |")
    lines += ["", "### Share of the cell's transcripts with the code", "", header, sep]
    for path, row in rep.shares.iterrows():
        lines.append(f"| {md_escape(path)} | " + " | ".join(f"{v:.0%}" for v in row.values) + " |")
    lines += ["", "![Heatmap: share of transcripts with each code per cell](heatmap.png)", ""]

    lines += ["## Quotes per code and cell", ""]
    if rep.quotes.empty:
        lines.append("No coded passages in this scope.")
    for path, q_code in rep.quotes.groupby("code_path", sort=False):
        lines += [f"### {md_escape(path)}", ""]
        for cell, q in q_code.groupby("cell", sort=False):
            n = int(rep.counts.at[path, cell]) if cell in rep.counts.columns and path in rep.counts.index else len(q)
            lines.append(f"**{md_escape(cell)}** ({n} passage{'s' if n != 1 else ''})")
            lines.append("")
            for r in q.itertuples(index=False):
                if r.status == "accepted":
                    who = f"accepted by {md_escape(r.coder_names)}"
                else:
                    who = f"*machine suggestion*, confidence {r.confidence:.2f}, not reviewed"
                lines.append(f"> {md_escape(_short(r.text, 400))}  ")
                lines.append(f"> — {md_escape(r.transcript)}, {md_escape(r.speaker)} ({who})")
                lines.append("")
    return "\n".join(lines) + "\n"


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
        from ..formats.refi import write_qdpx

        if include == "accepted":
            threshold_q = None
        else:
            threshold_q = 0.0 if threshold is None else float(threshold)
        return ExportResult(fmt, [Path(write_qdpx(project, out, suggestions_threshold=threshold_q))], 0)
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
