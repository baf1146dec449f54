"""Compact, memory-mapped segment vectors and the review queue ranked from them.

A project of a million segments cannot hold its embeddings as Python objects (or even as a
float32 array: 1.5 GB at 384 dimensions). :class:`VectorStore` keeps them as float16 in an
``.npy`` file next to the project database, memory-mapped, so opening a project costs only the
id index (8 bytes a segment) and the pages actually read.

Files, in ``<folder>/<name>``: ``vectors.npy`` (float16, shape (capacity, dim)), ``ids.npy``
(int64 segment ids, shape (capacity,)) and ``vectors.json`` (dim, committed row count, a
checksum of the committed ids). Appends write rows past the committed count, flush them to disk
(fsync), and only then rewrite ``vectors.json`` (temp file + fsync + rename). A crash at any
point leaves the last committed state: rows past ``count`` are ignored and overwritten by the
next append. A file that is shorter than the committed count (truncated by a copy, a full disk)
or whose ids do not match the checksum is refused with a :class:`ProjectError`.

:func:`learned_confidence` re-scores every segment from cached features after a retrain and
:func:`rank_queue` orders the queue: about 0.9 s together at 100,000 segments x 40 codes on a
loaded 2-core machine (``bench/rerank.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from ..core.defaults import available_cores
from ..core.errors import ProjectError

STORE_DIR = "vectors"
FORMAT = 1
_GROW = 1.5  # capacity grows geometrically so appends stay amortised O(rows)


def _fsync_dir(folder: Path) -> None:
    # The rename of the header is durable only once the directory entry is.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _ids_digest(ids: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


class VectorStore:
    """segment id -> float16 vector, memory-mapped, appendable and crash-safe.

    ``VectorStore.open(folder)`` for an existing store, ``VectorStore.create(folder, dim)`` for a
    new one (``open_or_create`` for either). ``vectors`` is the read-only (count, dim) view;
    :meth:`get` looks rows up by segment id.
    """

    def __init__(self, folder: Path, dim: int, count: int, vecs: np.memmap, ids: np.memmap, model: str | None):
        self.folder = folder
        self.dim = dim
        self.count = count
        self.model = model
        self._vecs = vecs
        self._ids = ids
        self._row_of: dict[int, int] | None = None
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    # -- files -----------------------------------------------------------------------------
    @staticmethod
    def path(folder: str | Path) -> Path:
        """Where a project's store lives: ``<project>/vectors/``."""
        return Path(folder) / STORE_DIR

    @property
    def _header(self) -> Path:
        return self.folder / "vectors.json"

    @classmethod
    def create(cls, folder: str | Path, dim: int, *, model: str | None = None, capacity: int = 1024) -> "VectorStore":
        folder = Path(folder)
        if (folder / "vectors.json").exists():
            raise ProjectError(f"{folder}: a vector store already exists here")
        if dim <= 0:
            raise ProjectError(f"{folder}: vector dimension must be positive, got {dim}")
        folder.mkdir(parents=True, exist_ok=True)
        vecs = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float16, shape=(capacity, dim))
        ids = np.lib.format.open_memmap(folder / "ids.npy", mode="w+", dtype=np.int64, shape=(capacity,))
        store = cls(folder, dim, 0, vecs, ids, model)
        store._commit(0)
        return store

    @classmethod
    def open(cls, folder: str | Path, *, writable: bool = False) -> "VectorStore":
        folder = Path(folder)
        header = folder / "vectors.json"
        try:
            meta = json.loads(header.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProjectError(f"{folder}: no vector store here") from None
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{header}: unreadable vector store header ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ProjectError(f"{header}: unknown vector store format {meta.get('format') if isinstance(meta, dict) else meta!r}")
        try:
            dim, count = int(meta["dim"]), int(meta["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectError(f"{header}: damaged vector store header (bad or missing {exc})") from exc
        mode = "r+" if writable else "r"
        try:
            vecs = np.load(folder / "vectors.npy", mmap_mode=mode)
            ids = np.load(folder / "ids.npy", mmap_mode=mode)
        except (OSError, ValueError) as exc:
            # numpy refuses a file shorter than its own .npy header says: a truncated copy.
            raise ProjectError(f"{folder}: vector store files are damaged or truncated ({exc})") from exc
        if vecs.dtype != np.float16 or vecs.ndim != 2 or vecs.shape[1] != dim or ids.dtype != np.int64:
            raise ProjectError(f"{folder / 'vectors.npy'}: expected float16 rows of {dim}, found {vecs.dtype} {vecs.shape}")
        if len(vecs) < count or len(ids) < count:
            raise ProjectError(f"{folder}: vector store is truncated: {count} rows committed, {min(len(vecs), len(ids))} on disk")
        if _ids_digest(ids[:count]) != meta.get("ids_sha1"):
            raise ProjectError(f"{folder / 'ids.npy'}: segment ids do not match the committed checksum (damaged file)")
        return cls(folder, dim, count, vecs, ids, meta.get("model"))

    @classmethod
    def open_or_create(cls, folder: str | Path, dim: int, *, model: str | None = None) -> "VectorStore":
        folder = Path(folder)
        if (folder / "vectors.json").exists():
            store = cls.open(folder, writable=True)
            if store.dim != dim:
                raise ProjectError(f"{folder}: the store holds {store.dim}-dimensional vectors, not {dim}")
            if model is not None and store.model not in (None, model):
                raise ProjectError(f"{folder}: the store holds vectors of {store.model!r}, not {model!r}")
            return store
        return cls.create(folder, dim, model=model)

    def _commit(self, count: int) -> None:
        """Make ``count`` rows the committed state: data first, durable, then the header."""
        for m in (self._vecs, self._ids):
            if isinstance(m, np.memmap):
                m.flush()  # msync: the rows are on disk before the header says they exist
        meta = {"format": FORMAT, "dim": self.dim, "count": count, "model": self.model, "ids_sha1": _ids_digest(self._ids[:count])}
        tmp = self._header.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._header)
        _fsync_dir(self.folder)
        self.count = count
        self._row_of = None
        self._sorted = None

    def _grow(self, need: int) -> None:
        cap = len(self._vecs)
        if need <= cap:
            return
        new_cap = max(need, int(cap * _GROW) + 1)
        # Copy to bigger files beside the old ones and swap them in by rename; the header (the
        # commit point) is unchanged, so a crash here loses nothing committed.
        for name, dtype, shape, old in (
            ("vectors.npy", np.float16, (new_cap, self.dim), self._vecs),
            ("ids.npy", np.int64, (new_cap,), self._ids),
        ):
            tmp = self.folder / (name + ".grow")
            m = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            m[: self.count] = old[: self.count]
            m.flush()
            del m
            os.replace(tmp, self.folder / name)
        _fsync_dir(self.folder)
        self._vecs = np.load(self.folder / "vectors.npy", mmap_mode="r+")
        self._ids = np.load(self.folder / "ids.npy", mmap_mode="r+")

    # -- writing ---------------------------------------------------------------------------
    def append(self, ids, vectors: np.ndarray) -> None:
        """Add rows (stored as float16) and commit them. Ids already in the store are refused:
        a segment's vector does not change under a given model."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape != (len(ids), self.dim):
            raise ProjectError(f"{self.folder}: expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        if not len(ids):
            return
        if len(np.unique(ids)) != len(ids):
            raise ProjectError(f"{self.folder}: duplicate segment ids in one append")
        dup = self.contains(ids)
        if dup.any():
            raise ProjectError(f"{self.folder}: segment ids already stored: {ids[dup][:5].tolist()}")
        if not np.isfinite(vectors).all():
            raise ProjectError(f"{self.folder}: vectors contain NaN or infinity")
        if getattr(self._vecs, "mode", "r+") == "r":
            raise ProjectError(f"{self.folder}: the vector store was opened read-only")
        start, end = self.count, self.count + len(ids)
        self._grow(end)
        self._vecs[start:end] = vectors.astype(np.float16)
        self._ids[start:end] = ids
        self._commit(end)

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.count

    @property
    def vectors(self) -> np.ndarray:
        """The committed rows, (count, dim) float16, memory-mapped (read lazily from disk)."""
        return self._vecs[: self.count]

    @property
    def ids(self) -> np.ndarray:
        return np.asarray(self._ids[: self.count])

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        # A sorted copy of the ids (8 bytes a row) instead of a dict (about 100 bytes a row).
        if self._sorted is None:
            ids = self.ids
            order = np.argsort(ids, kind="stable")
            self._sorted = (ids[order], order)
        return self._sorted

    def rows(self, ids) -> np.ndarray:
        """Row of each segment id, -1 where absent."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        sorted_ids, order = self._index()
        if not len(sorted_ids):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == ids, order[pos], -1)

    def contains(self, ids) -> np.ndarray:
        return self.rows(ids) >= 0

    def get(self, ids, dtype=np.float32) -> np.ndarray:
        """Vectors of these segment ids, in that order (``ProjectError`` if one is missing)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        rows = self.rows(ids)
        if (rows < 0).any():
            raise ProjectError(f"{self.folder}: no vector for segment ids {ids[rows < 0][:5].tolist()}")
        return np.asarray(self._vecs[rows], dtype=dtype)

    def close(self) -> None:
        for m in (self._vecs, self._ids):
            mm = getattr(m, "_mmap", None)
            if mm is not None:
                mm.close()
        self._vecs = self._ids = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- queue ranking


QueueOrder = Literal["likely", "uncertain", "uncertainty_diversity"]


@dataclass
class RankedQueue:
    """The queue after a re-rank: ``rows`` of segments in review order, and per segment its
    ``top_codes`` (k code indices, best first) and their ``top_conf``."""

    rows: np.ndarray
    top_codes: np.ndarray
    top_conf: np.ndarray


def score_features(F: np.ndarray | sp.spmatrix, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Confidences (n, k) = sigmoid(F @ W + b) in float32, for every code in one product.

    ``W`` is (features, k): one column per code. One sparse-dense product replaces k sparse
    matrix-vector products (the per-code loop), and float32 halves the memory traffic."""
    W = np.ascontiguousarray(W, dtype=np.float32)
    z = F @ W if sp.issparse(F) else np.asarray(F, dtype=np.float32) @ W
    z = np.asarray(z, dtype=np.float32)
    z += np.asarray(b, dtype=np.float32)
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)
    return z


