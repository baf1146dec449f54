"""coder_assist.app.review on a tiny project built here: no embedding model, suggestions inserted
directly with chosen confidences."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coder_assist.app import review
from coder_assist.core.errors import ProjectError
from coder_assist.app.pipeline import import_files, init_project
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import Project
from tests.conftest import FIXTURES

TEMPLATE = (FIXTURES / "tiny_template.yaml").read_text(encoding="utf-8")

T1 = """\
Interviewer: How did the project go?

P1: It was fine overall. The budget was tight all year. We had no time to plan. Then the council cut the grant. Nobody told us why. We found out from the paper.

Interviewer: Anything that helped?

P1: The council listened to us in the end. People felt heard.

Interviewer: Thank you.
"""

T2 = """\
Interviewer: What would you change?

Sam: More time for the groups. Less paperwork for everyone.

Interviewer: And money?

Sam: A small fund we control & spend <quickly> would help.
"""

MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"


def make_project(folder: Path) -> Project:
    """Two transcripts, three leaf codes, no suggestions yet."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    src = folder / "transcripts"
    src.mkdir()
    (src / "t1_alpha.txt").write_text(T1, encoding="utf-8")
    (src / "t2_beta.txt").write_text(T2, encoding="utf-8")
    # Word-count rule off: these tests need T1's 6-sentence answer cut into two 3-sentence
    # passages (by default a turn of <= 80 words is one passage).
    project = init_project(folder / "proj", folder / "template.yaml", Segmenter(short_words=0))
    import_files(project, [src / "t1_alpha.txt", src / "t2_beta.txt"], extra_attributes={"site": "North"})
    return project


def add_suggestions(project: Project, rows: list[tuple[int, str, float]]) -> int:
    """One model version with suggestions (segment index in project.segments(), code, confidence)."""
    segs = project.segments()
    mv = project.add_model_version("test", "none")
    frame = pd.DataFrame(
        [
            {
                "segment_id": int(segs.iloc[i]["id"]),
                "code_id": code,
                "rank": 1,
                "confidence": conf,
                "similarity": conf,
                "evidence": f"evidence for {code}",
                "evidence_source": "illustrative",
                "evidence_similarity": conf,
            }
            for i, code, conf in rows
        ]
    )
    project.add_suggestions(mv, frame)
    return mv


@pytest.fixture(scope="module")
def base_db(tmp_path_factory) -> Path:
    """Build the tiny project once (segmenting takes a moment); tests copy its database."""
    folder = tmp_path_factory.mktemp("base")
    project = make_project(folder)
    project.close()
    return folder / "proj"


@pytest.fixture
def project(base_db, tmp_path) -> Project:
    dest = tmp_path / "proj"
    shutil.copytree(base_db, dest)
    p = Project.open(dest)
    yield p
    p.close()


@pytest.fixture
def suggested(project) -> Project:
    """Six suggestions with distinct confidences (segment index, code, confidence)."""
    assert len(project.segments()) >= 4
    add_suggestions(
        project,
        [(0, MONEY, 0.90), (0, TIME, 0.40), (1, TIME, 0.60), (2, LISTEN, 0.20), (3, TIME, 0.10), (3, MONEY, 0.50)],
    )
    return project


def ids(df: pd.DataFrame) -> list[int]:
    return [int(x) for x in df["suggestion_id"]]


def by_conf(project: Project) -> dict[float, int]:
    s = project.suggestions()
    return {round(float(c), 2): int(i) for c, i in zip(s["confidence"], s["suggestion_id"])}


# --------------------------------------------------------------------------- order


def test_likely_order_is_confidence_descending(suggested):
    q = review.review_queue(suggested, "ann", "likely")
    assert list(q["confidence"]) == sorted(q["confidence"], reverse=True)
    assert len(q) == 6
    assert list(q.columns) == review.QUEUE_COLUMNS
    assert not q["skipped"].any()


