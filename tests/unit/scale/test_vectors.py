"""The memory-mapped vector store: round trip, growth, crash safety, damage detection; and the
queue ranking from cached features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from coder_assist.core.errors import ProjectError
from coder_assist.ml.query import uncertainty
from coder_assist.scale.vectors import VectorStore, rank_queue, score_features, top_k


def _unit(rng, n, d):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_round_trip_across_appends_and_growth(tmp_path):
    rng = np.random.default_rng(0)
    store = VectorStore.create(tmp_path / "v", 16, model="m@1", capacity=4)
    a, b = _unit(rng, 3, 16), _unit(rng, 10, 16)  # the second append outgrows the capacity
    store.append([30, 10, 20], a)
    store.append(np.arange(100, 110), b)
    store.close()

    again = VectorStore.open(tmp_path / "v")
    assert len(again) == 13 and again.dim == 16 and again.model == "m@1"
    assert again.vectors.dtype == np.float16
    assert isinstance(again.vectors, np.memmap)  # served from the file, not loaded
    got = again.get([20, 105, 30])
    np.testing.assert_allclose(got, np.vstack([a[2], b[5], a[0]]), atol=2e-3)  # float16 precision
    assert again.rows([10, 999]).tolist() == [1, -1]
    with pytest.raises(ProjectError, match="no vector for segment ids \\[999\\]"):
        again.get([10, 999])


def test_append_refuses_bad_input_and_changes_nothing(tmp_path):
    rng = np.random.default_rng(1)
    store = VectorStore.create(tmp_path / "v", 8)
    store.append([1, 2], _unit(rng, 2, 8))
    with pytest.raises(ProjectError, match="already stored: \\[2\\]"):
        store.append([2, 3], _unit(rng, 2, 8))
    with pytest.raises(ProjectError, match="shape"):
        store.append([4], _unit(rng, 1, 9))
    with pytest.raises(ProjectError, match="NaN"):
        store.append([5], np.full((1, 8), np.nan))
    assert len(VectorStore.open(tmp_path / "v")) == 2
    with pytest.raises(ProjectError, match="read-only"):
        VectorStore.open(tmp_path / "v").append([9], _unit(rng, 1, 8))
    with pytest.raises(ProjectError, match="already exists"):
        VectorStore.create(tmp_path / "v", 8)
    with pytest.raises(ProjectError, match="8-dimensional"):
        VectorStore.open_or_create(tmp_path / "v", 16)


def test_rows_written_but_not_committed_are_ignored(tmp_path):
    """A crash between writing rows and committing the header: the store opens at the last
    committed count, and the next append overwrites the orphan rows."""
    rng = np.random.default_rng(2)
    store = VectorStore.open_or_create(tmp_path / "v", 8)
    store.append([1, 2], _unit(rng, 2, 8))
    # Simulate the crash: rows land in the files, the header is never rewritten.
    store._grow(4)
    store._vecs[2:4] = 7.0
    store._ids[2:4] = [3, 4]
    store._vecs.flush()
    store._ids.flush()
    reopened = VectorStore.open(tmp_path / "v", writable=True)
    assert len(reopened) == 2 and not reopened.contains([3, 4]).any()
    fresh = _unit(rng, 1, 8)
    reopened.append([3], fresh)
    np.testing.assert_allclose(VectorStore.open(tmp_path / "v").get([3])[0], fresh[0], atol=2e-3)


def test_truncated_file_is_detected(tmp_path):
    rng = np.random.default_rng(3)
    store = VectorStore.create(tmp_path / "v", 32, capacity=100)
    store.append(np.arange(100), _unit(rng, 100, 32))
    store.close()
    path = tmp_path / "v" / "vectors.npy"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ProjectError, match="truncated"):
        VectorStore.open(tmp_path / "v")


def test_damaged_ids_are_detected(tmp_path):
    rng = np.random.default_rng(4)
    VectorStore.create(tmp_path / "v", 8).append([1, 2, 3], _unit(rng, 3, 8))
    ids = np.load(tmp_path / "v" / "ids.npy", mmap_mode="r+")
    ids[1] = 99
    ids.flush()
    del ids
    with pytest.raises(ProjectError, match="checksum"):
        VectorStore.open(tmp_path / "v")
    header = tmp_path / "v" / "vectors.json"
    header.write_text(json.dumps({"format": 99}))
    with pytest.raises(ProjectError, match="unknown vector store format"):
        VectorStore.open(tmp_path / "v")
    with pytest.raises(ProjectError, match="no vector store"):
        VectorStore.open(tmp_path / "nothing")


def test_score_features_matches_per_code_loop():
    rng = np.random.default_rng(5)
    F = sp.random(200, 300, density=0.05, format="csr", random_state=5, dtype=np.float64)
    W, b = rng.normal(size=(300, 7)), rng.normal(size=7)
    loop = np.column_stack([1 / (1 + np.exp(-(F @ W[:, j] + b[j]))) for j in range(7)])
    np.testing.assert_allclose(score_features(F, W, b), loop, rtol=1e-4, atol=1e-6)


def test_top_k_and_queue_orders():
    rng = np.random.default_rng(6)
    conf = rng.random((500, 12)).astype(np.float32)
    codes, vals = top_k(conf, 3)
    np.testing.assert_array_equal(vals, -np.sort(-conf, axis=1)[:, :3])
    np.testing.assert_array_equal(np.take_along_axis(conf, codes, axis=1), vals)

    likely = rank_queue(conf, order="likely")
    assert np.all(np.diff(conf.max(axis=1)[likely.rows]) <= 0)
    unc = rank_queue(conf, order="uncertain")
    assert np.all(np.diff(uncertainty(conf)[unc.rows]) <= 1e-6)

    X = _unit(rng, 500, 16).astype(np.float16)
    ud = rank_queue(conf, order="uncertainty_diversity", X=X, batch=20)
    assert sorted(ud.rows.tolist()) == list(range(500))  # a permutation: nothing lost or doubled
    # Half the head is the diverse pick among the most uncertain; after the head, uncertainty order.
    assert set(ud.rows[:10].tolist()) <= set(unc.rows[:50].tolist())
    assert np.all(np.diff(uncertainty(conf)[ud.rows[20:]]) <= 1e-6)
    with pytest.raises(ProjectError, match="needs the segment vectors"):
        rank_queue(conf, order="uncertainty_diversity")


def test_learned_confidence_matches_the_scorer():
    """The all-codes-at-once re-score gives LearnedScorer.score_features' numbers."""
    from coder_assist.ml.classifier import CodeReport, LearnedScorer
    from coder_assist.scale.vectors import CachedFeatures, StackedModel, learned_confidence

    rng = np.random.default_rng(7)
    n, d, n_ng = 300, 16, 5000
    X, Xp = _unit(rng, n, d), _unit(rng, n, d)
    N = sp.random(n, n_ng, density=0.02, format="csr", random_state=7, dtype=np.float32)
    scorer = LearnedScorer()
    scorer.code_ids = ["a", "b", "c", "d"]
    for c, w in zip("abc", (0.0, 0.5, 1.0)):  # "d" has no classifier: the prior serves
        scorer.coef[c] = rng.normal(size=2 * d + n_ng).astype(np.float32)
        scorer.intercept[c] = float(rng.normal())
        scorer.platt[c] = (float(rng.uniform(0.5, 2)), float(rng.normal()))
        scorer.reports[c] = CodeReport(c, 5, 5, w)
    prior = rng.uniform(0.01, 0.9, size=(n, 4))
    F = sp.hstack([sp.csr_matrix(X), sp.csr_matrix(0.5 * Xp), N], format="csr")
    expected = scorer.score_features(F, prior)
    feats = CachedFeatures(X.astype(np.float16), Xp.astype(np.float16), N, block=1024)
    got = learned_confidence(feats, StackedModel.of(scorer), prior)
    np.testing.assert_allclose(got, expected, atol=5e-3)  # float16 embeddings
    np.testing.assert_array_equal(got[:, 3], prior[:, 3].astype(np.float32))
    exact = learned_confidence(CachedFeatures(X, Xp, N, block=1024), StackedModel.of(scorer), prior)
    np.testing.assert_allclose(exact, expected, rtol=1e-4, atol=1e-6)


