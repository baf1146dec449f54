"""The review pages' reads: plain SQL over a :class:`~coder_assist.store.project.Project`, no
caches (the in-memory queue of :mod:`coder_assist.app.review` holds those).

Every read of "current" decisions uses the store's one rule (:data:`CURRENT_DECISION`,
:meth:`Project.current_action`, :meth:`Project.last_decision`). Reads that feed the queue's
arrays return numpy arrays read in chunks: at a million suggestions, Python tuples with
code-id strings took most of the first page's time and memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

import numpy as np
import pandas as pd

from ..core.errors import ProjectError
from .project import CURRENT_DECISION, Project

_CHUNK = 200_000

_QUEUE_ROW = """g.id AS suggestion_id, g.segment_id, s.transcript_id, t.name AS transcript, s.idx AS segment_idx,
       s.turn_idx, s.speaker, s.start, s."end" AS "end", s.text, g.code_id, c.path AS code_path, g.rank,
       g.confidence, g.similarity, g.evidence, g.evidence_source, g.evidence_similarity, g.model_version_id"""


class QueueFilter(Protocol):
    """What the queue is narrowed to (``coder_assist.app.review.Filters``): each ``None`` or
    the values kept; ``attributes`` as ((key, values), ...)."""

    code_id: tuple[str, ...] | None
    transcript: tuple[str, ...] | None
    speaker: tuple[str, ...] | None
    attributes: tuple[tuple[str, tuple[str, ...]], ...]


def identity(project: Project) -> tuple:
    """Which database this is: its folder and creation time (a rebuilt project is another)."""
    return (str(project.folder.resolve()), project.meta("created_at"))


# --------------------------------------------------------------------------- filters as SQL


def _in(col: str, values: Iterable, params: dict, name: str) -> str:
    marks = []
    for v in values:
        key = f"{name}{len(params)}"
        params[key] = v
        marks.append(f":{key}")
    return f"{col} IN ({', '.join(marks) or 'NULL'})"


def _segment_conditions(f: QueueFilter, params: dict) -> list[str]:
    """Conditions on segments ``s`` for the transcript, speaker and attribute filters."""
    out = []
    if f.transcript is not None:
        out.append("s.transcript_id IN (SELECT id FROM transcripts WHERE " + _in("name", f.transcript, params, "tr") + ")")
    if f.speaker is not None:
        out.append(_in("s.speaker", f.speaker, params, "sp"))
    for key, values in f.attributes:
        params[f"ak{len(params)}"] = key
        kmark = f":ak{len(params) - 1}"
        out.append(f"s.transcript_id IN (SELECT transcript_id FROM attributes WHERE key = {kmark} AND " + _in("value", values, params, "av") + ")")
    return out


def _code_conditions(f: QueueFilter, params: dict) -> list[str]:
    return [_in("g.code_id", f.code_id, params, "cd")] if f.code_id is not None else []


def filtered_segments(project: Project, f: QueueFilter) -> np.ndarray:
    """Ids of the segments the transcript, speaker and attribute filters keep."""
    params: dict = {}
    conditions = _segment_conditions(f, params) or ["1"]
    sql = "SELECT s.id FROM segments s WHERE " + " AND ".join(conditions)
    return np.fromiter((r[0] for r in project.conn.execute(sql, params)), dtype=np.int64)


# --------------------------------------------------------------------------- the pool's arrays


def pool_mark(project: Project) -> tuple:
    """Changes whenever the pool can (apart from the model version): new suggestions, codes
    switched on or off."""
    max_sugg = project.conn.execute("SELECT MAX(id) FROM suggestions").fetchone()[0]
    active = tuple(r[0] for r in project.conn.execute("SELECT id FROM codes WHERE active = 1 ORDER BY id"))
    return (max_sugg, hash(active))


def code_rowids(project: Project) -> list[tuple[int, str]]:
    """(rowid, id) of every code, retired ones included, in insertion order."""
    return [(int(r[0]), r[1]) for r in project.conn.execute("SELECT rowid, id FROM codes ORDER BY rowid")]


def pool_suggestions(project: Project, mv: int | None) -> np.ndarray:
    """The pool of model version ``mv`` as an (n, 4) float array: suggestion id, segment id,
    code rowid, confidence; suggestions of active codes only (covering index suggestions_pool)."""
    chunks = []
    if mv is not None:
        cur = project.conn.execute(
            "SELECT g.id, g.segment_id, c.rowid, g.confidence FROM suggestions g JOIN codes c ON c.id = g.code_id "
            "WHERE g.model_version_id = ? AND c.active = 1",
            (mv,),
        )
        while batch := cur.fetchmany(_CHUNK):
            chunks.append(np.array(batch, dtype=np.float64))
    return np.concatenate(chunks) if chunks else np.zeros((0, 4))


def reading_order(project: Project) -> np.ndarray:
    """Every segment id in reading order: transcripts by name (as the Transcripts page lists
    them), passages from the top."""
    chunks = []
    cur = project.conn.execute(
        "SELECT s.id FROM segments s JOIN transcripts t ON t.id = s.transcript_id ORDER BY t.name, t.id, s.idx"
    )
    while batch := cur.fetchmany(_CHUNK):
        chunks.append(np.array([r[0] for r in batch], dtype=np.int64))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def decision_key(project: Project, decision_id: int) -> tuple | None:
    """(id, segment_id, code_id, action, coder) of one log row, ``None`` if it is not there."""
    row = project.conn.execute("SELECT id, segment_id, code_id, action, coder FROM decisions WHERE id = ?", (int(decision_id),)).fetchone()
    return tuple(row) if row is not None else None


def decisions_since(project: Project, coder: str, after_id: int) -> list[tuple]:
    """This coder's log rows after ``after_id``, oldest first: (id, segment_id, code_id,
    action, undoes, unit_id, origin). The log only grows, so reading on from the last id read
    misses nothing."""
    return project.conn.execute(
        "SELECT id, segment_id, code_id, action, undoes, unit_id, origin FROM decisions WHERE coder = ? AND id > ? ORDER BY id",
        (coder, int(after_id)),
    ).fetchall()


# --------------------------------------------------------------------------- queue rows


def pool_frame(project: Project, mv: int | None, coder: str | None, f: QueueFilter, columns: list[str]) -> pd.DataFrame:
    """Every pool suggestion of ``mv`` matching the filters, with this coder's current decision
    (``action`` / ``decision_id``; none for ``coder=None``)."""
    if mv is None:
        return pd.DataFrame(columns=[*columns, "action", "decision_id"])
    params: dict = {"mv": mv, "coder": coder}
    where = ["g.model_version_id = :mv", "c.active = 1", *_code_conditions(f, params), *_segment_conditions(f, params)]
    sql = f"""WITH current AS (
    SELECT d.segment_id, d.code_id, d.action, d.id AS decision_id FROM decisions d WHERE d.coder = :coder AND {CURRENT_DECISION}
)
SELECT {_QUEUE_ROW}, cur.action, cur.decision_id
FROM suggestions g
JOIN segments s ON s.id = g.segment_id
JOIN transcripts t ON t.id = s.transcript_id
JOIN codes c ON c.id = g.code_id
LEFT JOIN current cur ON cur.segment_id = g.segment_id AND cur.code_id = g.code_id
WHERE """ + " AND ".join(where)
    return pd.read_sql_query(sql, project.conn, params=params)


def queue_row(project: Project, suggestion_id: int) -> dict:
    """One suggestion as a queue row (the review queue's columns but ``skipped``)."""
    row = project.conn.execute(
        f"""SELECT {_QUEUE_ROW}
FROM suggestions g JOIN segments s ON s.id = g.segment_id JOIN transcripts t ON t.id = s.transcript_id
JOIN codes c ON c.id = g.code_id WHERE g.id = ?""",
        (int(suggestion_id),),
    ).fetchone()
    if row is None:
        raise ProjectError(f"no suggestion with id {suggestion_id}")
    return dict(row)


def filter_values(project: Project) -> dict[str, object]:
    """What the queue filters can name: ``transcripts`` and ``speakers`` (of segments) sorted,
    ``attributes`` as {key: sorted values}."""
    attrs: dict[str, list[str]] = {}
    for key, value in project.conn.execute("SELECT DISTINCT key, value FROM attributes ORDER BY key, value"):
        attrs.setdefault(key, []).append(value)
    return {
        "transcripts": [r[0] for r in project.conn.execute("SELECT name FROM transcripts ORDER BY name")],
        "speakers": [r[0] for r in project.conn.execute("SELECT DISTINCT speaker FROM segments ORDER BY speaker")],
        "attributes": attrs,
    }


def filter_values_mark(project: Project) -> tuple[int | None, int]:
    """Changes when the filter values can: segments imported, attributes added."""
    return (project.conn.execute("SELECT MAX(id) FROM segments").fetchone()[0],
            project.conn.execute("SELECT COUNT(*) FROM attributes").fetchone()[0])


# --------------------------------------------------------------------------- one suggestion, one segment


def suggestion_pair(project: Project, suggestion_id: int) -> tuple[int, str]:
    """The (segment id, code id) a suggestion is on."""
    row = project.conn.execute("SELECT segment_id, code_id FROM suggestions WHERE id = ?", (int(suggestion_id),)).fetchone()
    if row is None:
        raise ProjectError(f"no suggestion with id {suggestion_id}")
    return int(row[0]), row[1]


def sibling_suggestion(project: Project, suggestion_id: int, code_id: str) -> int | None:
    """The suggestion of ``code_id`` on the same segment, by the same model version as
    ``suggestion_id``, if the model made one."""
    row = project.conn.execute(
        "SELECT o.id FROM suggestions g JOIN suggestions o ON o.segment_id = g.segment_id AND o.model_version_id = g.model_version_id "
        "WHERE g.id = ? AND o.code_id = ?",
        (int(suggestion_id), code_id),
    ).fetchone()
    return int(row[0]) if row else None


def suggestion_for_pair(project: Project, segment_id: int, code_id: str) -> int | None:
    """The active model version's suggestion id for a (segment, code) pair, if any."""
    mv = project.latest_model_version()
    row = project.conn.execute(
        "SELECT id FROM suggestions WHERE segment_id = ? AND code_id = ? AND +model_version_id IS ?",
        (int(segment_id), code_id, mv),
    ).fetchone()
    return int(row[0]) if row else None


def code_flags(project: Project, code_id: str) -> tuple[bool, bool] | None:
    """(is_leaf, active) of a code, ``None`` for an unknown id."""
    row = project.conn.execute("SELECT is_leaf, active FROM codes WHERE id = ?", (code_id,)).fetchone()
    return (bool(row[0]), bool(row[1])) if row is not None else None


def has_segment(project: Project, segment_id: int) -> bool:
    return project.conn.execute("SELECT 1 FROM segments WHERE id = ?", (int(segment_id),)).fetchone() is not None


def next_decision_id(project: Project) -> int:
    """The id the next decision row will get (inside a write transaction, nobody else's)."""
    return int(project.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM decisions").fetchone()[0])


def decision_origin(project: Project, decision_id: int) -> str | None:
    row = project.conn.execute("SELECT origin FROM decisions WHERE id = ?", (int(decision_id),)).fetchone()
    return row[0] if row else None


def decision_note(project: Project, decision_id: int) -> str | None:
    row = project.conn.execute("SELECT note FROM decisions WHERE id = ?", (int(decision_id),)).fetchone()
    return row[0] if row else None


def segment_suggestions(project: Project, segment_id: int) -> pd.DataFrame:
    """The active model version's suggestions for one segment, by rank (suggestion_id,
    code_id, code_path, rank, confidence)."""
    return pd.read_sql_query(
        "SELECT g.id AS suggestion_id, g.code_id, c.path AS code_path, g.rank, g.confidence FROM suggestions g "
        "JOIN codes c ON c.id = g.code_id WHERE g.segment_id = ? AND +g.model_version_id IS ? ORDER BY g.rank",
        project.conn,
        params=(int(segment_id), project.latest_model_version()),
    )


def segment_candidates(project: Project, segment_id: int) -> pd.DataFrame:
    """The active model version's suggestions for one segment on active codes, with their
    evidence, most confident first (suggestion_id, code_id, code_path, rank, confidence,
    evidence, evidence_source, evidence_similarity)."""
    return pd.read_sql_query(
        "SELECT g.id AS suggestion_id, g.code_id, c.path AS code_path, g.rank, g.confidence, g.evidence, g.evidence_source, "
        "g.evidence_similarity FROM suggestions g JOIN codes c ON c.id = g.code_id "
        "WHERE g.segment_id = ? AND +g.model_version_id IS ? AND c.active = 1 ORDER BY g.confidence DESC, g.id",
        project.conn,
        params=(int(segment_id), project.latest_model_version()),
    )


def nearby_suggestions(project: Project, segment_id: int, n: int = 2) -> pd.DataFrame:
    """The active model version's suggestions on active codes for the ``n`` passages before and
    after one segment in its transcript (code_id, confidence, distance in passages), nearest
    and most confident first."""
    return pd.read_sql_query(
        "SELECT g.code_id, g.confidence, abs(o.idx - s.idx) AS distance FROM segments s "
        "JOIN segments o ON o.transcript_id = s.transcript_id AND o.idx BETWEEN s.idx - :n AND s.idx + :n AND o.id != s.id "
        "JOIN suggestions g ON g.segment_id = o.id JOIN codes c ON c.id = g.code_id "
        "WHERE s.id = :seg AND +g.model_version_id IS :mv AND c.active = 1 ORDER BY distance, g.confidence DESC, g.id",
        project.conn,
        params={"seg": int(segment_id), "n": int(n), "mv": project.latest_model_version()},
    )


def segment_row(project: Project, segment_id: int) -> dict:
    """One segment with its transcript (segment_id, transcript_id, transcript, segment_idx,
    turn_idx, speaker, start, end, text)."""
    row = project.conn.execute(
        'SELECT s.id AS segment_id, s.transcript_id, t.name AS transcript, s.idx AS segment_idx, s.turn_idx, s.speaker, s.start, '
        's."end" AS "end", s.text FROM segments s JOIN transcripts t ON t.id = s.transcript_id WHERE s.id = ?',
        (int(segment_id),),
    ).fetchone()
    if row is None:
        raise ProjectError(f"no segment with id {segment_id}")
    return dict(row)


def segment_codes(project: Project, segment_id: int, coder: str | None) -> pd.DataFrame:
    """This coder's current decisions on one segment (code_id, code_path, action)."""
    return pd.read_sql_query(
        "SELECT d.code_id, c.path AS code_path, d.action FROM decisions d JOIN codes c ON c.id = d.code_id "
        f"WHERE d.segment_id = :seg AND +d.coder = :coder AND {CURRENT_DECISION} ORDER BY d.id",
        project.conn,
        params={"coder": coder, "seg": int(segment_id)},
    )


@dataclass(frozen=True)
class ContextTurn:
    """One turn shown around a segment. ``highlight`` is ``(start, end)`` into ``text`` for
    the segment's turn (``text[start:end]`` is the segment's text), ``None`` elsewhere."""

    idx: int
    speaker: str
    text: str
    is_current: bool
    highlight: tuple[int, int] | None = None
    timestamp: str | None = None


def segment_context(project: Project, segment_id: int, n_turns: int = 2) -> list[ContextTurn]:
    """The segment's turn with the segment highlighted, plus ``n_turns`` turns before and after
    (every speaker, interviewer included), in transcript order."""
    seg = project.conn.execute(
        'SELECT transcript_id, turn_idx, start, "end" FROM segments WHERE id = ?', (int(segment_id),)
    ).fetchone()
    if seg is None:
        raise ProjectError(f"no segment with id {segment_id}")
    rows = project.conn.execute(
        'SELECT idx, speaker, start, "end", timestamp FROM turns WHERE transcript_id = ? AND idx BETWEEN ? AND ? ORDER BY idx',
        (seg["transcript_id"], seg["turn_idx"] - n_turns, seg["turn_idx"] + n_turns),
    ).fetchall()
    if not rows:
        return []
    # Only the stretch of text these turns cover (substr is 1-based), not the whole transcript.
    lo = min(min(r["start"] for r in rows), seg["start"])
    hi = max(max(r["end"] for r in rows), seg["end"])
    text = project.conn.execute("SELECT substr(text, ?, ?) FROM transcripts WHERE id = ?", (lo + 1, hi - lo, seg["transcript_id"])).fetchone()[0]
    out = []
    for r in rows:
        current = r["idx"] == seg["turn_idx"]
        start, end = r["start"], r["end"]
        highlight = None
        if current:
            # Segments lie inside their turn; clamp anyway so a bad row cannot break the page.
            start, end = min(start, seg["start"]), max(end, seg["end"])
            highlight = (seg["start"] - start, seg["end"] - start)
        out.append(ContextTurn(r["idx"], r["speaker"], text[start - lo : end - lo], current, highlight, r["timestamp"]))
    return out


def transcript_attributes(project: Project, transcript_id: int) -> dict[str, str]:
    """Participant attributes of one transcript, in the order they were imported (the
    attribute sheet's column order)."""
    return {
        r[0]: r[1]
        for r in project.conn.execute("SELECT key, value FROM attributes WHERE transcript_id = ? ORDER BY rowid", (int(transcript_id),))
    }


# --------------------------------------------------------------------------- a transcript


def transcript_codings(project: Project, transcript_id: int) -> pd.DataFrame:
    """Every coder's current decisions on the segments of one transcript, one row per
    (segment, code, coder): segment_id, code_id, code_path, code_active, coder, action,
    decision_id."""
    return pd.read_sql_query(
        "SELECT d.segment_id, d.code_id, c.path AS code_path, c.active AS code_active, d.coder, d.action, d.id AS decision_id "
        "FROM segments s JOIN decisions d ON d.segment_id = s.id JOIN codes c ON c.id = d.code_id "
        f"WHERE s.transcript_id = :tid AND {CURRENT_DECISION} ORDER BY s.idx, d.id",
        project.conn,
        params={"tid": int(transcript_id)},
    )


def transcript_suggestions(project: Project, transcript_id: int) -> pd.DataFrame:
    """The pool's suggestions on the segments of one transcript (suggestion_id, segment_id,
    code_id, code_path, rank, confidence)."""
    return pd.read_sql_query(
        "SELECT g.id AS suggestion_id, g.segment_id, g.code_id, c.path AS code_path, g.rank, g.confidence "
        "FROM segments s JOIN suggestions g ON g.segment_id = s.id JOIN codes c ON c.id = g.code_id "
        "WHERE s.transcript_id = :tid AND +g.model_version_id IS :mv AND c.active = 1 ORDER BY s.idx, g.rank",
        project.conn,
        params={"tid": int(transcript_id), "mv": project.latest_model_version()},
    )


def transcript_segments(project: Project, transcript_id: int) -> pd.DataFrame:
    """Segments of one transcript in order (id, idx, turn_idx, start, end, speaker, text)."""
    return pd.read_sql_query(
        'SELECT id, idx, turn_idx, start, "end" AS "end", speaker, text FROM segments WHERE transcript_id = ? ORDER BY idx',
        project.conn,
        params=(int(transcript_id),),
    )


# --------------------------------------------------------------------------- the sidebar


def summary_mark(project: Project) -> tuple:
    """Changes whenever the sidebar's counts can (apart from the pool): transcripts, segments
    or codes added, codes switched on or off."""
    return (
        project.conn.execute("SELECT MAX(id) FROM transcripts").fetchone()[0],
        project.conn.execute("SELECT MAX(id) FROM segments").fetchone()[0],
        project.conn.execute("SELECT COUNT(*), SUM(active * is_leaf) FROM codes").fetchone()[:],
    )


def summary_counts(project: Project) -> dict[str, int]:
    """Transcripts, segments and active leaf codes."""
    one = lambda q: project.conn.execute(q).fetchone()[0]  # noqa: E731
    return {
        "transcripts": one("SELECT COUNT(*) FROM transcripts"),
        "segments": one("SELECT COUNT(*) FROM segments"),
        "codes": one("SELECT COUNT(*) FROM codes WHERE active = 1 AND is_leaf = 1"),
    }
