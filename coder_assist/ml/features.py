"""Features and labels for the learned scorer: a stateless featurizer over :class:`Inputs`
and the rule that turns a project's decisions into partial labels.

Labels (see :func:`labels_from_decisions`): an accept is a positive for its code; a reject is a
negative for that code only (a partial label: it says nothing about other codes); manual
codings count as accepts; the template's example excerpts are positives (added by the
classifier); under a parent marked ``exclusive`` an accept is also a negative for each sibling.

Codings are spans, segments are what the model learns on (see :func:`decisions_on_segments`):
a coding is a positive for each segment it covers at least half of (:data:`MIN_COVER`), and for
no other. A hand-coded phrase, or an imported coding on a few words of a long passage, is then
no label at all rather than a full positive for a passage it barely touches. Stored codings are
never changed: this is a view for learning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

from ..core.defaults import DEFAULT_FEATURES, FEATURE_SETS, FeatureSet
from ..core.template import Template
from .suggest import Inputs


@dataclass
class Featurizer:
    """Turns :class:`Inputs` into a sparse feature matrix.

    ``emb``: the segment embedding. ``emb+prev``: plus the previous turn's embedding (a
    "Yeah." is coded by what came before). ``emb+prev+ngrams``: plus TF-IDF-weighted hashed word
    1-2-grams and character 2-4-grams of the segment and word n-grams of the previous turn.
    ``emb+ngrams``: the same without the previous turn's embedding (its words stay).
    Hashing keeps the featurizer stateless except for the IDF weights, which are plain arrays.
    """

    features: FeatureSet = DEFAULT_FEATURES
    n_hash: int = 2**15
    idf: dict[str, np.ndarray] = field(default_factory=dict)

    def _vectorizers(self) -> dict[str, HashingVectorizer]:
        common = dict(n_features=self.n_hash, alternate_sign=False, norm=None, lowercase=True)
        return {
            "word": HashingVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b|[?!]", **common),
            "char": HashingVectorizer(analyzer="char_wb", ngram_range=(2, 4), **common),
            "prev_word": HashingVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b|[?!]", **common),
        }

    def _counts(self, inputs: Inputs) -> dict[str, sp.csr_matrix]:
        v = self._vectorizers()
        if not len(inputs.texts):
            # scikit-learn's hashing cannot transform an empty list (StopIteration): no rows,
            # every column. A template without example excerpts (any codebook from NVivo) has none.
            return {name: sp.csr_matrix((0, self.n_hash)) for name in v}
        prev = inputs.prev_texts if inputs.prev_texts is not None else [""] * len(inputs.texts)
        return {
            "word": v["word"].transform(inputs.texts),
            "char": v["char"].transform(inputs.texts),
            "prev_word": v["prev_word"].transform(prev),
        }

    def fit(self, inputs: Inputs, counts: dict[str, sp.csr_matrix] | None = None) -> "Featurizer":
        """Fit IDF weights on unlabelled text (the whole project: no labels are used)."""
        if "ngrams" in self.features:
            n = len(inputs.texts)
            for name, m in (counts or self._counts(inputs)).items():
                df = np.asarray((m > 0).sum(axis=0)).ravel()
                self.idf[name] = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        return self

    def ngrams(self, inputs: Inputs, counts: dict[str, sp.csr_matrix] | None = None) -> sp.csr_matrix:
        """The TF-IDF n-gram blocks alone (needs :meth:`fit` first)."""
        blocks = []
        for name, m in (counts or self._counts(inputs)).items():
            w = m.multiply(self.idf[name]).tocsr()
            norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
            norms[norms == 0] = 1.0
            # Each n-gram block gets unit length, weighted so no block drowns the embedding.
            blocks.append(sp.diags(0.7 / norms) @ w)
        return sp.hstack(blocks, format="csr")

    def fit_transform(self, inputs: Inputs, cache: "NgramCounts | None" = None) -> sp.csr_matrix:
        """:meth:`fit` then :meth:`transform`, hashing the n-grams once (the hashing is most of
        a retrain's featurising: pure-Python n-gram analysis in scikit-learn); with a ``cache``,
        only the passages it has not seen are hashed, and for the passages and vectors of its
        last call its matrix comes back as it was (the same object: not to be changed)."""
        counts = None
        if "ngrams" in self.features:
            counts = cache.counts(self, inputs) if cache is not None else self._counts(inputs)
        if cache is not None:
            key = cache.matrix_key(self, inputs)
            kept = cache.kept_matrix(key)
            if kept is not None:
                self.idf = dict(kept[0])
                return kept[1]
        F = self.fit(inputs, counts).transform(inputs, counts)
        if cache is not None:
            cache.keep_matrix(key, self, F)
        return F

    def without_prev_embedding(self, F: sp.csr_matrix, dim: int) -> sp.csr_matrix:
        """This featurizer's matrix ``F`` (of ``dim``-dimensional embeddings) without the stored
        values of the previous turn's embedding block: the same shape and column numbers, so
        weights fitted on it score ``F`` itself. ``F`` when the features have no such block."""
        if "prev" not in self.features:
            return F
        keep = (F.indices < dim) | (F.indices >= 2 * dim)
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        out = sp.csr_matrix((F.data[keep], F.indices[keep], kept_before[F.indptr].astype(F.indptr.dtype)), shape=F.shape)
        out.has_sorted_indices = F.has_sorted_indices  # a row's kept indices keep their order
        return out

    def transform(self, inputs: Inputs, counts: dict[str, sp.csr_matrix] | None = None) -> sp.csr_matrix:
        blocks: list[sp.spmatrix] = [dense_csr(inputs.X)]
        if "prev" in self.features:
            xp = inputs.X_prev if inputs.X_prev is not None else np.zeros_like(inputs.X)
            blocks.append(dense_csr(0.5 * xp))
        if "ngrams" in self.features:
            blocks.append(self.ngrams(inputs, counts))
        return hstack_rows(blocks)


def dense_csr(X: np.ndarray) -> sp.csr_matrix:
    """``scipy.sparse.csr_matrix(X)`` of a dense 2-d array, the same matrix (zeros left out,
    indices sorted), from one mask instead of through COO: 0.024 s against 0.074 s for 5,000
    embeddings of 512 dimensions."""
    X = np.asarray(X)
    mask = X != 0
    index_dtype = np.int32 if max(X.size, X.shape[1]) < np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(X.shape[0] + 1, dtype=index_dtype)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return sp.csr_matrix((X[mask], np.nonzero(mask)[1].astype(index_dtype), indptr), shape=X.shape)


def hstack_rows(blocks: list[sp.spmatrix]) -> sp.csr_matrix:
    """``scipy.sparse.hstack(blocks, format="csr")``, the same matrix (values, dtype, sorted
    indices), built row by row from the blocks' CSR arrays instead of through COO: 0.5 s
    against 1.2 s for 20,000 passages (28 million stored values)."""
    blocks = [sp.csr_matrix(b) for b in blocks]
    n = blocks[0].shape[0]
    dtype = np.result_type(*[b.dtype for b in blocks])
    lengths = [np.diff(b.indptr) for b in blocks]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.sum(lengths, axis=0), out=indptr[1:])
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, sum(b.shape[1] for b in blocks)) < np.iinfo(np.int32).max else np.int64
    data, indices = np.empty(nnz, dtype=dtype), np.empty(nnz, dtype=index_dtype)
    start, offset = indptr[:-1].copy(), 0
    for b, length in zip(blocks, lengths):
        # Where each stored value of this block lands: its row's next free place, in order.
        dest = np.repeat(start - b.indptr[:-1], length) + np.arange(b.nnz)
        data[dest] = b.data
        indices[dest] = b.indices + offset
        start += length
        offset += b.shape[1]
    out = sp.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(n, offset))
    if not all(b.has_sorted_indices for b in blocks):
        out.sort_indices()
    return out


class NgramCounts:
    """The hashed n-gram counts of passages kept between fits, so that a retrain hashes only
    the passages it has not seen (the hashing, pure-Python n-gram analysis in scikit-learn, was
    6 s of a retrain at 20,000 passages). A passage is known by its text and its previous turn's,
    which is all its counts depend on; one instance serves one :class:`Featurizer` width
    (``n_hash``). Only the passages of the latest call are kept, so memory follows the corpus,
    with the latest feature matrix while its passages stay the same (:attr:`MAX_KEPT_BYTES`)."""

    #: The feature matrix of the latest fit is kept too while it is at most this large: a
    #: retrain after a batch of reviews (the same passages, vectors and n-grams) then reuses it
    #: instead of joining the blocks again (3 s of a retrain at 20,000 passages, whose matrix
    #: of 28.7 million stored values is 345 MB).
    MAX_KEPT_BYTES = 512 * 2**20

    def __init__(self) -> None:
        self._index: dict[bytes, int] = {}
        self._counts: dict[str, sp.csr_matrix] = {}
        self._keys: list[bytes] = []
        self._kept: tuple[tuple, dict[str, np.ndarray], sp.csr_matrix] | None = None
        self.n_hash: int | None = None
        self.hashed_last = 0  # passages hashed by the latest call (the rest came from the cache)

    @staticmethod
    def matrix_key(featurizer: "Featurizer", inputs: Inputs) -> tuple:
        """What a feature matrix depends on besides the passages' texts (which :meth:`counts`
        compares): the featurizer and the vectors (a digest, not a copy: 80 MB at 20,000 passages)."""
        digest = hashlib.blake2b(digest_size=16)
        for X in (inputs.X, inputs.X_prev):
            if X is None:
                digest.update(b"none")
            else:
                X = np.ascontiguousarray(X)
                digest.update(f"{X.dtype.str}{X.shape}".encode())
                digest.update(memoryview(X).cast("B"))
        return featurizer.features, featurizer.n_hash, digest.digest()

    def kept_matrix(self, key: tuple) -> tuple[dict[str, np.ndarray], sp.csr_matrix] | None:
        """The IDF weights and feature matrix kept by :meth:`keep_matrix` under ``key``
        (:meth:`matrix_key`), else ``None``; :meth:`counts` drops it as soon as it sees other
        passages. Callers must not change the matrix: the next retrain gets the same object."""
        if self._kept is None or self._kept[0] != key:
            return None
        return self._kept[1], self._kept[2]

    def keep_matrix(self, key: tuple, featurizer: "Featurizer", F: sp.csr_matrix) -> None:
        size = F.data.nbytes + F.indices.nbytes + F.indptr.nbytes
        self._kept = (key, dict(featurizer.idf), F) if size <= self.MAX_KEPT_BYTES else None

    @staticmethod
    def _passage_keys(inputs: Inputs) -> list[bytes]:
        prev = inputs.prev_texts if inputs.prev_texts is not None else [""] * len(inputs.texts)
        return [hashlib.blake2b(f"{t}\x00{p}".encode("utf-8", "surrogatepass"), digest_size=16).digest() for t, p in zip(inputs.texts, prev)]

    def counts(self, featurizer: "Featurizer", inputs: Inputs) -> dict[str, sp.csr_matrix]:
        """``featurizer``'s raw counts of ``inputs``, hashing only the passages not seen before."""
        keys = self._passage_keys(inputs)
        if self.n_hash != featurizer.n_hash:
            self._index, self._counts, self._keys, self._kept, self.n_hash = {}, {}, [], None, featurizer.n_hash
        if keys != self._keys:
            self._kept = None  # its matrix is of other passages: no use, only memory
        at = np.array([self._index.get(k, -1) for k in keys], dtype=np.int64)
        miss = np.flatnonzero(at < 0)
        if len(miss):
            fresh = featurizer._counts(Inputs(X=inputs.X[miss], texts=[inputs.texts[i] for i in miss],
                                              prev_texts=None if inputs.prev_texts is None else [inputs.prev_texts[i] for i in miss]))
        out: dict[str, sp.csr_matrix] = {}
        for name in ("word", "char", "prev_word"):
            old = self._counts.get(name, sp.csr_matrix((0, featurizer.n_hash)))
            stacked = sp.vstack([old, fresh[name]], format="csr") if len(miss) else old
            # Known rows index the old block; new ones follow it, in the order they were hashed.
            where = at.copy()
            where[miss] = old.shape[0] + np.arange(len(miss))
            out[name] = stacked[where]
        self._counts, self._keys = out, keys
        self._index = {k: i for i, k in enumerate(keys)}
        self.hashed_last = len(miss)
        return out


