"""Tables out: CSV and XLSX writers that keep user text inert, and safe export file names.

Transcript text, names and codes are user input: a cell that a spreadsheet could read as a
formula gets a leading quote, characters XML cannot hold are dropped (XLSX and DOCX are XML),
and a file name made from a transcript's name never leaves the chosen folder. Pure functions of
frames and paths; no project.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..core.errors import InputError

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
    ensure_parent(path)
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
    ensure_parent(path)
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
            c = WriteOnlyCell(ws, value=xml_text(col))
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
        return xml_text(v)
    return v


def xml_text(s: str) -> str:
    """``s`` without the characters XML 1.0 cannot hold."""
    return _XML_ILLEGAL.sub("", str(s))


def ensure_parent(path: Path) -> None:
    """Create the folder ``path`` goes in; a clear error naming it when that fails."""
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


def unique_names(names: Iterable[str], suffix: str) -> list[str]:
    """A safe file name per name, made unique case-insensitively (``a.docx``, ``a-2.docx``)."""
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


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, refusing anything that would resolve outside ``folder``."""
    base = folder.resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise InputError(folder, f"refusing to write {name!r} outside the export folder")
    return target
