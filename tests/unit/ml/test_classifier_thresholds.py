"""The hand-over from the prior's cold-start thresholds to learned ones: a code with a classifier
gets its learned threshold, a code without one (too few positives yet) keeps the threshold of the
base that serves it (the code matcher's once decisions train one, else the prior's), and the
best-code rule of a calibrated prior gives way to the learned thresholds, without silencing the
untrained codes on a first retrain."""

import numpy as np
import pandas as pd
import pytest

from coder_assist.ml.classifier import LearnedScorer
from coder_assist.ml.suggest import Inputs, suggest
from tests.unit.ml.test_suggest_calibration import ClusterEncoder, passages, template


@pytest.mark.parametrize("matcher", [False, True])
def test_untrained_codes_keep_their_base_thresholds(matcher):
    enc = ClusterEncoder(spread=2.5, k=12)
    scorer = LearnedScorer(features="emb", matcher=matcher).fit(template(k=12), enc)
    prior_t = scorer.prior.thresholds.copy()
    texts, gold = passages(k=12, per=8)
    inputs = Inputs(X=enc.encode(texts), texts=texts)
    # Before any decision: the prior's rule, everywhere.
    cold = scorer.score(inputs)
    assert np.array_equal(cold.thresholds, prior_t) and cold.top_margin == scorer.prior.top_margin
    assert np.array_equal(scorer.thresholds(), prior_t)
    # Complete labels of code 0's and code 1's passages only: codes 0 and 1 get positives,
    # every other code only negatives (no classifier: fewer than MIN_CLASS positives).
    rows = np.flatnonzero(gold < 2)
    labels = pd.DataFrame([(int(r), c, int(c == f"code{gold[r]}")) for r in rows for c in scorer.code_ids],
                          columns=["segment_id", "code_id", "label"])
    scorer.fit_labels(inputs, labels, row_of={i: i for i in range(len(texts))})
    assert set(scorer.coef) == {"code0", "code1"}
    t = scorer.thresholds()
    base_t = scorer.matcher_thresholds_ if matcher else prior_t
    assert (scorer.matcher_ is not None) == matcher
    for j, c in enumerate(scorer.code_ids):
        assert t[j] == (scorer.reports[c].threshold if c in scorer.coef else base_t[j])
    warm = scorer.score(inputs)
    # Learned thresholds replace the best-code rule of a calibrated prior.
    assert np.array_equal(warm.thresholds, t) and scorer.prior.calibrated and warm.top_margin is None
    # The untrained codes are still suggested on their own passages after the retrain.
    out = suggest(warm)
    untrained = out[~out["code_id"].isin(["code0", "code1"])]
    assert untrained["code_id"].nunique() >= 8