def top_k(conf: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best codes per row, best first (argpartition, then a sort of k columns only)."""
    k = min(k, conf.shape[1])
    part = np.argpartition(-conf, k - 1, axis=1)[:, :k] if k < conf.shape[1] else np.tile(np.arange(conf.shape[1]), (len(conf), 1))
    vals = np.take_along_axis(conf, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def rank_queue(
    conf: np.ndarray,
    *,
    k: int = 3,
    order: QueueOrder = "uncertainty_diversity",
    X: np.ndarray | None = None,
    batch: int = 50,
    seed: int = 0,
) -> RankedQueue:
    """Order every segment for review from its confidences (n, codes).

    ``likely``: highest top confidence first. ``uncertain``: smallest margin between the two
    best codes first. ``uncertainty_diversity``: the first ``batch`` rows are
    :func:`coder_assist.ml.query.uncertainty_diversity` on the embeddings ``X`` (float16 memmap
    rows are fine: only the candidates are read), the rest follow by uncertainty; a queue
    is consumed a batch at a time and re-ranked after the next retrain, so ordering all of it by
    farthest-point selection would be quadratic work nobody sees.
    """
    codes, top = top_k(conf, max(k, 2))
    if order == "likely":
        rows = np.argsort(-top[:, 0], kind="stable")
    else:
        margin = top[:, 0] - top[:, 1] if top.shape[1] > 1 else np.abs(2 * top[:, 0] - 1)
        rows = np.argsort(margin, kind="stable")
        if order == "uncertainty_diversity":
            if X is None:
                raise ProjectError("uncertainty_diversity needs the segment vectors X")
            from ..ml.query import EXPLORE, uncertainty_diversity

            # query.uncertainty_diversity on the 5x most uncertain candidates (the only rows
            # whose vectors are read), with its random share drawn from the whole queue.
            n_random = int(round(batch * EXPLORE))
            pool = rows[: (batch - n_random) * 5]
            first = pool[uncertainty_diversity(conf[pool], np.asarray(X[pool], dtype=np.float32), batch - n_random, explore=0.0)]
            rest = np.ones(len(rows), dtype=bool)
            rest[first] = False
            if n_random:
                rng = np.random.default_rng(seed)
                extra = rng.choice(np.flatnonzero(rest), size=min(n_random, int(rest.sum())), replace=False)
                rest[extra] = False
                first = np.concatenate([first, extra])
            rows = np.concatenate([first, rows[rest[rows]]])
    return RankedQueue(rows=rows, top_codes=codes[:, :k], top_conf=top[:, :k])


# --------------------------------------------------------------------------- re-scoring a learned model


@dataclass
class CachedFeatures:
    """A project's features kept between retrains, in the blocks
    :class:`coder_assist.ml.features.Featurizer` builds: segment embeddings ``X`` and previous-turn embeddings ``X_prev`` (float16, may be
    memory-mapped :attr:`VectorStore.vectors`) and the TF-IDF n-gram block ``ngrams`` (CSR,
    float32). Keeping the dense blocks dense is what makes re-scoring cheap: a BLAS product
    instead of 768 stored "non-zeros" a row in a sparse matrix."""

    X: np.ndarray
    X_prev: np.ndarray | None
    ngrams: sp.csr_matrix | None
    #: The n-gram block is cut into tiles of ``rows`` rows x ``block`` columns. A tile reads
    #: only its rows of the weight matrix (4096 x 40 floats stay in cache, where one product
    #: over 98,304 hashed columns jumps all over a 16 MB matrix) and adds into a (rows x 40)
    #: result that stays in cache too; row blocks are independent, so they run in parallel.
    block: int = 4096
    rows: int = 8192

    def __post_init__(self) -> None:
        self._tiles: list[list[tuple[int, sp.csr_matrix]]] | None = None

    def __len__(self) -> int:
        return len(self.X)

    def row_blocks(self) -> list[tuple[int, int]]:
        n = len(self.X)
        return [(i, min(i + self.rows, n)) for i in range(0, n, self.rows)]

    def ngram_tiles(self) -> list[list[tuple[int, sp.csr_matrix]]]:
        """Per row block, its (first column, CSR tile) pairs; cut once, when the cache is built."""
        if self._tiles is None:
            tiles = []
            if self.ngrams is not None:
                N = sp.csr_matrix(self.ngrams, dtype=np.float32)
                for i0, i1 in self.row_blocks():
                    part = N[i0:i1].tocsc()
                    cut = [(s, part[:, s : s + self.block].tocsr()) for s in range(0, N.shape[1], self.block)]
                    tiles.append([(s, t) for s, t in cut if t.nnz])
            self._tiles = tiles
        return self._tiles


@dataclass
class StackedModel:
    """A learned scorer's per-code parameters as arrays over codes (columns)."""

    W: np.ndarray  # (features, k) float32, zero columns for codes without a classifier
    b: np.ndarray  # (k,) intercepts
    blend: np.ndarray  # (k,) classifier share in the blend
    platt_a: np.ndarray
    platt_b: np.ndarray
    trained: np.ndarray  # (k,) bool: a classifier exists (else the prior serves)

    @classmethod
    def of(cls, scorer) -> "StackedModel":
        """From a fitted :class:`coder_assist.ml.classifier.LearnedScorer`."""
        codes = list(scorer.code_ids)
        n_feat = next((len(c) for c in scorer.coef.values()), 0)
        # Rows per code first (contiguous copies), then one transpose: writing 40 strided
        # columns of a 99k-row matrix costs more than the scoring it prepares.
        Wt = np.zeros((len(codes), n_feat), dtype=np.float32)
        b, blend, pa, pb = (np.zeros(len(codes), dtype=np.float32) for _ in range(4))
        trained = np.zeros(len(codes), dtype=bool)
        for j, code in enumerate(codes):
            if code in scorer.coef:
                Wt[j] = scorer.coef[code]
                b[j] = scorer.intercept[code]
                blend[j] = scorer.reports[code].weight
                pa[j], pb[j] = scorer.platt[code]
                trained[j] = True
        return cls(np.ascontiguousarray(Wt.T), b, blend, pa, pb, trained)


def _add_product(tile: sp.csr_matrix, W: np.ndarray, z: np.ndarray) -> None:
    # z += tile @ W without the (rows x k) temporary: sparsetools' kernel accumulates into its
    # output (and releases the GIL). The public operator allocates a zeroed result a tile, which
    # cost a third of the n-gram time; fall back to it where the private kernel is absent.
    if _csr_matvecs is not None and W.flags.c_contiguous and z.flags.c_contiguous and tile.data.dtype == z.dtype == W.dtype:
        _csr_matvecs(tile.shape[0], tile.shape[1], W.shape[1], tile.indptr, tile.indices, tile.data, W.ravel(), z.ravel())
    else:
        z += tile @ W


try:
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - scipy moved its private kernels
    _csr_matvecs = None


def _score_block(feats: CachedFeatures, model: StackedModel, Wd: np.ndarray, tiles, prior: np.ndarray, out: np.ndarray, i0: int, i1: int) -> None:
    d = feats.X.shape[1]
    dense = np.empty((i1 - i0, Wd.shape[0]), dtype=np.float32)
    dense[:, :d] = feats.X[i0:i1]  # float16 has no BLAS path: converted a block at a time
    if feats.X_prev is not None:
        dense[:, d:] = feats.X_prev[i0:i1]
    z = dense @ Wd  # both embedding blocks in one sgemm
    col = Wd.shape[0]
    for start, tile in tiles:
        _add_product(tile, model.W[col + start : col + start + tile.shape[1]], z)
    z += model.b
    # logit(sigmoid(z)) clipped as ml.calibration.logit clips probabilities to [1e-4, 1 - 1e-4].
    lim = np.float32(np.log((1 - 1e-4) / 1e-4))
    np.clip(z, -lim, lim, out=z)
    p = np.clip(prior[i0:i1].astype(np.float32), 1e-4, 1 - 1e-4)
    zp = np.log(p / (1 - p))
    z *= model.blend
    zp *= 1 - model.blend
    z += zp
    z *= model.platt_a
    z += model.platt_b
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)
    out[i0:i1] = np.where(model.trained, z, prior[i0:i1])


