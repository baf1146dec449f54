"""The project store: one SQLite file per project (``<project>/project.db``).

Foreign keys on, WAL journal, schema version in ``PRAGMA user_version`` with forward
migrations. Decisions are an append-only event log (accept / reject / skip / undo, with coder,
time and the model version that made the suggestion): undo is a recorded event, never a
deletion, and the current coding of a (segment, code) pair is derived from the log. One action
that writes several rows (a passage confirmed as a complete label, a "Different code...") is a
unit (schema v6: every row carries its first row's id), undone whole.

A coding is a span of a transcript (exact character offsets), a code, a coder, a time and an
origin: an accept carries its own span (an imported or hand-coded one) or none (the segment's
span: an accepted suggestion, and every decision made before schema v5). :meth:`Project.codings`
gives the codings in force as spans; segments stay what suggestions and learning work on.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

# What Project.codings says of a decision made before v5 (or without an origin) comes from core.
from ..core.coding import ORIGIN_HAND, ORIGIN_IMPORTED, ORIGIN_SUGGESTION  # noqa: F401  (re-exported)
from ..core.defaults import DEFAULT_MODEL
from ..core.template import Template, parse_template
from ..core.errors import ProjectError
from ..core.transcript import Transcript
from ..core.segment import Segment
from .models import version_dir

DB_NAME = "project.db"
ACTIONS = ("accept", "reject", "skip", "undo")

#: Meta key of the decisions epoch, bumped by :meth:`Project.repoint_decisions`: the one write
#: that changes rows already in the log, so a reader that caches the log (the review queue)
#: reads it again when the epoch moves.
EPOCH_KEY = "decisions_epoch"
#: Meta keys only the store writes (each has its own method); :meth:`Project.set_meta` refuses them.
_STORE_META = frozenset({"template", "created_at", EPOCH_KEY})

# The current-decision rule, written once. SQL conditions on a decisions row aliased ``d``
# (the subqueries use the aliases u_, e_, ue_, so a caller's own aliases do not clash).
#: ``d`` still counts: an accept / reject / skip that no undo points at.
LIVE_DECISION = "d.action != 'undo' AND NOT EXISTS (SELECT 1 FROM decisions u_ WHERE u_.undoes = d.id)"
#: ``d`` is the current decision of its coder on its (segment, code): the latest live one.
CURRENT_DECISION = (
    LIVE_DECISION + " AND NOT EXISTS (SELECT 1 FROM decisions e_ WHERE e_.segment_id = d.segment_id "
    "AND e_.code_id = d.code_id AND e_.coder = d.coder AND e_.id > d.id AND e_.action != 'undo' "
    "AND NOT EXISTS (SELECT 1 FROM decisions ue_ WHERE ue_.undoes = e_.id))"
)

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE transcripts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source_path TEXT,
    format TEXT NOT NULL,
    encoding TEXT,
    text TEXT NOT NULL,
    imported_at TEXT NOT NULL
);

CREATE TABLE attributes (
    transcript_id INTEGER NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (transcript_id, key)
);

CREATE TABLE turns (
    id INTEGER PRIMARY KEY,
    transcript_id INTEGER NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    speaker TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    timestamp TEXT,
    UNIQUE (transcript_id, idx),
    CHECK (start <= "end")
);

CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    transcript_id INTEGER NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    turn_idx INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    speaker TEXT NOT NULL,
    UNIQUE (transcript_id, idx),
    CHECK (start < "end")
);
CREATE INDEX segments_transcript ON segments(transcript_id, start);

CREATE TABLE codes (
    id TEXT PRIMARY KEY,
    parent_id TEXT REFERENCES codes(id) DEFERRABLE INITIALLY DEFERRED,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    position INTEGER NOT NULL,
    is_leaf INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE model_versions (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    kind TEXT NOT NULL,
    encoder TEXT NOT NULL,
    card TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE suggestions (
    id INTEGER PRIMARY KEY,
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    code_id TEXT NOT NULL REFERENCES codes(id),
    model_version_id INTEGER NOT NULL REFERENCES model_versions(id),
    rank INTEGER NOT NULL,
    confidence REAL NOT NULL,
    similarity REAL,
    evidence TEXT,
    evidence_source TEXT,
    evidence_similarity REAL,
    created_at TEXT NOT NULL,
    UNIQUE (segment_id, code_id, model_version_id)
);
CREATE INDEX suggestions_queue ON suggestions(model_version_id, confidence DESC);

CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    code_id TEXT NOT NULL REFERENCES codes(id),
    action TEXT NOT NULL CHECK (action IN ('accept', 'reject', 'skip', 'undo')),
    coder TEXT NOT NULL CHECK (length(trim(coder)) > 0),
    created_at TEXT NOT NULL,
    suggestion_id INTEGER REFERENCES suggestions(id) ON DELETE SET NULL,
    model_version_id INTEGER REFERENCES model_versions(id),
    undoes INTEGER REFERENCES decisions(id),
    note TEXT,
    CHECK ((action = 'undo') = (undoes IS NOT NULL))
);
CREATE INDEX decisions_pair ON decisions(segment_id, code_id, id);
CREATE UNIQUE INDEX decisions_undone_once ON decisions(undoes) WHERE undoes IS NOT NULL;
"""

# v2: per-coder reads (a coder's current decisions, undo of their last one) by index.
_SCHEMA_V2 = "CREATE INDEX decisions_coder ON decisions(coder, id);"

# v3: the review queue at 100k segments. The app loads a model version's suggestions (id,
# segment, code, confidence) through this covering index instead of the wide rows; the
# speaker filter and its options read segments by speaker.
_SCHEMA_V3 = """
CREATE INDEX IF NOT EXISTS suggestions_pool ON suggestions(model_version_id, code_id, confidence, segment_id);
CREATE INDEX IF NOT EXISTS segments_speaker ON segments(speaker);
"""

# v4: blind double-coding. A reliability sample is a fixed draw of segments; an answer records
# that a coder completed one of its segments, with the codes ticked ('[]' = no code applies,
# which the decision log cannot say: it only holds verdicts on single codes). The latest answer
# per (sample, segment, coder) counts.
_SCHEMA_V4 = """
CREATE TABLE IF NOT EXISTS reliability_samples (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    created_by TEXT,
    share REAL NOT NULL CHECK (share > 0 AND share <= 1),
    seed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reliability_sample_segments (
    sample_id INTEGER NOT NULL REFERENCES reliability_samples(id) ON DELETE CASCADE,
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (sample_id, segment_id)
);
CREATE TABLE IF NOT EXISTS reliability_answers (
    id INTEGER PRIMARY KEY,
    sample_id INTEGER NOT NULL REFERENCES reliability_samples(id) ON DELETE CASCADE,
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    coder TEXT NOT NULL CHECK (length(trim(coder)) > 0),
    codes TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reliability_answers_coder ON reliability_answers(sample_id, coder, segment_id, id);
"""

