"""Read transcripts (.txt/.md, .docx, .vtt, .srt, .csv) into speaker turns with exact offsets.

Every :class:`Transcript` keeps one string, ``text``, which is what gets stored and exported.
For plain-text formats that string is the decoded file exactly as written (line endings
included). For structured formats (.docx paragraphs, subtitle cues, CSV rows) it is a plain
rendering, one ``Speaker: utterance`` paragraph per turn, so that a QDA tool receiving the
export sees the same characters our offsets point into. Either way every turn satisfies
``transcript.text[turn.start:turn.end] == turn.text``.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from ..core.errors import InputError
from ..core.transcript import Transcript, Turn, is_interviewer

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".vtt", ".srt", ".csv")

# Size limits (docs/threat-model.md). A ten-hour interview is well under 1 MB of text; the
# limits stop a mistaken or hostile file from filling memory or stalling the segmenter.
MAX_FILE_BYTES = 20 * 1024 * 1024  # any one uploaded or imported file (a .docx may hold images)
MAX_TEXT_CHARS = 5_000_000  # the text of one transcript once read
MAX_DOCX_XML_BYTES = 100 * 1024 * 1024  # uncompressed XML inside one .docx (zip bombs)

# A speaker label at the start of a line, in the forms transcripts really use:
#   "Interviewer: ...", "I: ...", "P3: ...", "Participant 3: ...", "R: ...",
#   "[00:01:02] Name: ...", "Name (00:01:02): ...", "00:01:02 Name: ..."
_TS = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?"
# A name is one to four tokens, each capitalised, a number, or an initial, so that ordinary
# sentences containing a colon ("So the thing is: ...") are not mistaken for labels.
_NAME = r"(?:[A-Z][\w'.\-]*|\d+)(?:[ \t]+(?:[A-Z][\w'.\-]*|\d+)){0,3}"
_LABEL_RE = re.compile(
    rf"""^[ \t]*
    (?:[\[(](?P<ts1>{_TS})[\])][ \t]*|(?P<ts0>{_TS})[ \t]+)?      # [00:01:02] or 00:01:02 before
    (?P<name>{_NAME})
    (?:[ \t]*[\[(](?P<ts2>{_TS})[\])])?                              # Name (00:01:02)
    [ \t]*:(?:[ \t]+|(?=\r?\n)|$)
    """,
    re.VERBOSE | re.MULTILINE,
)


# --------------------------------------------------------------------------- decoding


def decode_bytes(data: bytes, path: str | Path) -> tuple[str, str]:
    """Decode transcript bytes: UTF-8 (with or without BOM), else cp1252 (Word exports).

    Refuses empty and binary input with an :class:`InputError` naming the file.
    """
    if not data.strip():
        raise InputError(path, "the file is empty")
    if data.startswith(b"\xef\xbb\xbf"):
        text, enc = data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text, enc = data.decode("utf-16"), "utf-16"
    else:
        if b"\x00" in data:
            raise InputError(path, "this looks like a binary file, not a text transcript (it contains NUL bytes)")
        try:
            text, enc = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            try:
                text, enc = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError as exc:
                raise InputError(path, f"cannot decode the text as UTF-8 or Windows-1252 ({exc.reason} at byte {exc.start})") from exc
    if _looks_binary(text):
        raise InputError(path, "this looks like a binary file, not a text transcript (too many control characters)")
    if not text.strip():
        raise InputError(path, "the file is empty")
    return text, enc


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    if not sample:
        return False
    bad = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\n\r\f") or ch == "\ufffd" or 0x7F <= ord(ch) < 0xA0)
    return bad / len(sample) > 0.05


# --------------------------------------------------------------------------- plain text


def parse_speaker_text(text: str, path: str | Path | None = None) -> list[Turn]:
    """Split text into turns at speaker labels.

    Lines before the first label are a header (title, notes) and belong to no turn. A
    paragraph without a label continues the previous turn. Text without any label becomes one
    turn per paragraph with an empty speaker (field notes, memos).
    """
    matches = _speaker_labels(text)
    turns: list[Turn] = []
    if not matches:
        for m in re.finditer(r"\S(?:.*?\S)?(?=\s*(?:\r?\n[ \t]*\r?\n|\Z))", text, re.DOTALL):
            turns.append(Turn(len(turns), "", m.start(), m.end(), m.group(0)))
        return turns
    for i, m in enumerate(matches):
        seg_start = m.end()
        seg_end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        start, end = _strip_span(text, seg_start, seg_end)
        speaker = re.sub(r"\s+", " ", m.group("name")).strip()
        ts = m.group("ts1") or m.group("ts0") or m.group("ts2")
        if start >= end:
            continue  # a label with nothing said (e.g. "P3:" then the next label)
        turns.append(Turn(len(turns), speaker, start, end, text[start:end], ts))
    return turns


_KNOWN_LABEL_RE = re.compile(r"^(?:P|Participant|Respondent|Interviewee|Speaker)\s*\d+$|^(?:R|Respondent|Interviewee)$", re.I)


def _speaker_labels(text: str) -> list[re.Match]:
    """Label matches that really are speakers.

    Known forms (interviewer names, P3, Participant 3, R) count wherever they appear, and so
    does any label with a timestamp. Any other name must label at least two turns: a single
    "Note: ..." or "Yeah: ..." inside an answer is prose, not a new speaker.
    """
    matches = list(_LABEL_RE.finditer(text))
    counts: dict[str, int] = {}
    for m in matches:
        key = re.sub(r"\s+", " ", m.group("name")).strip().lower()
        counts[key] = counts.get(key, 0) + 1

    def real(m: re.Match) -> bool:
        name = re.sub(r"\s+", " ", m.group("name")).strip()
        return (
            is_interviewer(name)
            or bool(_KNOWN_LABEL_RE.match(name))
            or bool(m.group("ts0") or m.group("ts1") or m.group("ts2"))
            or counts[name.lower()] >= 2
        )

    return [m for m in matches if real(m)]


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# --------------------------------------------------------------------------- structured formats


def _render(utterances: Sequence[tuple[str, str, str | None]]) -> tuple[str, list[Turn]]:
    """Render (speaker, utterance, timestamp) rows as ``Speaker: text`` paragraphs with offsets."""
    parts: list[str] = []
    turns: list[Turn] = []
    pos = 0
    for speaker, utt, ts in utterances:
        utt = utt.strip()
        if not utt:
            continue
        prefix = f"{speaker}: " if speaker else ""
        if parts:
            parts.append("\n\n")
            pos += 2
        parts.append(prefix)
        pos += len(prefix)
        turns.append(Turn(len(turns), speaker, pos, pos + len(utt), utt, ts))
        parts.append(utt)
        pos += len(utt)
    return "".join(parts), turns


def _merge_consecutive(rows: Iterable[tuple[str, str, str | None]]) -> list[tuple[str, str, str | None]]:
    """Join consecutive subtitle cues of one speaker into one turn (a long answer spans cues)."""
    merged: list[list] = []
    for speaker, utt, ts in rows:
        if merged and (not speaker or speaker == merged[-1][0]):
            merged[-1][1] += " " + utt
        else:
            merged.append([speaker, utt, ts])
    return [tuple(r) for r in merged]  # type: ignore[misc]


_INLINE_LABEL_RE = re.compile(rf"^\s*(?P<name>{_NAME})\s*:\s+(?P<rest>.*)$", re.DOTALL)


def _read_subtitles(path: Path, data: bytes, fmt: str) -> tuple[str, list[Turn], str]:
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    raw, enc = decode_bytes(data, path)
    try:
        vtt = webvtt.from_buffer(io.StringIO(raw), format=fmt, strict=True)
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise InputError(path, f"not a valid {fmt.upper()} file: {exc} (check the cue timestamps, e.g. 00:01:02.000 --> 00:01:05.000)") from exc
    if not vtt.captions:
        raise InputError(path, f"no {fmt.upper()} cues with valid timestamps were found (expected lines like 00:01:02.000 --> 00:01:05.000)")
    rows: list[tuple[str, str, str | None]] = []
    for n, cap in enumerate(vtt.captions, 1):
        if cap.end_in_seconds < cap.start_in_seconds:
            raise InputError(path, f"cue {n} ends ({cap.end}) before it starts ({cap.start})")
        text = re.sub(r"\s*\n\s*", " ", cap.text).strip()
        speaker = (getattr(cap, "voice", None) or "").strip()
        if not speaker:
            m = _INLINE_LABEL_RE.match(text)
            if m:
                speaker, text = m.group("name").strip(), m.group("rest").strip()
        rows.append((speaker, text, cap.start))
    text, turns = _render(_merge_consecutive(rows))
    return text, turns, enc


def _read_csv(path: Path, data: bytes) -> tuple[str, list[Turn], str]:
    raw, enc = decode_bytes(data, path)
    try:
        df = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot read as CSV: {exc}") from exc
    cols = {c.strip().lower(): c for c in df.columns}
    speaker_col = next((cols[c] for c in ("speaker", "name", "role") if c in cols), None)
    text_col = next((cols[c] for c in ("text", "utterance", "content", "transcript") if c in cols), None)
    if speaker_col is None or text_col is None:
        raise InputError(path, f"a transcript CSV needs columns 'speaker' and 'text'; found {list(df.columns)}")
    ts_col = next((cols[c] for c in ("timestamp", "time", "start") if c in cols), None)
    # Plain column lists, not iterrows: a row Series per line made a 100,000-line CSV take minutes.
    stamps = df[ts_col].tolist() if ts_col else [None] * len(df)
    rows = [
        (str(s).strip(), str(t), (str(ts) or None) if ts_col else None)
        for s, t, ts in zip(df[speaker_col].tolist(), df[text_col].tolist(), stamps)
    ]
    text, turns = _render(rows)
    if not turns:
        raise InputError(path, "the CSV has no rows with text")
    return text, turns, enc


def _read_docx(path: Path, data: bytes) -> tuple[str, list[Turn], str]:
    if not data.startswith(b"PK"):
        # A .docx is a zip archive; a renamed text or .doc file is the usual mistake.
        hint = "it holds plain text: rename it to .txt" if _is_text(data) else "it may be an old .doc: save it as .docx in Word"
        raise InputError(path, f"not a Word .docx document (a .docx is a zip archive; {hint})")
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            xml_bytes = sum(i.file_size for i in zf.infolist() if i.filename.lower().endswith((".xml", ".rels")))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InputError(path, f"not a readable .docx file (truncated or not a Word document): {exc}") from exc
    if xml_bytes > MAX_DOCX_XML_BYTES:
        raise InputError(path, f"the document's XML unpacks to {xml_bytes / 2**20:.0f} MB; the limit is {MAX_DOCX_XML_BYTES // 2**20} MB (a damaged or hostile file?)")
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        raise InputError(path, f"not a readable .docx file (truncated or not a Word document): {exc}") from exc
    except Exception as exc:  # python-docx raises assorted lxml errors on damaged parts
        raise InputError(path, f"not a readable .docx file: {type(exc).__name__}: {exc}") from exc
    text = "\n".join(p.text for p in document.paragraphs)
    if not text.strip():
        raise InputError(path, "the document has no text")
    return text, parse_speaker_text(text, path), "docx"


def _is_text(data: bytes) -> bool:
    try:
        decode_bytes(data[:4096], "")
        return True
    except (InputError, UnicodeDecodeError):
        return False


def read_transcript(path: str | Path, *, name: str | None = None, attributes: Mapping[str, str] | None = None) -> Transcript:
    """Read one transcript file. Raises :class:`InputError` naming the file on any problem."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise InputError(path, f"unsupported file type {suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(path, f"the file is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB per transcript (split it into parts)")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise InputError(path, "the file is empty")
    if suffix in (".txt", ".md"):
        text, enc = decode_bytes(data, path)
        turns = parse_speaker_text(text, path)
        fmt = suffix[1:]
    elif suffix == ".docx":
        text, turns, enc = _read_docx(path, data)
        fmt = "docx"
    elif suffix in (".vtt", ".srt"):
        text, turns, enc = _read_subtitles(path, data, suffix[1:])
        fmt = suffix[1:]
    else:
        text, turns, enc = _read_csv(path, data)
        fmt = "csv"
    if not turns:
        raise InputError(path, "no text to code was found")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(path, f"the transcript has {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,} (split it into parts)")
    return Transcript(
        name=name or path.stem,
        text=text,
        turns=turns,
        source_path=str(path),
        format=fmt,
        encoding=enc,
        attributes=dict(attributes or {}),
    )


# --------------------------------------------------------------------------- attributes


def read_attributes(path: str | Path) -> pd.DataFrame:
    """Read a participant-attribute sheet: one row per transcript, keyed by a ``transcript`` column.

    Returns a frame indexed by transcript name whose columns are the attributes (all strings).
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError(path, f"the attribute sheet is over the {MAX_FILE_BYTES // 2**20} MB limit")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the attribute file: {exc.strerror or exc}") from exc
    raw, _ = decode_bytes(data, path)
    try:
        df = pd.read_csv(io.StringIO(raw), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot read as CSV: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    key = next((c for c in df.columns if c.lower() in ("transcript", "file", "filename", "document", "name")), None)
    if key is None:
        raise InputError(path, f"an attribute CSV needs a 'transcript' column naming each transcript; found {list(df.columns)}")
    df[key] = df[key].map(lambda s: Path(s.strip()).stem if s.strip() else s.strip())
    if (df[key] == "").any():
        raise InputError(path, f"row {int((df[key] == '').idxmax()) + 2} has an empty '{key}'")
    dup = df[key][df[key].duplicated()]
    if not dup.empty:
        raise InputError(path, f"transcript {dup.iloc[0]!r} appears more than once")
    if len(df.columns) < 2:
        raise InputError(path, "the attribute CSV has no attribute columns besides the transcript name")
    return df.set_index(key).rename_axis("transcript").apply(lambda col: col.str.strip())


def parse_attribute_options(options: Iterable[str]) -> dict[str, str]:
    """Parse ``key=value`` import options into attributes."""
    out: dict[str, str] = {}
    for opt in options:
        if "=" not in opt:
            raise InputError(None, f"attribute option {opt!r} must look like key=value")
        k, v = opt.split("=", 1)
        if not k.strip():
            raise InputError(None, f"attribute option {opt!r} has an empty key")
        out[k.strip()] = v.strip()
    return out


#: Columns only coder-assist's own CSVs carry (precode's suggestions, export's codings): a
#: transcript CSV has speaker and text, never a code.
_OUTPUT_MARKS = ("code_path", "code_id")


def is_tool_output(path: str | Path) -> bool:
    """Whether ``path`` is a CSV of suggestions or codings written by coder-assist (precode,
    export), never a transcript."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return False
    try:
        with open(path, "rb") as f:
            head = f.readline(4096).decode("utf-8-sig", errors="replace").strip().lower()
    except OSError:
        return False
    cols = {c.strip().strip('"').lstrip("'") for c in head.split(",")}
    return any(m in cols for m in _OUTPUT_MARKS)


def _same_file(a: Path, others: Sequence[Path]) -> bool:
    a = a.resolve()
    return any(a == o for o in others)


def expand_inputs(paths: Iterable[str | Path], *, exclude: Iterable[str | Path] = ()) -> tuple[list[Path], Path | None]:
    """Expand folders into their transcript files (sorted) and find a sidecar ``attributes.csv``.

    A CSV named ``attributes.csv`` (or ``*attributes*.csv``) inside a given folder is taken as
    the attribute sheet rather than as a transcript. Files in ``exclude`` (the run's own output)
    and suggestion CSVs an earlier run wrote into the folder are never read as transcripts; a
    file named explicitly that is one of them is an error.
    """
    skip = [Path(e).resolve() for e in exclude]
    files: list[Path] = []
    sidecar: Path | None = None
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.iterdir()):
                if not f.is_file() or f.name.startswith("."):
                    continue
                if _same_file(f, skip) or is_tool_output(f):
                    continue
                if f.suffix.lower() == ".csv" and "attribute" in f.stem.lower():
                    sidecar = f
                elif f.suffix.lower() in SUPPORTED_SUFFIXES and f.name.lower() != "readme.md":
                    files.append(f)
        elif p.exists():
            if _same_file(p, skip):
                raise InputError(p, "this is the output file of this run; it cannot be an input too")
            if is_tool_output(p):
                raise InputError(p, "this CSV holds codes (a file written by coder-assist precode or export), not a transcript")
            files.append(p)
        else:
            raise InputError(p, "no such file or folder")
    if not files:
        raise InputError(", ".join(map(str, paths)), f"no transcripts found (supported: {', '.join(SUPPORTED_SUFFIXES)})")
    return files, sidecar