def test_uncertain_order_is_closest_to_median_first(suggested):
    q = review.review_queue(suggested, "ann", "uncertain")
    median = 0.45  # of 0.9, 0.6, 0.5, 0.4, 0.2, 0.1
    dist = [round(abs(c - median), 6) for c in q["confidence"]]
    assert dist == sorted(dist)
    assert round(q.iloc[0]["confidence"], 2) in (0.4, 0.5)
    # The median is the pool's, so deciding does not reshuffle the rest.
    before = ids(q)
    review.decide(suggested, before[0], "accept", "ann")
    assert ids(review.review_queue(suggested, "ann", "uncertain")) == before[1:]


def test_bad_order_is_refused(suggested):
    with pytest.raises(ValueError):
        review.review_queue(suggested, "ann", "random")


def test_only_latest_model_version(suggested):
    add_suggestions(suggested, [(1, LISTEN, 0.33)])
    q = review.review_queue(suggested, "ann")
    assert len(q) == 1 and q.iloc[0]["code_id"] == LISTEN
    assert review.progress(suggested, "ann")["total"] == 1


def test_no_model_version_gives_empty_queue(project):
    assert review.review_queue(project, "ann").empty
    prog = review.progress(project, "ann")
    assert prog["total"] == prog["decided"] == prog["queued"] == 0 and prog["accept_rate"] is None


# --------------------------------------------------------------------------- decisions and the queue


def test_decided_items_leave_the_queue(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[0], "accept", "ann")
    review.decide(suggested, q[1], "reject", "ann")
    assert ids(review.review_queue(suggested, "ann")) == q[2:]
    prog = review.progress(suggested, "ann")
    assert (prog["decided"], prog["queued"], prog["accepted"], prog["rejected"]) == (2, 4, 1, 1)
    assert prog["accept_rate"] == pytest.approx(0.5)


def test_skip_goes_to_the_end_not_away(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[0], "skip", "ann")
    after = review.review_queue(suggested, "ann")
    assert ids(after) == q[1:] + [q[0]]
    assert list(after["skipped"]) == [False] * 5 + [True]
    # Skipped ones come back in the order they were skipped; skipping again sends to the end.
    review.decide(suggested, q[1], "skip", "ann")
    assert ids(review.review_queue(suggested, "ann"))[-2:] == [q[0], q[1]]
    review.decide(suggested, q[0], "skip", "ann")
    assert ids(review.review_queue(suggested, "ann"))[-2:] == [q[1], q[0]]
    prog = review.progress(suggested, "ann")
    assert prog["decided"] == 0 and prog["queued"] == 6 and prog["skipped"] == 2


def test_skip_then_accept_leaves_the_queue(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[0], "skip", "ann")
    review.decide(suggested, q[0], "accept", "ann")
    assert q[0] not in ids(review.review_queue(suggested, "ann"))


def test_undo_brings_the_suggestion_back(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[0], "accept", "ann")
    undone = review.undo_last(suggested, "ann")
    assert [d.action for d in undone] == ["accept"]
    assert ids(review.review_queue(suggested, "ann")) == q
    log = suggested.decisions()
    assert list(log["action"]) == ["accept", "undo"] and int(log.iloc[1]["undoes"]) == int(log.iloc[0]["id"])
    assert review.undo_last(suggested, "ann") == []  # nothing left to undo


def test_undo_of_a_skip_restores_the_original_place(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[2], "skip", "ann")
    review.undo_last(suggested, "ann")
    assert ids(review.review_queue(suggested, "ann")) == q


def test_decide_needs_a_coder_and_a_known_suggestion(suggested):
    sid = ids(review.review_queue(suggested, "ann"))[0]
    with pytest.raises(ProjectError):
        review.decide(suggested, sid, "accept", "  ")
    with pytest.raises(ProjectError):
        review.decide(suggested, 99999, "accept", "ann")
    with pytest.raises(ProjectError):
        review.decide(suggested, sid, "undo", "ann")
    assert suggested.decisions().empty


