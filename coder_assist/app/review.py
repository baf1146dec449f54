"""The review queue: which suggestion a coder sees next, its context, progress, and the
decisions the review and transcript pages record. Plain functions over a
:class:`~coder_assist.store.project.Project` (no Streamlit here), so they are tested on their own and
the pages stay thin. This module holds the in-memory queue, its orders and the decision
commands; what they read and write in the database is in :mod:`coder_assist.store.queries`
and the store (one rule for "current decision": ``store.project.CURRENT_DECISION``).

Terms used below:

* **pool**: the suggestions of the active model version (:meth:`Project.latest_model_version`)
  whose code is still active in the template. Other model versions are history; the queue
  never mixes versions.
* **current decision** of a coder on a (segment, code) pair: the latest accept/reject/skip
  that has not been undone, as in :meth:`Project.current_decisions`.
* **decided**: a pool suggestion whose pair has a current decision ``accept`` or ``reject``
  for this coder, whichever way it was made (Accept, "Different code...", the transcript page).
* **skipped**: current decision ``skip``. Skipped suggestions stay in the queue, after every
  unskipped one, in the order they were skipped (the earliest skip comes back first), so
  skipping again moves a suggestion to the very end.
* **queued**: pool suggestions not decided (unseen plus skipped).

Coders are independent: every query is per coder, and names are compared after stripping
whitespace, as :meth:`Project.record_decision` stores them.

Speed: the page asks for one suggestion (:func:`next_suggestion`), not the whole queue. That
is an index scan in queue order that stops at the first suggestion this coder has not decided,
so it costs about as much as the number of decided suggestions it passes, not the size of the
project; counts cost in proportion to the coder's own decisions, and what depends only on the
pool (its size, per-code totals, the median confidence) is computed once per model version
and template (see ``bench/review_queue.py``). :func:`review_queue` still returns the whole
queue as a DataFrame, for exports and as the reference the fast path is tested against.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Iterable, Literal, Mapping

import numpy as np
import pandas as pd

from ..core.errors import ProjectError
from ..store import queries
from ..store.project import EPOCH_KEY, ORIGIN_PASSAGE, Decision, Project
from ..store.queries import (  # noqa: F401  (the review API: the pages read these through this module)
    ContextTurn,
    segment_codes as _segment_codes,
    segment_context,
    segment_suggestions,
    suggestion_for_pair,
    transcript_attributes,
    transcript_codings,
    transcript_segments,
    transcript_suggestions,
)

Order = Literal["likely", "uncertain", "transcript"]
ORDERS: dict[str, str] = {
    "likely": "Most likely first",
    "uncertain": "Most uncertain first",
    "transcript": "In transcript order",
}

#: Marks the accept that "Different code..." records; it names the reject recorded with it, so
#: that undo takes both back together.
_OTHER_CODE_NOTE = "different code for suggestion {sid} (replaces decision {reject_id})"
_OTHER_CODE_RE = re.compile(r"\(replaces decision (\d+)\)$")
#: Notes of decisions made by hand on the transcript page.
MANUAL_ADD_NOTE = "manual: coded on the transcript page"
MANUAL_REMOVE_NOTE = "manual: removed on the transcript page"

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


# --------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filters:
    """What the queue is narrowed to. Each field is ``None`` (no filter) or the values kept;
    ``attributes`` maps an attribute key to the values kept (transcripts with any of them)."""

    code_id: tuple[str, ...] | None = None
    transcript: tuple[str, ...] | None = None
    speaker: tuple[str, ...] | None = None
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @staticmethod
    def _values(value) -> tuple | None:
        if value is None:
            return None
        return (value,) if isinstance(value, (str, int)) else tuple(value)

    @classmethod
    def of(cls, code_id=None, transcript=None, speaker=None, attributes: Mapping[str, object] | None = None) -> "Filters":
        attrs = tuple(
            sorted((str(k), cls._values(v) or ()) for k, v in (attributes or {}).items() if v is not None)
        )
        return cls(cls._values(code_id), cls._values(transcript), cls._values(speaker), attrs)

    @property
    def active(self) -> int:
        return sum(v is not None for v in (self.code_id, self.transcript, self.speaker)) + len(self.attributes)

    @property
    def on_segments(self) -> bool:
        return self.transcript is not None or self.speaker is not None or bool(self.attributes)


# --------------------------------------------------------------------------- the pool, in memory
#
# The page asks, after every decision, for the next suggestion and the counts. Asking SQLite
# means walking past every suggestion this coder already decided (about 10 µs each), which at
# tens of thousands of decisions is too slow. So the pool of the active model version is held
# in memory (numpy arrays, loaded once per model version and template through the covering
# index ``suggestions_pool``), and so is each coder's state, brought up to date on every call
# by reading only the decisions logged since the last call (``decisions_coder`` index; the log
# is append-only, so ids only grow and nothing already read changes). Every answer therefore
# reflects what other tabs, coders and processes have committed, at a cost that does not grow
# with the project or the log.

_STATE = {"accept": 1, "reject": 2, "skip": 3}
_LOCK = threading.RLock()


def _queue_positions(project: Project, mv: int | None, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's segment's place in the saved active-learning order, and whether it is in
    it; (all equal, none) without an order file."""
    none = (np.zeros(len(seg), dtype=np.int64), np.zeros(len(seg), dtype=bool))
    from ..store.models import queue_path

    path = queue_path(project, mv)
    if mv is None or not len(seg) or not path.exists():
        return none
    try:
        order = np.load(path, allow_pickle=False)
    except (ValueError, OSError):
        return none  # a damaged order file: fall back, never fail the queue
    if order.ndim != 1 or not len(order) or not np.issubdtype(order.dtype, np.integer):
        return none
    place = np.full(len(seg), len(order), dtype=np.int64)
    sorter = np.argsort(order, kind="stable")
    at = np.minimum(np.searchsorted(order, seg, sorter=sorter), len(order) - 1)
    found = order[sorter[at]] == seg
    place[found] = sorter[at[found]]
    return place, found


