"""coder_assist.ml.revision on hand-made frames and arrays (no model, no project)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coder_assist.ml import revision as rv

D = 16


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def axis(k, noise=0.0, rng=None):
    v = np.zeros(D, dtype=np.float32)
    v[k] = 1.0
    if noise:
        v = v + rng.normal(0, noise, D).astype(np.float32)
    return unit(v)


CODES = pd.DataFrame([
    {"id": "barriers", "name": "Barriers", "path": "Barriers", "parent_id": None, "is_leaf": False},
    {"id": "barriers/money", "name": "Money", "path": "Barriers > Money", "parent_id": "barriers", "is_leaf": True},
    {"id": "barriers/time", "name": "Time", "path": "Barriers > Time", "parent_id": "barriers", "is_leaf": True},
    {"id": "enablers", "name": "Enablers", "path": "Enablers", "parent_id": None, "is_leaf": False},
    {"id": "enablers/listening", "name": "Listening", "path": "Enablers > Listening", "parent_id": "enablers", "is_leaf": True},
    {"id": "enablers/trust", "name": "Trust", "path": "Enablers > Trust", "parent_id": "enablers", "is_leaf": True},
    {"id": "place", "name": "Place", "path": "Place", "parent_id": None, "is_leaf": False},
    {"id": "place/rooms", "name": "Rooms", "path": "Place > Rooms", "parent_id": "place", "is_leaf": True},
])
# Code k's examples point along axis k; "trust" has one example that points along "listening".
AXIS = {"barriers/money": 0, "barriers/time": 1, "enablers/listening": 2, "enablers/trust": 3, "place/rooms": 4}


def examples():
    rows, vecs = [], []
    for cid, k in AXIS.items():
        for j in range(3):
            rows.append({"code_id": cid, "kind": "example", "text": f"{cid} example {j}"})
            vecs.append(axis(k, 0.05, np.random.default_rng(100 * k + j)))
    rows.append({"code_id": "enablers/trust", "kind": "example", "text": "they listened so we trusted them"})
    vecs.append(unit(axis(2) * 0.95 + axis(3) * 0.2))
    return pd.DataFrame(rows), np.array(vecs)


def make_inputs(decisions=(), suggestions=(), n_parking=8):
    """Two transcripts; parking passages (axis 7, nobody's code) among others."""
    rng = np.random.default_rng(0)
    seg_rows, vecs = [], []
    texts_parking = [
        "The car park is always full and parking costs a fortune.",
        "Parking at the clinic is impossible, the car park fills by nine.",
        "I drove round the car park for half an hour looking for parking.",
        "Parking fees at the hospital car park are far too high.",
        "There is no disabled parking near the entrance of the car park.",
        "We gave up on the car park and parked on the street.",
        "Parking permits for staff would free the car park for patients.",
        "The car park barrier broke again so parking was free.",
    ][:n_parking]
    i = 0
    for t, name in enumerate(["t1", "t2"]):
        for j, text in enumerate(texts_parking[t::2]):
            seg_rows.append({"segment_id": 100 + i, "transcript": name, "idx": j, "text": text})
            vecs.append(axis(7, 0.08, rng))
            i += 1
    others = [("t1", "The budget was cut again this year.", 0), ("t1", "We never have time to plan.", 1),
              ("t2", "They really listened to what we said.", 2), ("t2", "The meeting room was cold.", 4),
              ("t1", "Money is tight for every group.", 0), ("t2", "People felt heard at last.", 2)]
    for name, text, k in others:
        seg_rows.append({"segment_id": 100 + i, "transcript": name, "idx": 10 + i, "text": text})
        vecs.append(axis(k, 0.08, rng))
        i += 1
    segs = pd.DataFrame(seg_rows)
    ex, E = examples()
    dec = pd.DataFrame(list(decisions), columns=["id", "segment_id", "code_id", "action", "coder"])
    sugg = pd.DataFrame(list(suggestions), columns=["segment_id", "code_id", "rank", "confidence"])
    attrs = pd.DataFrame({"sector": ["NHS", "VCSE"], "level": ["Strategic", "Front-line"]}, index=pd.Index(["t1", "t2"], name="transcript"))
    return rv.RevisionInputs(segs, np.array(vecs), CODES, ex, E, sugg, dec, attrs)


def test_missed_passages_follow_the_definition():
    segs = pd.DataFrame({"segment_id": [1, 2, 3, 4, 5, 6], "transcript": "t", "idx": range(6), "text": "x"})
    sugg = pd.DataFrame({"segment_id": [2, 3, 3, 4, 5, 6], "code_id": ["a", "a", "b", "a", "a", "a"], "rank": [1, 1, 2, 1, 1, 1], "confidence": 0.5})
    dec = pd.DataFrame({"id": [1, 2, 3, 4, 5], "segment_id": [2, 3, 4, 4, 5], "code_id": ["a", "a", "a", "c", "a"],
                        "action": ["reject", "reject", "reject", "accept", "skip"], "coder": "A"})
    # 1: nothing suggested; 2: its only suggestion rejected; 3: one suggestion rejected, no other
    # code chosen (b still pending); 4: rejected, but another code accepted; 5: only skipped;
    # 6: suggested, not decided yet.
    assert rv.missed_passages(segs, sugg, dec).tolist() == [True, True, True, False, False, False]


def test_missing_topic_is_one_cluster_with_its_words_quotes_and_parent():
    inputs = make_inputs()
    clusters, n = rv.find_missing(inputs)  # nothing suggested or decided: all 14 passages are missed
    assert n == 14
    top = clusters[0]
    assert top.rank == 1
    assert sorted(top.segment_ids) == list(range(100, 108))  # exactly the eight parking passages
    assert top.words[:2] == ["car park", "parking"] or set(top.words[:2]) == {"car park", "parking"}
    assert top.suggested_name.lower().startswith(top.words[0].split()[0][:3])
    assert 3 <= len(top.quotes) <= 5 and all("park" in q.text.lower() for q in top.quotes)
    sims = [q.similarity for q in top.quotes]
    assert sims == sorted(sims, reverse=True)
    assert top.transcripts == {"t1": 4, "t2": 4}
    assert top.attributes["sector"] == {"NHS": 4, "VCSE": 4}
    assert top.parent_id in {"barriers", "enablers", "place"}  # a theme, never a leaf


def test_many_missed_passages_cluster_a_sample_and_assign_the_rest():
    inputs = make_inputs()
    clusters, n = rv.find_missing(inputs, max_passages=10, min_cluster_size=3)
    assert n == 14
    assert sorted(clusters[0].segment_ids) == list(range(100, 108))  # sampled or assigned, all eight parking passages


def test_accepted_or_pending_passages_are_not_clustered():
    dec = [(i, 100 + i, "place/rooms", "accept", "A") for i in range(5)]
    inputs = make_inputs(decisions=dec)
    mask = rv.missed_passages(inputs.segments, inputs.suggestions, inputs.decisions)
    assert mask.sum() == 9
    clusters, n = rv.find_missing(inputs, min_cluster_size=3)
    assert n == 9
    assert all(not set(c.segment_ids) & set(range(100, 105)) for c in clusters)


def test_ctfidf_prefers_words_of_the_class_over_background():
    words = rv.ctfidf_words(["apples and pears", "pears and apples again", "the bus was late", "late bus again"], [0, 0, 1, 1],
                            background=["again and again the meeting", "the meeting again"])
    assert set(words[0][:2]) <= {"apples", "pears", "apples pears", "pears apples"}
    assert "bus" in words[1][0] or "late" in words[1][0]
    assert "again" not in words[0][:2] and "meeting" not in words[1]


def test_confusion_pairs_are_counted_from_each_source():
    dec = [
        (1, 112, "barriers/money", "reject", "A"), (2, 112, "barriers/time", "accept", "A"),  # rejected money, chose time
        (3, 113, "barriers/time", "reject", "A"), (4, 113, "barriers/money", "accept", "A"),  # rejected time, chose money
        (5, 110, "barriers/money", "accept", "A"), (6, 110, "barriers/time", "accept", "B"),  # both accepted
        (7, 111, "enablers/listening", "accept", "A"),
    ]
    sugg = [(112, "barriers/money", 1, 0.6), (113, "barriers/time", 1, 0.6), (111, "barriers/time", 1, 0.7), (110, "barriers/money", 1, 0.9)]
    pairs = rv.find_confusions(make_inputs(decisions=dec, suggestions=sugg))
    by = {(p.code_a, p.code_b): p for p in pairs}
    mt = by[("barriers/money", "barriers/time")]
    assert (mt.rejected_a_chose_b, mt.rejected_b_chose_a, mt.coded_both) == (1, 1, 1)
    # The model's top suggestion differed from the coder's choice on 112 and 113 (the same
    # passages as the rejections): two passages, not four.
    assert (mt.model_a_coder_b, mt.model_b_coder_a, mt.passages) == (1, 1, 2)
    assert mt.score == pytest.approx(2 + rv.CODED_BOTH_WEIGHT)
    lt = by[("barriers/time", "enablers/listening")]
    assert (lt.model_a_coder_b, lt.rejected_a_chose_b, lt.passages) == (1, 0, 1)
    # From the template: the trust example that talks about listening.
    tl = by[("enablers/listening", "enablers/trust")]
    assert (tl.template_a_nearer_b, tl.template_b_nearer_a) == (0, 1)
    assert tl.examples[0].kind == "template example" and "listened" in tl.examples[0].text
    assert pairs[0].code_a == "barriers/money" and pairs[0].rank == 1
    kinds = [e.kind for e in mt.examples]
    assert kinds[0] == "rejected then chose" and "coded with both" in kinds


def test_unused_codes_none_and_one_participant():
    dec = [(1, 108, "barriers/money", "accept", "A"), (2, 112, "barriers/money", "accept", "A"),  # both in t1
           (3, 110, "enablers/listening", "accept", "A"), (4, 113, "enablers/listening", "accept", "A"),  # both in t2
           (5, 111, "barriers/time", "reject", "A"), (6, 100, "barriers/time", "accept", "A"), (7, 104, "barriers/time", "accept", "A")]
    inputs = make_inputs(decisions=dec, suggestions=[(111, "barriers/time", 1, 0.5), (100, "enablers/trust", 1, 0.5)])
    tr = dict(zip(inputs.segments["segment_id"], inputs.segments["transcript"]))
    assert (tr[108], tr[112], tr[110], tr[113], tr[100], tr[104]) == ("t1", "t1", "t2", "t2", "t1", "t2")
    unused = {u.code_id: u for u in rv.find_unused(inputs)}
    assert set(unused) == {"enablers/trust", "place/rooms", "barriers/money", "enablers/listening"}
    assert unused["enablers/trust"].reason == "no accepted coding" and unused["enablers/trust"].suggested == 1
    assert unused["barriers/money"].reason == "only in one participant's transcripts"
    assert unused["barriers/money"].participants == ["t1"] and unused["barriers/money"].accepted == 2
    assert unused["enablers/listening"].participants == ["t2"]
    # A participant attribute groups transcripts: one person, two transcripts, is one participant.
    inputs.attributes["participant"] = ["P1", "P1"]
    assert {u.code_id for u in rv.find_unused(inputs)} == {"enablers/trust", "place/rooms"}


def test_coverage_counts_passages_once_and_marks_gaps():
    dec = [(1, 108, "barriers/money", "accept", "A"), (2, 108, "barriers/money", "accept", "B"),  # one passage, two coders
           (3, 112, "barriers/money", "accept", "A"), (4, 110, "barriers/money", "accept", "A"),
           (5, 113, "enablers/listening", "accept", "A"), (6, 111, "barriers/time", "reject", "A")]
    cov = rv.coverage_table(make_inputs(decisions=dec))
    assert cov.by == ["sector", "level"]
    assert list(cov.table.columns) == ["NHS / Strategic", "VCSE / Front-line"]
    assert cov.table.loc["barriers/money"].tolist() == [2, 1]
    assert cov.table.loc["enablers/listening"].tolist() == [0, 1]
    assert cov.table.loc["barriers/time"].tolist() == [0, 0]
    assert cov.transcripts.tolist() == [1, 1]
    assert cov.gaps == [("enablers/listening", "NHS / Strategic")]  # time is used nowhere: no gap


def test_integrative_code_sits_next_to_every_other_theme():
    # Segments 100-103 are t1 idx 0-3, 104-107 t2 idx 0-3. Rooms sits with money (t1 idx 0)
    # and next to listening (t2 idx 1): both other themes. Money and listening each reach only Place.
    dec = [(1, 100, "place/rooms", "accept", "A"), (2, 100, "barriers/money", "accept", "A"),
           (3, 104, "place/rooms", "accept", "A"), (4, 105, "enablers/listening", "accept", "A"),
           (5, 103, "barriers/time", "accept", "A")]
    integ = rv.find_integrative(make_inputs(decisions=dec))
    assert [c.code_id for c in integ] == ["place/rooms"]
    assert integ[0].themes_reached == ["barriers", "enablers"] and integ[0].share == 1.0 and integ[0].passages == 2
    assert rv.find_integrative(make_inputs(decisions=dec), window=0) == []


def test_revise_bundles_everything_and_checks_alignment():
    inputs = make_inputs(decisions=[(1, 110, "barriers/money", "accept", "A")])
    rev = rv.revise(inputs)
    assert rev.n_segments == 14 and rev.missing and rev.coverage.table.shape == (5, 2)
    with pytest.raises(ValueError, match="embeddings"):
        rv.RevisionInputs(inputs.segments, inputs.X[:3], CODES, inputs.examples, inputs.E, inputs.suggestions, inputs.decisions)