#: Share of a segment a coding must cover to be a positive label for that segment.
MIN_COVER = 0.5


def decisions_on_segments(decisions: pd.DataFrame, segments: pd.DataFrame, codings: pd.DataFrame | None = None, *,
                          min_cover: float = MIN_COVER) -> pd.DataFrame:
    """Decisions as labels see them, segment by segment. ``decisions``: current decisions (id,
    segment_id, code_id, action, coder, and span_start/span_end where a decision has its own
    span); ``segments``: id, transcript_id, start, end; ``codings``: the codings in force
    (decision_id, transcript_id, start, end, code_id, coder), which replace the accepts of
    ``decisions`` when given (a coder can hold several spans of one code on one passage).

    Rejects and skips stay on their segment. Each accept (span) becomes one accept per segment
    of its transcript it covers at least ``min_cover`` of (overlap / segment length), keeping its
    id, so the latest decision still wins; an accept that covers less than that of every
    segment becomes none. Columns: id, segment_id, code_id, action, coder."""
    cols = ["id", "segment_id", "code_id", "action", "coder"]
    other = decisions.loc[decisions["action"] != "accept", cols]
    seg = segments[["id", "transcript_id", "start", "end"]].astype({"id": "int64", "transcript_id": "int64", "start": "int64", "end": "int64"})
    if codings is not None:
        acc = pd.DataFrame({"id": codings["decision_id"], "code_id": codings["code_id"], "coder": codings["coder"],
                            "transcript_id": codings["transcript_id"], "start": codings["start"], "end": codings["end"]})
    else:
        acc = decisions[decisions["action"] == "accept"]
        own = seg.set_index("id").reindex(acc["segment_id"].astype("int64"))
        span_s = acc["span_start"] if "span_start" in acc else pd.Series(np.nan, index=acc.index)
        span_e = acc["span_end"] if "span_end" in acc else pd.Series(np.nan, index=acc.index)
        acc = pd.DataFrame({"id": acc["id"].values, "code_id": acc["code_id"].values, "coder": acc["coder"].values,
                            "transcript_id": own["transcript_id"].values,
                            "start": np.where(span_s.isna(), own["start"].values, span_s.values),
                            "end": np.where(span_e.isna(), own["end"].values, span_e.values)})
    acc = acc.dropna(subset=["transcript_id", "start", "end"])
    parts = []
    for tid, group in acc.groupby("transcript_id", sort=False):
        s = seg[seg["transcript_id"] == int(tid)].sort_values("start")
        if s.empty:
            continue
        s_start, s_end, s_id = s["start"].to_numpy(), s["end"].to_numpy(), s["id"].to_numpy()
        length = np.maximum(s_end - s_start, 1)
        a, b = group["start"].to_numpy().astype(np.int64), group["end"].to_numpy().astype(np.int64)
        # Segments are sorted and do not overlap: the ones a span touches are a run, lo..hi-1;
        # every span's run at once, span by span in the group's order (a loop over spans took
        # 0.2 s at 5,000 confirmed passages).
        lo, hi = np.searchsorted(s_end, a, side="right"), np.searchsorted(s_start, b, side="left")
        n = np.maximum(hi - lo, 0)
        span = np.repeat(np.arange(len(group)), n)
        i = np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        cover = (np.minimum(b[span], s_end[i]) - np.maximum(a[span], s_start[i])) / length[i]
        hit = cover >= min_cover
        span, i = span[hit], i[hit]
        parts.append(pd.DataFrame({"id": group["id"].to_numpy()[span], "segment_id": s_id[i].astype(np.int64),
                                   "code_id": group["code_id"].to_numpy()[span], "action": "accept",
                                   "coder": group["coder"].to_numpy()[span]}))
    parts = [p for p in parts if len(p)]
    out = pd.concat([other, *parts], ignore_index=True) if parts else other.reset_index(drop=True)
    return out.astype({"id": "int64", "segment_id": "int64"}).sort_values("id", kind="stable").reset_index(drop=True)


