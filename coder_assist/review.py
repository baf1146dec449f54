"""The review queue: which suggestion a coder sees next, its context, progress, and the
decisions the review page records. Plain functions over a :class:`~coder_assist.store.Project`
(no Streamlit here), so they are tested on their own and the page stays thin.

Terms used below:

* **pool**: the suggestions of the latest model version whose code is still active in the
  template. Older model versions are history; the queue never mixes versions.
* **decided**: a pool suggestion whose (segment, code) pair has, for this coder, a current
  decision (latest accept/reject/skip not undone, as in :meth:`Project.current_decisions`)
  that is ``accept`` or ``reject``. A pair decided for another reason (for instance accepted
  through "Different code..." on another suggestion) counts as decided too.
* **skipped**: current decision ``skip``. Skipped suggestions stay in the queue, after every
  unskipped one, in the order they were skipped (the earliest skip comes back first), so
  skipping again moves a suggestion to the very end.
* **queued**: pool suggestions not decided (unseen plus skipped).

Coders are independent: every query is per coder, and names are compared after stripping
whitespace, as :meth:`Project.record_decision` stores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

import pandas as pd

from .errors import ProjectError
from .store import Decision, Project

Order = Literal["likely", "uncertain"]
ORDERS: dict[str, str] = {
    "likely": "Most likely first",
    "uncertain": "Most uncertain first",
}

#: Marks the accept that "Different code..." records; it names the reject recorded with it, so
#: that undo takes both back together.
_OTHER_CODE_NOTE = "different code for suggestion {sid} (replaces decision {reject_id})"
_OTHER_CODE_RE = re.compile(r"\(replaces decision (\d+)\)$")

QUEUE_COLUMNS = [
    "suggestion_id",
    "segment_id",
    "transcript_id",
    "transcript",
    "segment_idx",
    "turn_idx",
    "speaker",
    "start",
    "end",
    "text",
    "code_id",
    "code_path",
    "rank",
    "confidence",
    "similarity",
    "evidence",
    "evidence_source",
    "evidence_similarity",
    "model_version_id",
    "skipped",
]


def _coder(coder: str | None) -> str:
    if coder is None or not str(coder).strip():
        raise ProjectError("a decision needs the coder's name")
    return str(coder).strip()


def _reader(coder: str | None) -> str | None:
    """Reading needs no name: ``None`` (or blank) reads as a coder with no decisions yet."""
    return str(coder).strip() or None if coder is not None else None


# Current decision per (segment, code) for one coder: the latest accept/reject/skip that has
# not been undone. Same rule as Project.current_decisions, written with a window function so
# it stays fast on long logs (the undo lookup uses the decisions_undone_once index).
_CURRENT_SQL = """
current AS (
    SELECT segment_id, code_id, action, id AS decision_id FROM (
        SELECT d.segment_id, d.code_id, d.action, d.id,
               ROW_NUMBER() OVER (PARTITION BY d.segment_id, d.code_id ORDER BY d.id DESC) AS rn
        FROM decisions d
        WHERE d.coder = :coder AND d.action != 'undo'
          AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id)
    ) WHERE rn = 1
)"""


def _pool(project: Project, coder: str, *, code_id=None, transcript=None, speaker=None) -> pd.DataFrame:
    """Pool suggestions joined to this coder's current decision (``action`` / ``decision_id``)."""
    mv = project.latest_model_version()
    if mv is None:
        return pd.DataFrame(columns=[*QUEUE_COLUMNS, "action", "decision_id"])
    where = ["g.model_version_id = :mv", "c.active = 1"]
    params: dict = {"mv": mv, "coder": _reader(coder)}
    for col, value, name in (("g.code_id", code_id, "code"), ("t.name", transcript, "transcript"), ("s.speaker", speaker, "speaker")):
        if value is None:
            continue
        values = [value] if isinstance(value, (str, int)) else list(value)
        marks = []
        for i, v in enumerate(values):
            params[f"{name}{i}"] = v
            marks.append(f":{name}{i}")
        where.append(f"{col} IN ({', '.join(marks) or 'NULL'})")
    sql = (
        "WITH "
        + _CURRENT_SQL
        + """
SELECT g.id AS suggestion_id, g.segment_id, s.transcript_id, t.name AS transcript, s.idx AS segment_idx,
       s.turn_idx, s.speaker, s.start, s."end" AS "end", s.text, g.code_id, c.path AS code_path, g.rank,
       g.confidence, g.similarity, g.evidence, g.evidence_source, g.evidence_similarity, g.model_version_id,
       cur.action, cur.decision_id
FROM suggestions g
JOIN segments s ON s.id = g.segment_id
JOIN transcripts t ON t.id = s.transcript_id
JOIN codes c ON c.id = g.code_id
LEFT JOIN current cur ON cur.segment_id = g.segment_id AND cur.code_id = g.code_id
WHERE """
        + " AND ".join(where)
    )
    return pd.read_sql_query(sql, project.conn, params=params)