def test_coder_name_is_compared_stripped(suggested):
    sid = ids(review.review_queue(suggested, "ann"))[0]
    review.decide(suggested, sid, "accept", "  ann ")
    assert sid not in ids(review.review_queue(suggested, "ann"))
    assert sid not in ids(review.review_queue(suggested, " ann"))


def test_two_coders_are_independent(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[0], "accept", "ann")
    review.decide(suggested, q[1], "skip", "ann")
    assert ids(review.review_queue(suggested, "bob")) == q
    review.decide(suggested, q[2], "reject", "bob")
    # Bob's undo takes back Bob's decision, not Ann's later one.
    review.decide(suggested, q[3], "accept", "ann")
    assert [d.coder for d in review.undo_last(suggested, "bob")] == ["bob"]
    assert ids(review.review_queue(suggested, "bob")) == q
    assert review.progress(suggested, "ann")["decided"] == 2
    assert review.progress(suggested, "bob")["decided"] == 0
    assert ids(review.review_queue(suggested, None)) == q  # no name: a preview, nothing decided


def test_is_repeat_spots_a_double_press(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    assert not review.is_repeat(suggested, q[0], "accept", "ann")
    review.decide(suggested, q[0], "accept", "ann")
    assert review.is_repeat(suggested, q[0], "accept", "ann")
    assert not review.is_repeat(suggested, q[0], "reject", "ann")
    assert not review.is_repeat(suggested, q[0], "accept", "bob")


# --------------------------------------------------------------------------- different code


def _sid(project: Project, conf: float) -> int:
    return by_conf(project)[conf]


def test_choose_other_code_rejects_and_accepts(suggested):
    sid = _sid(suggested, 0.9)  # segment 0, MONEY
    reject_id, accept_id = review.choose_other_code(suggested, sid, LISTEN, "ann")
    log = suggested.decisions().set_index("id")
    assert log.loc[reject_id, "action"] == "reject" and log.loc[reject_id, "code_id"] == MONEY
    assert log.loc[accept_id, "action"] == "accept" and log.loc[accept_id, "code_id"] == LISTEN
    assert log.loc[reject_id, "segment_id"] == log.loc[accept_id, "segment_id"]
    assert sid not in ids(review.review_queue(suggested, "ann"))
    per = review.progress(suggested, "ann")["per_code"].set_index("code_id")
    assert per.loc[LISTEN, "added"] == 1 and per.loc[MONEY, "rejected"] == 1


def test_choose_other_code_that_was_also_suggested_leaves_the_queue(suggested):
    sid = _sid(suggested, 0.9)  # segment 0 also has TIME at 0.40
    review.choose_other_code(suggested, sid, TIME, "ann")
    left = ids(review.review_queue(suggested, "ann"))
    assert sid not in left and _sid(suggested, 0.4) not in left
    accept = suggested.decisions().query("action == 'accept'").iloc[0]
    assert int(accept["suggestion_id"]) == _sid(suggested, 0.4)


def test_choose_other_code_is_atomic(suggested, monkeypatch):
    sid = _sid(suggested, 0.9)
    real = suggested.record_decision

    def failing(segment_id, code_id, action, coder, **kw):
        if action == "accept":
            raise ProjectError("disk on fire")
        return real(segment_id, code_id, action, coder, **kw)

    monkeypatch.setattr(suggested, "record_decision", failing)
    with pytest.raises(ProjectError, match="disk on fire"):
        review.choose_other_code(suggested, sid, LISTEN, "ann")
    assert suggested.decisions().empty  # the reject was rolled back with the failed accept
    assert not suggested.conn.in_transaction
    assert sid in ids(review.review_queue(suggested, "ann"))


def test_choose_other_code_refuses_bad_codes(suggested):
    sid = _sid(suggested, 0.9)
    for bad in (MONEY, "barriers", "no/such/code"):
        with pytest.raises(ProjectError):
            review.choose_other_code(suggested, sid, bad, "ann")
    assert suggested.decisions().empty


def test_undo_takes_back_both_halves_of_a_different_code(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    review.decide(suggested, q[1], "accept", "ann")
    review.choose_other_code(suggested, q[0], LISTEN, "ann")
    undone = review.undo_last(suggested, "ann")
    assert sorted(d.action for d in undone) == ["accept", "reject"]
    assert ids(review.review_queue(suggested, "ann")) == q[:1] + q[2:]
    # The earlier, separate accept is the next undo, on its own.
    assert [d.action for d in review.undo_last(suggested, "ann")] == ["accept"]
    assert ids(review.review_queue(suggested, "ann")) == q


# --------------------------------------------------------------------------- filters and progress


def test_filters(suggested):
    q = review.review_queue(suggested, "ann", code_id=TIME)
    assert set(q["code_id"]) == {TIME} and len(q) == 3
    q = review.review_queue(suggested, "ann", code_id=[TIME, LISTEN])
    assert set(q["code_id"]) == {TIME, LISTEN}
    segs = suggested.segments()
    for name in segs["transcript"].unique():
        q = review.review_queue(suggested, "ann", transcript=name)
        assert set(q["transcript"]) <= {name}
    q = review.review_queue(suggested, "ann", speaker="P1")
    assert set(q["speaker"]) == {"P1"}
    assert review.review_queue(suggested, "ann", speaker="nobody").empty
    assert review.review_queue(suggested, "ann", code_id=[]).empty
    opts = review.filter_options(suggested)
    assert [c for c, _ in opts["codes"]] == [MONEY, TIME, LISTEN]  # template order
    assert set(opts["speakers"]) <= set(segs["speaker"])


def test_progress_per_code(suggested):
    q = review.review_queue(suggested, "ann")
    first_time = int(q[q["code_id"] == TIME].iloc[0]["suggestion_id"])
    review.decide(suggested, first_time, "accept", "ann")
    review.decide(suggested, _sid(suggested, 0.9), "reject", "ann")
    prog = review.progress(suggested, "ann")
    per = prog["per_code"].set_index("code_id")
    assert list(prog["per_code"]["code_id"]) == [MONEY, TIME, LISTEN]
    assert per.loc[TIME, ["suggested", "accepted", "rejected", "pending"]].tolist() == [3, 1, 0, 2]
    assert per.loc[MONEY, ["suggested", "accepted", "rejected", "pending"]].tolist() == [2, 0, 1, 1]
    assert prog["decided"] + prog["queued"] == prog["total"] == 6


# --------------------------------------------------------------------------- context


def test_context_highlight_is_the_segment(suggested):
    segs = suggested.segments()
    assert (segs["start"] > 0).all()
    found_inner = False
    for seg in segs.itertuples():
        turns = review.segment_context(suggested, seg.id, n_turns=1)
        current = [t for t in turns if t.is_current]
        assert len(current) == 1
        a, b = current[0].highlight
        assert current[0].text[a:b] == seg.text
        assert current[0].speaker == seg.speaker
        found_inner |= a > 0 or b < len(current[0].text)
        assert all(t.highlight is None for t in turns if not t.is_current)
        assert [t.idx for t in turns] == sorted(t.idx for t in turns)
        assert all(abs(t.idx - seg.turn_idx) <= 1 for t in turns)
    assert found_inner  # the long turn is cut into more than one segment


def test_context_includes_interviewer_turns_and_respects_n(suggested):
    seg = suggested.segments().iloc[0]
    turns = review.segment_context(suggested, int(seg["id"]), n_turns=2)
    assert any(t.speaker == "Interviewer" for t in turns)
    assert len(review.segment_context(suggested, int(seg["id"]), n_turns=0)) == 1
    with pytest.raises(ProjectError):
        review.segment_context(suggested, 99999)


def test_transcript_attributes(suggested):
    tid = int(suggested.segments().iloc[0]["transcript_id"])
    assert review.transcript_attributes(suggested, tid) == {"site": "North"}


# --------------------------------------------------------------------------- against the store


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["ann", "bob"]), st.sampled_from(["accept", "reject", "skip", "undo"]), st.integers(0, 5)),
        max_size=25,
    )
)
def test_queue_agrees_with_store_current_decisions(base_db, steps):
    """Whatever the log, the queue is exactly the pool minus the pairs that
    Project.current_decisions says are accepted or rejected."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(base_db, Path(tmp) / "proj")
        with Project.open(Path(tmp) / "proj") as project:
            add_suggestions(project, [(0, MONEY, 0.9), (0, TIME, 0.4), (1, TIME, 0.6), (2, LISTEN, 0.2), (3, TIME, 0.1), (3, MONEY, 0.5)])
            sids = sorted(by_conf(project).values())
            for coder, action, i in steps:
                if action == "undo":
                    review.undo_last(project, coder)
                else:
                    review.decide(project, sids[i], action, coder)
            pool = project.suggestions()
            for coder in ("ann", "bob"):
                cur = project.current_decisions(coder)
                done = {(int(s), c) for s, c, a in zip(cur["segment_id"], cur["code_id"], cur["action"]) if a in ("accept", "reject")}
                skipped = {(int(s), c) for s, c, a in zip(cur["segment_id"], cur["code_id"], cur["action"]) if a == "skip"}
                expected = {int(r.suggestion_id) for r in pool.itertuples() if (int(r.segment_id), r.code_id) not in done}
                q = review.review_queue(project, coder)
                assert set(ids(q)) == expected
                assert {(int(s), c) for s, c, k in zip(q["segment_id"], q["code_id"], q["skipped"]) if k} == skipped
                assert review.progress(project, coder)["queued"] == len(expected)


# --------------------------------------------------------------------------- schema v3


def test_schema_v3_review_indexes_are_added_to_an_older_project(suggested):
    """Migration step 3 (the review queue's indexes) upgrades a v2 database in place."""
    from coder_assist.store import project as store

    assert store.SCHEMA_VERSION >= 3
    folder = suggested.folder
    before = review.review_queue(suggested, "ann")
    suggested.conn.execute("DROP INDEX suggestions_pool")
    suggested.conn.execute("DROP INDEX segments_speaker")
    suggested.conn.execute("PRAGMA user_version = 2")
    suggested.close()
    with Project.open(folder) as p:
        assert p.schema_version == store.SCHEMA_VERSION
        names = {r[0] for r in p.conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"suggestions_pool", "segments_speaker"} <= names
        assert ids(review.review_queue(p, "ann")) == ids(before)
        plan = " ".join(str(tuple(r)) for r in p.conn.execute(
            "EXPLAIN QUERY PLAN SELECT code_id, COUNT(*) FROM suggestions WHERE model_version_id = 1 GROUP BY code_id"))
        assert "COVERING INDEX suggestions_pool" in plan


# --------------------------------------------------------------------------- the fast path


FILTER_CHOICES = [
    {},
    {"code_id": TIME},
    {"code_id": [MONEY, LISTEN]},
    {"transcript": "t1_alpha"},
    {"speaker": "Sam"},
    {"attributes": {"site": "North"}},
    {"attributes": {"site": "South"}},
    {"transcript": "t2_beta", "code_id": TIME},
]


def _reference_progress(project, coder):
    q = review.review_queue(project, coder)
    pool = project.suggestions()
    return len(pool) - len(q), len(q)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["ann", "bob"]), st.sampled_from(["accept", "reject", "skip", "undo", "other"]), st.integers(0, 6)),
        max_size=30,
    ),
    st.sampled_from(range(len(FILTER_CHOICES))),
)
def test_next_suggestion_is_the_head_of_the_queue(base_db, steps, which):
    """next_suggestion (indexed, one row) agrees with review_queue (whole queue, pandas) in both
    orders, under every filter, whatever the log; so do the counts."""
    filters = FILTER_CHOICES[which]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(base_db, Path(tmp) / "proj")
        with Project.open(Path(tmp) / "proj") as project:
            add_suggestions(project, [(0, MONEY, 0.9), (0, TIME, 0.4), (1, TIME, 0.6), (2, LISTEN, 0.2), (3, TIME, 0.1),
                                      (3, MONEY, 0.5), (4, LISTEN, 0.5)])
            sids = sorted(by_conf(project).values())
            for coder, action, i in steps:
                i = i % len(sids)
                if action == "undo":
                    review.undo_last(project, coder)
                elif action == "other":
                    seg, code = review._suggestion(project, sids[i])
                    other = LISTEN if code != LISTEN else MONEY
                    if review.current_action(project, seg, code, coder) not in ("accept", "reject"):
                        review.choose_other_code(project, sids[i], other, coder)
                else:
                    review.decide(project, sids[i], action, coder)
            for coder in ("ann", "bob", None):
                for order in review.ORDERS:
                    q = review.review_queue(project, coder, order, **filters)
                    nxt = review.next_suggestion(project, coder, order, **filters)
                    if q.empty:
                        assert nxt is None
                    else:
                        assert nxt is not None and nxt["suggestion_id"] == int(q.iloc[0]["suggestion_id"])
                        assert nxt["skipped"] == bool(q.iloc[0]["skipped"])
                        assert list(nxt) == review.QUEUE_COLUMNS
                counts = review.filtered_counts(project, coder, **filters)
                assert counts["queued"] == len(review.review_queue(project, coder, **filters))
                prog = review.progress(project, coder)
                assert (prog["decided"], prog["queued"]) == _reference_progress(project, coder)
                per = prog["per_code"]
                assert per["pending"].sum() == prog["queued"] and per["suggested"].sum() == prog["total"]