# v5: codings are spans. A decision may carry its own span (exact character offsets into the
# transcript's text; NULL = the segment's own span, which is every decision before v5) and its
# origin ("imported from FILE", "hand-coded"; NULL = derived: an accepted suggestion or a
# hand decision). The log stays append-only: nothing is rewritten, old rows mean what they
# meant. exchange_items keeps what another QDA tool's project holds beyond our model (its
# GUIDs, users, notes, sets, cases, variables, sources we cannot code and their files), so an
# export gives it back.
_SCHEMA_V5 = """
ALTER TABLE decisions ADD COLUMN span_start INTEGER;
ALTER TABLE decisions ADD COLUMN span_end INTEGER;
ALTER TABLE decisions ADD COLUMN origin TEXT;
CREATE TABLE IF NOT EXISTS exchange_items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    guid TEXT,
    ref TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    content BLOB,
    imported_from TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchange_items_kind ON exchange_items(kind, ref);
CREATE INDEX IF NOT EXISTS exchange_items_guid ON exchange_items(guid)
"""

# v6: decision units. One action of a coder may write several rows: a passage confirmed in
# passage review (an accept for each ticked code and a reject for every other leaf code: a
# complete label of the passage), a "Different code..." (the reject of the suggestion and the
# accept of the code chosen). Every row of such an action carries the id of its first row, so
# that undo takes the action back whole. NULL: a decision that is its own action (every row
# before v6). Old rows are not rewritten; "Different code..." pairs made before v6 are still
# paired by their note.
_SCHEMA_V6 = """
ALTER TABLE decisions ADD COLUMN unit_id INTEGER REFERENCES decisions(id);
CREATE INDEX IF NOT EXISTS decisions_unit ON decisions(unit_id) WHERE unit_id IS NOT NULL
"""

# v7: a project records its encoder (meta "model"; Project.create writes it). Before v7 no key
# meant the default encoder, which was all-MiniLM-L6-v2 then: an existing project's passages were
# embedded and its trained models fitted (384-d) with it, so it keeps it, now that the default is
# the multilingual USE. A key already there (a fine-tuned encoder's folder) stays. A database
# without created_at or template is one being created, whose encoder Project.create writes.
_SCHEMA_V7 = """
INSERT INTO meta(key, value) SELECT 'model', 'all-MiniLM-L6-v2'
WHERE EXISTS (SELECT 1 FROM meta WHERE key IN ('created_at', 'template')) AND NOT EXISTS (SELECT 1 FROM meta WHERE key = 'model')
"""

#: MIGRATIONS[i] upgrades schema version i to i + 1. Append, never edit a released step.
MIGRATIONS: list[str] = [_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6, _SCHEMA_V7]

SCHEMA_VERSION = len(MIGRATIONS)

#: Meta keys written by the methods below (named here, so that meta keys live in one place).
REFI_GUID_KEY = "refi_project_guid"  # the project's REFI-QDA GUID (Project.guid)
TEMPLATE_FROM_KEY = "refi_template_from"  # the .qdpx an ``init --from`` started the template from
SUGGEST_RUN_KEY = "suggest_run"  # an unfinished suggest_project run (model version, settings, done transcripts)

#: Origin of the rows of a passage confirmed in passage review (a complete label of the passage).
ORIGIN_PASSAGE = "passage"