def _reading_positions(project: Project, seg: np.ndarray) -> np.ndarray:
    """Each row's segment's place when the transcripts are read one after another (by name, as
    the Transcripts page lists them) from the top: the "transcript" order's key."""
    if not len(seg):
        return np.zeros(0, dtype=np.int64)
    order = queries.reading_order(project)
    place = np.full(int(max(seg.max(), order.max(initial=0))) + 1, len(order), dtype=np.int64)
    place[order] = np.arange(len(order), dtype=np.int64)
    return place[seg]


def _pool_key(project: Project, mv: int | None) -> tuple:
    """Changes whenever the pool can: another model version, new suggestions, codes switched
    on or off, another database."""
    return (queries.identity(project), mv, *queries.pool_mark(project))


class _Pool:
    """The pool of one model version: arrays indexed by row, rows sorted by (segment, code)."""

    def __init__(self, project: Project, mv: int | None, key: tuple):
        self.key = key
        self.model_version_id = mv
        rowids = queries.code_rowids(project)
        self.code_ids = [c for _, c in rowids]
        self.code_index = {c: i for i, c in enumerate(self.code_ids)}
        self.n_codes = len(self.code_ids) + 1
        # Codes come as their rowid (numbers only), mapped to the index through an array.
        lut = np.zeros(max((r for r, _ in rowids), default=0) + 1, dtype=np.int64)
        for r, c in rowids:
            lut[r] = self.code_index[c]
        arr = queries.pool_suggestions(project, mv)
        n = len(arr)
        ids = arr[:, 0].astype(np.int64)
        seg = arr[:, 1].astype(np.int64)
        code = lut[arr[:, 2].astype(np.int64)]
        conf = arr[:, 3].copy()
        pair = seg * self.n_codes + code
        by_pair = np.argsort(pair, kind="stable")
        self.ids, self.seg, self.code, self.conf, self.pair = ids[by_pair], seg[by_pair], code[by_pair], conf[by_pair], pair[by_pair]
        self.row_of_id: dict[int, int] | None = None  # built on first use
        self.median = float(np.median(self.conf)) if n else 0.5
        # Queue orders (ties: lower suggestion id first), as row numbers. "uncertain" follows
        # the model version's active-learning order (ml.query.query_order, saved by train_project
        # as models/v{N}/queue.npy) where there is one: segments in that order, each segment's
        # suggestions most confident first. Without one (the template scorer), or for segments
        # imported after the retrain, distance to the pool's median confidence.
        near_median = np.abs(self.conf - self.median)
        position, known = _queue_positions(project, mv, self.seg)
        self.orders = {
            "likely": np.lexsort((self.ids, -self.conf)),
            "uncertain": np.lexsort((self.ids, np.where(known, -self.conf, near_median), position)),
        }
        self.rank = {name: np.argsort(o, kind="stable") for name, o in self.orders.items()}
        self.per_code = np.bincount(self.code, minlength=self.n_codes)
        self.masks: dict[Filters, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def order_rows(self, project: Project, order: str) -> np.ndarray:
        """Rows in queue order. Reading order needs every segment's place in its transcript,
        a sort over the whole segments table, so it is built the first time it is asked for."""
        rows = self.orders.get(order)
        if rows is None and order == "transcript":
            rows = self.orders[order] = np.lexsort((self.ids, -self.conf, _reading_positions(project, self.seg)))
        return rows

    def rows_of_pairs(self, seg: np.ndarray, code: np.ndarray) -> np.ndarray:
        """Row of each (segment, code index) pair, -1 where the pair is not in the pool."""
        if not len(self.pair) or not len(seg):
            return np.full(len(seg), -1, dtype=np.int64)
        key = seg * self.n_codes + code
        pos = np.searchsorted(self.pair, key)
        pos_c = np.minimum(pos, len(self.pair) - 1)
        return np.where((pos < len(self.pair)) & (self.pair[pos_c] == key) & (code >= 0), pos_c, -1)

    def row_of_suggestion(self, suggestion_id: int) -> int:
        if self.row_of_id is None:
            self.row_of_id = {i: r for r, i in enumerate(self.ids.tolist())}
        return self.row_of_id.get(int(suggestion_id), -1)

    def mask(self, project: Project, f: Filters) -> np.ndarray | None:
        """Rows matching the filters (``None``: no filter)."""
        if not f.active:
            return None
        m = self.masks.get(f)
        if m is None:
            m = np.ones(len(self), dtype=bool)
            if f.code_id is not None:
                wanted = [self.code_index[c] for c in f.code_id if c in self.code_index]
                m &= np.isin(self.code, np.array(wanted, dtype=np.int64))
            if f.on_segments:
                m &= np.isin(self.seg, queries.filtered_segments(project, f))
            if len(self.masks) > 64:
                self.masks.clear()
            self.masks[f] = m
        return m


class _CoderLog:
    """One coder's decisions, read incrementally: for each (segment, code) pair the chain of
    decisions not undone (the last one is the current decision)."""

    def __init__(self, coder: str):
        self.coder = coder
        self.last_id = 0
        self.last_row: tuple | None = None
        self.epoch: str | None = None
        self.chains: dict[tuple[int, str], list[tuple[int, str]]] = {}
        self.pair_of: dict[int, tuple[int, str]] = {}
        self.views: dict[tuple, "_CoderView"] = {}
        # Passage confirmations: per segment, the ids of its passage-review rows not undone.
        self.passages: dict[int, set[int]] = {}
        self.passage_of: dict[int, int] = {}

    def _reset(self) -> None:
        self.last_id, self.last_row = 0, None
        self.chains, self.pair_of, self.views = {}, {}, {}
        self.passages, self.passage_of = {}, {}

    def refresh(self, project: Project) -> set[tuple[int, str]]:
        epoch = project.meta(EPOCH_KEY)
        if epoch != self.epoch:
            # A template edit re-pointed decisions to other codes: read the log again.
            self._reset()
            self.epoch = epoch
        if self.last_row is not None:
            # The last decision read must still be there as it was; if not, the database was
            # replaced (a backup restored, say), so read this coder's log again from the start.
            if queries.decision_key(project, self.last_id) != self.last_row:
                self._reset()
        rows = queries.decisions_since(project, self.coder, self.last_id)
        changed: set[tuple[int, str]] = set()
        for did, seg, code, action, undoes, unit, origin in rows:
            if action == "undo":
                pair = self.pair_of.get(undoes)
                if pair is not None:
                    chain = self.chains.get(pair, [])
                    self.chains[pair] = [c for c in chain if c[0] != undoes]
                    changed.add(pair)
                pseg = self.passage_of.pop(undoes, None)
                if pseg is not None:
                    live = self.passages.get(pseg, set())
                    live.discard(undoes)
                    if not live:
                        self.passages.pop(pseg, None)
            else:
                pair = (seg, code)
                self.pair_of[did] = pair
                self.chains.setdefault(pair, []).append((did, action))
                changed.add(pair)
                if unit is not None and origin == ORIGIN_PASSAGE:
                    self.passage_of[did] = seg
                    self.passages.setdefault(seg, set()).add(did)
            self.last_id, self.last_row = did, (did, seg, code, action, self.coder)
        if changed:
            for view in self.views.values():
                view.apply(self, changed)
        return changed

    def current(self, pair: tuple[int, str]) -> tuple[int, str] | None:
        chain = self.chains.get(pair)
        return chain[-1] if chain else None

    def view(self, pool: _Pool) -> "_CoderView":
        v = self.views.get(pool.key)
        if v is None:
            self.views = {pool.key: _CoderView(pool, self)}  # only the live pool's view is kept
            v = self.views[pool.key]
        return v


class _CoderView:
    """A coder's state over the rows of one pool: 0 unseen, 1 accepted, 2 rejected, 3 skipped,
    and for skipped rows the id of the skip (the order they come back in)."""

    def __init__(self, pool: _Pool, log: _CoderLog):
        self.pool = pool
        self.state = np.zeros(len(pool), dtype=np.int8)
        self.skip_id = np.zeros(len(pool), dtype=np.int64)
        self.apply(log, set(log.chains))

    def apply(self, log: _CoderLog, pairs: set[tuple[int, str]]) -> None:
        pairs = list(pairs)
        seg = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        code = np.fromiter((self.pool.code_index.get(p[1], -1) for p in pairs), dtype=np.int64, count=len(pairs))
        rows = self.pool.rows_of_pairs(seg, code)
        for pair, row in zip(pairs, rows.tolist()):
            if row < 0:
                continue
            cur = log.current(pair)
            self.state[row] = _STATE[cur[1]] if cur else 0
            self.skip_id[row] = cur[0] if cur and cur[1] == "skip" else 0


_POOLS: dict[tuple, _Pool] = {}
_LOGS: dict[tuple, _CoderLog] = {}


def _pool_for(project: Project) -> _Pool:
    mv = project.latest_model_version()
    key = _pool_key(project, mv)
    with _LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            # One pool per database: a new model version or template replaces the old one.
            for k in [k for k in _POOLS if k[0] == key[0]]:
                del _POOLS[k]
            pool = _POOLS[key] = _Pool(project, mv, key)
        return pool


def _log_for(project: Project, coder: str) -> _CoderLog:
    """This coder's log, brought up to date (the caller holds _LOCK)."""
    key = (queries.identity(project), coder)
    log = _LOGS.get(key)
    if log is None:
        log = _LOGS[key] = _CoderLog(coder)
    log.refresh(project)
    return log


def _view(project: Project, coder: str | None) -> tuple[_Pool, _CoderView | None]:
    pool = _pool_for(project)
    if coder is None:
        return pool, None
    return pool, _log_for(project, coder).view(pool)


@dataclass(frozen=True)
class PoolStats:
    """What depends only on the pool: suggestions per active code, their total, the median
    confidence (the "most uncertain" order's pivot)."""

    model_version_id: int | None
    per_code: dict[str, int] = field(default_factory=dict)
    total: int = 0
    median: float = 0.5


def pool_stats(project: Project) -> PoolStats:
    with _LOCK:
        pool = _pool_for(project)
        per = {pool.code_ids[i]: int(n) for i, n in enumerate(pool.per_code.tolist()) if n and i < len(pool.code_ids)}
        return PoolStats(pool.model_version_id, per, len(pool), pool.median)


@dataclass(frozen=True)
class PoolArrays:
    """The pool as the queue holds it in memory, one entry per suggestion (read-only arrays)."""

    model_version_id: int | None
    suggestion_id: np.ndarray
    segment_id: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.suggestion_id)


