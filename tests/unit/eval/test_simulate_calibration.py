"""The simulated researcher measures what the product shows: the scorer's own thresholds at every
checkpoint (the prior's at 0 decisions), zero-shot under the same rule, and a reliability table of
the shown suggestions next to the one over every (passage, code) pair."""

import numpy as np
import pandas as pd
import pytest

from coder_assist.eval import simulate as sim
from coder_assist.ml.suggest import ExampleSimilarityScorer
from tests.conftest import FIXTURES
from tests.reliability.workers import HashEncoder

MINI = FIXTURES / "eval-mini"


def _multi(code_names):
    return sim.Dataset("m", pd.DataFrame(), pd.DataFrame({"code": code_names}), single_label=False)


def test_metrics_use_the_product_rule():
    ds = _multi(["a", "b", "c"])
    # Confidences near a 1-in-3 base rate: nothing reaches 0.5, the best code is within the margin.
    conf = np.array([[0.30, 0.10, 0.05], [0.05, 0.28, 0.10], [0.10, 0.05, 0.31]])
    gold = pd.Series([["a"], ["b"], ["c"]])
    assert sim.metrics(ds, ["a", "b", "c"], conf, gold)["macro_f1"] == 0.0  # 0.5 for all, the old rule
    t = np.full(3, 0.5)
    assert sim.metrics(ds, ["a", "b", "c"], conf, gold, t, top_margin=1.0, top_k=3)["macro_f1"] == 1.0
    # top_k caps codes per passage as the product does.
    low = np.full(3, 0.01)
    assert sim.metrics(ds, ["a", "b", "c"], conf, gold, low, top_k=None)["macro_f1"] < 1.0
    assert sim.metrics(ds, ["a", "b", "c"], conf, gold, low, top_k=1)["macro_f1"] == 1.0


def test_shown_reliability_counts_only_shown_suggestions():
    conf = np.array([[0.62, 0.30, 0.05], [0.65, 0.61, 0.02]])
    gold = pd.Series([["a"], ["c"]])
    rows = sim.shown_reliability(conf, ["a", "b", "c"], gold, thresholds=np.full(3, 0.5), top_margin=None)
    # Shown: (0, a) 0.62 gold, (1, a) 0.65 not, (1, b) 0.61 not; 0.30, 0.05, 0.02 were never shown.
    assert rows == [{"bin": "0.6-0.7", "n": 3, "mean_confidence": pytest.approx(0.6267, abs=1e-4), "accept_rate": pytest.approx(1 / 3, abs=1e-4)}]
    every = sim.reliability_table(conf, ["a", "b", "c"], gold)
    assert sum(r["n"] for r in every) == 6


def test_curve_at_zero_decisions_is_the_priors_rule_and_reports_shown_reliability():
    res = sim.simulate(MINI, HashEncoder(), folds=[0], budget=50, batch=25, protocol="passage")
    ds = sim.load_dataset(MINI)
    units = ds.units.assign(row=np.arange(len(ds.units)))
    pool, test = units[units.fold != 0], units[units.fold == 0]
    enc = HashEncoder()
    prior = ExampleSimilarityScorer().fit(sim.pool_template(ds, pool, 5, 0), enc)
    s = prior.score(enc.encode(test["text"].tolist()))
    expect = sim.metrics(ds, prior.code_ids, s.confidence, test["codes"], s.thresholds, top_margin=s.top_margin, top_k=3)
    assert res["curve"][0]["macro_f1"] == expect["macro_f1"]
    for row in res["curve"]:
        assert "reliability" in row and "reliability_shown" in row
        shown = sum(r["n"] for r in row["reliability_shown"])
        assert 0 < shown <= 3 * len(test) and shown < sum(r["n"] for r in row["reliability"])
    assert res["reliability_shown_final"] == res["curve"][-1]["reliability_shown"]
    assert res["reliability_final"] == res["curve"][-1]["reliability"]
