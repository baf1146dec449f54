"""ONNX Runtime encoder: the same sentence embeddings without torch or sentence-transformers
at run time.

The model is exported at set-up (``coder-assist setup-models``, run by ``make setup``) from the
local sentence-transformers folder (the bundled all-MiniLM-L6-v2 when no model is named: the
default encoder, the multilingual USE, is an ONNX model already) into the models directory
(:func:`models_dir`), keyed by the model id (which holds the weights' SHA-256 for MiniLM), and only loaded after that. Export needs torch and transformers; running the
exported model needs only onnxruntime, tokenizers and numpy, so a start skips the 8-20 s /
500 MiB import of torch and sentence-transformers. If the export is missing at run time it is
made then, once, with a notice naming the set-up command.

Precisions:
- ``fp32``: the graph with ONNX Runtime's BERT fusions (attention, LayerNorm, GELU). Vectors
  match torch to ~1e-6 (cosine 1.0000), so it shares the torch backend's model id: the
  embedding cache and trained models carry over between the two backends.
- ``int8``: the fp32 graph with its MatMul weights dynamically quantised per channel. Its
  vectors differ measurably (see docs/speed.md), so it has its own model id and cache entries.

Every exported file's SHA-256 is kept in a manifest next to it and checked when it is loaded:
a damaged file is rebuilt from the source model (or refused with a ModelError if that fails).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .encoder import MINILM_MODEL, Encoder, models_dir, resolve_model, sha256
from ..core.defaults import available_cores
from ..core.errors import ModelError

#: Bump when the export steps change, so old exports are not reused.
EXPORT_RECIPE = 1
PRECISIONS = ("fp32", "int8")
_FILES = {"fp32": "model-fp32.onnx", "int8": "model-int8.onnx"}


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def export_dir(model_id: str, cache_dir: str | Path | None = None) -> Path:
    """Where the export of ``model_id`` lives. Fused operators are specific to an ONNX Runtime
    release, so its version is part of the key."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id.split("@")[0].rsplit("/", 1)[-1])[:40]
    digest = hashlib.sha256(f"{model_id}|recipe{EXPORT_RECIPE}|ort{_ort_version()}".encode()).hexdigest()[:16]
    return Path(cache_dir or models_dir()) / "onnx" / f"{safe}-{digest}"


def is_exported(model: str | os.PathLike | None = None, precision: str = "fp32", cache_dir: str | Path | None = None) -> bool:
    """Whether a checked export of ``model`` is ready to load (nothing is exported)."""
    _, model_id = resolve_model(model, verify=False)
    return _manifest_ok(export_dir(model_id, cache_dir), _FILES[precision])


def _read_st_config(folder: Path) -> tuple[str, int]:
    """(pooling, max_seq_length) of a sentence-transformers folder; only the module stacks the
    exporter reproduces exactly are accepted."""
    modules_file = folder / "modules.json"
    pooling = "mean"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        if kinds[:1] != ["Transformer"] or any(k not in ("Transformer", "Pooling", "Normalize") for k in kinds):
            raise ModelError(f"{modules_file}: modules {kinds} are not supported by the onnx backend (Transformer + Pooling only); use --backend torch")
        pool_cfg = next((folder / m["path"] / "config.json" for m in modules if m.get("type", "").endswith("Pooling")), None)
        if pool_cfg is not None and pool_cfg.is_file():
            cfg = json.loads(pool_cfg.read_text())
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
            if modes == ["pooling_mode_cls_token"]:
                pooling = "cls"
            elif modes != ["pooling_mode_mean_tokens"]:
                raise ModelError(f"{pool_cfg}: pooling {modes} is not supported by the onnx backend (mean or CLS only); use --backend torch")
    max_len = 512
    st_cfg = folder / "sentence_bert_config.json"
    if st_cfg.is_file():
        max_len = int(json.loads(st_cfg.read_text()).get("max_seq_length") or max_len)
    return pooling, max_len