def warm_queue(project: Project) -> PoolArrays:
    """Load the active model version's pool into memory now (what the first review page would
    otherwise pay for) and return its arrays: the figure ``bench/million.py`` times, and what
    a batch over the pool (an active-learning pass) can start from without reading it again."""
    with _LOCK:
        pool = _pool_for(project)
    views = []
    for a in (pool.ids, pool.seg, pool.conf):
        v = a.view()
        v.flags.writeable = False  # the queue's own arrays: a caller must not change them
        views.append(v)
    return PoolArrays(pool.model_version_id, *views)


# --------------------------------------------------------------------------- the queue


def _pool(project: Project, coder: str | None, f: Filters) -> pd.DataFrame:
    """Pool suggestions (all of them, as a DataFrame) joined to this coder's current decision
    (``action`` / ``decision_id``). The reference implementation behind :func:`review_queue`."""
    return queries.pool_frame(project, project.latest_model_version(), _reader(coder), f, QUEUE_COLUMNS)


def review_queue(
    project: Project,
    coder: str | None,
    order: Order = "likely",
    *,
    code_id: str | Iterable[str] | None = None,
    transcript: str | Iterable[str] | None = None,
    speaker: str | Iterable[str] | None = None,
    attributes: Mapping[str, str | Iterable[str]] | None = None,
) -> pd.DataFrame:
    """The whole queue of suggestions this coder still has to decide, in review order (first
    row = next). ``coder=None`` previews the queue of a coder who has decided nothing yet.

    ``order``:

    * ``"likely"``: confidence, highest first.
    * ``"uncertain"``: active learning. After a retrain, the model version's saved query
      order (:func:`coder_assist.ml.query.query_order`: uncertainty with a diversity term and a
      random share, the strategy the simulated-researcher benchmark chose), each segment's
      suggestions most confident first. Without a saved order (the template scorer) and for
      segments imported since, confidence closest to the pool's median first: confidences
      are calibrated on the template, and at cold start they are all low (a 0.5 "coin flip"
      is rarely reached), so distance from 0.5 would only repeat ``"likely"``; the pool's
      median is the model's own borderline. Both are fixed per pool, so the order does not
      reshuffle after every decision.

    * ``"transcript"``: reading order: transcripts by name, passages from the top, each
      passage's suggestions most confident first.

    Ties go to the lower suggestion id. Skipped suggestions follow every unskipped one, the
    earliest skip first. Filters (a value or a list of values) keep suggestions of those
    code ids, transcript names, speakers and attribute values (``{"sector": "NHS"}``).
    Columns: :data:`QUEUE_COLUMNS`. The page uses :func:`next_suggestion`, which gives the
    first row of this without reading the rest.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    pool = _pool(project, coder, Filters.of(code_id, transcript, speaker, attributes))
    queue = pool[pool["action"].isna() | (pool["action"] == "skip")].copy()
    queue["skipped"] = queue["action"] == "skip"
    if order == "likely":
        queue["_key"] = -queue["confidence"]
    elif order == "transcript":
        queue = queue.sort_values(["transcript", "transcript_id", "segment_idx", "confidence", "suggestion_id"],
                                  ascending=[True, True, True, False, True], kind="mergesort")
        queue["_key"] = np.arange(len(queue))
    else:
        # The pool's own order (saved active-learning order, then distance to the median).
        with _LOCK:
            pool_ = _pool_for(project)
            rows = np.array([pool_.row_of_suggestion(s) for s in queue["suggestion_id"]], dtype=np.int64)
            queue["_key"] = pool_.rank["uncertain"][rows] if len(rows) else []
    # Unskipped: by the order key. Skipped: by when they were skipped.
    queue["_skip_order"] = queue["decision_id"].where(queue["skipped"], 0).fillna(0)
    queue = queue.sort_values(["skipped", "_skip_order", "_key", "suggestion_id"], kind="mergesort")
    return queue[QUEUE_COLUMNS].reset_index(drop=True)


def _queue_row(project: Project, suggestion_id: int, skipped: bool) -> dict:
    return {**queries.queue_row(project, suggestion_id), "skipped": bool(skipped)}


def next_suggestion(
    project: Project,
    coder: str | None,
    order: Order = "likely",
    *,
    code_id: str | Iterable[str] | None = None,
    transcript: str | Iterable[str] | None = None,
    speaker: str | Iterable[str] | None = None,
    attributes: Mapping[str, str | Iterable[str]] | None = None,
    pin: int | None = None,
) -> dict | None:
    """The first row of :func:`review_queue` (a dict with :data:`QUEUE_COLUMNS`), found
    without building the queue; ``None`` when the queue is empty. ``pin``: a suggestion to
    show first if it is still queued and matches the filters (the one undo just brought back)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    coder = _reader(coder)
    f = Filters.of(code_id, transcript, speaker, attributes)
    with _LOCK:
        pool, view = _view(project, coder)
        if not len(pool):
            return None
        mask = pool.mask(project, f)
        state = view.state if view is not None else np.zeros(len(pool), dtype=np.int8)
        row = -1
        if pin is not None:
            r = pool.row_of_suggestion(int(pin))
            if r >= 0 and state[r] in (0, 3) and (mask is None or mask[r]):
                row = r
        if row < 0:
            ok = state == 0
            if mask is not None:
                ok &= mask
            order_rows = pool.order_rows(project, order)
            hits = np.flatnonzero(ok[order_rows])
            if len(hits):
                row = int(order_rows[hits[0]])
        if row < 0 and view is not None:
            skipped = state == 3
            if mask is not None:
                skipped &= mask
            rows = np.flatnonzero(skipped)
            if len(rows):
                row = int(rows[np.argmin(view.skip_id[rows])])
        if row < 0:
            return None
        sid, skipped = int(pool.ids[row]), bool(state[row] == 3)
    return _queue_row(project, sid, skipped)


