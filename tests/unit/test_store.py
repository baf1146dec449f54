import sqlite3

import pandas as pd
import pytest

from coder_assist.codebook import parse_template
from coder_assist.errors import ProjectError
from coder_assist.ingest import Transcript, parse_speaker_text
from coder_assist.segment import Segmenter
from coder_assist.store import DB_NAME, SCHEMA_VERSION, Project

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
    from coder_assist import store

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