def _export(folder: Path, dest: Path, precision: str) -> None:
    """Write ``dest/model-fp32.onnx`` (and ``model-int8.onnx``) from a sentence-transformers
    folder. Imports torch and transformers; runs once per machine and model."""
    try:
        import torch
        from onnxruntime.transformers.optimizer import optimize_model
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelError(f"exporting {folder} to ONNX needs torch, transformers and onnx: {exc}") from exc
    pooling, _ = _read_st_config(folder)
    hf_logging.disable_progress_bar()
    # Eager attention traces to plain MatMul/Softmax, which ONNX Runtime fuses into one
    # Attention op; the SDPA path exports to a graph it cannot fuse (and is slower).
    hf = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    cfg = hf.config
    import inspect

    takes_types = "token_type_ids" in inspect.signature(hf.forward).parameters

    class Pooled(torch.nn.Module):
        # Pooling and L2 normalisation inside the graph: one session call gives the vectors.
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            kw = {"token_type_ids": torch.zeros_like(input_ids)} if takes_types else {}
            h = self.m(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
            if pooling == "cls":
                v = h[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(h.dtype)
                v = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, p=2, dim=1)

    wrapper = Pooled(hf).eval()
    raw = dest / "raw.onnx"
    ids = torch.ones(2, 16, dtype=torch.long)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about constants that are checked below
        try:
            torch.onnx.export(
                wrapper, (ids, torch.ones_like(ids)), str(raw), dynamo=False, opset_version=17,
                input_names=["input_ids", "attention_mask"], output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, "embedding": {0: "batch"}},
            )
        except Exception as exc:
            raise ModelError(f"cannot export {folder} to ONNX with torch {torch.__version__}: {type(exc).__name__}: {exc}; use --backend torch") from exc
        heads = getattr(cfg, "num_attention_heads", 0)
        hidden = getattr(cfg, "hidden_size", 0)
        opt = optimize_model(str(raw), model_type="bert", num_heads=heads, hidden_size=hidden)
        opt.save_model_to_file(str(dest / _FILES["fp32"]))
        raw.unlink()
        if precision == "int8":
            _quantize(dest / _FILES["fp32"], dest / _FILES["int8"])
        # The trace used one shape: check the graph against torch on other shapes and padding.
        probe = ["Short.", "A somewhat longer sentence about involving people in research decisions early on.", "Yeah."]
        tok = _tokenizer(folder, 128)
        batch = _pad([e.ids for e in tok.encode_batch(probe)])
        ref = wrapper(torch.from_numpy(batch[0]), torch.from_numpy(batch[1])).numpy()
    import onnxruntime as ort

    for p in ([precision] if precision == "fp32" else ["fp32", precision]):
        got = ort.InferenceSession(str(dest / _FILES[p]), providers=["CPUExecutionProvider"]).run(None, {"input_ids": batch[0], "attention_mask": batch[1]})[0]
        worst = float((got * ref).sum(1).min())
        if worst < (0.9999 if p == "fp32" else 0.9):
            raise ModelError(f"the ONNX export of {folder} ({p}) does not reproduce torch (cosine {worst:.4f}); use --backend torch")