def filtered_counts(
    project: Project,
    coder: str | None,
    *,
    code_id=None,
    transcript=None,
    speaker=None,
    attributes: Mapping[str, object] | None = None,
) -> dict[str, int]:
    """``total`` pool suggestions matching the filters and how many of them are still
    ``queued`` for this coder (unseen or skipped)."""
    f = Filters.of(code_id, transcript, speaker, attributes)
    with _LOCK:
        pool, view = _view(project, _reader(coder))
        mask = pool.mask(project, f)
        mask = np.ones(len(pool), dtype=bool) if mask is None else mask
        total = int(mask.sum())
        if view is None:
            return {"total": total, "queued": total}
        decided = int(((view.state == 1) | (view.state == 2))[mask].sum())
    return {"total": total, "queued": total - decided}


def filter_values_mark(project: Project) -> tuple:
    """Changes when :func:`filter_options` can, apart from the pool (:func:`pool_stats`):
    passages imported, attributes added. A page's cache key."""
    return queries.filter_values_mark(project)


def filter_options(project: Project) -> dict[str, list]:
    """Values the queue filters can take: ``codes`` as (id, path) pairs of the pool's codes in
    template order, ``transcripts`` and ``speakers`` (of segments) sorted, ``attributes`` as
    {key: sorted values}."""
    stats = pool_stats(project)
    if stats.model_version_id is None:
        return {"codes": [], "transcripts": [], "speakers": [], "attributes": {}}
    codes = [(c, path) for c, path in project.code_paths(active=True).items() if c in stats.per_code]
    return {"codes": codes, **queries.filter_values(project)}


# --------------------------------------------------------------------------- context


def current_action(project: Project, segment_id: int, code_id: str, coder: str | None) -> str | None:
    """This coder's current decision on one (segment, code) pair: ``accept``, ``reject``,
    ``skip`` or ``None``."""
    coder = _reader(coder)
    return project.current_action(segment_id, code_id, coder) if coder is not None else None


def segment_codes(project: Project, segment_id: int, coder: str) -> pd.DataFrame:
    """This coder's current decisions on one segment (code_id, code_path, action)."""
    return _segment_codes(project, segment_id, _reader(coder))


# --------------------------------------------------------------------------- progress


