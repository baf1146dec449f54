"""A code's classifier trains on at most MAX_ROWS of its labelled passages (complete labels give
every code a row per confirmed passage): rare positives are all kept, and calibration and the
threshold are weighted back, so confidences keep the full decisions' base rate."""

import numpy as np
import pandas as pd

from coder_assist.ml import classifier
from coder_assist.ml.calibration import cap_rows
from coder_assist.ml.classifier import LearnedScorer
from coder_assist.ml.suggest import Inputs
from tests.unit.ml.test_suggest_calibration import ClusterEncoder, passages, template


def test_cap_keeps_rare_positives_and_weights_back_to_the_counts():
    y = np.r_[np.ones(30, int), np.zeros(970, int)]
    idx, (w_pos, w_neg) = cap_rows(y, 200, np.random.default_rng(0))
    assert len(idx) == 200 and len(np.unique(idx)) == 200
    assert y[idx].sum() == 30 and w_pos == 1.0
    assert w_neg * (y[idx] == 0).sum() == 970
    # Frequent positives: half the cap each side, weighted back.
    y = np.r_[np.ones(600, int), np.zeros(400, int)]
    idx, (w_pos, w_neg) = cap_rows(y, 200, np.random.default_rng(0))
    assert y[idx].sum() == 100 and w_pos * 100 == 600 and w_neg * 100 == 400
    # Under the cap: every row, unweighted.
    idx, w = cap_rows(y[:150], 200, np.random.default_rng(0))
    assert np.array_equal(idx, np.arange(150)) and w == (1.0, 1.0)


def _confirmed(k: int, per: int):
    """Overlapping codes (confidences between 0 and 1), every passage confirmed: the encoder,
    inputs, complete labels, row map and gold code index of each passage."""
    enc = ClusterEncoder(spread=3.0, k=k)
    texts, gold = passages(k=k, per=per)
    labels = pd.DataFrame([(r, c, int(c == f"code{gold[r]}")) for r in range(len(texts)) for c in [f"code{j}" for j in range(k)]],
                          columns=["segment_id", "code_id", "label"])
    return enc, Inputs(X=enc.encode(texts), texts=texts), labels, {i: i for i in range(len(texts))}, gold


def test_capped_fit_keeps_the_base_rate(monkeypatch):
    enc, inputs, labels, row_of, gold = _confirmed(k=12, per=40)
    texts = inputs.texts

    def fitted(cap):
        monkeypatch.setattr(classifier, "MAX_ROWS", cap)
        s = LearnedScorer(features="emb").fit(template(k=12), enc)
        return s.fit_labels(inputs, labels, row_of=row_of)

    full, capped = fitted(10_000), fitted(120)
    assert full.reports["code0"].n_neg == capped.reports["code0"].n_neg == len(texts) - 40  # reports count every decision
    p_full, p_cap = full.score(inputs).confidence, capped.score(inputs).confidence
    base = 1 / 12
    # Sampling negatives 440 -> 80 inflates the odds 5.5x (mean confidence 0.19 unshifted);
    # weighted back, the mean stays near the base rate, as the uncapped model's does.
    assert abs(p_cap.mean() - base) < 0.03 and abs(p_full.mean() - base) < 0.03
    # And the capped model still separates the codes.
    assert (p_cap.argmax(axis=1) == gold).mean() > 0.7


def test_a_capped_code_is_cross_validated_on_two_folds(monkeypatch):
    """Past the cap a code's blend is chosen on CAPPED_CV_FOLDS held-out folds (a fit fewer of
    its classifier per retrain); under it on cv_folds, as before."""
    enc, inputs, labels, row_of, _ = _confirmed(k=4, per=40)
    folds = []
    real = LearnedScorer._held_out

    def spy(self, fit_on, F_code, rows, y, k):
        folds.append(k)
        return real(self, fit_on, F_code, rows, y, k)

    monkeypatch.setattr(LearnedScorer, "_held_out", spy)
    for cap, want in ((10_000, 4), (100, classifier.CAPPED_CV_FOLDS)):
        monkeypatch.setattr(classifier, "MAX_ROWS", cap)
        folds.clear()
        LearnedScorer(features="emb", cv_folds=4).fit(template(k=4), enc).fit_labels(inputs, labels, row_of=row_of)
        assert folds == [want] * 4


