"""The simulated researcher's review protocols (binary, corrective, passage), their effort
counts, and units with no code in pool, test and metrics. A bag-of-words stand-in encoder keeps
each run to seconds; the real encoder runs in the integration test and the bench."""

import shutil

import numpy as np
import pandas as pd
import pytest

from coder_assist.core.template import parse_template
from coder_assist.eval import simulate as sim
from coder_assist.ml.classifier import LearnedScorer
from coder_assist.ml.features import labels_from_decisions
from tests.conftest import FIXTURES
from tests.reliability.workers import HashEncoder

MINI = FIXTURES / "eval-mini"


def _run(folder, protocol, budget=100, batch=25):
    return sim.simulate(folder, HashEncoder(), folds=[0], budget=budget, batch=batch, protocol=protocol)


@pytest.fixture
def spy_labels(monkeypatch):
    """Every label frame the loop hands the learner, in order."""
    seen = []
    real = LearnedScorer.fit_labels

    def fit_labels(self, corpus, labels, **kw):
        seen.append(labels.copy())
        return real(self, corpus, labels, **kw)

    monkeypatch.setattr(LearnedScorer, "fit_labels", fit_labels)
    return seen


def _pool_codes(folder, fold=0):
    """Gold code lists of the pool in the loop's row order (segment ids are pool positions)."""
    units = sim.load_dataset(folder).units
    return units[units["fold"] != fold]["codes"].tolist()


@pytest.fixture
def mini_with_uncoded(tmp_path):
    """eval-mini with every fifth unit's code emptied ("no code applies")."""
    out = tmp_path / "mini-uncoded"
    shutil.copytree(MINI, out)
    seg = pd.read_csv(out / "segments.csv", keep_default_na=False, dtype={"code": str})
    unit_rows = seg.index[seg["unit"] == 1]
    blank = unit_rows[::5]
    seg.loc[blank, "code"] = ""
    seg.to_csv(out / "segments.csv", index=False)
    return out, len(blank)


@pytest.mark.parametrize("protocol", sim.PROTOCOLS)
def test_each_protocol_runs_and_records_protocol_and_effort(protocol):
    res = _run(MINI, protocol)
    assert res["protocol"] == protocol
    assert [r["decisions"] for r in res["curve"]] == [0, 50, 100]
    assert res["curve"][0]["effort"] == {"keys": 0, "searches": 0}
    keys = [r["effort"]["keys"] for r in res["curve"]]
    assert keys == sorted(keys) and res["effort"] == res["curve"][-1]["effort"]
    if protocol == "binary":
        # One key per decision, as today.
        assert keys == [0, 50, 100] and res["effort"]["searches"] == 0
    else:
        # At least one key (the answer, or Enter) per decision.
        assert keys[-1] >= 100
    for r in res["curve"]:
        assert 0 <= r["macro_f1"] <= 1 and -1 <= r["kappa"] <= 1


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        _run(MINI, "triage")


def test_passage_protocol_gives_complete_labels(spy_labels):
    _run(MINI, "passage", budget=50, batch=25)
    gold = _pool_codes(MINI)
    codes = list(sim.load_dataset(MINI).codebook["code"])
    # One retrain per batch: the queue's curve, then the same learner in random order.
    assert len(spy_labels) == 4
    first, last = spy_labels[:2]
    assert first["segment_id"].nunique() == 25 and last["segment_id"].nunique() == 50
    assert set(first["segment_id"]) <= set(last["segment_id"])
    assert (last["source"] == "passage").all()
    for seg, g in last.groupby("segment_id"):
        # Every code has a label for a confirmed passage: 1 for its gold codes, 0 for all others.
        assert sorted(g["code_id"]) == sorted(codes)
        got = dict(zip(g["code_id"], g["label"]))
        assert got == {c: int(c in gold[seg]) for c in codes}