def labels_from_decisions(decisions: pd.DataFrame, template: Template) -> pd.DataFrame:
    """Turn current decisions (segment_id, code_id, action) into partial labels
    (segment_id, code_id, label, source). Skips carry no label. Where coders disagree on a
    pair, the most recent decision wins."""
    cols = ["segment_id", "code_id", "label", "source", "order"]
    dec = decisions[decisions["action"].isin(["accept", "reject"])].sort_values("id")
    dec = dec[dec["code_id"].isin(list(template.codes))]
    accept = (dec["action"] == "accept").to_numpy()
    # Column-wise, not a row at a time (1.1 s at 5,000 confirmed passages, 245,000 rows): each
    # decision's own row, then after it the sibling rows an accept implies, in the order a loop
    # over the decisions would write them, so the stable sort below keeps the same winners.
    own = pd.DataFrame({"segment_id": dec["segment_id"].to_numpy(), "code_id": dec["code_id"].to_numpy(),
                        "label": accept.astype(int), "source": np.where(accept, "accept", "reject"), "order": dec["id"].to_numpy(),
                        "_at": np.arange(len(dec)), "_sub": 0})
    siblings = {c: list(template.exclusive_siblings(c)) for c in pd.unique(own.loc[accept, "code_id"])}
    sib = own[accept & own["code_id"].isin([c for c, s in siblings.items() if s]).to_numpy(dtype=bool)]
    if len(sib):
        sib = sib.assign(code_id=sib["code_id"].map(siblings)).explode("code_id")
        sib = sib.assign(label=0, source="exclusive", _sub=sib.groupby("_at").cumcount() + 1)
    out = pd.concat([own, sib], ignore_index=True).sort_values(["_at", "_sub"], kind="stable")[cols] if len(sib) else own[cols]
    out = out.reset_index(drop=True)
    # Direct decisions outrank labels implied by exclusivity; then the latest wins.
    out["direct"] = out["source"] != "exclusive"
    out = out.sort_values(["direct", "order"]).drop_duplicates(["segment_id", "code_id"], keep="last")
    return out.drop(columns=["order", "direct"]).reset_index(drop=True)


__all__ = ["FeatureSet", "FEATURE_SETS", "DEFAULT_FEATURES", "Featurizer", "NgramCounts", "MIN_COVER", "decisions_on_segments", "dense_csr", "hstack_rows",
           "labels_from_decisions"]