def test_used_columns_drops_empty_columns_and_keeps_rows_sorted():
    import scipy.sparse as sp

    from coder_assist.ml.classifier import _used_columns

    rng = np.random.default_rng(0)
    M = sp.random(40, 500, density=0.02, format="csr", random_state=1)
    M.sort_indices()
    out, cols = _used_columns(M)
    # The same matrix as numpy's unique-and-slice, with no all-zero column left.
    assert np.array_equal(cols, np.unique(M.indices))
    assert (out != M[:, cols]).nnz == 0
    assert out.has_sorted_indices and (np.asarray(abs(out).sum(axis=0)).ravel() > 0).all()
    # Unsorted input comes back sorted (liblinear would otherwise sort on every fit).
    U = sp.csr_matrix((M.data[::-1].copy(), M.indices.copy(), M.indptr.copy()), shape=M.shape)
    for i in range(U.shape[0]):
        a, b = U.indptr[i], U.indptr[i + 1]
        U.indices[a:b] = U.indices[a:b][rng.permutation(b - a)]
    U.has_sorted_indices = False
    out_u, cols_u = _used_columns(U)
    assert np.array_equal(cols_u, cols) and out_u.has_sorted_indices
    assert (out_u != U[:, cols]).nnz == 0



def test_one_job_fits_without_threads_and_repeats_bit_for_bit(monkeypatch):
    # liblinear's coordinate order comes from one generator that threads share, so only a
    # one-thread fit is reproducible exactly; the simulated researcher relies on it.
    enc, inputs, labels, row_of, _ = _confirmed(k=6, per=30)

    def fitted(n_jobs):
        return LearnedScorer(features="emb", n_jobs=n_jobs).fit(template(k=6), enc).fit_labels(inputs, labels, row_of=row_of)

    threaded = fitted(2)

    class NoThreads:
        def __init__(self, *a, **kw):
            raise AssertionError("n_jobs=1 must not start a thread pool")

    monkeypatch.setattr(classifier, "ThreadPoolExecutor", NoThreads)
    a, b = fitted(1), fitted(1)
    assert set(a.coef) == set(b.coef) == set(threaded.coef) == {f"code{j}" for j in range(6)}
    for code in a.coef:
        assert np.array_equal(a.coef[code], b.coef[code]) and a.intercept[code] == b.intercept[code]
        assert a.platt[code] == b.platt[code] and a.reports[code] == b.reports[code]
        # The threaded fit reaches the same model up to liblinear's tolerance.
        assert np.allclose(a.coef[code], threaded.coef[code], atol=1e-3)


def test_threads_follow_the_cores_this_process_may_use(monkeypatch):
    # A container or taskset can leave a process one core of many: one thread per machine core
    # would fight over it, so the default counts the affinity mask, not os.cpu_count().
    import os

    from coder_assist.core import defaults

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert defaults.available_cores() == 1

    def no_threads(*a, **kw):
        raise AssertionError("one usable core must not start a thread pool")

    monkeypatch.setattr(classifier, "ThreadPoolExecutor", no_threads)
    enc, inputs, labels, row_of, _ = _confirmed(k=4, per=20)
    s = LearnedScorer(features="emb").fit(template(k=4), enc).fit_labels(inputs, labels, row_of=row_of)
    assert set(s.coef) == {f"code{j}" for j in range(4)}
    # Without an affinity mask (not Linux), the machine's count.
    monkeypatch.delattr(os, "sched_getaffinity")
    assert defaults.available_cores() == 64


def test_a_template_without_examples_trains_with_ngrams():
    # A codebook imported from NVivo has no example excerpts: the examples' feature matrix has
    # no rows, and the n-gram featurizer must give it every column rather than fail.
    from coder_assist.ml.features import Featurizer

    enc, inputs, labels, row_of, gold = _confirmed(k=4, per=20)
    fz = Featurizer("emb+prev+ngrams").fit(inputs)
    empty = fz.transform(Inputs(X=np.zeros((0, enc.dim), np.float32), texts=[], X_prev=np.zeros((0, enc.dim), np.float32), prev_texts=[]))
    assert empty.shape == (0, fz.transform(inputs).shape[1])
    s = LearnedScorer().fit(template(k=4, examples=False), enc).fit_labels(inputs, labels, row_of=row_of)
    assert set(s.coef) == {f"code{j}" for j in range(4)}
    assert (s.score(inputs).confidence.argmax(axis=1) == gold).mean() > 0.7