def progress(project: Project, coder: str | None, *, per_code: bool = True) -> dict:
    """Where this coder stands on the pool: the fast path behind
    :func:`coder_assist.app.figures.queue_progress`, whose terms these are.

    Returns ``decided`` (suggestions decided: pool suggestions whose pair has a decision in
    force, accepted + rejected; decisions on pairs the model did not suggest are counted by
    :func:`coder_assist.app.figures.decisions_in_force`, not here), ``queued`` (still to decide, skipped
    included), ``skipped``, ``accepted``, ``rejected``, ``total``, ``accept_rate``
    (accepted / decided, ``None`` before the first decision) and, with ``per_code``,
    ``per_code``: a DataFrame with one row per code that has pool suggestions or accepted
    codings (code_id, code_path, suggested, accepted, rejected, skipped, pending, added), where
    ``added`` counts codes the coder applied to segments the model did not suggest them for
    ("Different code...", the transcript page).
    """
    coder = _reader(coder)
    with _LOCK:
        pool, view = _view(project, coder)
        state = view.state if view is not None else np.zeros(len(pool), dtype=np.int8)
        n = pool.n_codes
        by_state = {k: np.bincount(pool.code[state == v], minlength=n) for k, v in _STATE.items()}
        added: dict[str, int] = {}
        if per_code and coder is not None:
            log = _LOGS[(queries.identity(project), coder)]
            pairs = [p for p, chain in log.chains.items() if chain and chain[-1][1] == "accept"]
            seg = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
            code = np.fromiter((pool.code_index.get(p[1], -1) for p in pairs), dtype=np.int64, count=len(pairs))
            for p, row in zip(pairs, pool.rows_of_pairs(seg, code).tolist()):
                if row < 0:
                    added[p[1]] = added.get(p[1], 0) + 1
        suggested = pool.per_code
        code_ids = pool.code_ids
    accepted, rejected, skipped = (int(by_state[k].sum()) for k in ("accept", "reject", "skip"))
    decided = accepted + rejected
    out = {
        "decided": decided,
        "queued": len(pool) - decided,
        "skipped": skipped,
        "accepted": accepted,
        "rejected": rejected,
        "total": len(pool),
        "accept_rate": accepted / decided if decided else None,
    }
    if per_code:
        index = {c: i for i, c in enumerate(code_ids)}
        cols = ["code_id", "code_path", "suggested", "accepted", "rejected", "skipped", "pending", "added"]
        rows = []
        for code_id, path in project.code_paths().items():
            i = index.get(code_id)
            sug = int(suggested[i]) if i is not None else 0
            if not sug and not added.get(code_id):
                continue
            a, r, s = (int(by_state[k][i]) if i is not None else 0 for k in ("accept", "reject", "skip"))
            rows.append((code_id, path, sug, a, r, s, sug - a - r, added.get(code_id, 0)))
        out["per_code"] = pd.DataFrame(rows, columns=cols)
    return out


# --------------------------------------------------------------------------- decisions


_suggestion = queries.suggestion_pair


def decide(project: Project, suggestion_id: int, action: str, coder: str) -> int:
    """Record accept / reject / skip of one suggestion for this coder (committed when this
    returns). Returns the decision id."""
    segment_id, code_id = _suggestion(project, suggestion_id)
    return project.record_decision(segment_id, code_id, action, _coder(coder), suggestion_id=int(suggestion_id))


def decide_once(project: Project, suggestion_id: int, action: str, coder: str) -> int | None:
    """:func:`decide` for a page: records nothing and returns ``None`` when this coder has
    already accepted or rejected the pair (in another tab, say), or when the coder's latest
    decision is this very action on this suggestion (a key pressed twice before the page moved
    on). The check and the write are one transaction, so two tabs acting at once cannot both
    record the same decision."""
    coder = _coder(coder)
    with project.transaction():
        segment_id, code_id = _suggestion(project, suggestion_id)
        if current_action(project, segment_id, code_id, coder) in ("accept", "reject"):
            return None
        if is_repeat(project, suggestion_id, action, coder):
            return None
        return project.record_decision(segment_id, code_id, action, coder, suggestion_id=int(suggestion_id))


def choose_other_code(project: Project, suggestion_id: int, code_id: str, coder: str) -> tuple[int, int]:
    """The suggestion is wrong but the segment has another code: reject the suggestion and
    accept ``code_id`` on the same segment, both or neither (one transaction). Returns the
    (reject, accept) decision ids. :func:`undo_last` takes both back together. Refused when
    this coder has already accepted or rejected the suggestion (in another tab, say)."""
    coder = _coder(coder)
    segment_id, suggested = _suggestion(project, suggestion_id)
    _check_leaf(project, code_id)
    if code_id == suggested:
        raise ProjectError("that is the suggested code; use Accept")
    with project.transaction():
        done = current_action(project, segment_id, suggested, coder)
        if done in ("accept", "reject"):
            raise ProjectError(f"this suggestion was already {done}ed by {coder} (in another tab or session?); nothing recorded")
        # One unit (schema v6): the reject is its first row, so the unit id is the reject's id,
        # which the accept's note still names (how pairs made before v6 are told apart).
        reject_id = queries.next_decision_id(project)
        note = _OTHER_CODE_NOTE.format(sid=int(suggestion_id), reject_id=reject_id)
        # The chosen code may itself be a suggestion of this model for this segment.
        sibling = queries.sibling_suggestion(project, suggestion_id, code_id)
        unit = project.record_unit(segment_id, [(suggested, "reject", int(suggestion_id)), (code_id, "accept", sibling, note)], coder)
        if unit != reject_id:  # pragma: no cover - the transaction holds the write lock
            raise ProjectError("Different code: the log moved on while recording; nothing recorded")
    return reject_id, reject_id + 1


def _check_leaf(project: Project, code_id: str) -> None:
    flags = queries.code_flags(project, code_id)
    if flags is None or not flags[1]:
        raise ProjectError(f"no code {code_id!r} in the template")
    if not flags[0]:
        raise ProjectError(f"{code_id!r} has sub-codes; choose one of them")


def add_code(project: Project, segment_id: int, code_id: str, coder: str) -> int | None:
    """Code a segment by hand: an ``accept`` decision by this coder (linked to the model's
    suggestion of that code for the segment, if there is one). ``None`` when the coder already
    has the code on the segment."""
    coder = _coder(coder)
    _check_leaf(project, code_id)
    with project.transaction():
        if not queries.has_segment(project, segment_id):
            raise ProjectError(f"no segment with id {segment_id}")
        if current_action(project, segment_id, code_id, coder) == "accept":
            return None
        sid = suggestion_for_pair(project, segment_id, code_id)
        return project.record_decision(int(segment_id), code_id, "accept", coder, suggestion_id=sid, note=MANUAL_ADD_NOTE)


