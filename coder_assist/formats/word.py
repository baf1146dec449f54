"""Word out: a transcript as a .docx with each coding as a comment anchored on exactly its span.

Pure: a :class:`WordSource` holds what one document needs (the transcript's stored text, its
turns, attributes and codings as rows with ``start``/``end`` offsets into that text); no
project. Word anchors a comment on whole runs, so each turn is split into runs at every
coding's start and end; a coding that crosses turns is anchored from its first run in one
paragraph to its last run in a later one.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.errors import InputError, ProjectError
from .tables import ensure_parent, inside, unique_names, xml_text

#: Author of the Word comments that carry machine suggestions (a coder name cannot be mistaken
#: for it: it names the model version too).
MACHINE_AUTHOR = "coder-assist model v{mv} (machine suggestion)"


@dataclass
class WordSource:
    """One transcript to write: ``text`` as stored, ``turns`` (speaker, start, end), the
    ``codings`` to comment (start, end, status, coder, code_path, origin, confidence,
    model_version, time) and its ``attributes``."""

    name: str
    text: str
    turns: pd.DataFrame
    codings: pd.DataFrame
    attributes: dict[str, str] = field(default_factory=dict)


def comment_text(row) -> str:
    """What a Word comment says about one coding."""
    conf = f", confidence {row.confidence:.2f}" if pd.notna(row.confidence) else ""
    if row.status == "suggested":
        return f"Machine suggestion (model v{row.model_version}{conf}), not reviewed by a coder: {row.code_path}"
    if row.status == "rejected":
        return f"Rejected: {row.code_path}"
    how = {"by hand": " (coded by hand)", "different code": " (instead of the suggested code)"}.get(row.origin, "")
    return f"{row.code_path}{how}"


def transcript_docx(source: WordSource):
    """A python-docx Document of one transcript, turn by turn, with each of its codings as a
    comment on exactly the coding's span; the comment's author is the coder."""
    from docx import Document
    from docx.shared import Pt

    text, codings = source.text, source.codings
    doc = Document()
    doc.core_properties.title = xml_text(source.name)
    doc.add_heading(xml_text(source.name), level=1)
    if source.attributes:
        doc.add_paragraph().add_run(xml_text("; ".join(f"{k}: {v}" for k, v in source.attributes.items()))).italic = True
    n_sugg = int((codings["status"] == "suggested").sum())
    note = f"{len(codings)} codings as comments (author: the coder)."
    if n_sugg:
        note += f" {n_sugg} of them are machine suggestions not yet reviewed, by author 'coder-assist ... (machine suggestion)'."
    p = doc.add_paragraph(note)
    for r in p.runs:
        r.font.size = Pt(9)

    bounds = set(codings["start"].astype(int)) | set(codings["end"].astype(int))
    runs: list[tuple[int, int, object]] = []
    for t in source.turns.itertuples(index=False):
        para = doc.add_paragraph()
        label = para.add_run(xml_text(f"{t.speaker}: "))
        label.bold = True
        cuts = sorted({t.start, t.end} | {b for b in bounds if t.start < b < t.end})
        for a, b in zip(cuts, cuts[1:]):
            runs.append((a, b, para.add_run(xml_text(text[a:b]))))
    for c in codings.sort_values(["start", "end"]).itertuples(index=False):
        within = [r for a, b, r in runs if a >= c.start and b <= c.end]
        if not within:  # a span on no turn's text (between turns only): nothing to anchor to
            continue
        author = MACHINE_AUTHOR.format(mv=c.model_version) if c.status == "suggested" else str(c.coder)
        comment = doc.add_comment(within, text=xml_text(comment_text(c)), author=xml_text(author), initials=xml_text(_initials(author)))
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


def write_docx(sources: Sequence[WordSource], out: str | Path) -> list[Path]:
    """One Word file per source. ``out``: a folder (created; files named after the
    transcripts, sanitised), a ``.zip`` file, or a ``.docx`` file when there is exactly one
    source. Returns the files written (the zip, for a zip)."""
    out = Path(out)
    if not sources:
        raise ProjectError(f"{out}: no transcripts to export")
    files = unique_names([s.name for s in sources], ".docx")
    if out.suffix.lower() == ".docx":
        if len(sources) != 1:
            raise InputError(out, f"{len(sources)} transcripts make {len(sources)} Word files: give a folder or a .zip instead")
        ensure_parent(out)
        transcript_docx(sources[0]).save(out)
        return [out]
    if out.suffix.lower() == ".zip":
        ensure_parent(out)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for source, fname in zip(sources, files):
                buf = io.BytesIO()
                transcript_docx(source).save(buf)
                zf.writestr(fname, buf.getvalue())  # fname is sanitised: no folders, no '..'
        return [out]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(out, f"cannot create the export folder: {exc.strerror or exc}") from exc
    written = []
    for source, fname in zip(sources, files):
        target = inside(out, fname)
        transcript_docx(source).save(target)
        written.append(target)
    return written