def test_complete_labels_format():
    # Code ids are the codebook's names, and a name may hold a "/" (nhs-fft has one).
    ids = ["a", "to/ from", "c"]
    lab = sim.complete_labels([7, 9], [["to/ from"], []], ids)
    assert list(lab.columns) == ["segment_id", "code_id", "label", "source"]
    assert lab[lab["segment_id"] == 7].set_index("code_id")["label"].to_dict() == {"a": 0, "to/ from": 1, "c": 0}
    # No code applies: negative for every code.
    assert lab[lab["segment_id"] == 9]["label"].tolist() == [0, 0, 0]


def _template(exclusive):
    return parse_template({"name": "t", "codes": [{"name": "t", "description": "t", "exclusive": exclusive,
                                                   "children": [{"name": n, "id": n, "description": n} for n in "abcdefgh"]}]})


def test_corrective_reject_names_the_gold_code():
    tpl = _template(exclusive=True)
    ids = [c.id for c in tpl.leaves()]
    by = {i: i for i in ids}
    ranked = [by[n] for n in "bacdefgh"]
    margins = np.linspace(1, -1, 8)
    a = sim.answer("corrective", ["c"], ranked, margins, single_label=True)
    # One decision, two log events: the shown code rejected, the named gold code accepted.
    assert a.events == [(by["b"], "reject"), (by["c"], "accept")]
    assert (a.keys, a.searches, a.complete, a.top_ok) == (2, 0, False, False)
    lab = labels_from_decisions(pd.DataFrame([(1, c, act, n) for n, (c, act) in enumerate(a.events)], columns=["segment_id", "code_id", "action", "id"]), tpl)
    got = lab.set_index("code_id")["label"].to_dict()
    assert got[by["b"]] == 0 and got[by["c"]] == 1
    # Binary: the same wrong top code is only a reject.
    b = sim.answer("binary", ["c"], ranked, margins, single_label=True)
    assert b.events == [(by["b"], "reject")] and (b.keys, b.searches) == (1, 0)
    # A gold code outside the candidate list is found by a search; no gold code: a plain reject.
    far = sim.answer("corrective", ["h"], ranked, margins, single_label=True)
    assert far.events[-1] == (by["h"], "accept") and (far.keys, far.searches) == (2, 1)
    none = sim.answer("corrective", [], ranked, margins, single_label=True)
    assert none.events == [(by["b"], "reject")] and (none.keys, none.searches) == (1, 0)
    # A right top code is one accept under either protocol.
    ok = sim.answer("corrective", ["b"], ranked, margins, single_label=True)
    assert ok.events == [(by["b"], "accept")] and (ok.keys, ok.searches) == (1, 0)
    # A code whose name holds a "/" is named like any other (nhs-fft's "Transport to/ from services").
    slash = sim.answer("corrective", ["to/ from"], ["a", "to/ from"], [1.0, -1.0], single_label=False)
    assert slash.events == [("a", "reject"), ("to/ from", "accept")]


def test_corrective_loop_logs_the_pair(spy_labels):
    _run(MINI, "corrective", budget=50, batch=50)
    lab = spy_labels[0]  # the queue's curve (the second fit is the random-order one)
    gold = _pool_codes(MINI)
    direct = lab[lab["source"] != "exclusive"]
    pairs = [s for s, g in direct.groupby("segment_id") if set(g["source"]) == {"accept", "reject"}]
    assert pairs, "no reject came with the gold code named"
    for s in pairs:
        g = direct[direct["segment_id"] == s]
        assert g[g["label"] == 1]["code_id"].tolist() == gold[s][:1]


