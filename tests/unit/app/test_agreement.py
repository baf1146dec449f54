"""Agreement statistics against hand-computed values, the unit rule for partial labels, the
exclude-uncoded option, reliability samples (draw, blind answers), and the AnnoMI reference."""

import numpy as np
import pandas as pd
import pytest

from coder_assist.app import agreement as ag
from coder_assist.core.template import parse_template
from coder_assist.core.errors import ProjectError
from coder_assist.core.transcript import Transcript
from coder_assist.formats.transcripts import parse_speaker_text
from coder_assist.core.segment import Segmenter
from coder_assist.store.project import Project
from tests.conftest import FIXTURES

X, Y = "theme/x", "theme/y"
TPL = parse_template({"name": "toy", "codes": [
    {"name": "Theme", "description": "t", "children": [
        {"name": "X", "description": "code x"}, {"name": "Y", "description": "code y"}]}]})


def make_project(tmp_path, n_transcripts=2, sentences=(4, 6)) -> Project:
    p = Project.create(tmp_path / "proj", TPL)
    ts = []
    for i in range(n_transcripts):
        body = " ".join(f"Sentence {j} of interview {i}." for j in range(sentences[i % len(sentences)]))
        text = f"Interviewer: Tell me?\nP{i}: {body}\n"
        ts.append(Transcript(f"t{i}", text, parse_speaker_text(text)))
    seg = Segmenter(unit="sentence")
    p.add_transcripts(ts, {t.name: seg.segments(t) for t in ts})
    return p


def table(yy, yn, ny, nn):
    """Two raters' answers from a 2x2 table (a's answer first)."""
    a = [1] * yy + [1] * yn + [0] * ny + [0] * nn
    b = [1] * yy + [0] * yn + [1] * ny + [0] * nn
    return np.array(a), np.array(b)


# --------------------------------------------------------------------------- statistics


def test_known_two_by_two_table():
    # po = 35/50 = .7; pe = .5*.6 + .5*.4 = .5; kappa = (.7 - .5) / .5 = .4.
    # Alpha by hand: 100 pairable values, 55 yes and 45 no, 30 disagreeing ordered pairs:
    # 1 - 99 * 30 / (2 * 55 * 45) = 0.4.
    a, b = table(20, 5, 10, 15)
    assert ag.percent_agreement(a, b) == pytest.approx(0.7)
    assert ag.cohen_kappa(a, b) == pytest.approx(0.4)
    assert ag.krippendorff_alpha([a, b]) == pytest.approx(0.4)


def test_perfect_and_chance_agreement():
    a, b = table(3, 0, 0, 5)
    assert ag.cohen_kappa(a, b) == pytest.approx(1.0) and ag.krippendorff_alpha([a, b]) == pytest.approx(1.0)
    assert ag.percent_agreement(a, b) == 1.0
    # Agreement at exactly the chance rate: kappa 0; alpha's small-sample correction gives
    # 1 - 15 * 8 / (2 * 8 * 8) = 0.0625 for 16 values.
    a, b = table(2, 2, 2, 2)
    assert ag.cohen_kappa(a, b) == pytest.approx(0.0)
    assert ag.krippendorff_alpha([a, b]) == pytest.approx(0.0625)
    # Systematic disagreement is below zero.
    a, b = table(0, 4, 4, 0)
    assert ag.cohen_kappa(a, b) == pytest.approx(-1.0)