def learned_confidence(feats: CachedFeatures, model: StackedModel, prior_conf: np.ndarray, *, n_jobs: int | None = None) -> np.ndarray:
    """The learned scorer's calibrated confidences (n, k) for every segment and code at once;
    the same numbers as ``LearnedScorer.score_features`` (its per-code loop over a sparse
    matrix of all blocks), to float32 precision.

    Row blocks are scored on ``n_jobs`` threads (default: the CPU count): the BLAS and sparse
    kernels release the GIL, and BLAS is held to one thread a block so the two do not
    oversubscribe the cores."""
    n, d = feats.X.shape
    dense_rows = d if feats.X_prev is None else 2 * d
    Wd = np.array(model.W[:dense_rows], dtype=np.float32)
    if feats.X_prev is not None:
        Wd[d:] *= 0.5  # the featurizer halves the previous turn; a power of two, so exact
    out = np.empty((n, model.W.shape[1]), dtype=np.float32)
    tiles = feats.ngram_tiles() or [[] for _ in feats.row_blocks()]
    blocks = feats.row_blocks()
    jobs = max(1, min(n_jobs or available_cores(), len(blocks)))
    from threadpoolctl import threadpool_limits

    # One BLAS thread: the blocks' products are small, and OpenBLAS's own threads spin while
    # they wait (measured: a quarter more CPU time and more wall time on the loaded 2-core machine).
    with threadpool_limits(1, user_api="blas"):
        if jobs == 1:
            for (i0, i1), t in zip(blocks, tiles):
                _score_block(feats, model, Wd, t, prior_conf, out, i0, i1)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(lambda a: _score_block(feats, model, Wd, a[1], prior_conf, out, *a[0]), zip(blocks, tiles)))
    return out