def test_effort_counts_on_a_hand_checked_case():
    names = list("bacdefgh")
    # Pre-ticked b (wrong) and a (right); the candidates are the next five, c..g; h is missing
    # and outside them.
    # Keys: untick b, pick h from the search results, Enter; the search itself is a search.
    assert sim.passage_effort(["a", "h"], names, ["b", "a"]) == (3, 1)
    assert sim.passage_effort(["a", "d"], names, ["b", "a"]) == (1 + 1 + 1, 0)  # untick b, tick d, Enter
    assert sim.passage_effort(["a"], names, ["a"]) == (1, 0)  # confirm as shown
    assert sim.passage_effort([], names, ["b"]) == (2, 0)  # no code applies: untick b, Enter
    # Three passages through answer(): multi-label, margins >= 0 pre-tick b and a.
    ranked = list(names)
    margins = np.array([0.8, 0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7])
    total = sim.Effort()
    for gold in (["a", "c"], ["b", "a"], []):
        a = sim.answer("passage", gold, ranked, margins, single_label=False)
        assert a.complete and a.events == []
        total.add(a.keys, a.searches)
    # ["a","c"]: untick b, tick c (3rd ranked, in the list), Enter = 3; ["b","a"]: Enter = 1;
    # []: untick b and a, Enter = 3.
    assert total.as_dict() == {"keys": 7, "searches": 0}
    # Single-label pre-ticks only the top code: gold a is then one toggle off, one on, Enter.
    a = sim.answer("passage", ["a"], ranked, margins, single_label=True)
    assert (a.keys, a.searches) == (3, 0)


def test_uncoded_units_stay_in_pool_and_test(mini_with_uncoded, spy_labels):
    folder, n_blank = mini_with_uncoded
    ds = sim.load_dataset(folder)
    assert len(ds.units) == 260 and ds.has_uncoded and ds.single_label
    assert (ds.units["codes"].str.len() == 0).sum() == n_blank
    res = _run(folder, "passage", budget=100, batch=50)
    (sizes,) = res["fold_sizes"]
    assert res["units"] == 260 and res["units_uncoded"] == n_blank
    assert sizes["pool_uncoded"] > 0 and sizes["test_uncoded"] > 0
    assert sizes["pool_uncoded"] + sizes["test_uncoded"] == n_blank
    # "No code applies" is learned: a confirmed uncoded passage is negative for every code.
    gold = _pool_codes(folder)
    last = spy_labels[1]  # the queue's curve after 100 decisions
    uncoded = [s for s in last["segment_id"].unique() if not gold[s]]
    assert uncoded
    assert (last[last["segment_id"].isin(uncoded)]["label"] == 0).all()


def _ds(single, codes):
    units = pd.DataFrame({"codes": codes})
    cb = pd.DataFrame({"code": ["a", "b"], "description": ["a", "b"]})
    return sim.Dataset("t", units, cb, single)


def test_metrics_score_an_empty_gold():
    ids = ["a", "b"]
    gold = pd.Series([["a"], ["b"], []])
    # Multi-label: nothing predicted on the empty unit costs nothing; a code there is a false positive.
    ds = _ds(False, gold.tolist())
    right = np.array([[0.9, 0.1], [0.1, 0.9], [0.1, 0.1]])
    assert sim.metrics(ds, ids, right, gold)["macro_f1"] == 1.0
    wrong = right.copy()
    wrong[2, 0] = 0.9
    m = sim.metrics(ds, ids, wrong, gold)
    assert m["per_code_f1"] == {"a": round(2 / 3, 4), "b": 1.0}
    # Single-label with uncoded units: "no code" is predicted below every threshold and is a
    # kappa category; macro-F1 stays over the codes.
    ds1 = _ds(True, gold.tolist())
    m1 = sim.metrics(ds1, ids, right, gold)
    assert m1["macro_f1"] == 1.0 and m1["kappa"] == 1.0 and set(m1["per_code_f1"]) == {"a", "b"}
    m2 = sim.metrics(ds1, ids, wrong, gold)
    assert m2["per_code_f1"]["a"] == round(2 / 3, 4) and m2["kappa"] < 1.0


def test_the_loop_fits_in_one_thread(monkeypatch):
    # A learning curve must be reproducible: threaded liblinear fits differ by ~1e-6 between
    # runs, enough to change the queue's later picks (see LearnedScorer's n_jobs).
    from coder_assist.ml import classifier

    def no_threads(*a, **kw):
        raise AssertionError("the simulated researcher's learner must fit in one thread")

    monkeypatch.setattr(classifier, "ThreadPoolExecutor", no_threads)
    res = _run(MINI, "passage", budget=50, batch=25)
    assert [r["decisions"] for r in res["curve"]] == [0, 50]