def test_undefined_when_one_answer_throughout():
    a, b = table(0, 0, 0, 6)
    assert ag.percent_agreement(a, b) == 1.0
    assert ag.cohen_kappa(a, b) is None and ag.krippendorff_alpha([a, b]) is None
    assert ag.cohen_kappa([], []) is None and ag.percent_agreement([], []) is None


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as worked in Wikipedia's "Fleiss' kappa": 10 items, 14 raters, 5 categories, kappa 0.210.
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    rows = [[cat for cat, n in enumerate(r) for _ in range(n)] for r in counts]
    assert ag.fleiss_kappa(pd.DataFrame(rows)) == pytest.approx(0.2099, abs=5e-4)
    # Items keyed by (transcript, turn), as a pivot of long-format labels gives them.
    keyed = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples([(i // 3, i) for i in range(10)]))
    assert ag.fleiss_kappa(keyed) == pytest.approx(ag.fleiss_kappa(pd.DataFrame(rows)))


# --------------------------------------------------------------------------- AnnoMI reference


def _fleiss_by_hand(rows: list[list[str]]) -> float:
    """Fleiss' kappa written out with plain loops (not the library's count matrix)."""
    n = len(rows[0])
    cats = sorted({c for r in rows for c in r})
    total = {c: 0 for c in cats}
    p_bar = 0.0
    for r in rows:
        agree = 0
        for c in cats:
            k = r.count(c)
            total[c] += k
            agree += k * (k - 1)
        p_bar += agree / (n * (n - 1))
    p_bar /= len(rows)
    p_e = sum((total[c] / (len(rows) * n)) ** 2 for c in cats)
    return (p_bar - p_e) / (1 - p_e)


def _alpha_by_hand(rows: list[list[str]]) -> float:
    """Nominal Krippendorff's alpha from the coincidence matrix (every unit fully rated)."""
    cats = sorted({c for r in rows for c in r})
    o = {(c, k): 0.0 for c in cats for k in cats}
    for r in rows:
        m = len(r)
        for i, ci in enumerate(r):
            for j, cj in enumerate(r):
                if i != j:
                    o[(ci, cj)] += 1 / (m - 1)
    n_c = {c: sum(o[(c, k)] for k in cats) for c in cats}
    n = sum(n_c.values())
    d_o = sum(v for (c, k), v in o.items() if c != k)
    d_e = sum(n_c[c] * n_c[k] for c in cats for k in cats if c != k)
    return 1 - (n - 1) * d_o / d_e


@pytest.mark.parametrize("speaker, quoted", [("therapist", 0.74), ("client", 0.47)])
def test_annomi_ten_annotators_match_independent_computation(speaker, quoted):
    labels = pd.read_csv(FIXTURES / "annomi_agreement_labels.csv")
    wide = labels[labels["speaker"] == speaker][[f"a{i}" for i in range(10)]]
    assert len(wide) > 100 and wide.notna().all().all()
    rows = wide.to_numpy().tolist()
    kappa = ag.fleiss_kappa(wide)
    assert kappa == pytest.approx(_fleiss_by_hand(rows), abs=1e-9)
    assert round(kappa, 2) == quoted  # the figure the eval README quotes
    cats = {c: i for i, c in enumerate(sorted(set(wide.to_numpy().ravel())))}
    alpha = ag.krippendorff_alpha(wide.replace(cats).to_numpy(dtype=float).T)
    assert alpha == pytest.approx(_alpha_by_hand(rows), abs=1e-9)
    # With every unit rated by all 10, alpha and Fleiss' kappa differ only by alpha's
    # small-sample correction.
    assert abs(alpha - kappa) < 0.005


# --------------------------------------------------------------------------- the unit rule


def seg_ids(p: Project) -> list[int]:
    return [int(s) for s in p.segments()["id"]]


def test_partial_labels_count_only_codes_both_decided(tmp_path):
    p = make_project(tmp_path)
    s = seg_ids(p)
    p.record_decision(s[0], X, "accept", "ann")          # ann never looked at Y on s0
    p.record_decision(s[0], X, "reject", "bo")
    p.record_decision(s[0], Y, "accept", "bo")
    p.record_decision(s[1], X, "accept", "ann")
    p.record_decision(s[1], X, "accept", "bo")
    p.record_decision(s[2], Y, "reject", "ann")
    p.record_decision(s[2], Y, "skip", "bo")               # a skip is no verdict
    p.record_decision(s[3], Y, "accept", "ann")
    p.record_decision(s[3], Y, "reject", "bo")
    p.undo_last("bo")                                      # ... and an undone decision neither
    rep = ag.agreement(p, "ann", "bo")
    per = rep.per_code.set_index("code_id")
    assert per.loc[X, "n"] == 2 and per.loc[X, "both_yes"] == 1 and per.loc[X, "a_only"] == 1
    assert per.loc[Y, "n"] == 0 and pd.isna(per.loc[Y, "kappa"])
    assert rep.overall["items"] == 2 and rep.overall["pooled_percent_agreement"] == pytest.approx(0.5)
    d = rep.disagreements
    assert d["segment_id"].tolist() == [s[0]] and d["a_only"].tolist() == ["X"] and d["b_only"].tolist() == [""]


def test_model_vs_coder_uses_active_suggestions(tmp_path):
    p = make_project(tmp_path)
    s = seg_ids(p)
    with pytest.raises(ProjectError, match="no model suggestions"):
        ag.agreement(p, "ann", ag.MODEL)
    mv = p.add_model_version("example-similarity", "enc")
    p.add_suggestions(mv, pd.DataFrame([
        {"segment_id": s[0], "code_id": X, "rank": 1, "confidence": 0.8, "similarity": None,
         "evidence": None, "evidence_source": None, "evidence_similarity": None},
        {"segment_id": s[1], "code_id": Y, "rank": 1, "confidence": 0.6, "similarity": None,
         "evidence": None, "evidence_source": None, "evidence_similarity": None},
    ]))
    p.record_decision(s[0], X, "accept", "ann")   # model yes, ann yes
    p.record_decision(s[1], X, "accept", "ann")   # model no (no suggestion), ann yes
    p.record_decision(s[2], X, "reject", "ann")   # both no
    rep = ag.agreement(p, "ann", ag.MODEL)
    x = rep.per_code.set_index("code_id").loc[X]
    assert (x["n"], x["both_yes"], x["a_only"], x["b_only"], x["both_no"]) == (3, 1, 1, 0, 1)
    # Y: ann gave no verdict on Y anywhere, so the model's Y suggestion on s1 is not an item.
    assert rep.per_code.set_index("code_id").loc[Y, "n"] == 0
    assert ag.agreement(p, ag.MODEL, "ann").a == "ann"


def test_two_raters_must_differ(tmp_path):
    p = make_project(tmp_path)
    with pytest.raises(ProjectError, match="two different raters"):
        ag.agreement(p, "ann", " ann ")


# --------------------------------------------------------------------------- samples


def test_sample_is_stratified_reproducible_and_includes_uncoded(tmp_path):
    p = make_project(tmp_path, n_transcripts=3, sentences=(10, 20, 5))
    segs = p.segments()
    sid = ag.draw_sample(p, 0.5, seed=3, name="s1")
    drawn = ag.sample_segments(p, sid)
    per_t = drawn.groupby("transcript").size().to_dict()
    assert per_t == {"t0": 5, "t1": 10, "t2": 3}  # 2.5 rounds up
    # Nothing is coded or suggested in this project: every drawn segment is uncoded text.
    assert set(drawn["segment_id"]) <= set(segs["id"])
    again = ag.draw_sample(p, 0.5, seed=3, name="s2")
    assert ag.sample_segments(p, again)["segment_id"].tolist() == drawn["segment_id"].tolist()
    other = ag.draw_sample(p, 0.5, seed=4, name="s3")
    assert set(ag.sample_segments(p, other)["segment_id"]) != set(drawn["segment_id"])
    tiny = ag.draw_sample(p, 0.01, seed=0)
    assert ag.sample_segments(p, tiny).groupby("transcript").size().tolist() == [1, 1, 1]
    assert ag.samples(p)["n_segments"].tolist() == [18, 18, 18, 3]


def test_sample_draw_includes_coded_and_uncoded_segments(tmp_path):
    p = make_project(tmp_path, n_transcripts=1, sentences=(10,))
    s = seg_ids(p)
    for x in s[:5]:
        p.record_decision(x, X, "accept", "ann")
    drawn = set(ag.sample_segments(p, ag.draw_sample(p, 1.0, seed=0))["segment_id"])
    assert drawn == set(s)
    drawn = set(ag.sample_segments(p, ag.draw_sample(p, 0.6, seed=1))["segment_id"])
    assert drawn & set(s[:5]) and drawn & set(s[5:])


def test_bad_sample_requests_change_nothing(tmp_path):
    p = make_project(tmp_path)
    for share in (0, -0.1, 1.5):
        with pytest.raises(ProjectError, match="share"):
            ag.draw_sample(p, share)
    sid = ag.draw_sample(p, 0.5, name="a")
    with pytest.raises(ProjectError, match="exists already"):
        ag.draw_sample(p, 0.5, name="a")
    inside = int(ag.sample_segments(p, sid)["segment_id"][0])
    outside = next(x for x in seg_ids(p) if x not in set(ag.sample_segments(p, sid)["segment_id"]))
    with pytest.raises(ProjectError, match="not a code"):
        ag.record_answer(p, sid, inside, "bo", [X, "theme/nope"])
    with pytest.raises(ProjectError, match="not in reliability sample"):
        ag.record_answer(p, sid, outside, "bo", [X])
    with pytest.raises(ProjectError, match="no reliability sample"):
        ag.record_answer(p, 99, inside, "bo", [])
    assert p.decisions().empty and ag.completed(p, sid, "bo") == set()
    assert len(ag.samples(p)) == 1


def test_blind_answers_record_none_and_changes(tmp_path):
    p = make_project(tmp_path, n_transcripts=1, sentences=(6,))
    sid = ag.draw_sample(p, 1.0)
    order = [int(x) for x in ag.sample_segments(p, sid)["segment_id"]]
    assert ag.sample_progress(p, sid, "bo") == {"answered": 0, "total": 6, "next": order[0]}
    ag.record_answer(p, sid, order[0], "bo", [])            # no code applies: still an answer
    ag.record_answer(p, sid, order[1], "bo", [X, Y])
    assert ag.completed(p, sid, "bo") == {order[0], order[1]}
    assert p.decisions().empty is False and len(p.current_decisions("bo")) == 2
    assert ag.sample_progress(p, sid, "bo")["next"] == order[2]
    ag.record_answer(p, sid, order[1], "bo", [Y])            # changed her mind: X is now rejected
    cur = p.current_decisions("bo").set_index("code_id")["action"].to_dict()
    assert cur == {X: "reject", Y: "accept"}
    assert ag.blind_codes(p, order[1], "bo") == [Y]


def test_sample_agreement_and_exclude_uncoded(tmp_path):
    p = make_project(tmp_path, n_transcripts=1, sentences=(6,))
    sid = ag.draw_sample(p, 1.0)
    o = [int(x) for x in ag.sample_segments(p, sid)["segment_id"]]
    ann = {o[0]: [X], o[1]: [X, Y], o[2]: [], o[3]: [], o[4]: [Y]}
    bo = {o[0]: [X], o[1]: [X], o[2]: [], o[3]: [], o[4]: [], o[5]: [Y]}
    for seg, codes in ann.items():
        ag.record_answer(p, sid, seg, "ann", codes)
    for seg, codes in bo.items():
        ag.record_answer(p, sid, seg, "bo", codes)
    rep = ag.agreement(p, "ann", "bo", sample_id=sid)
    per = rep.per_code.set_index("code_id")
    # Items: o0..o4, completed by both (ann never answered o5). X: yes/yes on o0, o1; no/no on o2..o4.
    assert per.loc[X, "n"] == 5 and per.loc[X, "kappa"] == pytest.approx(1.0)
    # Y: ann yes on o1 and o4, bo no everywhere: po = 3/5, pe = .4 * 0 + .6 * 1 = .6 -> kappa 0.
    assert (per.loc[Y, "a_only"], per.loc[Y, "both_no"]) == (2, 3)
    assert per.loc[Y, "kappa"] == pytest.approx(0.0)
    assert rep.overall["pooled_percent_agreement"] == pytest.approx(8 / 10)
    assert rep.overall["mean_kappa"] == pytest.approx(0.5)
    # Excluding o2, o3 (neither coded anything) leaves 3 segments.
    ex = ag.agreement(p, "ann", "bo", sample_id=sid, exclude_uncoded=True)
    assert ex.excluded_segments == 2 and ex.overall["segments"] == 3
    pex = ex.per_code.set_index("code_id")
    assert (pex.loc[X, "n"], pex.loc[X, "both_no"]) == (3, 1)
    assert ex.overall["pooled_percent_agreement"] == pytest.approx(4 / 6)
    d = rep.disagreements.set_index("segment_id")
    assert set(d.index) == {o[1], o[4]}
    assert d.loc[o[1], ["both", "a_only", "b_only"]].tolist() == ["X", "Y", ""]
    assert d.loc[o[4], ["both", "a_only", "b_only"]].tolist() == ["", "Y", ""]
    # The report serialises (what --out writes).
    d = rep.to_dict()
    assert d["overall"]["items"] == 10 and len(d["per_code"]) == 2 and d["raters"] == ["ann", "bo"]


def test_exclude_uncoded_without_sample_looks_at_all_codes(tmp_path):
    p = make_project(tmp_path, n_transcripts=1, sentences=(4,))
    s = seg_ids(p)
    p.record_decision(s[0], X, "reject", "ann")
    p.record_decision(s[0], X, "reject", "bo")
    p.record_decision(s[0], Y, "accept", "ann")          # s0 is coded (with Y, by ann only)
    p.record_decision(s[1], X, "reject", "ann")
    p.record_decision(s[1], X, "reject", "bo")           # s1: nobody coded anything
    rep = ag.agreement(p, "ann", "bo", exclude_uncoded=True)
    x = rep.per_code.set_index("code_id").loc[X]
    assert x["n"] == 1 and rep.excluded_segments == 1


def test_sample_agreement_with_model(tmp_path):
    p = make_project(tmp_path, n_transcripts=1, sentences=(4,))
    s = seg_ids(p)
    mv = p.add_model_version("example-similarity", "enc")
    p.add_suggestions(mv, pd.DataFrame([{"segment_id": s[0], "code_id": X, "rank": 1, "confidence": 0.8, "similarity": None,
                                         "evidence": None, "evidence_source": None, "evidence_similarity": None}]))
    sid = ag.draw_sample(p, 1.0)
    for x in s:
        ag.record_answer(p, sid, x, "ann", [X] if x in (s[0], s[1]) else [])
    rep = ag.agreement(p, "ann", ag.MODEL, sample_id=sid)
    x = rep.per_code.set_index("code_id").loc[X]
    assert (x["n"], x["both_yes"], x["a_only"], x["both_no"]) == (4, 1, 1, 2)
    assert "ann" in ag.format_report(rep) and ag.MODEL in ag.format_report(rep)


def test_sample_figures_use_the_blind_answer_not_later_changes(tmp_path):
    """After discussing disagreements coders recode; the reliability figures stay those of the
    independent (blind) answers, until a segment is answered again in blind mode."""
    p = make_project(tmp_path, n_transcripts=1, sentences=(4,))
    sid = ag.draw_sample(p, 1.0)
    o = [int(x) for x in ag.sample_segments(p, sid)["segment_id"]]
    for x in o:
        ag.record_answer(p, sid, x, "ann", [X])
        ag.record_answer(p, sid, x, "bo", [X] if x != o[0] else [])
    assert ag.sample_answers(p, sid, "bo")[o[0]] == []
    before = ag.agreement(p, "ann", "bo", sample_id=sid).per_code.set_index("code_id").loc[X, "a_only"]
    p.record_decision(o[0], X, "accept", "bo")            # recoded after the discussion
    after = ag.agreement(p, "ann", "bo", sample_id=sid).per_code.set_index("code_id").loc[X, "a_only"]
    assert before == after == 1
    ag.record_answer(p, sid, o[0], "bo", [X])              # answered again, blind
    assert ag.agreement(p, "ann", "bo", sample_id=sid).per_code.set_index("code_id").loc[X, "a_only"] == 0


def test_annomi_pair_through_a_project_matches_sklearn(tmp_path):
    """Two AnnoMI annotators' coarse codes, answered on a reliability sample of a project (one
    segment per utterance, one code per label), give sklearn's Cohen's kappa per code and pooled."""
    from sklearn.metrics import cohen_kappa_score

    labels = pd.read_csv(FIXTURES / "annomi_agreement_labels.csv")
    letters = sorted(set(labels[[f"a{i}" for i in range(10)]].to_numpy().ravel()))
    tpl = parse_template({"name": "annomi", "codes": [{"name": "Talk", "description": "t", "children": [
        {"name": f"L{x}", "description": x} for x in letters]}]})
    p = Project.create(tmp_path / "annomi", tpl)
    text = "".join(f"{r.speaker.capitalize()}: utterance {i}.\n" for i, r in enumerate(labels.itertuples()))
    t = Transcript("annomi", text, parse_speaker_text(text))
    p.add_transcripts([t], {"annomi": Segmenter(unit="turn").segments(t)})
    segs = p.segments().sort_values("idx")["id"].astype(int).tolist()
    assert len(segs) == len(labels)
    sid = ag.draw_sample(p, 1.0)
    code_of = {x: f"talk/l{x.lower()}" for x in letters}
    assert set(code_of.values()) <= set(tpl.codes)
    for seg, r in zip(segs, labels.itertuples()):
        ag.record_answer(p, sid, seg, "a3", [code_of[r.a3]])
        ag.record_answer(p, sid, seg, "a7", [code_of[r.a7]])
    rep = ag.agreement(p, "a3", "a7", sample_id=sid)
    per = rep.per_code.set_index("code_id")
    one_hot = {who: np.array([[int(v == x) for x in letters] for v in labels[who]]) for who in ("a3", "a7")}
    for j, x in enumerate(letters):
        want = cohen_kappa_score(one_hot["a3"][:, j], one_hot["a7"][:, j])
        assert per.loc[code_of[x], "kappa"] == pytest.approx(want)
    assert rep.overall["pooled_kappa"] == pytest.approx(cohen_kappa_score(one_hot["a3"].ravel(), one_hot["a7"].ravel()))
    assert rep.overall["items"] == len(labels) * len(letters)