def test_pin_puts_a_queued_suggestion_first(suggested):
    q = ids(review.review_queue(suggested, "ann"))
    assert review.next_suggestion(suggested, "ann", pin=q[3])["suggestion_id"] == q[3]
    review.decide(suggested, q[3], "accept", "ann")
    assert review.next_suggestion(suggested, "ann", pin=q[3])["suggestion_id"] == q[0]  # decided: pin ignored
    assert review.next_suggestion(suggested, "ann", pin=q[1], code_id=LISTEN)["code_id"] == LISTEN  # not in filter


def test_decide_once_refuses_a_pair_already_decided(suggested):
    sid = ids(review.review_queue(suggested, "ann"))[0]
    assert review.decide_once(suggested, sid, "accept", "ann") is not None
    assert review.decide_once(suggested, sid, "accept", "ann") is None  # double press
    assert review.decide_once(suggested, sid, "reject", "ann") is None  # decided in another tab
    assert review.decide_once(suggested, sid, "accept", "bob") is not None  # another coder decides for themself
    assert list(suggested.decisions()["coder"]) == ["ann", "bob"]
    s2 = ids(review.review_queue(suggested, "ann"))[0]
    assert review.decide_once(suggested, s2, "skip", "ann") is not None
    assert review.decide_once(suggested, s2, "skip", "ann") is None  # the same skip twice
    assert review.decide_once(suggested, s2, "accept", "ann") is not None  # deciding a skipped one is fine
    with pytest.raises(ProjectError, match="already accepted"):
        review.choose_other_code(suggested, s2, LISTEN if review._suggestion(suggested, s2)[1] != LISTEN else MONEY, "ann")


