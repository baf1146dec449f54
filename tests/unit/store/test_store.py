import sqlite3

import pandas as pd
import pytest

from coder_assist.core.template import parse_template
from coder_assist.core.errors import ProjectError
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import DB_NAME, SCHEMA_VERSION, Project
from tests.conftest import FIXTURES

TPL = parse_template({"name": "toy", "codes": [
    {"name": "Theme", "description": "t", "children": [
        {"name": "A", "description": "code a"}, {"name": "B", "description": "code b"}]}]})


def make_project(tmp_path, names=("t1",)) -> Project:
    p = Project.create(tmp_path / "proj", TPL)
    ts = []
    for n in names:
        text = "Interviewer: Hi?\nP1: One thing. Another thing.\nInterviewer: And?\nP1: Last thing.\n"
        ts.append(Transcript(n, text, parse_speaker_text(text), attributes={"sector": "NHS"}))
    seg = Segmenter(unit="sentence")
    p.add_transcripts(ts, {t.name: seg.segments(t) for t in ts})
    return p


def test_create_open_and_pragmas(tmp_path):
    p = make_project(tmp_path)
    assert p.schema_version == SCHEMA_VERSION
    assert p.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert p.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    p.close()
    with Project.open(tmp_path / "proj") as q:
        assert q.template().frame().equals(TPL.frame())
        assert q.counts() == {"transcripts": 1, "segments": 3, "codes": 2, "suggestions": 0, "decisions": 0}
        assert q.attributes().loc["t1", "sector"] == "NHS"
        segs = q.segments()
        text = q.transcript_text(int(segs.transcript_id[0]))
        assert all(text[r.start : r.end] == r.text for r in segs.itertuples())
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(tmp_path / "proj", TPL)


def test_open_missing_and_newer_schema(tmp_path):
    with pytest.raises(ProjectError, match="coder-assist init"):
        Project.open(tmp_path / "nothing")
    make_project(tmp_path).close()
    con = sqlite3.connect(tmp_path / "proj" / DB_NAME)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(ProjectError, match="newer coder-assist"):
        Project.open(tmp_path / "proj")


def test_foreign_keys_enforced(tmp_path):
    p = make_project(tmp_path)
    seg_id = int(p.segments().id[0])
    with pytest.raises(ProjectError, match="FOREIGN KEY"):
        p.record_decision(seg_id, "no/such-code", "accept", "ann")


def test_reimport_same_name_is_refused_and_changes_nothing(tmp_path):
    p = make_project(tmp_path)
    before = p.counts()
    text = "P1: hi there\n"
    t = Transcript("t1", text, parse_speaker_text(text))
    new = Transcript("t2", text, parse_speaker_text(text))
    with pytest.raises(ProjectError, match="already imported: t1"):
        p.add_transcripts([new, t], {})
    assert p.counts() == before  # t2 was not half-imported


def test_decision_log_accept_reject_skip_undo(tmp_path):
    p = make_project(tmp_path)
    s1, s2, s3 = p.segments().id.astype(int).tolist()
    mv = p.add_model_version("example-similarity", "enc", {"note": "t"})
    p.add_suggestions(mv, pd.DataFrame([
        {"segment_id": s1, "code_id": "theme/a", "rank": 1, "confidence": 0.8, "similarity": 0.5, "evidence": "e", "evidence_source": "example", "evidence_similarity": 0.6},
    ]))
    sug = p.suggestions()
    assert sug.code_path.tolist() == ["Theme > A"]
    d1 = p.record_decision(s1, "theme/a", "accept", "ann", suggestion_id=int(sug.suggestion_id[0]))
    p.record_decision(s2, "theme/b", "reject", "ann")
    p.record_decision(s3, "theme/a", "skip", "ann")
    p.record_decision(s1, "theme/a", "reject", "bob")
    log = p.decisions()
    assert log.loc[log.id == d1, "model_version_id"].item() == mv  # who made the suggestion is kept
    undone = p.undo_last("ann")
    assert undone.action == "skip"
    cur = p.current_decisions("ann")
    assert set(zip(cur.segment_id, cur.action)) == {(s1, "accept"), (s2, "reject")}
    # Undo is an event, never a deletion.
    assert p.decisions().action.tolist() == ["accept", "reject", "skip", "reject", "undo"]
    # A later decision on the same pair supersedes the earlier one.
    p.record_decision(s1, "theme/a", "reject", "ann")
    cur = p.current_decisions("ann")
    assert cur.loc[cur.segment_id == s1, "action"].item() == "reject"
    # Undoing that brings back the accept.
    p.undo_last("ann")
    cur = p.current_decisions("ann")
    assert cur.loc[cur.segment_id == s1, "action"].item() == "accept"
    assert p.current_decisions("bob").action.tolist() == ["reject"]


