"""Reads and writes of blind double-coding (schema v4: reliability samples, their segments, the
coders' answers) and the rows the agreement figures are computed from. The rules (what an item
is, how samples are drawn, the statistics) live in :mod:`coder_assist.app.agreement`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Iterable, Sequence

import pandas as pd

from ..core.errors import ProjectError
from .project import CURRENT_DECISION, Project


def decision_and_answer_coders(project: Project) -> set[str]:
    """Names in the decision log and in the reliability answers."""
    q = "SELECT coder FROM decisions UNION SELECT coder FROM reliability_answers"
    return {r[0] for r in project.conn.execute(q)}


def suggested_pairs(project: Project, model_version_id: int) -> set[tuple[int, str]]:
    """(segment, code) pairs that model version stored a suggestion for."""
    rows = project.conn.execute("SELECT segment_id, code_id FROM suggestions WHERE model_version_id = ?", (int(model_version_id),))
    return {(int(s), str(c)) for s, c in rows}


def segments_in_reading_order(project: Project) -> list[tuple[int, int, str]]:
    """(segment id, transcript id, transcript name) of every segment, transcripts by name."""
    return [
        (int(r[0]), int(r[1]), r[2])
        for r in project.conn.execute(
            "SELECT s.id, s.transcript_id, t.name FROM segments s JOIN transcripts t ON t.id = s.transcript_id ORDER BY t.name, s.idx"
        )
    ]


def add_sample(project: Project, name: str | None, share: float, seed: int, created_by: str | None,
               segment_ids: Sequence[int], created_at: str) -> int:
    """Store a drawn sample (its segments in coding order) in one transaction; ``name``
    defaults to "sample N". Refused when the name is taken. Returns the sample id."""
    with project.transaction():
        label = name or f"sample {project.conn.execute('SELECT COUNT(*) FROM reliability_samples').fetchone()[0] + 1}"
        if project.conn.execute("SELECT 1 FROM reliability_samples WHERE name = ?", (label,)).fetchone():
            raise ProjectError(f"{project.folder}: a reliability sample named {label!r} exists already")
        cur = project.conn.execute(
            "INSERT INTO reliability_samples(name, created_at, created_by, share, seed) VALUES (?, ?, ?, ?, ?)",
            (label, created_at, (created_by or "").strip() or None, float(share), int(seed)),
        )
        sample_id = int(cur.lastrowid)
        project.conn.executemany(
            "INSERT INTO reliability_sample_segments(sample_id, segment_id, position) VALUES (?, ?, ?)",
            [(sample_id, int(s), pos) for pos, s in enumerate(segment_ids)],
        )
    return sample_id


def samples(project: Project) -> pd.DataFrame:
    """Reliability samples (id, name, created_at, created_by, share, seed, n_segments)."""
    return pd.read_sql_query(
        "SELECT r.id, r.name, r.created_at, r.created_by, r.share, r.seed, "
        "(SELECT COUNT(*) FROM reliability_sample_segments x WHERE x.sample_id = r.id) AS n_segments "
        "FROM reliability_samples r ORDER BY r.id",
        project.conn,
    )


def sample_id_of(project: Project, ref: str) -> int | None:
    """The id of the sample named ``ref``, else of the sample with id ``ref``; ``None``."""
    row = project.conn.execute("SELECT id FROM reliability_samples WHERE name = ?", (ref,)).fetchone()
    if row is None and ref.isdigit():
        row = project.conn.execute("SELECT id FROM reliability_samples WHERE id = ?", (int(ref),)).fetchone()
    return int(row[0]) if row is not None else None


def sample(project: Project, sample_id: int) -> sqlite3.Row | None:
    """One sample's row (id, name, created_at, created_by, share, seed), ``None`` if absent."""
    return project.conn.execute("SELECT * FROM reliability_samples WHERE id = ?", (int(sample_id),)).fetchone()


