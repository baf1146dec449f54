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