def test_decision_validation(tmp_path):
    p = make_project(tmp_path)
    s1 = int(p.segments().id[0])
    with pytest.raises(ProjectError, match="coder"):
        p.record_decision(s1, "theme/a", "accept", "  ")
    with pytest.raises(ProjectError, match="unknown decision"):
        p.record_decision(s1, "theme/a", "maybe", "ann")
    assert p.undo_last("nobody") is None
    assert p.counts()["decisions"] == 0


def test_template_change_keeps_removed_codes_inactive(tmp_path):
    p = make_project(tmp_path)
    s1 = int(p.segments().id[0])
    p.record_decision(s1, "theme/b", "accept", "ann")
    smaller = parse_template({"name": "toy", "codes": [{"name": "Theme", "description": "t", "children": [{"name": "A", "description": "a"}]}]})
    p.set_template(smaller)
    rows = dict(p.conn.execute("SELECT id, active FROM codes").fetchall())
    assert rows == {"theme": 1, "theme/a": 1, "theme/b": 0}
    assert len(p.current_decisions()) == 1  # the decision on the removed code is not lost


def test_transaction_rolls_back(tmp_path):
    p = make_project(tmp_path)
    with pytest.raises(RuntimeError):
        with p.transaction():
            p._set_meta("x", "1")
            raise RuntimeError("boom")
    assert p.meta("x") is None