def review_queue(
    project: Project,
    coder: str | None,
    order: Order = "likely",
    *,
    code_id: str | Iterable[str] | None = None,
    transcript: str | Iterable[str] | None = None,
    speaker: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """The suggestions this coder still has to decide, in review order (first row = next).
    ``coder=None`` previews the queue of a coder who has decided nothing yet.

    ``order``:

    * ``"likely"``: confidence, highest first.
    * ``"uncertain"``: confidence closest to the median confidence of the whole pool first.
      Confidences are calibrated on the template, and at cold start they are all low (a
      0.5 "coin flip" is rarely reached), so distance from 0.5 would only repeat
      ``"likely"``; the pool's median is the model's own borderline. It is taken over the
      whole pool (not the remaining queue) so the order does not reshuffle after every
      decision.

    Ties go to the lower suggestion id. Skipped suggestions follow every unskipped one, the
    earliest skip first. Filters (a value or a list of values) keep suggestions of those
    code ids, transcript names and speakers. Columns: :data:`QUEUE_COLUMNS`.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    pool = _pool(project, coder, code_id=code_id, transcript=transcript, speaker=speaker)
    queue = pool[pool["action"].isna() | (pool["action"] == "skip")].copy()
    queue["skipped"] = queue["action"] == "skip"
    if order == "likely":
        queue["_key"] = -queue["confidence"]
    else:
        median = _pool_median(project)
        queue["_key"] = (queue["confidence"] - median).abs()
    # Unskipped: by the order key. Skipped: by when they were skipped.
    queue["_skip_order"] = queue["decision_id"].where(queue["skipped"], 0).fillna(0)
    queue = queue.sort_values(["skipped", "_skip_order", "_key", "suggestion_id"], kind="mergesort")
    return queue[QUEUE_COLUMNS].reset_index(drop=True)


def _pool_median(project: Project) -> float:
    mv = project.latest_model_version()
    vals = pd.read_sql_query(
        "SELECT g.confidence FROM suggestions g JOIN codes c ON c.id = g.code_id WHERE g.model_version_id = ? AND c.active = 1",
        project.conn,
        params=(mv,),
    )["confidence"]
    return float(vals.median()) if len(vals) else 0.5


def filter_options(project: Project) -> dict[str, list]:
    """Values the queue filters can take (from the pool): ``codes`` as (id, path) pairs in
    template order, ``transcripts`` and ``speakers`` sorted."""
    mv = project.latest_model_version()
    if mv is None:
        return {"codes": [], "transcripts": [], "speakers": []}
    base = (
        "FROM suggestions g JOIN codes c ON c.id = g.code_id JOIN segments s ON s.id = g.segment_id "
        "JOIN transcripts t ON t.id = s.transcript_id WHERE g.model_version_id = ? AND c.active = 1"
    )
    rows = lambda sql: project.conn.execute(sql, (mv,)).fetchall()  # noqa: E731
    return {
        "codes": [(r[0], r[1]) for r in rows(f"SELECT DISTINCT c.id, c.path, c.position {base} ORDER BY c.position")],
        "transcripts": [r[0] for r in rows(f"SELECT DISTINCT t.name {base} ORDER BY t.name")],
        "speakers": [r[0] for r in rows(f"SELECT DISTINCT s.speaker {base} ORDER BY s.speaker")],
    }


# --------------------------------------------------------------------------- context


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
    text = project.transcript_text(seg["transcript_id"])
    rows = project.conn.execute(
        'SELECT idx, speaker, start, "end", timestamp FROM turns WHERE transcript_id = ? AND idx BETWEEN ? AND ? ORDER BY idx',
        (seg["transcript_id"], seg["turn_idx"] - n_turns, seg["turn_idx"] + n_turns),
    ).fetchall()
    out = []
    for r in rows:
        current = r["idx"] == seg["turn_idx"]
        start, end = r["start"], r["end"]
        highlight = None
        if current:
            # Segments lie inside their turn; clamp anyway so a bad row cannot break the page.
            start, end = min(start, seg["start"]), max(end, seg["end"])
            highlight = (seg["start"] - start, seg["end"] - start)
        out.append(ContextTurn(r["idx"], r["speaker"], text[start:end], current, highlight, r["timestamp"]))
    return out


def transcript_attributes(project: Project, transcript_id: int) -> dict[str, str]:
    """Participant attributes of one transcript, in the order they were imported (the
    attribute sheet's column order)."""
    return {
        r[0]: r[1]
        for r in project.conn.execute("SELECT key, value FROM attributes WHERE transcript_id = ? ORDER BY rowid", (int(transcript_id),))
    }


def segment_codes(project: Project, segment_id: int, coder: str) -> pd.DataFrame:
    """This coder's current decisions on one segment (code_id, code_path, action)."""
    return pd.read_sql_query(
        "WITH " + _CURRENT_SQL + " SELECT cur.code_id, c.path AS code_path, cur.action FROM current cur "
        "JOIN codes c ON c.id = cur.code_id WHERE cur.segment_id = :seg ORDER BY cur.decision_id",
        project.conn,
        params={"coder": _reader(coder), "seg": int(segment_id)},
    )


# --------------------------------------------------------------------------- progress


def progress(project: Project, coder: str | None) -> dict:
    """Where this coder stands on the pool.

    Returns ``decided`` (accepted + rejected), ``queued`` (still to decide, skipped
    included), ``skipped``, ``accepted``, ``rejected``, ``total``, ``accept_rate``
    (accepted / decided, ``None`` before the first decision) and ``per_code``: a DataFrame
    with one row per code that has pool suggestions or accepted codings (code_id, code_path,
    suggested, accepted, rejected, skipped, pending, added), where ``added`` counts codes the
    coder applied to segments the model did not suggest them for ("Different code...").
    """
    pool = _pool(project, coder)
    accepted = int((pool["action"] == "accept").sum())
    rejected = int((pool["action"] == "reject").sum())
    skipped = int((pool["action"] == "skip").sum())
    decided = accepted + rejected
    per = (
        pool.assign(
            suggested=1,
            accepted=pool["action"].eq("accept").astype(int),
            rejected=pool["action"].eq("reject").astype(int),
            skipped=pool["action"].eq("skip").astype(int),
            pending=(pool["action"].isna() | pool["action"].eq("skip")).astype(int),
        )
        .groupby(["code_id", "code_path"], as_index=False)[["suggested", "accepted", "rejected", "skipped", "pending"]]
        .sum()
    )
    mv = project.latest_model_version()
    added = pd.read_sql_query(
        "WITH " + _CURRENT_SQL + " SELECT cur.code_id, c.path AS code_path, COUNT(*) AS added FROM current cur "
        "JOIN codes c ON c.id = cur.code_id WHERE cur.action = 'accept' AND NOT EXISTS (SELECT 1 FROM suggestions g "
        "WHERE g.model_version_id IS :mv AND g.segment_id = cur.segment_id AND g.code_id = cur.code_id) "
        "GROUP BY cur.code_id, c.path",
        project.conn,
        params={"coder": _reader(coder), "mv": mv},
    )
    per = per.merge(added, on=["code_id", "code_path"], how="outer")
    count_cols = ["suggested", "accepted", "rejected", "skipped", "pending", "added"]
    per[count_cols] = per[count_cols].fillna(0).astype(int)
    positions = dict(project.conn.execute("SELECT id, position FROM codes").fetchall())
    per = per.sort_values("code_id", key=lambda s: s.map(positions)).reset_index(drop=True)
    return {
        "decided": decided,
        "queued": len(pool) - decided,
        "skipped": skipped,
        "accepted": accepted,
        "rejected": rejected,
        "total": len(pool),
        "accept_rate": accepted / decided if decided else None,
        "per_code": per[["code_id", "code_path", *count_cols]],
    }


# --------------------------------------------------------------------------- decisions


def _suggestion(project: Project, suggestion_id: int) -> tuple[int, str]:
    row = project.conn.execute("SELECT segment_id, code_id FROM suggestions WHERE id = ?", (int(suggestion_id),)).fetchone()
    if row is None:
        raise ProjectError(f"no suggestion with id {suggestion_id}")
    return int(row[0]), row[1]


def decide(project: Project, suggestion_id: int, action: str, coder: str) -> int:
    """Record accept / reject / skip of one suggestion for this coder (committed when this
    returns). Returns the decision id."""
    segment_id, code_id = _suggestion(project, suggestion_id)
    return project.record_decision(segment_id, code_id, action, _coder(coder), suggestion_id=int(suggestion_id))


def choose_other_code(project: Project, suggestion_id: int, code_id: str, coder: str) -> tuple[int, int]:
    """The suggestion is wrong but the segment has another code: reject the suggestion and
    accept ``code_id`` on the same segment, both or neither (one transaction). Returns the
    (reject, accept) decision ids. :func:`undo_last` takes both back together."""
    coder = _coder(coder)
    segment_id, suggested = _suggestion(project, suggestion_id)
    row = project.conn.execute("SELECT is_leaf, active FROM codes WHERE id = ?", (code_id,)).fetchone()
    if row is None or not row["active"]:
        raise ProjectError(f"no code {code_id!r} in the template")
    if not row["is_leaf"]:
        raise ProjectError(f"{code_id!r} has sub-codes; choose one of them")
    if code_id == suggested:
        raise ProjectError("that is the suggested code; use Accept")
    with project.transaction():
        reject_id = project.record_decision(segment_id, suggested, "reject", coder, suggestion_id=int(suggestion_id))
        # The chosen code may itself be a suggestion of this model for this segment.
        other = project.conn.execute(
            "SELECT id FROM suggestions WHERE segment_id = ? AND code_id = ? AND model_version_id = "
            "(SELECT model_version_id FROM suggestions WHERE id = ?)",
            (segment_id, code_id, int(suggestion_id)),
        ).fetchone()
        accept_id = project.record_decision(
            segment_id,
            code_id,
            "accept",
            coder,
            suggestion_id=other[0] if other else None,
            note=_OTHER_CODE_NOTE.format(sid=int(suggestion_id), reject_id=reject_id),
        )
    return reject_id, accept_id


def undo_last(project: Project, coder: str) -> list[Decision]:
    """Undo this coder's last action: the last decision, or both halves of a "Different
    code..." (one transaction). Returns the undone decisions, latest first; empty when there
    is nothing to undo."""
    coder = _coder(coder)
    with project.transaction():
        first = project.undo_last(coder)
        if first is None:
            return []
        undone = [first]
        note = project.conn.execute("SELECT note FROM decisions WHERE id = ?", (first.id,)).fetchone()[0]
        m = _OTHER_CODE_RE.search(note or "")
        if m:
            partner = int(m.group(1))
            nxt = project.conn.execute(
                "SELECT id FROM decisions d WHERE d.coder = ? AND d.action != 'undo' "
                "AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) ORDER BY d.id DESC LIMIT 1",
                (coder,),
            ).fetchone()
            if nxt is not None and nxt[0] == partner:
                second = project.undo_last(coder)
                if second is not None:
                    undone.append(second)
        return undone


def suggestion_for_pair(project: Project, segment_id: int, code_id: str) -> int | None:
    """The latest model version's suggestion id for a (segment, code) pair, if any."""
    row = project.conn.execute(
        "SELECT id FROM suggestions WHERE segment_id = ? AND code_id = ? AND model_version_id = (SELECT MAX(id) FROM model_versions)",
        (int(segment_id), code_id),
    ).fetchone()
    return int(row[0]) if row else None


def leaf_codes(project: Project) -> list[tuple[str, str]]:
    """Active leaf codes as (id, path), in template order."""
    return [tuple(r) for r in project.conn.execute("SELECT id, path FROM codes WHERE is_leaf = 1 AND active = 1 ORDER BY position")]


def last_decision(project: Project, coder: str) -> dict | None:
    """This coder's latest decision that is not undone (what "Undo last" would take back), as a
    dict of the decision row, or ``None``."""
    row = project.conn.execute(
        "SELECT * FROM decisions d WHERE d.coder = ? AND d.action != 'undo' "
        "AND NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) ORDER BY d.id DESC LIMIT 1",
        (_coder(coder),),
    ).fetchone()
    return dict(row) if row is not None else None


def is_repeat(project: Project, suggestion_id: int, action: str, coder: str) -> bool:
    """True when this coder's latest decision is already ``action`` on this suggestion: a
    second press of the same key before the page moved on, which should not be logged twice."""
    last = last_decision(project, coder)
    return last is not None and last["suggestion_id"] == int(suggestion_id) and last["action"] == action


def segment_suggestions(project: Project, segment_id: int) -> pd.DataFrame:
    """The latest model version's suggestions for one segment, by rank (suggestion_id,
    code_id, code_path, rank, confidence)."""
    return pd.read_sql_query(
        "SELECT g.id AS suggestion_id, g.code_id, c.path AS code_path, g.rank, g.confidence FROM suggestions g "
        "JOIN codes c ON c.id = g.code_id WHERE g.segment_id = ? AND g.model_version_id = (SELECT MAX(id) FROM model_versions) "
        "ORDER BY g.rank",
        project.conn,
        params=(int(segment_id),),
    )