def remove_code(project: Project, segment_id: int, code_id: str, coder: str) -> int | None:
    """Take a code off a segment by hand: a ``reject`` decision by this coder. ``None`` when
    the coder does not have the code on the segment."""
    coder = _coder(coder)
    with project.transaction():
        if current_action(project, segment_id, code_id, coder) != "accept":
            return None
        sid = suggestion_for_pair(project, segment_id, code_id)
        return project.record_decision(int(segment_id), code_id, "reject", coder, suggestion_id=sid, note=MANUAL_REMOVE_NOTE)


def undo_last(project: Project, coder: str) -> list[Decision]:
    """Undo this coder's last action (one transaction): the last decision, or every row of
    the unit it belongs to (a passage confirmed in passage review, both halves of a "Different
    code..."). Returns the undone decisions, latest first; empty when there is nothing to
    undo."""
    coder = _coder(coder)
    with project.transaction():
        undone = project.undo_last_action(coder)
        if len(undone) == 1 and undone[0].unit_id is None:
            # A "Different code..." made before schema v6 has no unit: its accept names its reject.
            m = _OTHER_CODE_RE.search(queries.decision_note(project, undone[0].id) or "")
            if m:
                nxt = project.last_decision(coder)
                if nxt is not None and nxt["id"] == int(m.group(1)) and nxt.get("unit_id") is None:
                    second = project.undo_last(coder)
                    if second is not None:
                        undone.append(second)
        return undone


def leaf_codes(project: Project) -> list[tuple[str, str]]:
    """Active leaf codes as (id, path), in template order."""
    return list(project.code_paths(active=True, leaves=True).items())


def search_codes(codes: Iterable[tuple[str, str]], query: str) -> list[tuple[str, str]]:
    """The (id, path) codes that match a typed ``query``, best first: the code's name (the last
    part of its path) equal to the query, then the name starting with it, then a word of the
    name equal to it, then a word of the name starting with it, then the query anywhere in
    the name, then anywhere in the parents' path. Within a tier the shorter name leads (it
    is closer to what was typed), then the given (template) order. Case-insensitive. An empty
    query matches every code, in the given order."""
    q = " ".join(str(query).lower().split())
    codes = list(codes)
    if not q:
        return codes
    word_start = re.compile(r"(?:^|[^\w])" + re.escape(q))
    whole_word = re.compile(r"(?:^|[^\w])" + re.escape(q) + r"(?:$|[^\w])")

    def tier(path: str) -> int | None:
        parts = path.split(" > ")
        name, parents = parts[-1].lower(), " > ".join(parts[:-1]).lower()
        if name == q:
            return 0
        if name.startswith(q):
            return 1
        if whole_word.search(name):
            return 2
        if word_start.search(name):
            return 3
        if q in name:
            return 4
        if q in parents:
            return 5
        return None

    ranked = [((t, len(c[1].split(" > ")[-1]), i), c) for i, c in enumerate(codes) if (t := tier(c[1])) is not None]
    return [c for _, c in sorted(ranked, key=lambda x: x[0])]


def last_decision(project: Project, coder: str) -> dict | None:
    """This coder's latest decision that is not undone (what "Undo last" would take back), as a
    dict of the decision row, or ``None``."""
    return project.last_decision(_coder(coder))


def is_repeat(project: Project, suggestion_id: int, action: str, coder: str) -> bool:
    """True when this coder's latest decision is already ``action`` on this suggestion: a
    second press of the same key before the page moved on, which should not be logged twice."""
    last = last_decision(project, coder)
    return last is not None and last["suggestion_id"] == int(suggestion_id) and last["action"] == action


# --------------------------------------------------------------------------- what a page needs


_SUMMARY_CACHE: dict[tuple, dict[str, int]] = {}


def project_summary(project: Project) -> dict[str, int]:
    """Transcripts, segments, active leaf codes and pool suggestions, for the sidebar. Cached
    until transcripts, codes or the pool change, so it costs nothing per click at any size."""
    stats = pool_stats(project)
    key = (queries.identity(project), *queries.summary_mark(project), stats.model_version_id, stats.total)
    with _LOCK:
        hit = _SUMMARY_CACHE.get(key)
    if hit is None:
        hit = {**queries.summary_counts(project), "suggestions": stats.total}
        with _LOCK:
            if len(_SUMMARY_CACHE) > 64:
                _SUMMARY_CACHE.clear()
            _SUMMARY_CACHE[key] = hit
    return hit


def drop_caches() -> None:
    """Forget the in-process review state (queues, coders' logs, sidebar counts): what a server
    restart does, so a benchmark can time a cold first page. The database is not touched."""
    with _LOCK:
        _POOLS.clear()
        _LOGS.clear()
        _SUMMARY_CACHE.clear()


@dataclass
class PageData:
    """Everything the review page shows for one suggestion (``row is None``: queue empty)."""

    progress: dict
    in_filter: dict[str, int] | None
    row: dict | None
    can_undo: bool
    attributes: dict[str, str] = field(default_factory=dict)
    context: list[ContextTurn] = field(default_factory=list)
    n_for_segment: int = 0
    mine: pd.DataFrame | None = None


def page_data(
    project: Project,
    coder: str | None,
    order: Order = "likely",
    *,
    filters: Mapping[str, object] | None = None,
    pin: int | None = None,
    n_turns: int = 2,
) -> PageData:
    """What the review page reads after every action: progress, the next suggestion with its
    context and evidence, and this coder's decisions on its passage. ``filters``: keyword
    arguments of :func:`next_suggestion` (code_id, transcript, speaker, attributes)."""
    filters = {k: v for k, v in (filters or {}).items() if v is not None and v != {}}
    coder = _reader(coder)
    prog = progress(project, coder, per_code=False)
    in_filter = filtered_counts(project, coder, **filters) if filters else None
    row = next_suggestion(project, coder, order, pin=pin, **filters)
    can_undo = coder is not None and last_decision(project, coder) is not None
    data = PageData(prog, in_filter, row, can_undo)
    if row is not None:
        data.attributes = transcript_attributes(project, row["transcript_id"])
        data.context = segment_context(project, row["segment_id"], n_turns=n_turns)
        data.n_for_segment = len(segment_suggestions(project, row["segment_id"]))
        data.mine = segment_codes(project, row["segment_id"], coder) if coder else pd.DataFrame(columns=["code_id", "code_path", "action"])
    return data