def load_transcripts(
    paths: Iterable[str | Path],
    attributes: str | Path | pd.DataFrame | None = None,
    extra_attributes: Mapping[str, str] | None = None,
    *,
    exclude: Iterable[str | Path] = (),
    on_files: Callable[[int], None] | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> list[Transcript]:
    """Read every file (folders expanded) and attach attributes. All-or-nothing: any bad file raises.

    ``exclude``: files never to read (the run's own output); ``on_files(n)`` is told how many
    files there are, ``on_file(path)`` each one as it is read (progress)."""
    files, sidecar = expand_inputs(paths, exclude=exclude)
    if on_files is not None:
        on_files(len(files))
    if attributes is None and sidecar is not None:
        attributes = sidecar
    table = read_attributes(attributes) if isinstance(attributes, (str, Path)) else attributes
    transcripts = []
    seen: dict[str, Path] = {}
    for f in files:
        t = read_transcript(f)
        if on_file is not None:
            on_file(f)
        if t.name in seen:
            raise InputError(f, f"two files would both be named {t.name!r} (also {seen[t.name]})")
        seen[t.name] = f
        if table is not None and t.name in table.index:
            t.attributes.update({k: v for k, v in table.loc[t.name].items() if v != ""})
        if extra_attributes:
            t.attributes.update(extra_attributes)
        transcripts.append(t)
    return transcripts