def test_migration_from_v1(tmp_path):
    """A database written by schema v1 is upgraded in place on open, its data kept."""
    from coder_assist.store import project as store

    p = make_project(tmp_path)
    s1 = int(p.segments().id[0])
    p.record_decision(s1, "theme/a", "accept", "ann")
    p.conn.execute("DROP INDEX decisions_coder")
    p.conn.execute("PRAGMA user_version = 1")
    p.close()
    with Project.open(tmp_path / "proj") as q:
        assert q.schema_version == SCHEMA_VERSION == len(store.MIGRATIONS)
        names = {r[0] for r in q.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "decisions_coder" in names
        assert q.current_decisions("ann").action.tolist() == ["accept"]


def test_resuggesting_keeps_suggestion_ids_and_decision_links(tmp_path):
    p = make_project(tmp_path)
    s1 = int(p.segments().id[0])
    mv = p.add_model_version("example-similarity", "enc")
    row = {"segment_id": s1, "code_id": "theme/a", "rank": 1, "confidence": 0.3, "similarity": None,
           "evidence": "e", "evidence_source": "example", "evidence_similarity": None}
    p.add_suggestions(mv, pd.DataFrame([row]))
    sid = int(p.suggestions().suggestion_id[0])
    d = p.record_decision(s1, "theme/a", "accept", "ann", suggestion_id=sid)
    p.add_suggestions(mv, pd.DataFrame([{**row, "confidence": 0.6}]))
    sug = p.suggestions()
    assert sug.suggestion_id.tolist() == [sid] and sug.confidence.tolist() == [0.6]
    assert p.decisions().set_index("id").loc[d, "suggestion_id"] == sid


def test_coder_name_is_trimmed_everywhere(tmp_path):
    p = make_project(tmp_path)
    s1 = int(p.segments().id[0])
    p.record_decision(s1, "theme/a", "accept", " Ann ")
    assert p.current_decisions(" Ann").coder.tolist() == ["Ann"]
    assert p.undo_last("Ann ") is not None


def test_migration_v3_to_v4_adds_reliability_tables(tmp_path):
    """v4 (blind double-coding): a v3 database gains the reliability sample tables on open,
    its decisions kept, and an answer with no code can be stored."""
    p = make_project(tmp_path)
    s1 = int(p.segments().id[0])
    p.record_decision(s1, "theme/a", "accept", "ann")
    for t in ("reliability_answers", "reliability_sample_segments", "reliability_samples"):
        p.conn.execute(f"DROP TABLE {t}")
    p.conn.execute("PRAGMA user_version = 3")
    p.close()
    with Project.open(tmp_path / "proj") as q:
        assert q.schema_version == SCHEMA_VERSION >= 4
        tables = {r[0] for r in q.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"reliability_samples", "reliability_sample_segments", "reliability_answers"} <= tables
        assert q.current_decisions("ann").action.tolist() == ["accept"]
        q.conn.execute("INSERT INTO reliability_samples(name, created_at, share, seed) VALUES ('s', 'now', 0.5, 1)")
        q.conn.execute("INSERT INTO reliability_sample_segments VALUES (1, ?, 0)", (s1,))
        q.conn.execute("INSERT INTO reliability_answers(sample_id, segment_id, coder, codes, created_at) VALUES (1, ?, 'bo', '[]', 'now')", (s1,))
        with pytest.raises(sqlite3.IntegrityError):
            q.conn.execute("INSERT INTO reliability_samples(name, created_at, share, seed) VALUES ('t', 'now', 0, 1)")


# -- v5: codings are spans ---------------------------------------------------------------------

V4_DB = FIXTURES / "store" / "v4_project.db"


def test_migration_v4_to_v5_keeps_every_decision_suggestion_and_count(tmp_path):
    """A project written by coder-assist at schema v4 (tests/fixtures/store/v4_project.db, made
    by build_v4_project.py with the code before v5) opens with every decision, suggestion and
    count unchanged, and its accepts read as codings of their segments' spans."""
    import shutil

    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(V4_DB, folder / DB_NAME)
    raw = sqlite3.connect(folder / DB_NAME)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 4
    log_before = raw.execute("SELECT * FROM decisions ORDER BY id").fetchall()
    sugg_before = raw.execute("SELECT * FROM suggestions ORDER BY id").fetchall()
    seg_before = raw.execute('SELECT id, start, "end" FROM segments').fetchall()
    raw.close()
    with Project.open(folder) as p:
        assert p.schema_version == SCHEMA_VERSION >= 5
        n_old = len(log_before[0])
        assert [tuple(r)[:n_old] for r in p.conn.execute("SELECT * FROM decisions ORDER BY id")] == log_before
        assert [tuple(r) for r in p.conn.execute("SELECT * FROM suggestions ORDER BY id")] == sugg_before
        assert p.counts() == {"transcripts": 2, "segments": 4, "codes": 3, "suggestions": 8, "decisions": 7}
        cur = p.current_decisions()
        got = sorted((int(r.segment_id), r.code_id, r.coder, r.action) for r in cur.itertuples())
        s0, s1, s2 = sorted(s for s, _, _ in seg_before)[:3]
        leaves = sorted({r.code_id for r in cur.itertuples()})
        assert len(cur) == 5 and {a for *_, a in got} == {"accept", "reject"}  # ana's skip was undone
        assert (s1, "ben", "reject") in {(s, c, a) for s, _, c, a in got}
        c = p.codings()
        span = {sid: (a, b) for sid, a, b in seg_before}
        assert sorted((int(r.segment_id), r.coder, r.origin) for r in c.itertuples()) == sorted(
            [(s0, "ana", "suggestion accepted"), (s2, "ana", "imported from REFI-QDA old.qdpx"), (s2, "ben", "hand-coded")])
        assert all((r.start, r.end) == span[r.segment_id] for r in c.itertuples())
        assert leaves  # and the project takes v5 decisions straight away
        p.record_decision(s0, cur.code_id.iloc[0], "accept", "cy", span=(span[s0][0], span[s0][0] + 3))
        assert len(p.codings()) == 4


def test_codings_are_spans_that_the_log_can_withdraw(tmp_path):
    p = make_project(tmp_path)
    segs = p.segments()
    tid = int(segs.transcript_id[0])
    text = p.transcript_text(tid)
    s_one, s_another = int(segs.id[0]), int(segs.id[1])
    # A hand-coded phrase across two passages: attached to the one it overlaps most, kept exact.
    a, b = text.index("thing. Another"), text.index(" thing.\nInterviewer")
    d = p.add_coding(tid, a, b, "theme/a", "ann")
    row = p.codings().set_index("decision_id").loc[d]
    assert (row.start, row.end, row.segment_id, row.origin) == (a, b, s_another, "hand-coded")
    assert text[row.start:row.end] == "thing. Another"
    # Segment-level decisions read as their segment's span; only the latest such accept counts.
    p.record_decision(s_one, "theme/a", "accept", "ann")
    p.record_decision(s_one, "theme/a", "accept", "ann")
    # Two spans of one code on one passage by one coder are two codings.
    p.record_decision(s_one, "theme/b", "accept", "bo", span=(segs.start[0], segs.start[0] + 3), origin="imported from x.qdpx")
    p.record_decision(s_one, "theme/b", "accept", "bo", span=(segs.start[0] + 4, segs.end[0]), origin="imported from x.qdpx")
    c = p.codings()
    assert len(c) == 4 and (c.code_id == "theme/b").sum() == 2
    assert sorted(c.columns) == sorted(["decision_id", "transcript_id", "start", "end", "code_id", "coder", "time", "origin", "segment_id"])
    # A later reject withdraws the coder's codings of that code on that passage; undo brings them back.
    p.record_decision(s_one, "theme/b", "reject", "bo")
    assert (p.codings().code_id == "theme/b").sum() == 0
    p.undo_last("bo")
    assert (p.codings().code_id == "theme/b").sum() == 2
    # current_decisions is unchanged: one row per (segment, code, coder).
    assert len(p.current_decisions()) == 3
    with pytest.raises(ProjectError, match="not inside its transcript"):
        p.record_decision(s_one, "theme/a", "accept", "ann", span=(5, len(text) + 1))
    with pytest.raises(ProjectError, match="or is empty"):
        p.add_coding(tid, 7, 7, "theme/a", "ann")
    assert p.codings(transcript_id=tid).equals(p.codings())


def test_exchange_items_round_trip(tmp_path):
    p = make_project(tmp_path)
    p.add_exchange_items([("user", "g1", "Ann", {"id": "A"}, None), ("file", None, "sources/x.pdf", {}, b"%PDF")], "f.qdpx")
    items = p.exchange_items()
    assert items.kind.tolist() == ["user", "file"] and items.data[0] == {"id": "A"} and bytes(items.content[1]) == b"%PDF"
    assert p.exchange_items("file").ref.tolist() == ["sources/x.pdf"]


def _sql_current(p: Project) -> set[tuple]:
    """The CURRENT_DECISION fragment applied as written, for comparison with the methods."""
    from coder_assist.store.project import CURRENT_DECISION

    rows = p.conn.execute(f"SELECT d.segment_id, d.code_id, d.coder, d.action, d.id FROM decisions d WHERE {CURRENT_DECISION}")
    return {tuple(r) for r in rows}


def test_one_current_decision_rule_for_every_reader(tmp_path):
    p = make_project(tmp_path)
    s1, s2, s3 = p.segments().id.astype(int).tolist()
    p.record_decision(s1, "theme/a", "accept", "ann")
    p.record_decision(s1, "theme/a", "reject", "ann")
    p.record_decision(s2, "theme/b", "accept", "ann")
    p.record_decision(s3, "theme/a", "skip", "bob")
    p.record_decision(s1, "theme/a", "accept", "bob")
    p.undo_last("ann")  # the accept on s2 goes; the reject on s1 stays
    p.undo_last("ann")  # the reject goes: the first accept on s1 is current again
    expected = {(s1, "theme/a", "ann", "accept"), (s3, "theme/a", "bob", "skip"), (s1, "theme/a", "bob", "accept")}
    cur = p.current_decisions()
    assert set(zip(cur.segment_id, cur.code_id, cur.coder, cur.action)) == expected
    assert {r[:4] for r in _sql_current(p)} == expected
    assert {r[4] for r in _sql_current(p)} == set(cur["id"])
    assert p.current_decisions(code_id="theme/a", segment_id=s1)["coder"].tolist() == ["ann", "bob"]
    assert p.current_decisions(" bob ", segment_id=s3)["action"].tolist() == ["skip"]
    assert p.current_action(s1, "theme/a", "ann") == "accept"
    assert p.current_action(s2, "theme/b", "ann") is None
    assert p.last_decision("ann")["action"] == "accept" and p.last_decision("ann")["segment_id"] == s1
    assert p.last_decision("nobody") is None


def test_repoint_decisions_is_the_one_log_rewrite_and_moves_the_epoch(tmp_path):
    from coder_assist.store.project import EPOCH_KEY

    p = make_project(tmp_path)
    s1, s2, s3 = p.segments().id.astype(int).tolist()
    a = [p.record_decision(s, "theme/a", "accept", "ann") for s in (s1, s2, s3)]
    assert p.meta(EPOCH_KEY) is None
    assert p.repoint_decisions("theme/a", "theme/b", []) == [] and p.meta(EPOCH_KEY) is None
    assert p.repoint_decisions("theme/a", "theme/b", [s2, s3]) == a[1:]
    assert p.meta(EPOCH_KEY) == "1"
    assert p.decisions()["code_id"].tolist() == ["theme/a", "theme/b", "theme/b"]
    assert p.repoint_decisions("theme/b", "theme/a") == a[1:] and p.meta(EPOCH_KEY) == "2"
    assert p.repoint_decisions("theme/b", "theme/a") == [] and p.meta(EPOCH_KEY) == "2"  # nothing moved: no bump
    assert p.decisions_mark() == (a[-1], 3)


def test_public_meta_writer_refuses_the_stores_own_keys(tmp_path):
    from coder_assist.store.project import EPOCH_KEY

    p = make_project(tmp_path)
    p.set_meta("auto_retrain_every", "5")
    assert p.meta("auto_retrain_every") == "5"
    p.clear_meta("auto_retrain_every")
    p.clear_meta("auto_retrain_every")  # absent is fine
    assert p.meta("auto_retrain_every") is None
    for key in ("template", "created_at", EPOCH_KEY):
        with pytest.raises(ProjectError, match="written by the store"):
            p.set_meta(key, "x")
    assert p.template().frame().equals(TPL.frame())


def test_code_paths_keep_retired_codes_in_template_order(tmp_path):
    p = make_project(tmp_path)
    assert p.code_paths() == {"theme": "Theme", "theme/a": "Theme > A", "theme/b": "Theme > B"}
    assert list(p.code_paths(active=True, leaves=True)) == ["theme/a", "theme/b"]
    p.set_template(parse_template({"name": "toy", "codes": [{"name": "Theme", "description": "t", "children": [
        {"name": "A", "description": "code a"}]}]}))
    assert list(p.code_paths(active=True, leaves=True)) == ["theme/a"]
    assert p.code_path("theme/b") == "Theme > B"  # retired, still named
    assert p.code_path("nope") is None


def test_code_and_decision_tallies_for_template_edits(tmp_path):
    p = make_project(tmp_path)
    s1, s2, _ = p.segments().id.astype(int).tolist()
    p.record_decision(s2, "theme/a", "accept", "ann")
    p.record_decision(s1, "theme/a", "reject", "bob")
    p.undo_last("bob")
    assert p.decision_counts() == {"theme/a": 3}
    assert p.decision_count("theme/a") == 3 and p.decision_count("theme/b") == 0
    assert p.decided_segments("theme/a") == sorted([s1, s2]) and p.decided_segments("theme/b") == []
    assert p.code_name("theme/a") == "A" and p.code_name("nope") is None
    assert p.accepted_passages("theme/a")["segment_id"].tolist() == [s2]
    assert set(p.decided_passages("theme/a")["segment_id"]) == {s1, s2}
    table = p.codes_table()
    assert table.index.tolist() == ["theme", "theme/a", "theme/b"] and table.loc["theme", "is_leaf"] == 0
    assert p.integrity_check() == "ok"


# -- v6: decision units --------------------------------------------------------------------------

V5_DB = FIXTURES / "store" / "v5_project.db"


def test_migration_v5_to_v6_keeps_the_log_and_old_pairs_still_undo_together(tmp_path):
    """A project written at schema v5 (tests/fixtures/store/v5_project.db, made by
    build_v5_project.py with the code before v6) opens with every row as it was and no unit on
    any of them; the "Different code..." pair made then still undoes as a pair (by its note),
    and a unit recorded now undoes whole."""
    import shutil

    from coder_assist.app import review

    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(V5_DB, folder / DB_NAME)
    raw = sqlite3.connect(folder / DB_NAME)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 5
    log_before = raw.execute("SELECT * FROM decisions ORDER BY id").fetchall()
    counts_before = raw.execute("SELECT action, COUNT(*) FROM decisions GROUP BY action ORDER BY action").fetchall()
    raw.close()
    with Project.open(folder) as p:
        assert p.schema_version == SCHEMA_VERSION >= 6
        cols = [r[1] for r in p.conn.execute("PRAGMA table_info(decisions)")]
        assert cols[-1] == "unit_id"
        n_old = len(log_before[0])
        after = [tuple(r) for r in p.conn.execute("SELECT * FROM decisions ORDER BY id")]
        assert [r[:n_old] for r in after] == log_before and all(r[n_old] is None for r in after)
        assert [tuple(r) for r in p.conn.execute("SELECT action, COUNT(*) FROM decisions GROUP BY action ORDER BY action")] == counts_before
        assert p.integrity_check() == "ok"
        # ana's last action is the v5 "Different code..." on the second passage: both halves go.
        undone = review.undo_last(p, "ana")
        assert [d.action for d in undone] == ["accept", "reject"] and all(d.unit_id is None for d in undone)
        assert len({d.segment_id for d in undone}) == 1
        # A v6 unit on the same project undoes whole, in one step.
        seg = int(p.segments().id[0])
        leaves = list(p.code_paths(leaves=True))
        unit = p.record_unit(seg, [(leaves[0], "accept", None), (leaves[1], "reject", None), (leaves[2], "reject", None)], "cy",
                             origin="passage")
        got = p.undo_last_action("cy")
        assert [d.code_id for d in got] == [leaves[2], leaves[1], leaves[0]] and {d.unit_id for d in got} == {unit}
        assert p.current_decisions("cy").empty


def test_record_unit_is_one_transaction_with_one_id(tmp_path):
    p = make_project(tmp_path)
    s1, s2 = (int(x) for x in p.segments().id[:2])
    p.record_decision(s2, "theme/a", "accept", "ann")
    unit = p.record_unit(s1, [("theme/a", "accept", None, "why"), ("theme/b", "reject", None)], "ann", origin="passage")
    log = p.decisions().set_index("id")
    rows = log[log["unit_id"] == unit]
    assert list(rows.index) == [unit, unit + 1]
    assert list(rows["action"]) == ["accept", "reject"] and set(rows["origin"]) == {"passage"}
    assert rows.loc[unit, "note"] == "why" and pd.isna(rows.loc[unit + 1, "note"])
    assert p.live_unit(s1, "ann", "passage") == unit and p.live_unit(s2, "ann", "passage") is None
    assert p.live_unit(s1, "bo", "passage") is None
    # A bad row (unknown code) leaves nothing behind: all or none.
    n = len(p.decisions())
    with pytest.raises(ProjectError):
        p.record_unit(s2, [("theme/a", "reject", None), ("no/such", "reject", None)], "ann", origin="passage")
    assert len(p.decisions()) == n
    with pytest.raises(ProjectError):
        p.record_unit(s2, [], "ann")


def test_undo_last_action_takes_a_unit_back_whole_and_only_its_live_rows(tmp_path):
    p = make_project(tmp_path)
    s1, s2 = (int(x) for x in p.segments().id[:2])
    first = p.record_decision(s2, "theme/b", "accept", "ann")
    unit = p.record_unit(s1, [("theme/a", "accept", None), ("theme/b", "reject", None)], "ann", origin="passage")
    p.record_unit(s1, [("theme/a", "accept", None)], "bo", origin="passage")  # another coder's unit is not touched
    undone = p.undo_last_action("ann")
    assert [(d.id, d.action) for d in undone] == [(unit + 1, "reject"), (unit, "accept")]
    log = p.decisions()
    assert sorted(int(u) for u in log["undoes"].dropna()) == [unit, unit + 1]
    assert p.live_unit(s1, "ann", "passage") is None and p.live_unit(s1, "bo", "passage") is not None
    # The next undo is the decision before the unit, alone.
    assert [d.id for d in p.undo_last_action("ann")] == [first]
    assert p.undo_last_action("ann") == []
    # Append-only: nothing was deleted or rewritten.
    assert len(p.decisions()) == 3 + 1 + 3


# -- v7: a project records its encoder -----------------------------------------------------------

V6_DB = FIXTURES / "store" / "v6_project.db"


def test_a_new_project_records_its_encoder(tmp_path):
    """The default encoder unless told otherwise, written when the project is made, so a later
    change of the default does not change the project's encoder."""
    with Project.create(tmp_path / "a", TPL) as p:
        assert p.meta("model") == "use-multilingual-v3"
    with Project.open(tmp_path / "a") as p:
        assert p.meta("model") == "use-multilingual-v3"  # reopening (migrations) keeps it
    with Project.create(tmp_path / "b", TPL, model="all-MiniLM-L6-v2") as p:
        assert p.meta("model") == "all-MiniLM-L6-v2"


def _old_project(tmp_path, db=None):
    import shutil

    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(db or V6_DB, folder / DB_NAME)
    return folder


def test_migration_v6_to_v7_keeps_an_old_project_on_minilm(tmp_path):
    """A project written at schema v6 (tests/fixtures/store/v6_project.db, made by
    build_v6_project.py with the code before v7) has no encoder recorded: it was embedded with
    the default of its time, all-MiniLM-L6-v2, and its trained models are 384-d, so it keeps
    MiniLM; its log is untouched."""
    folder = _old_project(tmp_path)
    raw = sqlite3.connect(folder / DB_NAME)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 6
    assert raw.execute("SELECT value FROM meta WHERE key = 'model'").fetchone() is None
    log_before = raw.execute("SELECT * FROM decisions ORDER BY id").fetchall()
    raw.close()
    with Project.open(folder) as p:
        assert p.schema_version == SCHEMA_VERSION >= 7
        assert p.meta("model") == "all-MiniLM-L6-v2"
        assert [tuple(r) for r in p.conn.execute("SELECT * FROM decisions ORDER BY id")] == log_before
        assert p.integrity_check() == "ok"


def test_migration_v7_keeps_a_recorded_encoder(tmp_path):
    """A v6 project already switched to an encoder fine-tuned on it keeps that one."""
    folder = _old_project(tmp_path)
    raw = sqlite3.connect(folder / DB_NAME)
    raw.execute("INSERT INTO meta(key, value) VALUES ('model', '/projects/x/models/encoder-20250101T000000Z')")
    raw.commit()
    raw.close()
    with Project.open(folder) as p:
        assert p.meta("model") == "/projects/x/models/encoder-20250101T000000Z"


def test_migrated_old_projects_encoder_loads_as_minilm(tmp_path):
    """Through the use case the app and the command line go through: suggest on a migrated v6
    project embeds with MiniLM (384-d, its model id), not the new default."""
    from coder_assist.app.pipeline import suggest_project
    from coder_assist.ml.embed import load_encoder

    folder = _old_project(tmp_path)
    with Project.open(folder) as p:
        enc = load_encoder(p.meta("model"), cache=False)
        assert enc.dim == 384 and enc.model_id.startswith("all-MiniLM-L6-v2@")
        mv = suggest_project(p, progress=False)
        enc_id = p.conn.execute("SELECT encoder FROM model_versions WHERE id = ?", (mv,)).fetchone()[0]
        assert enc_id.startswith("all-MiniLM-L6-v2@")