def test_manual_add_and_remove_are_decisions(suggested):
    seg = int(suggested.segments().iloc[2]["id"])
    assert review.add_code(suggested, seg, MONEY, "ann") is not None
    assert review.add_code(suggested, seg, MONEY, "ann") is None  # already coded
    assert review.current_action(suggested, seg, MONEY, "ann") == "accept"
    assert review.remove_code(suggested, seg, MONEY, "ann") is not None
    assert review.remove_code(suggested, seg, MONEY, "ann") is None
    log = suggested.decisions()
    assert list(log["action"]) == ["accept", "reject"] and set(log["coder"]) == {"ann"}
    assert log["note"].str.startswith("manual").all()
    with pytest.raises(ProjectError, match="sub-codes"):
        review.add_code(suggested, seg, "barriers", "ann")
    with pytest.raises(ProjectError, match="coder"):
        review.add_code(suggested, seg, MONEY, " ")
    # A manual code on a suggested pair decides that suggestion too.
    sid = _sid(suggested, 0.2)
    s_seg, s_code = review._suggestion(suggested, sid)
    review.add_code(suggested, s_seg, s_code, "ann")
    assert sid not in ids(review.review_queue(suggested, "ann"))
    assert int(suggested.decisions().iloc[-1]["suggestion_id"]) == sid
    prog = review.progress(suggested, "ann")
    assert prog["accepted"] == 1 and prog["per_code"].set_index("code_id").loc[MONEY, "added"] == 0