def _quantize(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weights: per-tensor int8 lost too much here (cosine to fp32 0.94 mean,
    # 0.80 worst on AnnoMI utterances, on AVX-512 without VNNI) against 0.987 / 0.96.
    quantize_dynamic(
        str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops lack shape inference
    )


def _manifest_ok(folder: Path, name: str) -> bool:
    man = folder / "manifest.json"
    try:
        want = json.loads(man.read_text())["files"][name]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (folder / name).is_file() and sha256(folder / name) == want


_verified: set[str] = set()
_export_lock = threading.Lock()


def ensure_exported(model: str | os.PathLike | None = None, precision: str = "fp32", cache_dir: str | Path | None = None,
                    *, notice: Callable[[str], None] | None = None) -> Path:
    """Path of the exported ONNX file for ``model``, exporting it first if needed. A file
    whose SHA-256 does not match its manifest is rebuilt; if rebuilding fails, ModelError.
    ``notice(message)`` is told before an export starts (it takes 10-20 s and imports torch)."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown ONNX precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    # The weights are hashed only when an export has to be made from them.
    target, model_id = resolve_model(model, verify=False)
    folder = Path(target)
    if not folder.is_dir():
        raise ModelError(f"{target}: the onnx backend needs a local sentence-transformers folder")
    dest = export_dir(model_id, cache_dir)
    name = _FILES[precision]
    path = dest / name
    with _export_lock:
        if str(path) in _verified and path.is_file():
            return path
        if _manifest_ok(dest, name):
            _verified.add(str(path))
            return path
        resolve_model(model)  # refuses modified MiniLM weights before exporting them
        damaged = path.exists()
        if damaged:
            warnings.warn(f"{path}: SHA-256 does not match its manifest (damaged file); exporting it again from {target}", stacklevel=2)
        if notice is not None:
            notice(f"{'re-exporting the damaged' if damaged else 'no'} ONNX export of {model or MINILM_MODEL} "
                   f"{'at' if damaged else 'in'} {dest.parent}: exporting it now, once (10-20 s; "
                   f"`coder-assist setup-models` does this at set-up)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Export into a fresh folder and swap it in whole: a crash or a concurrent process
        # never leaves a half-written model under the final name.
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
        try:
            try:
                _export(folder, tmp, precision)
            except ModelError as exc:
                if damaged:
                    raise ModelError(f"{path}: the exported model is damaged (SHA-256 mismatch) and could not be rebuilt: {exc}") from exc
                raise
            files = {p.name: sha256(p) for p in tmp.glob("*.onnx")}
            (tmp / "manifest.json").write_text(json.dumps({"source": model_id, "recipe": EXPORT_RECIPE, "onnxruntime": _ort_version(), "files": files}, indent=2))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if not _manifest_ok(dest, name):
            raise ModelError(f"{path}: export finished but the file does not match its manifest")
        _verified.add(str(path))
        return path


def _tokenizer(folder: Path, max_len: int):
    from tokenizers import Tokenizer

    tok_file = folder / "tokenizer.json"
    if not tok_file.is_file():
        raise ModelError(f"{tok_file}: missing; the onnx backend needs a fast-tokenizer file (use --backend torch)")
    tok = Tokenizer.from_file(str(tok_file))
    tok.enable_truncation(max_len)
    tok.no_padding()
    return tok


def _pad(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def _stderr_notice(message: str) -> None:
    print(f"coder-assist: {message}", file=sys.stderr, flush=True)


class OnnxEncoder(Encoder):
    """Sentence embeddings from the exported model through ONNX Runtime.

    Each call de-duplicates its texts, sorts them by length (so a batch pads to similar
    lengths) and tokenises batches in a background thread while the session runs the previous
    one (ONNX Runtime releases the GIL), with ``threads`` intra-op threads (default: every core
    this process may use).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, precision: str = "fp32", batch_size: int = 32,
                 threads: int | None = None, cache_dir: str | Path | None = None, dedup: bool = True, sort_by_length: bool = True,
                 notice: Callable[[str], None] | None = None):
        target, base_id = resolve_model(model, verify=False)
        self.name = str(model or MINILM_MODEL)
        self.precision = precision
        self.batch_size = batch_size
        self.dedup = dedup
        self.sort_by_length = sort_by_length
        path = ensure_exported(model, precision, cache_dir, notice=notice or _stderr_notice)
        _, max_len = _read_st_config(Path(target))
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(f"the onnx backend needs the onnxruntime package: {exc}") from exc
        self.threads = threads or available_cores()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: on a shared or busy machine spinning
        # only burns the cores the other thread needs (measured slightly faster at load 8).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a file that passed its hash but not the runtime (other ORT build)
            raise ModelError(f"{path}: ONNX Runtime cannot load the exported model: {exc}; delete the folder to export again") from exc
        self._tok = _tokenizer(Path(target), max_len)
        self.model_id = base_id if precision == "fp32" else f"{base_id}+onnx-{precision}"
        self.dim = int(self._session.get_outputs()[0].shape[1] or self._run(["x"]).shape[1])

    def _run(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask = _pad([e.ids for e in self._tok.encode_batch(list(texts))])
        return self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.dedup:
            first: dict[str, int] = {}
            where = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
            unique = list(first)
            weight = np.bincount(where, minlength=len(unique))
        else:
            where, unique, weight = None, list(texts), np.ones(len(texts), dtype=np.int64)
        # Characters are a good enough proxy for tokens to group similar lengths.
        order = sorted(range(len(unique)), key=lambda i: len(unique[i])) if self.sort_by_length else list(range(len(unique)))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out = np.empty((len(unique), self.dim), dtype=np.float32)
        feed: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def tokenise() -> None:
            try:
                for idx in batches:
                    if stop.is_set():
                        return
                    feed.put((idx, _pad([e.ids for e in self._tok.encode_batch([unique[i] for i in idx])])))
                feed.put(None)
            except BaseException as exc:  # hand it to the consumer instead of hanging it
                feed.put(exc)

        worker = threading.Thread(target=tokenise, name="onnx-tokenise", daemon=True)
        worker.start()
        try:
            while (item := feed.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                idx, (ids, mask) = item
                out[idx] = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
                if progress:
                    progress(int(weight[idx].sum()))
        finally:
            stop.set()
            while worker.is_alive():  # unblock a producer waiting on a full queue
                try:
                    feed.get_nowait()
                except queue.Empty:
                    worker.join(0.05)
        return out if where is None else out[where]