def test_tiled_threaded_confidence_equals_the_per_code_loop_to_1e_6():
    """Row blocks x column tiles on threads: the per-code reference's numbers (to 1e-6) on the
    embeddings as the store holds them, the same bits on one thread or two, and rows that no
    tile touches (no n-grams) scored from the embeddings alone."""
    from coder_assist.ml.classifier import CodeReport, LearnedScorer
    from coder_assist.scale.vectors import CachedFeatures, StackedModel, learned_confidence

    rng = np.random.default_rng(11)
    n, d, n_ng = 1000, 24, 3000
    X16, Xp16 = _unit(rng, n, d).astype(np.float16), _unit(rng, n, d).astype(np.float16)
    N = sp.random(n, n_ng, density=0.03, format="csr", random_state=11, dtype=np.float32)
    N = sp.vstack([N[:700], sp.csr_matrix((n - 700, n_ng), dtype=np.float32)], format="csr")
    scorer = LearnedScorer()
    scorer.code_ids = [f"c{j}" for j in range(6)]
    for j, c in enumerate(scorer.code_ids[:5]):  # c5 untrained: its prior serves
        scorer.coef[c] = (rng.normal(size=2 * d + n_ng) * 0.5).astype(np.float32)
        scorer.intercept[c] = float(rng.normal())
        scorer.platt[c] = (float(rng.uniform(0.5, 2)), float(rng.normal()))
        scorer.reports[c] = CodeReport(c, 5, 5, (0.0, 0.3, 0.5, 0.8, 1.0)[j])
    prior = rng.uniform(0.01, 0.9, size=(n, 6))
    X, Xp = X16.astype(np.float32), Xp16.astype(np.float32)
    F = sp.hstack([sp.csr_matrix(X), sp.csr_matrix(0.5 * Xp), N.astype(np.float64)], format="csr")
    expected = scorer.score_features(F, prior)

    feats = CachedFeatures(X16, Xp16, N, block=512, rows=128)  # 8 row blocks x 6 column tiles
    assert len(feats.row_blocks()) == 8 and all(len(t) == 6 for t in feats.ngram_tiles()[:5])
    assert feats.ngram_tiles()[-1] == []  # the last block's rows have no n-grams
    model = StackedModel.of(scorer)
    one = learned_confidence(feats, model, prior, n_jobs=1)
    two = learned_confidence(feats, model, prior, n_jobs=2)
    np.testing.assert_array_equal(one, two)
    assert one.dtype == np.float32 and one.shape == (n, 6)
    assert np.abs(one - expected).max() <= 1e-6
    np.testing.assert_array_equal(one[:, 5], prior[:, 5].astype(np.float32))
    # Without the previous-turn block the dense product covers the segment embeddings only.
    F1 = sp.hstack([sp.csr_matrix(X), N.astype(np.float64)], format="csr")
    s1 = LearnedScorer()
    s1.code_ids = scorer.code_ids
    for c in scorer.coef:
        s1.coef[c] = np.concatenate([scorer.coef[c][:d], scorer.coef[c][2 * d :]])
        s1.intercept[c], s1.platt[c], s1.reports[c] = scorer.intercept[c], scorer.platt[c], scorer.reports[c]
    got1 = learned_confidence(CachedFeatures(X16, None, N, block=512, rows=128), StackedModel.of(s1), prior, n_jobs=2)
    assert np.abs(got1 - s1.score_features(F1, prior)).max() <= 1e-6
