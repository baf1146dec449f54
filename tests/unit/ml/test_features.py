"""The featurizer's n-gram counts kept between retrains (:class:`NgramCounts`): the same matrix
as hashing everything, with only the passages not seen before hashed."""

from __future__ import annotations

import numpy as np

from coder_assist.ml.features import Featurizer, NgramCounts
from coder_assist.ml.suggest import Inputs


def _inputs(texts, prevs):
    rng = np.random.default_rng(len(texts))
    X = rng.normal(size=(len(texts), 8)).astype(np.float32)
    return Inputs(X=X, texts=list(texts), X_prev=rng.normal(size=X.shape).astype(np.float32), prev_texts=list(prevs))


def _same(a, b):
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices(), b.sort_indices()
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices) \
        and np.array_equal(a.data, b.data)


def test_cached_counts_give_the_matrix_of_a_full_hashing_and_hash_only_new_passages():
    texts = [f"we had no budget for the {w} this year, really" for w in ("van", "staff", "rota", "hall", "training", "pilot")]
    prevs = ["", "Why?", "Why?", "And then?", "", "What changed?"]
    cache = NgramCounts()
    first = _inputs(texts[:4], prevs[:4])
    assert _same(Featurizer().fit_transform(first, cache=cache), Featurizer().fit_transform(first))
    assert cache.hashed_last == 4
    # New passages, one gone, the rest in another order; and one whose previous turn changed
    # (its counts depend on it), which is hashed again.
    order = [5, 2, 0, 4, 3]
    later = _inputs([texts[i] for i in order], [prevs[i] if i != 3 else "Something else?" for i in order])
    assert _same(Featurizer().fit_transform(later, cache=cache), Featurizer().fit_transform(later))
    assert cache.hashed_last == 3  # texts 5 and 4 (new) and 3 (new previous turn)
    again = Featurizer().fit_transform(later, cache=cache)
    assert cache.hashed_last == 0 and _same(again, Featurizer().fit_transform(later))


def test_a_featurizer_of_another_width_starts_the_cache_afresh():
    inputs = _inputs(["the grant ran out", "no hours in the week"], ["", "Why?"])
    cache = NgramCounts()
    Featurizer().fit_transform(inputs, cache=cache)
    narrow = Featurizer(n_hash=2**10)
    assert _same(narrow.fit_transform(inputs, cache=cache), Featurizer(n_hash=2**10).fit_transform(inputs))
    assert cache.hashed_last == 2


def test_hstack_rows_is_scipys_hstack():
    import scipy.sparse as sp

    from coder_assist.ml.features import hstack_rows

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(30, 5)).astype(np.float32)
    dense[3] = 0  # an empty row (a first turn has no previous one)
    unsorted = sp.random(30, 40, density=0.2, format="csr", random_state=1)
    unsorted = sp.csr_matrix((unsorted.data, unsorted.indices, unsorted.indptr), shape=unsorted.shape)
    for i in range(30):  # reverse each row's indices
        a, b = unsorted.indptr[i], unsorted.indptr[i + 1]
        unsorted.indices[a:b], unsorted.data[a:b] = unsorted.indices[a:b][::-1].copy(), unsorted.data[a:b][::-1].copy()
    unsorted.has_sorted_indices = False
    for blocks in ([sp.csr_matrix(dense), unsorted], [sp.csr_matrix(dense), sp.csr_matrix(dense * 2)], [sp.csr_matrix((0, 4)), sp.csr_matrix((0, 3))]):
        want = sp.hstack(blocks, format="csr")
        want.sort_indices()
        got = hstack_rows(blocks)
        assert got.shape == want.shape and got.dtype == want.dtype and got.has_sorted_indices
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices) and np.array_equal(got.data, want.data)


def test_dense_csr_is_scipys_csr_of_a_dense_array():
    import scipy.sparse as sp

    from coder_assist.ml.features import dense_csr

    rng = np.random.default_rng(2)
    X = rng.normal(size=(25, 7))
    X[rng.random(X.shape) < 0.3] = 0  # scattered zeros, left out as scipy leaves them
    X[4] = 0  # a whole row of zeros (a first turn's previous turn)
    for M in (X, X.astype(np.float32), np.zeros((0, 7), np.float32), np.zeros((3, 7))):
        want, got = sp.csr_matrix(M), dense_csr(M)
        assert got.shape == want.shape and got.dtype == want.dtype and got.nnz == want.nnz
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices) and np.array_equal(got.data, want.data)
        assert got.has_sorted_indices


def test_the_matrix_is_kept_for_the_same_passages_and_vectors_only():
    texts, prevs = ["the grant ran out", "no hours in the week", "a van we shared"], ["", "Why?", "And?"]
    inputs = _inputs(texts, prevs)
    cache = NgramCounts()
    first = Featurizer().fit_transform(inputs, cache=cache)
    fz = Featurizer()
    again = fz.fit_transform(_inputs(texts, prevs), cache=cache)  # equal inputs, new objects
    assert again is first and fz.idf and all(np.array_equal(fz.idf[k], v) for k, v in Featurizer().fit(inputs).idf.items())
    # Other vectors for the same texts (another encoder), another width, other passages: built anew, and right.
    moved = Inputs(X=inputs.X + 1, texts=texts, X_prev=inputs.X_prev, prev_texts=prevs)
    got = Featurizer().fit_transform(moved, cache=cache)
    assert got is not first and _same(got, Featurizer().fit_transform(moved))
    narrow = Featurizer(n_hash=2**10).fit_transform(moved, cache=cache)
    assert _same(narrow, Featurizer(n_hash=2**10).fit_transform(moved))
    fewer = _inputs(texts[:2], prevs[:2])
    assert _same(Featurizer().fit_transform(fewer, cache=cache), Featurizer().fit_transform(fewer))
    assert Featurizer().fit_transform(fewer, cache=cache) is Featurizer().fit_transform(fewer, cache=cache)
    # Past the size limit nothing is kept.
    small = NgramCounts()
    small.MAX_KEPT_BYTES = 0
    assert Featurizer().fit_transform(inputs, cache=small) is not Featurizer().fit_transform(inputs, cache=small)