def in_sample(project: Project, sample_id: int, segment_id: int) -> bool:
    return project.conn.execute(
        "SELECT 1 FROM reliability_sample_segments WHERE sample_id = ? AND segment_id = ?", (int(sample_id), int(segment_id))
    ).fetchone() is not None


def sample_segments(project: Project, sample_id: int) -> pd.DataFrame:
    """The sample's segments in coding order: position, segment_id, transcript, speaker, text."""
    return pd.read_sql_query(
        "SELECT x.position, s.id AS segment_id, t.name AS transcript, s.speaker, s.text FROM reliability_sample_segments x "
        "JOIN segments s ON s.id = x.segment_id JOIN transcripts t ON t.id = s.transcript_id WHERE x.sample_id = ? ORDER BY x.position",
        project.conn,
        params=(int(sample_id),),
    )


def completion(project: Project, sample_id: int) -> dict[str, int]:
    """Per coder, how many of the sample's segments they have answered."""
    rows = project.conn.execute(
        "SELECT coder, COUNT(DISTINCT segment_id) FROM reliability_answers WHERE sample_id = ? GROUP BY coder ORDER BY coder",
        (int(sample_id),),
    )
    return {r[0]: int(r[1]) for r in rows}


def answered_segments(project: Project, sample_id: int, coder: str) -> set[int]:
    """Segments of the sample this coder has answered (with codes or with "none applies")."""
    rows = project.conn.execute(
        "SELECT DISTINCT a.segment_id FROM reliability_answers a JOIN reliability_sample_segments x "
        "ON x.sample_id = a.sample_id AND x.segment_id = a.segment_id WHERE a.sample_id = ? AND a.coder = ?",
        (int(sample_id), coder),
    )
    return {int(r[0]) for r in rows}


def accepted_codes(project: Project, segment_id: int, coder: str) -> list[str]:
    """The codes whose current decision by this coder on the segment is an accept, by id."""
    return [
        r[0] for r in project.conn.execute(
            f"SELECT d.code_id FROM decisions d WHERE d.segment_id = ? AND d.coder = ? AND d.action = 'accept' AND {CURRENT_DECISION} "
            "ORDER BY d.code_id",
            (int(segment_id), coder),
        )
    ]


def add_answer(project: Project, sample_id: int, segment_id: int, coder: str, code_ids: Iterable[str], created_at: str) -> int:
    """Append an answer (the codes ticked, [] = none applies). Returns its id."""
    with project.transaction():
        cur = project.conn.execute(
            "INSERT INTO reliability_answers(sample_id, segment_id, coder, codes, created_at) VALUES (?, ?, ?, ?, ?)",
            (int(sample_id), int(segment_id), coder, json.dumps(list(code_ids)), created_at),
        )
        return int(cur.lastrowid)


def latest_answers(project: Project, sample_id: int, coder: str) -> dict[int, list[str]]:
    """The coder's latest answer per sample segment: the codes ticked ([] = none applies)."""
    rows = project.conn.execute(
        "SELECT a.segment_id, a.codes FROM reliability_answers a WHERE a.sample_id = ? AND a.coder = ? AND a.id = "
        "(SELECT MAX(b.id) FROM reliability_answers b WHERE b.sample_id = a.sample_id AND b.segment_id = a.segment_id AND b.coder = a.coder)",
        (int(sample_id), coder),
    )
    return {int(r[0]): json.loads(r[1]) for r in rows}


def segment_rows(project: Project, segment_ids: Iterable[int]) -> pd.DataFrame:
    """segment_id, transcript, idx, speaker, text of these segments (unknown ids left out)."""
    return pd.read_sql_query(
        "SELECT s.id AS segment_id, t.name AS transcript, s.idx, s.speaker, s.text FROM segments s JOIN transcripts t "
        "ON t.id = s.transcript_id WHERE s.id IN (SELECT value FROM json_each(?))",
        project.conn,
        params=(json.dumps(sorted(int(x) for x in segment_ids)),),
    )