def now(timespec: str = "milliseconds") -> str:
    """The one clock of what the project records: UTC, ISO 8601 (``timespec`` as in
    :meth:`datetime.isoformat`; model cards say seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


@dataclass(frozen=True)
class Decision:
    id: int
    segment_id: int
    code_id: str
    action: str
    coder: str
    created_at: str
    undoes: int | None
    unit_id: int | None = None  # the first row of the action this decision is part of (schema v6)


class Project:
    """A coding project on disk. Use :meth:`create` or :meth:`open`.

    One ``Project`` wraps one SQLite connection: give each thread (each browser session, each
    worker) its own ``Project.open(...)``; SQLite's locking and the busy timeout then serialise
    writers across connections and processes.
    """

    def __init__(self, folder: Path, conn: sqlite3.Connection):
        self.folder = folder
        self.conn = conn

    # -- lifecycle -------------------------------------------------------------------------
    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(db, timeout=30, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA busy_timeout = 30000")
        return conn

    @classmethod
    def create(cls, folder: str | Path, template: Template, *, model: str = DEFAULT_MODEL) -> "Project":
        """A new project in ``folder`` with ``template``, recording ``model`` (meta ``model``,
        the name or folder of its encoder; default the default encoder) so that it keeps
        embedding with it when the default changes."""
        folder = Path(folder)
        db = folder / DB_NAME
        if db.exists():
            raise ProjectError(f"{folder}: a project already exists here")
        folder.mkdir(parents=True, exist_ok=True)
        proj = cls(folder, cls._connect(db))
        proj._migrate()
        with proj.transaction():
            proj._set_meta("created_at", now())
            proj._set_meta("model", str(model or DEFAULT_MODEL))
            proj._write_template(template)
        return proj

    @classmethod
    def open(cls, folder: str | Path) -> "Project":
        folder = Path(folder)
        db = folder / DB_NAME if folder.is_dir() or not folder.suffix else folder
        if not db.exists():
            raise ProjectError(f"{folder}: no project here (run 'coder-assist init {folder}' first)")
        proj = cls(db.parent, cls._connect(db))
        version = proj.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ProjectError(f"{db}: made by a newer coder-assist (schema {version} > {SCHEMA_VERSION}); upgrade coder-assist")
        proj._migrate()
        return proj

    def close(self) -> None:
        self.conn.close()

    def backup(self, dest: str | Path | None = None) -> Path:
        """Copy the project to ``dest`` (a new folder; default ``<project>/backups/<UTC time>``)
        while others may be writing: SQLite's online backup API copies one consistent
        snapshot of the database, and the saved model folders of the versions it records are
        copied beside it. Returns the folder, which :meth:`open` accepts."""
        import shutil
        import tempfile

        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        dest = Path(dest) if dest is not None else self.folder / "backups" / stamp
        if (dest / DB_NAME).exists():
            raise ProjectError(f"{dest / DB_NAME}: a project file already exists there; choose a new backup folder")
        try:
            dest.mkdir(parents=True, exist_ok=True)
            # Written under a temporary name and renamed: an interrupted backup never looks complete.
            fd, tmp_name = tempfile.mkstemp(prefix=".backup-", suffix=".db", dir=dest)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                target = sqlite3.connect(tmp)
                try:
                    self.conn.backup(target)
                    versions = [r[0] for r in target.execute("SELECT id FROM model_versions")]
                finally:
                    target.close()
                for v in versions:
                    src = version_dir(self, v)
                    if src.is_dir():
                        shutil.copytree(src, version_dir(dest, v), dirs_exist_ok=True)
                os.replace(tmp, dest / DB_NAME)
            finally:
                tmp.unlink(missing_ok=True)
        except (OSError, sqlite3.Error) as exc:
            raise ProjectError(f"{dest}: cannot write the backup: {exc}") from exc
        return dest

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        for i in range(version, SCHEMA_VERSION):
            with self.transaction():
                for stmt in _split_sql(MIGRATIONS[i]):
                    if self._column_exists(stmt):
                        continue
                    self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {i + 1}")

    def _column_exists(self, stmt: str) -> bool:
        # SQLite has no ADD COLUMN IF NOT EXISTS; every other step is idempotent, so this one
        # is made so too (a step re-run on a database that has it must not fail).
        m = re.match(r"ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)", stmt, re.I)
        if m is None:
            return False
        return any(r[1] == m.group(2) for r in self.conn.execute(f"PRAGMA table_info({m.group(1)})"))

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: all or nothing, and writers queue instead of failing."""
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (disk full, I/O error): a second
                # ROLLBACK would raise and hide the real problem.
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            raise ProjectError(_write_problem(self.folder / DB_NAME, exc)) from exc

    # -- meta and template -----------------------------------------------------------------
    def _set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def set_meta(self, key: str, value: str) -> None:
        """Write one of the app's settings or state values (``model``, ``stale_verdicts``, the
        auto-retrain interval, a run's resume state, an import's origin, ...), committed unless
        inside an outer :meth:`transaction`. The template, the creation time and the decisions
        epoch have their own writers and are refused here."""
        if key in _STORE_META:
            raise ProjectError(f"meta key {key!r} is written by the store itself, not set_meta")
        with self.transaction():
            self._set_meta(key, str(value))

    def clear_meta(self, key: str) -> None:
        """Remove a settings or state value (:meth:`set_meta`'s keys); absent is fine."""
        if key in _STORE_META:
            raise ProjectError(f"meta key {key!r} is written by the store itself, not clear_meta")
        with self.transaction():
            self.conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _write_template(self, template: Template) -> None:
        self._set_meta("template", json.dumps(template.to_dict(), ensure_ascii=False))
        known = {r[0] for r in self.conn.execute("SELECT id FROM codes")}
        for pos, code in enumerate(template.codes.values()):
            self.conn.execute(
                "INSERT INTO codes(id, parent_id, name, path, position, is_leaf, active) VALUES (?, ?, ?, ?, ?, ?, 1) "
                "ON CONFLICT(id) DO UPDATE SET parent_id = excluded.parent_id, name = excluded.name, path = excluded.path, "
                "position = excluded.position, is_leaf = excluded.is_leaf, active = 1",
                (code.id, code.parent_id, code.name, code.path_str, pos, int(code.is_leaf)),
            )
        # Codes that left the template stay (decisions may point at them) but are inactive.
        gone = known - set(template.codes)
        self.conn.executemany("UPDATE codes SET active = 0 WHERE id = ?", [(g,) for g in gone])

    def set_template(self, template: Template) -> None:
        """Replace the template. Codes whose description or examples changed get a stale
        verdict: the model's per-code figures were measured against the old definition."""
        with self.transaction():
            old = self.template()
            changed = {
                cid for cid, c in template.codes.items()
                if cid in old.codes and (
                    (c.description, c.examples, c.counter_examples)
                    != (old.codes[cid].description, old.codes[cid].examples, old.codes[cid].counter_examples)
                )
            }
            self._set_meta("stale_verdicts", json.dumps(sorted(changed | self.stale_verdicts())))
            self._write_template(template)

    def stale_verdicts(self) -> set[str]:
        return set(json.loads(self.meta("stale_verdicts") or "[]"))

    def verdicts(self) -> dict[str, str]:
        """Per code, the active model's verdict: "reliable", "needs more decisions", "not
        automatable", "stale" (template edited since), or "cold start" (no trained model)."""
        mv = self.latest_model_version()
        row = self.conn.execute("SELECT card FROM model_versions WHERE id = ?", (mv,)).fetchone() if mv else None
        card = json.loads(row[0]) if row else {}
        out = {c["code_id"]: c["verdict"] for c in card.get("codes", [])}
        leaves = [r[0] for r in self.conn.execute("SELECT id FROM codes WHERE is_leaf = 1 AND active = 1")]
        stale = self.stale_verdicts()
        return {cid: "stale" if cid in stale else out.get(cid, "cold start") for cid in leaves}

    def template(self) -> Template:
        raw = self.meta("template")
        if raw is None:
            raise ProjectError(f"{self.folder}: the project has no template")
        return parse_template(json.loads(raw), source=f"{self.folder / DB_NAME} (template)")

    def code_paths(self, *, active: bool = False, leaves: bool = False) -> dict[str, str]:
        """Code id -> path ("Theme > Code"), in template order. Codes that left the template
        stay in the table (decisions point at them) with their last path; ``active`` keeps only
        codes in the template now, ``leaves`` only codes without sub-codes."""
        where = [c for c, on in (("active = 1", active), ("is_leaf = 1", leaves)) if on]
        q = "SELECT id, path FROM codes" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY position"
        return {r[0]: r[1] for r in self.conn.execute(q)}

    def codes_table(self) -> pd.DataFrame:
        """Every code ever in the template (retired ones keep their decisions), in template
        order: index id; columns path, active, is_leaf, position."""
        return pd.read_sql_query("SELECT id, path, active, is_leaf, position FROM codes ORDER BY position", self.conn).set_index("id")

    def integrity_check(self) -> str:
        """SQLite's own check of the database file: "ok", or what is wrong."""
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    def code_name(self, code_id: str) -> str | None:
        """One code's own name (the last part of its path), retired codes included."""
        row = self.conn.execute("SELECT name FROM codes WHERE id = ?", (code_id,)).fetchone()
        return row[0] if row else None

    def code_path(self, code_id: str) -> str | None:
        """One code's path, retired codes included; ``None`` for an unknown id."""
        row = self.conn.execute("SELECT path FROM codes WHERE id = ?", (code_id,)).fetchone()
        return row[0] if row else None

    # -- import ----------------------------------------------------------------------------
    def add_transcripts(self, transcripts: Iterable[Transcript], segments: dict[str, list[Segment]]) -> list[int]:
        """Insert transcripts with their turns, attributes and segments in one transaction."""
        transcripts = list(transcripts)
        ids = []
        with self.transaction():
            existing = {r[0] for r in self.conn.execute("SELECT name FROM transcripts")}
            clash = [t.name for t in transcripts if t.name in existing]
            if clash:
                raise ProjectError(f"{self.folder}: transcript(s) already imported: {', '.join(clash)} (rename the file or remove the old one)")
            stamp = now()
            for t in transcripts:
                cur = self.conn.execute(
                    "INSERT INTO transcripts(name, source_path, format, encoding, text, imported_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (t.name, t.source_path, t.format, t.encoding, t.text, stamp),
                )
                tid = cur.lastrowid
                ids.append(tid)
                self.conn.executemany(
                    "INSERT INTO attributes(transcript_id, key, value) VALUES (?, ?, ?)", [(tid, k, v) for k, v in t.attributes.items()]
                )
                self.conn.executemany(
                    'INSERT INTO turns(transcript_id, idx, speaker, start, "end", timestamp) VALUES (?, ?, ?, ?, ?, ?)',
                    [(tid, tr.index, tr.speaker, tr.start, tr.end, tr.timestamp) for tr in t.turns],
                )
                self.conn.executemany(
                    'INSERT INTO segments(transcript_id, turn_idx, idx, start, "end", text, speaker) VALUES (?, ?, ?, ?, ?, ?, ?)',
                    [(tid, s.turn_index, s.index, s.start, s.end, s.text, s.speaker) for s in segments.get(t.name, [])],
                )
        return ids

    # -- reading ---------------------------------------------------------------------------
    def transcripts(self) -> pd.DataFrame:
        return pd.read_sql_query(
            "SELECT t.id, t.name, t.format, t.source_path, t.imported_at, length(t.text) AS n_chars, "
            "(SELECT COUNT(*) FROM segments s WHERE s.transcript_id = t.id) AS n_segments FROM transcripts t ORDER BY t.name",
            self.conn,
        )

    def transcript_text(self, transcript_id: int) -> str:
        row = self.conn.execute("SELECT text FROM transcripts WHERE id = ?", (transcript_id,)).fetchone()
        if row is None:
            raise ProjectError(f"no transcript with id {transcript_id}")
        return row[0]

    def attributes(self) -> pd.DataFrame:
        """Wide frame: one row per transcript name, one column per attribute."""
        df = pd.read_sql_query(
            "SELECT t.name AS transcript, a.key, a.value FROM attributes a JOIN transcripts t ON t.id = a.transcript_id", self.conn
        )
        if df.empty:
            names = [r[0] for r in self.conn.execute("SELECT name FROM transcripts ORDER BY name")]
            return pd.DataFrame(index=pd.Index(names, name="transcript"))
        wide = df.pivot(index="transcript", columns="key", values="value")
        wide.columns.name = None
        return wide

    def segments(self, transcript_id: int | None = None) -> pd.DataFrame:
        q = (
            'SELECT s.id, s.transcript_id, t.name AS transcript, s.turn_idx, s.idx, s.start, s."end" AS "end", s.speaker, s.text '
            "FROM segments s JOIN transcripts t ON t.id = s.transcript_id"
        )
        args: tuple = ()
        if transcript_id is not None:
            q += " WHERE s.transcript_id = ?"
            args = (transcript_id,)
        return pd.read_sql_query(q + " ORDER BY t.name, s.idx", self.conn, params=args)

    def turns(self, transcript_id: int) -> pd.DataFrame:
        return pd.read_sql_query(
            'SELECT idx, speaker, start, "end" AS "end", timestamp FROM turns WHERE transcript_id = ? ORDER BY idx',
            self.conn,
            params=(transcript_id,),
        )

    # -- suggestions -----------------------------------------------------------------------
    def add_model_version(self, kind: str, encoder: str, card: dict | None = None) -> int:
        """Record a model version and make it the active one."""
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO model_versions(created_at, kind, encoder, card) VALUES (?, ?, ?, ?)",
                (now(), kind, encoder, json.dumps(card or {}, ensure_ascii=False)),
            )
            self._set_meta("active_model_version", str(cur.lastrowid))
            return int(cur.lastrowid)

    def latest_model_version(self) -> int | None:
        """The active model version: the newest, unless the researcher rolled back to another."""
        active = self.meta("active_model_version")
        if active is not None and self.conn.execute("SELECT 1 FROM model_versions WHERE id = ?", (int(active),)).fetchone():
            return int(active)
        return self.conn.execute("SELECT MAX(id) FROM model_versions").fetchone()[0]

    def set_active_model_version(self, version: int) -> None:
        with self.transaction():
            if not self.conn.execute("SELECT 1 FROM model_versions WHERE id = ?", (version,)).fetchone():
                raise ProjectError(f"no model version {version}")
            self._set_meta("active_model_version", str(version))

    def pool_size(self, model_version_id: int) -> int:
        """Suggestions of that model version on codes still in the template (its review pool)."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM suggestions g JOIN codes c ON c.id = g.code_id WHERE g.model_version_id = ? AND c.active = 1",
            (model_version_id,),
        ).fetchone()[0])

    def suggestion_confidences(self, suggestion_ids: Iterable[int]) -> pd.DataFrame:
        """suggestion_id, confidence, model_version_id of these suggestions (unknown ids left out)."""
        return pd.read_sql_query(
            "SELECT id AS suggestion_id, confidence, model_version_id FROM suggestions WHERE id IN (SELECT value FROM json_each(?))",
            self.conn,
            params=(json.dumps([int(i) for i in suggestion_ids]),),
        )

    def segments_imported_after(self, model_version_id: int | None) -> int:
        """Segments of transcripts imported after that model version was made (all of them
        without one): what its suggestions do not cover yet."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM segments s JOIN transcripts t ON t.id = s.transcript_id "
            "WHERE t.imported_at > COALESCE((SELECT created_at FROM model_versions WHERE id IS ?), '')",
            (model_version_id,),
        ).fetchone()[0])

    def model_versions(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT id, created_at, kind, encoder, card FROM model_versions ORDER BY id", self.conn)

    def change_mark(self) -> tuple:
        """A value that changes whenever decisions, segments, the template, the active model
        version or the decisions epoch change: a cache key for what is derived from them."""
        one = lambda q: self.conn.execute(q).fetchone()[0]  # noqa: E731
        return (self.last_decision_id(), one("SELECT COUNT(*) FROM decisions"),
                self.meta("template") or "", self.latest_model_version(), one("SELECT COUNT(*) FROM segments"),
                self.meta("decisions_epoch") or "")

    def model_cards(self) -> list[tuple[int, str, dict]]:
        """(id, kind, card) of every model version, oldest first; a card that is not a JSON
        object reads as ``{}`` (a damaged card must not break the pages that count with it)."""
        out = []
        for mid, kind, raw in self.conn.execute("SELECT id, kind, card FROM model_versions ORDER BY id"):
            try:
                card = json.loads(raw or "{}")
            except json.JSONDecodeError:
                card = {}
            out.append((int(mid), str(kind), card if isinstance(card, dict) else {}))
        return out

    def add_suggestions(self, model_version_id: int, rows: pd.DataFrame) -> int:
        """Store suggestions (columns: segment_id, code_id, rank, confidence, similarity,
        evidence, evidence_source, evidence_similarity) for one model version."""
        stamp = now()
        with self.transaction():
            # Upsert in place: a REPLACE would delete the row and give it a new id, cutting the
            # link from decisions already made on it.
            self.conn.executemany(
                "INSERT INTO suggestions(segment_id, code_id, model_version_id, rank, confidence, similarity, evidence, "
                "evidence_source, evidence_similarity, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(segment_id, code_id, model_version_id) DO UPDATE SET rank = excluded.rank, "
                "confidence = excluded.confidence, similarity = excluded.similarity, evidence = excluded.evidence, "
                "evidence_source = excluded.evidence_source, evidence_similarity = excluded.evidence_similarity",
                [
                    (int(r.segment_id), r.code_id, model_version_id, int(r.rank), float(r.confidence), _opt_float(r.similarity),
                     r.evidence, r.evidence_source, _opt_float(r.evidence_similarity), stamp)
                    for r in rows.itertuples(index=False)
                ],
            )
        return len(rows)

    def suggestions(self, model_version_id: int | None = None) -> pd.DataFrame:
        """Suggestions of one model version (latest by default) with segment, code and attributes."""
        mv = model_version_id or self.latest_model_version()
        if mv is None:
            return pd.DataFrame()
        return pd.read_sql_query(
            'SELECT g.id AS suggestion_id, t.name AS transcript, s.id AS segment_id, s.speaker, s.start, s."end" AS "end", s.text, '
            "g.code_id, c.path AS code_path, g.rank, g.confidence, g.similarity, g.evidence, g.evidence_source, "
            "g.evidence_similarity, g.model_version_id FROM suggestions g JOIN segments s ON s.id = g.segment_id "
            "JOIN transcripts t ON t.id = s.transcript_id JOIN codes c ON c.id = g.code_id "
            "WHERE g.model_version_id = ? ORDER BY t.name, s.idx, g.rank",
            self.conn,
            params=(mv,),
        ).assign(verdict=lambda df: df["code_id"].map(self.verdicts()))

    # -- decisions -------------------------------------------------------------------------
    def record_decision(
        self,
        segment_id: int,
        code_id: str,
        action: str,
        coder: str,
        *,
        suggestion_id: int | None = None,
        note: str | None = None,
        span: tuple[int, int] | None = None,
        origin: str | None = None,
        unit_id: int | None = None,
    ) -> int:
        """Append an accept / reject / skip decision. Committed before this returns, unless
        called inside an outer :meth:`transaction`, which then commits it with the rest.

        ``span`` (start, end into the transcript's text) codes exactly that span, attached to
        this segment; without it the decision is on the segment's own span. ``unit_id``: the
        action this row is part of (:meth:`record_unit` sets it)."""
        if action not in ("accept", "reject", "skip"):
            raise ProjectError(f"unknown decision {action!r}; use accept, reject or skip (undo has its own method)")
        if not coder or not coder.strip():
            raise ProjectError("a decision needs the coder's name")
        with self.transaction():
            mv = None
            if suggestion_id is not None:
                row = self.conn.execute("SELECT model_version_id FROM suggestions WHERE id = ?", (suggestion_id,)).fetchone()
                if row is None:
                    raise ProjectError(f"no suggestion with id {suggestion_id}")
                mv = row[0]
            if span is not None:
                span = self._check_span(segment_id, span)
            try:
                cur = self.conn.execute(
                    "INSERT INTO decisions(segment_id, code_id, action, coder, created_at, suggestion_id, model_version_id, note, "
                    "span_start, span_end, origin, unit_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (segment_id, code_id, action, coder.strip(), now(), suggestion_id, mv, note,
                     span[0] if span else None, span[1] if span else None, origin, unit_id),
                )
            except sqlite3.IntegrityError as exc:
                raise ProjectError(f"cannot record decision on segment {segment_id}, code {code_id!r}: {exc}") from exc
            return int(cur.lastrowid)

    def last_decision(self, coder: str) -> dict | None:
        """This coder's latest live decision (what :meth:`undo_last` would take back), as a dict
        of the decision row, or ``None``."""
        row = self.conn.execute(
            f"SELECT * FROM decisions d WHERE d.coder = ? AND {LIVE_DECISION} ORDER BY d.id DESC LIMIT 1", (coder.strip(),)
        ).fetchone()
        return dict(row) if row is not None else None

    def record_unit(
        self,
        segment_id: int,
        rows: Iterable[tuple[str, str, int | None] | tuple[str, str, int | None, str | None]],
        coder: str,
        *,
        origin: str | None = None,
    ) -> int:
        """Append the decisions of one action as one unit, all or none (one transaction):
        ``rows`` are (code_id, action, suggestion_id[, note]) on one segment, written in that
        order. Every row carries the unit's id, which is the id of its first row; returns it.
        :meth:`undo_last_action` takes the unit back whole."""
        rows = list(rows)
        if not rows:
            raise ProjectError("a decision unit needs at least one decision")
        with self.transaction():
            # Inside BEGIN IMMEDIATE no other writer can take the next id: the first row gets it.
            unit = int(self.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM decisions").fetchone()[0])
            for i, (code_id, action, suggestion_id, *note) in enumerate(rows):
                did = self.record_decision(int(segment_id), code_id, action, coder, suggestion_id=suggestion_id,
                                           note=note[0] if note else None, origin=origin, unit_id=unit)
                if i == 0 and did != unit:  # pragma: no cover - SQLite gives max(id) + 1 to a new row
                    raise ProjectError(f"decision unit: the first row got id {did}, not {unit}; nothing recorded")
        return unit

    def undo_last(self, coder: str) -> Decision | None:
        """Undo this coder's most recent decision that is not yet undone (recorded as an event)."""
        with self.transaction():
            row = self.last_decision(coder)
            if row is None:
                return None
            self._undo(row, coder)
            return _decision(row)

    def _undo(self, row: dict, coder: str) -> None:
        self.conn.execute(
            "INSERT INTO decisions(segment_id, code_id, action, coder, created_at, undoes) VALUES (?, ?, 'undo', ?, ?, ?)",
            (row["segment_id"], row["code_id"], coder.strip(), now(), row["id"]),
        )

    def undo_last_action(self, coder: str) -> list[Decision]:
        """Undo this coder's most recent action (one transaction): the latest live decision
        and, when it is part of a unit (:meth:`record_unit`), every live row of that unit.
        Returns the undone decisions, latest first; empty when there is nothing to undo."""
        with self.transaction():
            row = self.last_decision(coder)
            if row is None:
                return []
            rows = [row]
            if row.get("unit_id") is not None:
                rows = [dict(r) for r in self.conn.execute(
                    f"SELECT * FROM decisions d WHERE d.unit_id = ? AND d.coder = ? AND {LIVE_DECISION} ORDER BY d.id DESC",
                    (int(row["unit_id"]), coder.strip()),
                )]
            for r in rows:
                self._undo(r, coder)
            return [_decision(r) for r in rows]

    def live_unit(self, segment_id: int, coder: str, origin: str) -> int | None:
        """The latest unit of ``origin`` on this segment by this coder with a row not undone
        (a passage confirmed and not taken back), or ``None``."""
        row = self.conn.execute(
            f"SELECT MAX(d.unit_id) FROM decisions d WHERE d.segment_id = ? AND +d.coder = ? AND d.origin = ? "
            f"AND d.unit_id IS NOT NULL AND {LIVE_DECISION}",
            (int(segment_id), coder.strip(), origin),
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def decisions(self) -> pd.DataFrame:
        """The full decision log, undo events included."""
        return pd.read_sql_query("SELECT * FROM decisions ORDER BY id", self.conn)

    def current_decisions(
        self, coder: str | None = None, *, code_id: str | None = None, segment_id: int | None = None,
        segment_ids: Iterable[int] | None = None,
    ) -> pd.DataFrame:
        """Per (segment, code, coder): the current decision, the latest accept/reject/skip that
        has not been undone (:data:`CURRENT_DECISION`, the one definition every figure, export
        and page uses). Optionally of one coder, one code, one segment or some segments
        (``segment_ids``). Decision rows, by id."""
        where, args = [LIVE_DECISION], []
        for col, value in (("d.coder", None if coder is None else coder.strip()), ("d.code_id", code_id),
                           ("d.segment_id", None if segment_id is None else int(segment_id))):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if segment_ids is not None:
            where.append("d.segment_id IN (SELECT value FROM json_each(?))")
            args.append(json.dumps([int(s) for s in segment_ids]))
        # The grouped form of CURRENT_DECISION (one pass over the live rows instead of a lookup
        # per row): the latest live decision per pair and coder, the one with the largest id, is
        # the current one. Ids by group, then their rows: 1.4 s for 245,000 current decisions
        # (5,000 confirmed passages of 49 codes), against 2.2 s for a window function over
        # every live row's columns.
        q = (
            "SELECT * FROM decisions WHERE id IN (SELECT MAX(d.id) FROM decisions d "
            f"WHERE {' AND '.join(where)} GROUP BY d.segment_id, d.code_id, d.coder) ORDER BY id"
        )
        return pd.read_sql_query(q, self.conn, params=args)

    def last_decision_id(self) -> int:
        """The log's largest id (0 when empty)."""
        return int(self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0])

    def segments_decided_since(self, after_id: int, up_to: int) -> list[int]:
        """The segments of the log's rows with ids in (``after_id``, ``up_to``], undo events
        included: the only segments whose current decisions can differ from those read up to
        ``after_id``, as the log only grows (a template edit that moves decisions bumps
        :data:`EPOCH_KEY` instead)."""
        rows = self.conn.execute("SELECT DISTINCT segment_id FROM decisions WHERE id > ? AND id <= ?", (int(after_id), int(up_to))).fetchall()
        return [int(r[0]) for r in rows]

    def current_action(self, segment_id: int, code_id: str, coder: str) -> str | None:
        """This coder's current decision on one (segment, code): accept, reject, skip or ``None``."""
        row = self.conn.execute(
            f"SELECT d.action FROM decisions d WHERE d.segment_id = ? AND d.code_id = ? AND +d.coder = ? AND {LIVE_DECISION} "
            "ORDER BY d.id DESC LIMIT 1",
            (int(segment_id), code_id, coder.strip()),
        ).fetchone()
        return row[0] if row else None

    def repoint_decisions(self, source_id: str, target_id: str, segment_ids: Iterable[int] | None = None) -> list[int]:
        """Move decisions on code ``source_id`` (all, or on these segments) to ``target_id``:
        a template edit (merge, split, replace) re-homing the coding. The one write that
        changes rows of the otherwise append-only log, so it bumps the decisions epoch
        (:data:`EPOCH_KEY`) for readers that cache the log; the edit's history records which
        decision ids moved. Returns them, oldest first."""
        where, args = "code_id = ?", [source_id]
        if segment_ids is not None:
            segment_ids = [int(s) for s in segment_ids]
            if not segment_ids:
                return []
            where += f" AND segment_id IN ({', '.join('?' * len(segment_ids))})"
            args += segment_ids
        with self.transaction():
            ids = [r[0] for r in self.conn.execute(f"SELECT id FROM decisions WHERE {where} ORDER BY id", args)]
            if ids:
                self.conn.execute(f"UPDATE decisions SET code_id = ? WHERE {where}", [target_id, *args])
                self._set_meta(EPOCH_KEY, str(int(self.meta(EPOCH_KEY) or 0) + 1))
        return ids

    def restore_decision_codes(self, moves: Iterable[tuple[int, str, str]]) -> list[int]:
        """Put decisions back on the code a template edit took them from: ``moves`` holds
        ``(decision id, code it is on now, code to return to)``. A decision no longer on the
        code named (moved on since) stays where it is; an undo event recorded since against a
        decision that returns goes with it, so an event always names its decision's code. The
        other log rewrite besides :meth:`repoint_decisions` (the undo of one), so it bumps the
        decisions epoch too. Returns the ids of the decisions put back, oldest first."""
        back: list[int] = []
        with self.transaction():
            for did, now, to in moves:
                cur = self.conn.execute("UPDATE decisions SET code_id = ? WHERE id = ? AND code_id = ?", (to, int(did), now))
                if cur.rowcount:
                    back.append(int(did))
                    self.conn.execute("UPDATE decisions SET code_id = ? WHERE undoes = ? AND code_id = ?", (to, int(did), now))
            if back:
                self._set_meta(EPOCH_KEY, str(int(self.meta(EPOCH_KEY) or 0) + 1))
        return sorted(back)

    def decisions_mark(self) -> tuple[int, int]:
        """(highest decision id, number of log rows): changes with every decision and undo."""
        row = self.conn.execute("SELECT COALESCE(MAX(id), 0), COUNT(*) FROM decisions").fetchone()
        return int(row[0]), int(row[1])

    def decision_count(self, code_id: str) -> int:
        """Log rows (undo events included) that name this code."""
        return int(self.conn.execute("SELECT COUNT(*) FROM decisions WHERE code_id = ?", (code_id,)).fetchone()[0])

    def decision_counts(self) -> dict[str, int]:
        """Per code id, its log rows (undo events included); codes without any left out."""
        return {r[0]: int(r[1]) for r in self.conn.execute("SELECT code_id, COUNT(*) FROM decisions GROUP BY code_id")}

    def decided_segments(self, code_id: str) -> list[int]:
        """Segments with any log row on this code, by id."""
        q = "SELECT DISTINCT segment_id FROM decisions WHERE code_id = ? ORDER BY segment_id"
        return [int(r[0]) for r in self.conn.execute(q, (code_id,))]

    def accepted_passages(self, code_id: str) -> pd.DataFrame:
        """Passages holding a live accept of this code (any coder), in transcript order:
        segment_id, transcript, text, coders (comma-separated)."""
        return pd.read_sql_query(
            "SELECT d.segment_id, t.name AS transcript, s.text, GROUP_CONCAT(DISTINCT d.coder) AS coders FROM decisions d "
            "JOIN segments s ON s.id = d.segment_id JOIN transcripts t ON t.id = s.transcript_id "
            f"WHERE d.code_id = ? AND d.action = 'accept' AND {LIVE_DECISION} GROUP BY d.segment_id ORDER BY t.name, s.idx",
            self.conn,
            params=(code_id,),
        )

    def decided_passages(self, code_id: str) -> pd.DataFrame:
        """Passages with decisions (any coder, undo events left out) on this code, in transcript
        order: segment_id, transcript, text, decisions ("Coder ✓", "Coder ✗", "Coder skip")."""
        return pd.read_sql_query(
            "SELECT s.id AS segment_id, t.name AS transcript, s.text, "
            "GROUP_CONCAT(d.coder || ' ' || CASE d.action WHEN 'accept' THEN '✓' WHEN 'reject' THEN '✗' ELSE d.action END, ', ') "
            "AS decisions FROM decisions d JOIN segments s ON s.id = d.segment_id JOIN transcripts t ON t.id = s.transcript_id "
            "WHERE d.code_id = ? AND d.action != 'undo' GROUP BY s.id ORDER BY t.name, s.idx",
            self.conn,
            params=(code_id,),
        )

    # -- codings as spans ------------------------------------------------------------------
    def _check_span(self, segment_id: int, span: tuple[int, int]) -> tuple[int, int]:
        row = self.conn.execute(
            "SELECT length(t.text) FROM segments s JOIN transcripts t ON t.id = s.transcript_id WHERE s.id = ?", (segment_id,)
        ).fetchone()
        if row is None:
            raise ProjectError(f"no segment with id {segment_id}")
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= row[0]:
            raise ProjectError(f"span {start}-{end} is not inside its transcript (0-{row[0]} characters) or is empty")
        return start, end

    def segment_for_span(self, transcript_id: int, start: int, end: int) -> int:
        """The segment a coding of ``start``-``end`` is attached to: the one it overlaps most
        (ties: the first); without overlap, the nearest. Raises when the transcript has no
        segment at all."""
        rows = self.conn.execute('SELECT id, start, "end" FROM segments WHERE transcript_id = ? ORDER BY start', (transcript_id,)).fetchall()
        if not rows:
            raise ProjectError(f"transcript {transcript_id} has no segments: a coding needs one to attach to")
        return attach_span(rows, start, end)

    def add_coding(
        self, transcript_id: int, start: int, end: int, code_id: str, coder: str, *, origin: str = ORIGIN_HAND, note: str | None = None
    ) -> int:
        """Code exactly ``start``-``end`` of a transcript (a hand-coded span, which may cross
        passages): an accept with that span, attached to the segment it overlaps most."""
        with self.transaction():
            sid = self.segment_for_span(transcript_id, start, end)
            return self.record_decision(sid, code_id, "accept", coder, note=note, span=(start, end), origin=origin)

    def add_codings(self, rows: pd.DataFrame) -> list[int]:
        """Append many span codings in one transaction (an import). Columns: segment_id,
        start, end, code_id, coder, time, origin, note. Returns the decision ids, in order."""
        ids = []
        with self.transaction():
            for r in rows.itertuples(index=False):
                cur = self.conn.execute(
                    "INSERT INTO decisions(segment_id, code_id, action, coder, created_at, note, span_start, span_end, origin) "
                    "VALUES (?, ?, 'accept', ?, ?, ?, ?, ?, ?)",
                    (int(r.segment_id), r.code_id, str(r.coder).strip(), r.time, r.note, int(r.start), int(r.end), r.origin),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def codings(self, transcript_id: int | None = None) -> pd.DataFrame:
        """Codings in force, as spans: one row per accepted coding that no later reject, skip
        or undo of the same (segment, code, coder) has withdrawn. A decision without its own
        span codes its segment's span (only the latest such accept counts, as in
        :meth:`current_decisions`); span codings each count, so two imported spans of one
        code on one passage stay two codings. Columns: decision_id, transcript_id, start, end,
        code_id, coder, time, origin, segment_id."""
        live = "NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = {0}.id)"
        q = (
            "SELECT d.id AS decision_id, s.transcript_id, COALESCE(d.span_start, s.start) AS start, "
            'COALESCE(d.span_end, s."end") AS "end", d.code_id, d.coder, d.created_at AS time, '
            f"COALESCE(d.origin, CASE WHEN d.suggestion_id IS NOT NULL THEN '{ORIGIN_SUGGESTION}' "
            f"WHEN d.note LIKE 'imported from %' THEN d.note ELSE '{ORIGIN_HAND}' END) AS origin, d.segment_id "
            "FROM decisions d JOIN segments s ON s.id = d.segment_id "
            f"WHERE d.action = 'accept' AND {live.format('d')} "
            # "+r.coder": look the later decisions up by (segment, code) in decisions_pair; left to
            # itself SQLite picks decisions_coder and reads every later decision of the coder.
            "AND NOT EXISTS (SELECT 1 FROM decisions r WHERE r.segment_id = d.segment_id AND r.code_id = d.code_id "
            "AND +r.coder = d.coder AND r.id > d.id AND r.action != 'undo' "
            f"AND (r.action != 'accept' OR (d.span_start IS NULL AND r.span_start IS NULL)) AND {live.format('r')})"
        )
        args: tuple = ()
        if transcript_id is not None:
            q += " AND s.transcript_id = ?"
            args = (transcript_id,)
        return pd.read_sql_query(q + " ORDER BY s.transcript_id, start, \"end\", d.id", self.conn, params=args)

    # -- what other QDA tools' projects hold beyond our model ---------------------------------
    def add_exchange_items(self, rows: Iterable[tuple[str, str | None, str | None, dict, bytes | None]], imported_from: str) -> None:
        """Keep (kind, guid, ref, data, content) items read from another tool's project."""
        stamp = now()
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO exchange_items(kind, guid, ref, data, content, imported_from, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(k, g, None if r is None else str(r), json.dumps(d, ensure_ascii=False), c, imported_from, stamp) for k, g, r, d, c in rows],
            )

    def exchange_items(self, kind: str | None = None) -> pd.DataFrame:
        """Kept items (id, kind, guid, ref, data as a dict, content bytes or None), oldest first."""
        q = "SELECT id, kind, guid, ref, data, content, imported_from, imported_at FROM exchange_items"
        args: tuple = ()
        if kind is not None:
            q += " WHERE kind = ?"
            args = (kind,)
        df = pd.read_sql_query(q + " ORDER BY id", self.conn, params=args)
        df["data"] = df["data"].map(json.loads)
        return df

    def exchange_item_keys(self) -> set[tuple]:
        """What is kept already, for keeping each thing once: ``(kind, guid)`` of the items with
        a GUID, ``(kind, ref, data as stored, content)`` of those without."""
        seen: set[tuple] = {(k, g) for k, g in self.conn.execute("SELECT kind, guid FROM exchange_items WHERE guid IS NOT NULL")}
        seen |= {(k, r, d, bytes(c) if c is not None else None) for k, r, d, c in self.conn.execute(
            "SELECT kind, ref, data, content FROM exchange_items WHERE guid IS NULL")}
        return seen

    def guid(self) -> "uuid.UUID":
        """The project's own GUID (REFI-QDA exchange), created on first use and kept in meta."""
        import uuid

        raw = self.meta(REFI_GUID_KEY)
        if raw is None:
            with self.transaction():
                raw = self.meta(REFI_GUID_KEY)
                if raw is None:
                    raw = str(uuid.uuid4())
                    self._set_meta(REFI_GUID_KEY, raw)
        return uuid.UUID(raw)

    def set_template_from(self, file_name: str) -> None:
        """Record the file the template was started from (``init --from study.qdpx``)."""
        self._set_meta(TEMPLATE_FROM_KEY, file_name)

    def transcript_texts(self) -> list[tuple[int, str, str]]:
        """(id, name, text) of every transcript, by name."""
        return [(int(i), n, t) for i, n, t in self.conn.execute("SELECT id, name, text FROM transcripts ORDER BY name")]

    def segment_spans(self, transcript_id: int | None = None) -> list[tuple[int, int, int, int]]:
        """(id, transcript id, start, end) of every segment (of one transcript), by start."""
        q, args = 'SELECT id, transcript_id, start, "end" FROM segments', ()
        if transcript_id is not None:
            q, args = q + " WHERE transcript_id = ?", (transcript_id,)
        return [tuple(int(v) for v in r) for r in self.conn.execute(q + " ORDER BY transcript_id, start", args)]

    def suggestion_spans(self, model_version_id: int, min_confidence: float) -> list[tuple]:
        """(segment id, transcript id, start, end, code id, confidence, created at) of one model
        version's suggestions at or above ``min_confidence``, by segment and rank."""
        return [tuple(r) for r in self.conn.execute(
            'SELECT g.segment_id, s.transcript_id, s.start, s."end", g.code_id, g.confidence, g.created_at FROM suggestions g '
            "JOIN segments s ON s.id = g.segment_id WHERE g.model_version_id = ? AND g.confidence >= ? ORDER BY g.segment_id, g.rank",
            (model_version_id, float(min_confidence)))]

    def set_segmenter_settings(self, settings: dict) -> None:
        """Keep how this project cuts transcripts into segments (read by app.pipeline.project_segmenter)."""
        self._set_meta("segmenter", json.dumps(settings))

    # -- resumable suggestion runs (app.pipeline.suggest_project) ---------------------------
    def model_version_kind(self, version: int | None) -> str | None:
        """The kind of a model version (a scorer's version string, or "learned"); None if absent."""
        row = self.conn.execute("SELECT kind FROM model_versions WHERE id = ?", (version,)).fetchone() if version else None
        return row[0] if row else None

    def add_inactive_model_version(self, kind: str, encoder: str, card: dict | None = None) -> int:
        """Record a model version while the active one stays active (a run still filling it)."""
        with self.transaction():
            previous = self.meta("active_model_version")
            mv = self.add_model_version(kind, encoder, card)
            if previous is not None:
                self._set_meta("active_model_version", previous)
        return mv

    def suggest_run_state(self) -> dict | None:
        """The state of an unfinished suggestion run (model version, fingerprint, done
        transcripts), or None; the run is the one whose version exists."""
        state = json.loads(self.meta(SUGGEST_RUN_KEY) or "null")
        if state is not None and not self.conn.execute("SELECT 1 FROM model_versions WHERE id = ?", (state.get("model_version"),)).fetchone():
            return None
        return state

    def set_suggest_run_state(self, state: dict) -> None:
        self._set_meta(SUGGEST_RUN_KEY, json.dumps(state))

    def complete_suggest_run(self, version: int, card: dict) -> int:
        """Finish a suggestion run: the card gets the count of suggestions, the version becomes
        active and the run state goes, in one transaction. Returns the count."""
        with self.transaction():
            n = self.conn.execute("SELECT COUNT(*) FROM suggestions WHERE model_version_id = ?", (version,)).fetchone()[0]
            self.conn.execute("UPDATE model_versions SET card = ? WHERE id = ?", (json.dumps(card | {"suggestions": n}, ensure_ascii=False), version))
            self._set_meta("active_model_version", str(version))
            self.conn.execute("DELETE FROM meta WHERE key = ?", (SUGGEST_RUN_KEY,))
        return int(n)

    def coders(self) -> list[str]:
        """Everyone who coded here, and every user an import brought from another tool (users
        become coders, with or without codings), by name."""
        q = ("SELECT coder FROM decisions UNION SELECT coder FROM reliability_answers "
             "UNION SELECT ref FROM exchange_items WHERE kind = 'user' AND ref IS NOT NULL")
        return sorted(r[0] for r in self.conn.execute(q))

    def counts(self) -> dict[str, int]:
        one = lambda q: self.conn.execute(q).fetchone()[0]  # noqa: E731
        return {
            "transcripts": one("SELECT COUNT(*) FROM transcripts"),
            "segments": one("SELECT COUNT(*) FROM segments"),
            "codes": one("SELECT COUNT(*) FROM codes WHERE active = 1 AND is_leaf = 1"),
            "suggestions": self.conn.execute("SELECT COUNT(*) FROM suggestions WHERE model_version_id = ?", (self.latest_model_version(),)).fetchone()[0],
            "decisions": one("SELECT COUNT(*) FROM decisions WHERE action != 'undo'"),
        }


def _decision(row) -> Decision:
    return Decision(row["id"], row["segment_id"], row["code_id"], row["action"], row["coder"], row["created_at"], None,
                    row["unit_id"] if "unit_id" in row.keys() else None)


def attach_span(segments, start: int, end: int) -> int:
    """Of ``(id, start, end)`` rows sorted by start, the id a span is attached to: the most
    overlapped segment (the first on ties), else the nearest by distance."""
    best, best_overlap = None, 0
    nearest, nearest_gap = None, None
    for sid, ss, se in segments:
        overlap = min(end, se) - max(start, ss)
        if overlap > best_overlap:
            best, best_overlap = sid, overlap
        gap = max(ss - end, start - se, 0)
        if nearest_gap is None or gap < nearest_gap:
            nearest, nearest_gap = sid, gap
    return int(best if best is not None else nearest)


def _write_problem(db: Path, exc: sqlite3.OperationalError) -> str:
    """A clear message for a failed write, naming the database file."""
    msg = str(exc)
    if "full" in msg:
        hint = "the disk (or the project's size limit) is full; free space and try again. Nothing was written"
    elif "readonly" in msg or "read-only" in msg:
        hint = "the project file or its folder is read-only; fix the permissions and try again. Nothing was written"
    elif "locked" in msg or "busy" in msg:
        hint = "another program held the project for too long; try again. Nothing was written"
    else:
        hint = "the change was not saved"
    return f"{db}: cannot write the project database ({msg}): {hint}"


def _opt_float(v) -> float | None:
    return None if v is None or (isinstance(v, float) and v != v) else float(v)


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