# --------------------------------------------------------------------------- passage review
#
# Passage review (the Review page's main mode) shows one passage with its candidate codes and
# records the coder's answer as a complete label: an accept for every ticked code and a reject
# for every other active leaf code of the template, one unit (``Project.record_unit``, origin
# ``passage``), undone whole. The passages come in the triage queue's order, one per segment:
# the next passage is the segment of the next suggestion :func:`next_suggestion` would show.
# Confirming decides every suggestion on the passage, so a confirmed passage leaves the queue
# by the same rule that moves triage on; it comes back only if the pool gains a suggestion
# that the label did not answer (a code added to the template since, say).

#: Codes listed after the likely ones, unticked (the simulated researcher's N_CANDIDATES).
N_CANDIDATES = 5
#: Passages before and after whose suggestions fill the list of further candidates.
NEARBY = 2


@dataclass(frozen=True)
class Candidate:
    """One code listed for a passage. ``ticked``: its box is ticked when the passage is shown
    (a likely code the coder has not rejected there, or a code the coder holds on it);
    ``suggested``: the active model suggests it for this passage (``confidence``, evidence and
    ``suggestion_id`` are that suggestion's); ``reason``: why it is listed, in words."""

    code_id: str
    code_path: str
    ticked: bool
    suggested: bool
    reason: str
    confidence: float | None = None
    suggestion_id: int | None = None
    evidence: str | None = None
    evidence_source: str | None = None
    evidence_similarity: float | None = None


@dataclass
class PassageView:
    """One passage as passage review shows it."""

    segment: dict  # segment_id, transcript_id, transcript, segment_idx, turn_idx, speaker, start, end, text
    skipped: bool  # its only suggestions left were skipped in triage
    attributes: dict[str, str]
    context: list[ContextTurn]
    candidates: list[Candidate]
    mine: pd.DataFrame  # this coder's current decisions on it (code_id, code_path, action)
    confirmed: int | None = None  # this coder's live passage confirmation of it (a unit id)

    @property
    def segment_id(self) -> int:
        return int(self.segment["segment_id"])


@dataclass
class PassagePage:
    """Everything passage review shows (``passage is None``: no passage left)."""

    progress: dict  # confirmed (passages this coder confirmed), queued, total (passages of the pool)
    in_filter: dict[str, int] | None  # total / queued passages under the filters
    passage: PassageView | None
    can_undo: bool


def _next_segment(project: Project, coder: str | None, order: str, f: Filters, pin: int | None) -> tuple[int, bool] | None:
    """(segment, skipped) of the next passage: ``pin`` if it has a suggestion still queued
    under the filters, else the segment of :func:`next_suggestion`'s row."""
    with _LOCK:
        pool, view = _view(project, coder)
        if not len(pool):
            return None
        mask = pool.mask(project, f)
        state = view.state if view is not None else np.zeros(len(pool), dtype=np.int8)
        if pin is not None:
            # Rows are sorted by (segment, code): one segment's rows are one slice.
            lo, hi = np.searchsorted(pool.seg, [int(pin), int(pin) + 1])
            st_ = state[lo:hi]
            ok = (st_ == 0) | (st_ == 3)
            if mask is not None:
                ok &= mask[lo:hi]
            if ok.any():
                return int(pin), not bool(((st_ == 0) & ok).any())
        ok = state == 0
        if mask is not None:
            ok &= mask
        rows = pool.order_rows(project, order)
        hits = np.flatnonzero(ok[rows])
        if len(hits):
            return int(pool.seg[rows[hits[0]]]), False
        if view is not None:
            skipped = state == 3
            if mask is not None:
                skipped &= mask
            rows = np.flatnonzero(skipped)
            if len(rows):
                return int(pool.seg[rows[np.argmin(view.skip_id[rows])]]), True
    return None


def passage_progress(project: Project, coder: str | None, *, filters: Mapping[str, object] | None = None) -> dict[str, int]:
    """Passage review progress: ``total`` passages with a suggestion in the pool (under the
    filters), ``queued``: those with a suggestion this coder has not accepted or rejected
    (the passages still to review), ``confirmed``: passages this coder confirmed (and did not
    undo), anywhere in the project."""
    f = Filters.of(**{k: v for k, v in (filters or {}).items() if v is not None})
    coder = _reader(coder)
    with _LOCK:
        pool, view = _view(project, coder)
        mask = pool.mask(project, f)
        keep = np.ones(len(pool), dtype=bool) if mask is None else mask
        queued = keep if view is None else keep & ((view.state == 0) | (view.state == 3))
        confirmed = len(_LOGS[(queries.identity(project), coder)].passages) if coder is not None else 0
        # pool.seg is sorted: distinct segments are where the value changes.
        distinct = lambda m: int(np.count_nonzero(np.diff(pool.seg[m])) + 1) if m.any() else 0  # noqa: E731
        return {"total": distinct(keep), "queued": distinct(queued), "confirmed": confirmed}


def _used_codes(project: Project, coder: str | None) -> list[tuple[str, int]]:
    """The codes this coder holds accepted on passages, most used first (ties: template order)."""
    if coder is None:
        return []
    with _LOCK:
        log = _log_for(project, coder)
        counts: dict[str, int] = {}
        for (_, code), chain in log.chains.items():
            if chain and chain[-1][1] == "accept":
                counts[code] = counts.get(code, 0) + 1
    order = {c: i for i, c in enumerate(project.code_paths(active=True, leaves=True))}
    return sorted(((c, n) for c, n in counts.items() if c in order), key=lambda x: (-x[1], order[x[0]]))