def test_transcript_view_queries(suggested):
    tid = int(suggested.segments().iloc[0]["transcript_id"])
    segs = review.transcript_segments(suggested, tid)
    assert list(segs["idx"]) == sorted(segs["idx"])
    sug = review.transcript_suggestions(suggested, tid)
    assert set(sug["segment_id"]) <= set(segs["id"])
    review.add_code(suggested, int(segs.iloc[0]["id"]), LISTEN, "ann")
    review.add_code(suggested, int(segs.iloc[0]["id"]), LISTEN, "bob")
    review.remove_code(suggested, int(segs.iloc[0]["id"]), LISTEN, "bob")
    cod = review.transcript_codings(suggested, tid)
    assert sorted(zip(cod["coder"], cod["action"])) == [("ann", "accept"), ("bob", "reject")]


def test_warm_queue_gives_the_pool_in_memory_read_only(suggested):
    pool = review.warm_queue(suggested)
    mv = suggested.latest_model_version()
    assert pool.model_version_id == mv
    sug = suggested.suggestions(mv)
    assert sorted(pool.suggestion_id.tolist()) == sorted(sug["suggestion_id"].astype(int))
    by_id = dict(zip(pool.suggestion_id.tolist(), zip(pool.segment_id.tolist(), pool.confidence.tolist())))
    assert all(by_id[int(r.suggestion_id)] == (int(r.segment_id), pytest.approx(r.confidence)) for r in sug.itertuples())
    with pytest.raises(ValueError):
        pool.confidence[0] = 2.0  # the queue's own arrays: a caller cannot change what the queue orders by
    assert review.pool_stats(suggested).total == len(pool) == len(pool.suggestion_id)


def test_reference_queue_and_store_rule_agree_on_current_decisions(suggested):
    """review_queue's SQL reference and the in-memory fast path both follow the store's one
    current-decision rule, through accepts, changes of mind and undos."""
    first, second, third = (int(s) for s in review.review_queue(suggested, "ann")["suggestion_id"][:3])
    review.decide(suggested, first, "accept", "ann")
    review.decide(suggested, second, "skip", "ann")
    review.decide(suggested, second, "reject", "ann")
    review.decide(suggested, third, "accept", "ann")
    review.undo_last(suggested, "ann")
    cur = suggested.current_decisions("ann")
    current = {(int(r.segment_id), r.code_id): r.action for r in cur.itertuples()}
    queue = review.review_queue(suggested, "ann")
    assert first not in set(queue["suggestion_id"]) and second not in set(queue["suggestion_id"])
    assert third in set(queue["suggestion_id"])
    for sid, want in ((first, "accept"), (second, "reject"), (third, None)):
        seg, code = review._suggestion(suggested, sid)
        assert current.get((seg, code)) == want == review.current_action(suggested, seg, code, "ann")
    assert review.next_suggestion(suggested, "ann")["suggestion_id"] == int(queue["suggestion_id"][0])
