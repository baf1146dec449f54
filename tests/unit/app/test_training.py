"""What a retrain reads from the project (:mod:`coder_assist.app.training`): each passage with
the text of the turn before its own."""

from __future__ import annotations

from coder_assist.app.pipeline import import_files
from coder_assist.app.training import project_inputs
from tests.unit.app.test_modelview import make_project


class _Zeros:
    dim = 3

    def encode(self, texts, progress=None):
        import numpy as np

        return np.zeros((len(texts), self.dim), dtype=np.float32)


def test_each_passage_gets_the_turn_before_its_own(tmp_path):
    project = make_project(tmp_path)
    # A second transcript that opens with the participant (no turn before) and has a long turn
    # of several passages, which all share the one turn before them.
    long_turn = " ".join(f"Sentence number {i} of a long answer about money and time." for i in range(40))
    (tmp_path / "t2.txt").write_text(f"P2: I start.\n\nInterviewer: And then?\n\nP2: {long_turn}\n\nInterviewer: Thanks.\n", encoding="utf-8")
    import_files(project, [tmp_path / "t2.txt"])
    segs, inputs = project_inputs(project, _Zeros())
    assert len(inputs.prev_texts) == len(segs) > 10
    want = []
    for r in segs.itertuples(index=False):  # the rule, one passage at a time
        text, turns = project.transcript_text(int(r.transcript_id)), project.turns(int(r.transcript_id))
        prev = turns[turns["idx"] < r.turn_idx]
        want.append(text[int(prev.iloc[-1].start) : int(prev.iloc[-1].end)] if len(prev) else "")
    assert inputs.prev_texts == want
    assert "" in want and "And then?" in want and want.count("And then?") > 1
    assert any(w.startswith("Question") for w in want)
    project.close()


def _records(frame):
    """A decision frame's rows as plain values: NULL as None, whole numbers as int (a column's
    dtype follows the NULLs a read happens to hold)."""
    import math

    def plain(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v.item() if hasattr(v, "item") else v

    return [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)]


def test_kept_current_decisions_follow_the_log(tmp_path):
    """Between retrains only the segments decided since are read again: after every kind of
    change to the log the kept frame holds the rows and values of a fresh read, in id order."""
    import random

    from coder_assist.app.review import confirm_passage
    from coder_assist.app.training import CurrentDecisions

    project = make_project(tmp_path)
    segs = [int(s) for s in project.segments()["id"]]
    codes = [c.id for c in project.template().leaves()]
    kept, rng = CurrentDecisions(), random.Random(3)

    def check(reread):
        got = kept.read(project)
        want = project.current_decisions()
        assert list(got.columns) == list(want.columns)
        assert _records(got) == _records(want)
        assert kept.reread_last == reread
        return got

    assert check(None).empty  # an empty log
    for _ in range(30):
        touched = set()
        for _ in range(rng.randint(0, 4)):
            seg, coder = rng.choice(segs), rng.choice(["ann", "bo"])
            kind = rng.random()
            if kind < 0.3:
                confirm_passage(project, seg, rng.sample(codes, rng.randint(0, 2)), coder)
            elif kind < 0.75:
                project.record_decision(seg, rng.choice(codes), rng.choice(["accept", "reject", "skip"]), coder,
                                        note=rng.choice([None, "why"]))
            else:
                undone = project.undo_last_action(coder)
                seg = undone[0].segment_id if undone else None
            if seg is not None:
                touched.add(seg)
        # Undone rows keep their own segment, so the re-read covers exactly the touched ones.
        got = check(len(touched))
        # The caller's frame is its own: a column added to it is not kept.
        got["extra"] = 1
    assert len(kept.read(project)) and "extra" not in kept.read(project).columns

    # A template edit moves decisions to another code (the epoch moves): the whole log again.
    project.repoint_decisions(codes[0], codes[1])
    check(None)
    check(0)  # nothing new: nothing read
    top = project.last_decision_id()
    project.close()

    # Another database in the folder's place (a backup restored): its last row read differs,
    # so the whole log again, even with more rows than were read.
    other = make_project(tmp_path / "other")
    other_segs = [int(s) for s in other.segments()["id"]]
    while other.last_decision_id() <= top:
        other.record_decision(other_segs[other.last_decision_id() % 3], codes[-1], "reject", "cy")
    got = kept.read(other)
    assert kept.reread_last is None and _records(got) == _records(other.current_decisions())
    other.close()