def passage_view(project: Project, segment_id: int, coder: str | None, *, skipped: bool = False, n_turns: int = 2,
                 n_candidates: int = N_CANDIDATES) -> PassageView:
    """One passage with its candidate codes, in the order they are numbered:

    1. the likely codes: the active model's suggestions for the passage, most confident first,
       ticked unless this coder's current decision on the pair is a reject;
    2. codes this coder holds accepted on the passage that the model did not suggest, ticked;
    3. up to ``n_candidates`` more, unticked: the model's suggestions for the passages around
       it (nearest first; stored suggestions are all the model keeps of a passage's scores, so
       these stand in for "the next codes by confidence"), then the codes this coder uses most.

    Retired codes and codes with sub-codes are never listed."""
    coder = _reader(coder)
    seg = queries.segment_row(project, segment_id)
    leaves = project.code_paths(active=True, leaves=True)
    mine = segment_codes(project, segment_id, coder) if coder else pd.DataFrame(columns=["code_id", "code_path", "action"])
    action = dict(zip(mine["code_id"], mine["action"]))
    out: list[Candidate] = []
    listed: set[str] = set()
    for r in queries.segment_candidates(project, segment_id).itertuples(index=False):
        if r.code_id not in leaves or r.code_id in listed:
            continue
        listed.add(r.code_id)
        sim = None if r.evidence_similarity is None or pd.isna(r.evidence_similarity) else float(r.evidence_similarity)
        out.append(Candidate(r.code_id, leaves[r.code_id], action.get(r.code_id) != "reject", True, "suggested",
                             float(r.confidence), int(r.suggestion_id), r.evidence, r.evidence_source, sim))
    for code, act in action.items():
        if act == "accept" and code in leaves and code not in listed:
            listed.add(code)
            out.append(Candidate(code, leaves[code], True, False, "your coding"))
    extra: list[Candidate] = []
    for code in dict.fromkeys(queries.nearby_suggestions(project, segment_id, NEARBY)["code_id"]):
        if len(extra) >= n_candidates:
            break
        if code in leaves and code not in listed:
            listed.add(code)
            extra.append(Candidate(code, leaves[code], False, False, "suggested for a passage nearby"))
    for code, n in _used_codes(project, coder):
        if len(extra) >= n_candidates:
            break
        if code not in listed:
            listed.add(code)
            extra.append(Candidate(code, leaves[code], False, False, f"you used it on {n} passage{'s' if n != 1 else ''}"))
    return PassageView(
        seg, bool(skipped), transcript_attributes(project, seg["transcript_id"]), segment_context(project, segment_id, n_turns=n_turns),
        out + extra, mine, project.live_unit(segment_id, coder, ORIGIN_PASSAGE) if coder else None,
    )


def next_passage(
    project: Project,
    coder: str | None,
    order: Order = "likely",
    *,
    filters: Mapping[str, object] | None = None,
    pin: int | None = None,
) -> PassageView | None:
    """The passage passage review shows next (``None``: none left): the segment of the next
    suggestion in the triage queue's ``order`` under ``filters`` (keyword arguments of
    :func:`next_suggestion`), or ``pin`` (a segment, the one undo just brought back) while it
    still has a suggestion to decide."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
    coder = _reader(coder)
    f = Filters.of(**{k: v for k, v in (filters or {}).items() if v is not None})
    hit = _next_segment(project, coder, order, f, pin)
    if hit is None:
        return None
    return passage_view(project, hit[0], coder, skipped=hit[1])


def passage_page(
    project: Project,
    coder: str | None,
    order: Order = "likely",
    *,
    filters: Mapping[str, object] | None = None,
    pin: int | None = None,
) -> PassagePage:
    """What passage review reads after every action: progress, the next passage and whether
    there is anything to undo."""
    filters = {k: v for k, v in (filters or {}).items() if v is not None and v != {}}
    coder = _reader(coder)
    prog = passage_progress(project, coder)
    in_filter = passage_progress(project, coder, filters=filters) if filters else None
    passage = next_passage(project, coder, order, filters=filters, pin=pin)
    can_undo = coder is not None and last_decision(project, coder) is not None
    return PassagePage(prog, in_filter, passage, can_undo)


def confirm_passage(project: Project, segment_id: int, ticked_code_ids: Iterable[str], coder: str) -> int | None:
    """Confirm a passage as coded: an accept of every ticked code and a reject of every other
    active leaf code of the template (ticking nothing says "no code applies"), one unit with
    origin ``passage``, in one transaction. Rows on a code the active model suggested for the
    passage carry that suggestion; the others (the codes nobody suggested) carry none. Returns
    the unit id; ``None`` (nothing recorded) when this coder has already confirmed the passage
    and the log already says exactly this (the same Enter twice, or another tab). Refused when
    a ticked code is not an active leaf code."""
    coder = _coder(coder)
    ticked = list(dict.fromkeys(str(c) for c in ticked_code_ids))
    for code in ticked:
        _check_leaf(project, code)
    with project.transaction():
        if not queries.has_segment(project, segment_id):
            raise ProjectError(f"no segment with id {segment_id}")
        leaves = list(project.code_paths(active=True, leaves=True))
        want = set(ticked)
        if project.live_unit(segment_id, coder, ORIGIN_PASSAGE) is not None:
            cur = segment_codes(project, segment_id, coder)
            now = dict(zip(cur["code_id"], cur["action"]))
            if all(now.get(c) == ("accept" if c in want else "reject") for c in leaves):
                return None
        sugg = queries.segment_candidates(project, segment_id)
        sid = {c: int(s) for c, s in zip(sugg["code_id"], sugg["suggestion_id"])}
        rows = [(c, "accept", sid.get(c)) for c in leaves if c in want]
        rows += [(c, "reject", sid.get(c)) for c in leaves if c not in want]
        return project.record_unit(int(segment_id), rows, coder, origin=ORIGIN_PASSAGE)


def unit_of(project: Project, decisions: Iterable[Decision]) -> dict:
    """What an undo took back, for a page to name it: ``passage`` (the segment id when the
    undone rows were one passage confirmation, else ``None``) and ``accepted``: the codes that
    confirmation had ticked, in template order."""
    decisions = list(decisions)
    if not decisions or decisions[0].unit_id is None:
        return {"passage": None, "accepted": []}
    origin = queries.decision_origin(project, decisions[0].id)
    if origin != ORIGIN_PASSAGE:
        return {"passage": None, "accepted": []}
    order = {c: i for i, c in enumerate(project.code_paths())}
    acc = sorted((d.code_id for d in decisions if d.action == "accept"), key=lambda c: order.get(c, len(order)))
    return {"passage": int(decisions[0].segment_id), "accepted": acc}
