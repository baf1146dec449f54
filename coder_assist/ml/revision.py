"""Revising a template after a first pass: the analysis, on frames and arrays only.

Template analysis is iterative: after applying the initial template the researcher adds codes
for what it misses, merges or sharpens codes that coders confuse, drops codes that never apply,
and checks how themes spread over the participant design. Everything here works from what a
project already holds (segments, their embeddings, suggestions, decisions, the template's
codes and example vectors), passed in as pandas frames and numpy arrays; nothing here opens a
project, runs SQL, reads files or loads a model (:mod:`coder_assist.app.revise_project` gathers the
inputs and applies edits).

The four analyses:

* :func:`find_missing`: passages no code fits (nobody accepted a code on them, and either no
  code was suggested or every suggested code was rejected), clustered on their embeddings;
  each cluster with representative quotes (nearest its centroid), distinctive words
  (class-based TF-IDF against everything else), where it comes from, and the nearest theme as
  a parent for a new code.
* :func:`find_confusions`: pairs of codes that get mixed up: on the same passage a coder
  rejected one and chose the other, or the model's top suggestion was one and the coder chose
  the other, or both were accepted; and, from the template alone, example excerpts of one code
  that sit nearer the other code's prototype than their own.
* :func:`find_unused`: codes with no accepted passage, or accepted only in one participant's
  transcripts.
* :func:`coverage_table` and :func:`find_integrative`: accepted passages per code x attribute
  cell with the gaps, and codes whose passages sit next to codes of most other themes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from .suggest import unit_rows


#: Words that say nothing about a topic in interview talk (on top of scikit-learn's English
#: stop words): fillers and the interview's own vocabulary.
_FILLERS = {
    "yeah", "yes", "okay", "ok", "um", "uh", "mm", "hmm", "like", "just", "really", "think", "know", "mean", "sort",
    "kind", "thing", "things", "lot", "bit", "got", "going", "get", "gets", "say", "said", "actually", "quite", "right",
    "well", "oh", "don", "didn", "doesn", "ve", "ll", "re", "did", "does", "yep", "gonna", "want", "way", "good",
}


# --------------------------------------------------------------------------- inputs


@dataclass
class RevisionInputs:
    """What the analyses read. Row ``i`` of ``X`` is the embedding of ``segments.iloc[i]``.

    * ``segments``: segment_id, transcript, idx (order within the transcript), text.
    * ``X``: (n, d) L2-normalised embeddings of the segments.
    * ``codes``: one row per code of the template: id, name, path, parent_id, is_leaf.
    * ``examples``: code_id, text, kind ("example", "description" or "counter_example"); ``E``
      holds their embeddings, row for row.
    * ``suggestions``: segment_id, code_id, rank, confidence (the active model version's).
    * ``decisions``: the current decisions: segment_id, code_id, action, coder, id.
    * ``attributes``: one row per transcript (index: transcript name), one column per attribute.
    """

    segments: pd.DataFrame
    X: np.ndarray
    codes: pd.DataFrame
    examples: pd.DataFrame
    E: np.ndarray
    suggestions: pd.DataFrame
    decisions: pd.DataFrame
    attributes: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        if len(self.segments) != len(self.X):
            raise ValueError(f"{len(self.segments)} segments but {len(self.X)} embeddings")
        if len(self.examples) != len(self.E):
            raise ValueError(f"{len(self.examples)} example texts but {len(self.E)} embeddings")
        self.segments = self.segments.reset_index(drop=True)
        self.examples = self.examples.reset_index(drop=True)


def _theme_of(codes: pd.DataFrame) -> dict[str, str]:
    """Code id -> id of its top-level ancestor (the theme)."""
    parent = dict(zip(codes["id"], codes["parent_id"]))
    out = {}
    for cid in codes["id"]:
        top = cid
        while isinstance(parent.get(top), str):
            top = parent[top]
        out[cid] = top
    return out


def leaf_prototypes(inputs: RevisionInputs) -> tuple[list[str], np.ndarray]:
    """Each leaf code's prototype: the unit mean of its example excerpts and description (as the
    cold-start scorer builds it). Leaves with neither are left out."""
    leaves = inputs.codes.loc[inputs.codes["is_leaf"].astype(bool), "id"].tolist()
    pos = inputs.examples["kind"].isin(["example", "description"]).to_numpy()
    ids, vecs = [], []
    for cid in leaves:
        m = pos & (inputs.examples["code_id"] == cid).to_numpy()
        if m.any():
            ids.append(cid)
            vecs.append(unit_rows(inputs.E[m].mean(axis=0)))
    d = inputs.X.shape[1] if inputs.X.ndim == 2 else 0
    return ids, np.array(vecs).reshape(len(vecs), d)


def theme_prototypes(inputs: RevisionInputs) -> tuple[list[str], np.ndarray]:
    """Every code with sub-codes (a theme or sub-theme), as the unit mean of the prototypes of
    the leaves under it: the candidates for a new code's parent."""
    ids, P = leaf_prototypes(inputs)
    row = {c: i for i, c in enumerate(ids)}
    parent = dict(zip(inputs.codes["id"], inputs.codes["parent_id"]))
    under: dict[str, list[int]] = {}
    for cid in ids:
        p = parent.get(cid)
        while isinstance(p, str):
            under.setdefault(p, []).append(row[cid])
            p = parent.get(p)
    themes = [c for c in inputs.codes["id"] if c in under]
    vecs = [unit_rows(P[under[c]].mean(axis=0)) for c in themes]
    return themes, np.array(vecs).reshape(len(vecs), P.shape[1] if P.ndim == 2 else 0)


# --------------------------------------------------------------------------- 1. what the template misses


def missed_passages(segments: pd.DataFrame, suggestions: pd.DataFrame, decisions: pd.DataFrame) -> np.ndarray:
    """Boolean mask over ``segments``: passages no code fits. Nobody accepted any code on the
    passage, and either nothing was suggested for it, or a coder rejected what was suggested
    and chose no other code (in the review queue a coder sees one suggestion at a time: one who
    rejects it and has a code that fits picks it with "Different code...", so a reject with no
    accept says that no code fits, whatever other suggestions are still pending)."""
    seg = segments["segment_id"].to_numpy()
    dec = decisions[decisions["action"].isin(["accept", "reject"])] if len(decisions) else decisions
    accepted = set(dec.loc[dec["action"] == "accept", "segment_id"].astype(int)) if len(dec) else set()
    rejected = set(dec.loc[dec["action"] == "reject", "segment_id"].astype(int)) if len(dec) else set()
    suggested = set(suggestions["segment_id"].astype(int)) if len(suggestions) else set()
    return np.array([int(s) not in accepted and (int(s) in rejected or int(s) not in suggested) for s in seg], dtype=bool)


def cluster_labels(X: np.ndarray, *, method: str = "hdbscan", min_cluster_size: int | None = None, seed: int = 0) -> np.ndarray:
    """Cluster labels for the rows of ``X`` (-1: noise). ``hdbscan`` runs scikit-learn's HDBSCAN
    on the embeddings reduced by PCA (density estimates are unreliable in 384 dimensions);
    ``agglomerative`` cuts an average-linkage tree on cosine distance and calls clusters smaller
    than ``min_cluster_size`` noise."""
    n = len(X)
    m = min_cluster_size or default_min_cluster_size(n)
    if n < max(2 * m, 4):
        return np.full(n, -1)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN
        from sklearn.decomposition import PCA

        k = int(min(20, n - 1, X.shape[1]))
        Z = unit_rows(PCA(n_components=k, random_state=seed).fit_transform(X)) if k >= 2 else X
        return HDBSCAN(min_cluster_size=m, min_samples=max(2, m // 2), cluster_selection_method="leaf", copy=True).fit_predict(Z)
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average", distance_threshold=0.55).fit_predict(X)
        sizes = np.bincount(labels)
        return np.where(sizes[labels] >= m, labels, -1)
    raise ValueError(f"unknown clustering method {method!r}; use 'hdbscan' or 'agglomerative'")


def _cluster_sample(X: np.ndarray, k: int, *, method: str, min_cluster_size: int | None, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(X), size=k, replace=False))
    m = min_cluster_size or default_min_cluster_size(k)
    lab_s = cluster_labels(X[sample], method=method, min_cluster_size=m, seed=seed)
    labels = np.full(len(X), -1)
    labels[sample] = lab_s
    found = sorted(set(lab_s) - {-1})
    if not found:
        return labels
    C = unit_rows(np.stack([X[sample[lab_s == c]].mean(axis=0) for c in found]))
    # A passage joins a cluster when it is at least as near its centroid as 90% of the members.
    floor = np.array([np.quantile(X[sample[lab_s == c]] @ C[j], 0.1) for j, c in enumerate(found)])
    rest = np.setdiff1d(np.arange(len(X)), sample)
    for i0 in range(0, len(rest), 20000):
        part = rest[i0 : i0 + 20000]
        S = X[part] @ C.T
        best = S.argmax(axis=1)
        ok = S[np.arange(len(part)), best] >= floor[best]
        labels[part[ok]] = np.asarray(found)[best[ok]]
    return labels


def default_min_cluster_size(n: int) -> int:
    """Small enough to find a topic a handful of passages raise, large enough not to list pairs."""
    return int(max(3, min(25, round(n * 0.015))))


def ctfidf_words(texts: Sequence[str], labels: Sequence, *, background: Sequence[str] = (), top_n: int = 8) -> dict:
    """Class-based TF-IDF (as BERTopic): each class's texts joined into one document, term
    frequency normalised by the class's length, weighted by log(1 + A / f_t) with A the mean
    words per class and f_t the term's count over all classes. ``background`` (e.g. the coded
    passages) is one more class, so words common everywhere do not come out as distinctive.
    Returns label -> its ``top_n`` words (single words and two-word phrases)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    labels = list(labels)
    classes = sorted({lab for lab in labels})
    n_docs = {c: labels.count(c) for c in classes}
    docs = [" ".join(t for t, lab in zip(texts, labels) if lab == c) for c in classes]
    if background:
        docs.append(" ".join(background))
    stop = sorted(ENGLISH_STOP_WORDS | _FILLERS)
    try:
        cv = CountVectorizer(stop_words=stop, ngram_range=(1, 2), token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b", min_df=1)
        C = cv.fit_transform(docs).astype(float)
    except ValueError:  # nothing but stop words
        return {c: [] for c in classes}
    vocab = np.asarray(cv.get_feature_names_out())
    tf = C.multiply(1.0 / np.maximum(np.asarray(C.sum(axis=1)), 1.0)).tocsr()
    f_t = np.asarray(C.sum(axis=0)).ravel()
    A = float(C.sum()) / C.shape[0]
    W = tf.multiply(np.log1p(A / np.maximum(f_t, 1.0))).tocsr()
    out = {}
    for i, c in enumerate(classes):
        row = W.getrow(i).toarray().ravel()
        counts = C.getrow(i).toarray().ravel()
        # A phrase said once in a larger class is one passage's wording, not the cluster's topic.
        need = 2 if n_docs[c] >= 5 else 1
        order = [j for j in np.argsort(-row, kind="stable") if counts[j] >= need and row[j] > 0]
        if not order:
            order = [j for j in np.argsort(-row, kind="stable") if counts[j] >= 1 and row[j] > 0]
        weight = {vocab[j]: row[j] for j in order[: top_n * 6]}
        words: list[str] = []
        for w in weight:
            parts = w.split()
            if len(parts) == 1:
                # A word already inside a phrase that was kept says the same thing twice.
                if not any(w in k.split() for k in words):
                    words.append(w)
            else:
                inside = [k for k in words if k in parts]
                if not inside:
                    if not any(set(parts) & set(k.split()) for k in words):
                        words.append(w)
                elif weight[w] >= 0.6 * max(weight[k] for k in inside):
                    # The phrase is nearly as distinctive as its words ("car park" for "car"):
                    # it replaces them, in the place of the first.
                    words[words.index(inside[0])] = w
                    words = [k for k in words if k not in inside[1:]]
            if len(words) >= top_n:
                break
        words = words[:top_n]
        out[c] = words
    return out


@dataclass
class Quote:
    segment_id: int
    transcript: str
    text: str
    similarity: float  # cosine to the cluster's centroid


@dataclass
class MissingCluster:
    """A group of passages no code fits."""

    rank: int
    segment_ids: list[int]
    cohesion: float  # mean cosine of the passages to their centroid
    score: float  # size x cohesion: what the ranking sorts by
    words: list[str]
    quotes: list[Quote]
    transcripts: dict[str, int]
    attributes: dict[str, dict[str, int]]
    suggested_name: str
    parent_id: str | None  # nearest theme by embedding
    parent_similarity: float | None
    nearest_code: str | None  # nearest existing leaf code: "maybe it belongs there after all"
    nearest_code_similarity: float | None
    centroid: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    @property
    def size(self) -> int:
        return len(self.segment_ids)


def suggested_name(words: Sequence[str], n: int = 3) -> str:
    """A code name from distinctive words: the first few, capitalised, comma-separated."""
    picked = [w for w in words if w][:n]
    if not picked:
        return "New code"
    name = ", ".join(picked)
    return name[:1].upper() + name[1:]


def find_missing(
    inputs: RevisionInputs,
    *,
    mask: np.ndarray | None = None,
    method: str = "hdbscan",
    min_cluster_size: int | None = None,
    n_quotes: int = 5,
    max_clusters: int = 20,
    max_passages: int = 5000,
    seed: int = 0,
) -> tuple[list[MissingCluster], int]:
    """Cluster the passages no code fits (``mask``, default :func:`missed_passages`). Returns
    the clusters ranked by size x cohesion, and how many passages were clustered. More than
    ``max_passages`` of them: a seeded sample is clustered and the rest join the cluster whose
    centroid is nearest, if they are as near it as most of its members."""
    if mask is None:
        mask = missed_passages(inputs.segments, inputs.suggestions, inputs.decisions)
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return [], 0
    if len(idx) > max_passages:
        labels = _cluster_sample(inputs.X[idx], max_passages, method=method, min_cluster_size=min_cluster_size, seed=seed)
    else:
        labels = cluster_labels(inputs.X[idx], method=method, min_cluster_size=min_cluster_size, seed=seed)
    segs = inputs.segments
    texts = segs["text"].tolist()
    background = [texts[i] for i in np.flatnonzero(~mask)]
    words_of = ctfidf_words([texts[i] for i in idx], labels, background=background + [texts[i] for i, lab in zip(idx, labels) if lab < 0])
    themes, T = theme_prototypes(inputs)
    leaves, P = leaf_prototypes(inputs)
    attrs = inputs.attributes
    clusters: list[MissingCluster] = []
    for lab in sorted(set(labels) - {-1}):
        rows = idx[labels == lab]
        centroid = unit_rows(inputs.X[rows].mean(axis=0))
        sims = inputs.X[rows] @ centroid
        order = np.argsort(-sims, kind="stable")
        quotes = [Quote(int(segs.iloc[rows[j]]["segment_id"]), str(segs.iloc[rows[j]]["transcript"]), texts[rows[j]], round(float(sims[j]), 4)) for j in order[:n_quotes]]
        tr = segs.iloc[rows]["transcript"].value_counts()
        by_attr: dict[str, dict[str, int]] = {}
        if len(attrs):
            vals = attrs.reindex(tr.index)
            for col in attrs.columns:
                if len(attrs) > 2 and attrs[col].nunique() == len(attrs):
                    continue  # one value per transcript (a participant id): the transcripts say it already
                counts: dict[str, int] = {}
                for t, n in tr.items():
                    v = vals.at[t, col] if t in vals.index else None
                    if isinstance(v, str) and v:
                        counts[v] = counts.get(v, 0) + int(n)
                by_attr[str(col)] = dict(sorted(counts.items(), key=lambda kv: -kv[1]))
        parent = nearest = None
        psim = nsim = None
        if len(themes):
            s = T @ centroid
            parent, psim = themes[int(s.argmax())], round(float(s.max()), 4)
        if len(leaves):
            s = P @ centroid
            nearest, nsim = leaves[int(s.argmax())], round(float(s.max()), 4)
        cohesion = float(sims.mean())
        words = words_of.get(lab, [])
        clusters.append(MissingCluster(
            rank=0, segment_ids=[int(s) for s in segs.iloc[rows]["segment_id"]], cohesion=round(cohesion, 4),
            score=round(len(rows) * cohesion, 4), words=words, quotes=quotes, transcripts={str(k): int(v) for k, v in tr.items()},
            attributes=by_attr, suggested_name=suggested_name(words), parent_id=parent, parent_similarity=psim,
            nearest_code=nearest, nearest_code_similarity=nsim, centroid=centroid,
        ))
    clusters.sort(key=lambda c: (-c.score, c.segment_ids[0]))
    clusters = clusters[:max_clusters]
    for r, c in enumerate(clusters, 1):
        c.rank = r
    return clusters, int(len(idx))


# --------------------------------------------------------------------------- 2. codes that coders confuse


@dataclass
class PairExample:
    segment_id: int | None  # None for a template example excerpt
    text: str
    kind: str  # "rejected then chose", "model suggested", "coded with both", "template example"
    detail: str  # e.g. "rejected A, chose B (Alex)"


@dataclass
class ConfusionPair:
    """Two codes that get mixed up, with the evidence from each source."""

    rank: int
    code_a: str
    code_b: str
    rejected_a_chose_b: int
    rejected_b_chose_a: int
    model_a_coder_b: int  # the model's top suggestion was a, the coder chose b (and not a)
    model_b_coder_a: int
    coded_both: int
    template_a_nearer_b: int  # example excerpts of a nearer b's prototype than a's own
    template_b_nearer_a: int
    passages: int  # distinct passages behind the decision and model counts
    score: float
    examples: list[PairExample] = field(default_factory=list)

    @property
    def decisions(self) -> int:
        return self.rejected_a_chose_b + self.rejected_b_chose_a

    @property
    def template(self) -> int:
        return self.template_a_nearer_b + self.template_b_nearer_a


#: Weight of one passage accepted with both codes against one passage where one was taken for
#: the other: in a multi-label scheme double coding is often right, so it counts for less.
CODED_BOTH_WEIGHT = 0.25


_KIND = {"rejected": "rejected then chose", "model": "model suggested", "both": "coded with both", "template": "template example"}
_KIND_ORDER = {"rejected then chose": 0, "model suggested": 1, "template example": 2, "coded with both": 3}


class _PairTally:
    """What each unordered pair of codes has against it so far: counts by kind and direction,
    the passages behind the decision and model counts, and example passages in the order met."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], dict[str, int]] = {}
        self.passages: dict[tuple[str, str], set[int]] = {}
        self.examples: dict[tuple[str, str], list[PairExample]] = {}

    def add(self, a: str, b: str, what: str, seg: int | None, text: str, detail: str) -> None:
        k = (a, b) if a < b else (b, a)
        c = self.counts.setdefault(k, {})
        direction = "ab" if (a, b) == k else "ba"
        name = {"rejected": f"rej_{direction}", "model": f"mod_{direction}", "both": "both", "template": f"tpl_{direction}"}[what]
        c[name] = c.get(name, 0) + 1
        if seg is not None and what in ("rejected", "model"):
            self.passages.setdefault(k, set()).add(seg)
        ex = self.examples.setdefault(k, [])
        if not any(e.segment_id == seg and e.text == text for e in ex if seg is not None) or seg is None:
            ex.append(PairExample(seg, text, _KIND[what], detail))


def _tally_decisions(tally: _PairTally, dec: pd.DataFrame, text_of: dict[int, str], nm) -> dict[int, set[str]]:
    """Rejected-then-chose and coded-with-both pairs; returns the codes accepted per passage."""
    accepted_by_seg: dict[int, set[str]] = {}
    if not len(dec):
        return accepted_by_seg
    for (seg, coder), g in dec.groupby(["segment_id", "coder"], sort=True):
        acc = sorted(set(g.loc[g["action"] == "accept", "code_id"]))
        rej = sorted(set(g.loc[g["action"] == "reject", "code_id"]) - set(acc))
        accepted_by_seg.setdefault(int(seg), set()).update(acc)
        for x in rej:
            for y in acc:
                tally.add(x, y, "rejected", int(seg), text_of.get(int(seg), ""), f"rejected {nm(x, x)}, chose {nm(y, y)} ({coder})")
    for seg, acc in sorted(accepted_by_seg.items()):
        acc = sorted(acc)
        for i, x in enumerate(acc):
            for y in acc[i + 1 :]:
                tally.add(x, y, "both", seg, text_of.get(seg, ""), f"accepted {nm(x, x)} and {nm(y, y)}")
    return accepted_by_seg


def _tally_model(tally: _PairTally, sugg: pd.DataFrame, leaves: set[str], accepted_by_seg: dict[int, set[str]],
                 text_of: dict[int, str], nm) -> None:
    """Passages whose top suggestion was one code while the coder chose another."""
    if not (len(sugg) and accepted_by_seg):
        return
    top = sugg[sugg["code_id"].isin(leaves)].sort_values(["segment_id", "rank"]).drop_duplicates("segment_id")
    for seg, x in zip(top["segment_id"].astype(int), top["code_id"]):
        acc = accepted_by_seg.get(seg)
        if not acc or x in acc:
            continue
        for y in sorted(acc):
            tally.add(x, y, "model", seg, text_of.get(seg, ""), f"model's top suggestion {nm(x, x)}, coder chose {nm(y, y)}")


def _tally_template(tally: _PairTally, inputs: RevisionInputs, nm) -> None:
    """The template itself: an example excerpt nearer another code's prototype than its own
    (its own prototype without it, leave-one-out)."""
    ids, P = leaf_prototypes(inputs)
    if len(ids) < 2:
        return
    row = {c: i for i, c in enumerate(ids)}
    pos = inputs.examples["kind"].isin(["example", "description"]).to_numpy()
    n_pos = inputs.examples[pos].groupby("code_id").size().to_dict()
    sums = {c: inputs.E[pos & (inputs.examples["code_id"] == c).to_numpy()].sum(axis=0) for c in ids}
    for j in np.flatnonzero(pos & (inputs.examples["kind"] == "example").to_numpy()):
        a = inputs.examples.at[j, "code_id"]
        if a not in row or n_pos.get(a, 0) < 2:
            continue
        v = inputs.E[j]
        own = float(v @ unit_rows(sums[a] - v))
        s = P @ v
        s[row[a]] = -np.inf
        b = ids[int(s.argmax())]
        if s.max() > own:
            tally.add(a, b, "template", None, inputs.examples.at[j, "text"], f"example of {nm(a, a)} is nearer {nm(b, b)} ({s.max():.2f} vs {own:.2f})")


def _pick_examples(examples: list[PairExample], n_examples: int) -> list[PairExample]:
    """Up to ``n_examples`` distinct passages, the strongest kind of evidence first."""
    seen: set = set()
    picked = []
    for e in sorted(examples, key=lambda e: _KIND_ORDER[e.kind]):
        k = (e.segment_id, e.text)
        if k in seen:
            continue
        seen.add(k)
        picked.append(e)
        if len(picked) == n_examples:
            break
    return picked


def find_confusions(inputs: RevisionInputs, *, n_examples: int = 4, max_pairs: int = 20, min_score: float = 1.0) -> list[ConfusionPair]:
    """Pairs of leaf codes that get confused, ranked by ``passages`` (passages where one code
    was rejected for the other by a coder, or the model's top suggestion was one and the coder
    chose the other) + examples of one nearer the other in the template +
    ``CODED_BOTH_WEIGHT`` x passages accepted with both."""
    leaves = set(inputs.codes.loc[inputs.codes["is_leaf"].astype(bool), "id"])
    dec = inputs.decisions
    dec = dec[dec["action"].isin(["accept", "reject"]) & dec["code_id"].isin(leaves)] if len(dec) else dec
    text_of = dict(zip(inputs.segments["segment_id"].astype(int), inputs.segments["text"]))
    nm = dict(zip(inputs.codes["id"], inputs.codes["name"])).get
    tally = _PairTally()
    accepted_by_seg = _tally_decisions(tally, dec, text_of, nm)
    _tally_model(tally, inputs.suggestions, leaves, accepted_by_seg, text_of, nm)
    _tally_template(tally, inputs, nm)
    pairs = []
    for (a, b), c in tally.counts.items():
        n_pass = len(tally.passages.get((a, b), ()))
        score = n_pass + c.get("tpl_ab", 0) + c.get("tpl_ba", 0) + CODED_BOTH_WEIGHT * c.get("both", 0)
        if score < min_score:
            continue
        pairs.append(ConfusionPair(
            0, a, b, c.get("rej_ab", 0), c.get("rej_ba", 0), c.get("mod_ab", 0), c.get("mod_ba", 0), c.get("both", 0),
            c.get("tpl_ab", 0), c.get("tpl_ba", 0), n_pass, round(score, 4), _pick_examples(tally.examples.get((a, b), []), n_examples),
        ))
    pairs.sort(key=lambda p: (-p.score, p.code_a, p.code_b))
    pairs = pairs[:max_pairs]
    for r, p in enumerate(pairs, 1):
        p.rank = r
    return pairs


# --------------------------------------------------------------------------- 3. codes that do not apply


@dataclass
class UnusedCode:
    code_id: str
    reason: str  # "no accepted coding" or "only in one participant's transcripts"
    accepted: int  # passages accepted with it
    suggested: int  # passages it was suggested for
    rejected: int  # passages where it was rejected
    participants: list[str]


def participant_of(inputs: RevisionInputs) -> dict[str, str]:
    """Transcript -> participant: the ``participant`` attribute where there is one (one person
    may have several transcripts), else the transcript itself."""
    out = {str(t): str(t) for t in inputs.segments["transcript"].unique()}
    attrs = inputs.attributes
    col = next((c for c in attrs.columns if str(c).casefold() in ("participant", "participant_id", "respondent")), None) if len(attrs) else None
    if col is not None:
        for t, v in attrs[col].items():
            if isinstance(v, str) and v.strip() and str(t) in out:
                out[str(t)] = v.strip()
    return out


def find_unused(inputs: RevisionInputs) -> list[UnusedCode]:
    """Leaf codes nobody accepted anywhere, then codes accepted only in one participant's
    transcripts (when the project has more than one participant)."""
    leaves = inputs.codes.loc[inputs.codes["is_leaf"].astype(bool), "id"].tolist()
    dec = inputs.decisions
    acc = dec[dec["action"] == "accept"] if len(dec) else pd.DataFrame(columns=["segment_id", "code_id"])
    rej = dec[dec["action"] == "reject"] if len(dec) else pd.DataFrame(columns=["segment_id", "code_id"])
    tr_of = dict(zip(inputs.segments["segment_id"].astype(int), inputs.segments["transcript"].astype(str)))
    person = participant_of(inputs)
    n_people = len(set(person.values()))
    sugg = inputs.suggestions
    n_sugg = sugg.groupby("code_id")["segment_id"].nunique().to_dict() if len(sugg) else {}
    n_acc = acc.groupby("code_id")["segment_id"].nunique().to_dict() if len(acc) else {}
    n_rej = rej.groupby("code_id")["segment_id"].nunique().to_dict() if len(rej) else {}
    who: dict[str, set[str]] = {}
    for s, c in zip(acc["segment_id"].astype(int), acc["code_id"]):
        if s in tr_of:
            who.setdefault(c, set()).add(person.get(tr_of[s], tr_of[s]))
    none, one = [], []
    for cid in leaves:
        people = sorted(who.get(cid, ()))
        row = UnusedCode(cid, "", int(n_acc.get(cid, 0)), int(n_sugg.get(cid, 0)), int(n_rej.get(cid, 0)), people)
        if not row.accepted:
            row.reason = "no accepted coding"
            none.append(row)
        elif len(people) == 1 and n_people > 1:
            row.reason = "only in one participant's transcripts"
            one.append(row)
    none.sort(key=lambda u: (-u.rejected, -u.suggested, u.code_id))
    one.sort(key=lambda u: (-u.accepted, u.code_id))
    return none + one


# --------------------------------------------------------------------------- 4. coverage and integrative codes


def design_attributes(attributes: pd.DataFrame, *, max_levels: int = 8, max_columns: int = 2) -> list[str]:
    """The attributes that describe the participant design (e.g. sector and level): the ones
    that group transcripts (2..``max_levels`` values, not one value per transcript)."""
    if attributes is None or attributes.empty:
        return []
    out = []
    n = len(attributes)
    for col in attributes.columns:
        vals = attributes[col].dropna().astype(str)
        vals = vals[vals.str.strip() != ""]
        k = vals.nunique()
        if 2 <= k <= max_levels and (k < n or n <= 2):
            out.append(str(col))
    return out[:max_columns]


@dataclass
class Coverage:
    """Accepted passages per leaf code (rows, template order) x design cell (columns: the
    attribute values joined by " / "). ``transcripts``: transcripts per cell. ``gaps``: (code,
    cell) pairs with no accepted passage in a cell that has transcripts, for codes found in at least
    half of those cells."""

    by: list[str]
    table: pd.DataFrame
    transcripts: pd.Series
    gaps: list[tuple[str, str]]


def coverage_table(inputs: RevisionInputs, by: Sequence[str] | None = None) -> Coverage:
    by = list(design_attributes(inputs.attributes) if by is None else by)
    leaves = inputs.codes.loc[inputs.codes["is_leaf"].astype(bool), "id"].tolist()
    tr = inputs.segments[["segment_id", "transcript"]].astype({"segment_id": int, "transcript": str})
    attrs = inputs.attributes
    missing = [b for b in by if b not in attrs.columns]
    if missing:
        raise ValueError(f"no attribute {missing[0]!r}; the project has: {', '.join(map(str, attrs.columns)) or 'none'}")
    names = sorted(tr["transcript"].unique())
    if by:
        a = attrs.reindex(names)[by].fillna("(none)").astype(str)
        cell_of = a.apply(lambda r: " / ".join(r.tolist()), axis=1)
        # Columns in the order of each attribute's values, so a 3x3 design reads as one.
        levels = [sorted(a[b].unique()) for b in by]
        grid = [" / ".join(p) for p in pd.MultiIndex.from_product(levels).to_flat_index()] if len(by) > 1 else levels[0]
        cells = [g for g in grid if g in set(cell_of)]
    else:
        cell_of = pd.Series("all", index=names)
        cells = ["all"]
    dec = inputs.decisions
    acc = dec[(dec["action"] == "accept") & dec["code_id"].isin(leaves)] if len(dec) else pd.DataFrame(columns=["segment_id", "code_id"])
    acc = acc[["segment_id", "code_id"]].astype({"segment_id": int}).drop_duplicates()
    acc = acc.merge(tr, on="segment_id")
    acc["cell"] = acc["transcript"].map(cell_of)
    table = pd.crosstab(acc["code_id"], acc["cell"]) if len(acc) else pd.DataFrame()
    table = table.reindex(index=leaves, columns=cells, fill_value=0).fillna(0).astype(int)
    table.index.name, table.columns.name = "code_id", " / ".join(by) or None
    n_tr = cell_of.value_counts().reindex(cells, fill_value=0).astype(int)
    # A gap is a missing cell of a code that is otherwise spread over the design (found in at
    # least half of the cells with transcripts): with few codings every code misses most cells,
    # and listing those says nothing.
    live = [cell for cell in cells if n_tr[cell] > 0]
    spread = [cid for cid in leaves if (table.loc[cid, live] > 0).sum() * 2 >= len(live) and table.loc[cid].sum() > 0]
    gaps = [(cid, cell) for cid in spread for cell in live if table.at[cid, cell] == 0]
    return Coverage(by, table, n_tr, gaps)


@dataclass
class IntegrativeCandidate:
    code_id: str
    theme: str
    themes_reached: list[str]  # other themes whose codes sit on or next to its passages
    share: float  # of the other themes in use
    passages: int
    co_occurrences: int


def find_integrative(inputs: RevisionInputs, *, window: int = 1, min_share: float = 0.5) -> list[IntegrativeCandidate]:
    """Codes whose accepted passages co-occur (same passage, or within ``window`` segments in the
    same transcript) with codes of more than ``min_share`` of the other themes in use: candidates
    for an integrative theme that runs through the others (the seed study's Diversity)."""
    theme = _theme_of(inputs.codes)
    leaves = set(inputs.codes.loc[inputs.codes["is_leaf"].astype(bool), "id"])
    dec = inputs.decisions
    if not len(dec):
        return []
    acc = dec[(dec["action"] == "accept") & dec["code_id"].isin(leaves)][["segment_id", "code_id"]].astype({"segment_id": int}).drop_duplicates()
    pos = inputs.segments[["segment_id", "transcript", "idx"]].astype({"segment_id": int, "idx": int})
    acc = acc.merge(pos, on="segment_id")
    if acc.empty:
        return []
    used_themes = {theme[c] for c in acc["code_id"]}
    if len(used_themes) < 3:
        return []
    at: dict[tuple[str, int], set[str]] = {}
    for t, i, c in zip(acc["transcript"], acc["idx"], acc["code_id"]):
        at.setdefault((t, int(i)), set()).add(c)
    out = []
    for cid, g in acc.groupby("code_id"):
        mine = theme[cid]
        reached: dict[str, int] = {}
        for t, i in zip(g["transcript"], g["idx"]):
            for d in range(-window, window + 1):
                for other in at.get((t, int(i) + d), ()):
                    if other != cid and theme[other] != mine:
                        reached[theme[other]] = reached.get(theme[other], 0) + 1
        share = len(reached) / (len(used_themes) - (1 if mine in used_themes else 0))
        if share > min_share:
            out.append(IntegrativeCandidate(cid, mine, sorted(reached), round(share, 4), int(g["segment_id"].nunique()), int(sum(reached.values()))))
    out.sort(key=lambda c: (-c.share, -c.co_occurrences, c.code_id))
    return out


# --------------------------------------------------------------------------- all four


@dataclass
class Revision:
    """Everything :func:`revise` found."""

    missing: list[MissingCluster]
    n_missed: int  # passages no code fits (the ones clustered)
    n_segments: int
    confusions: list[ConfusionPair]
    unused: list[UnusedCode]
    coverage: Coverage
    integrative: list[IntegrativeCandidate]


def revise(
    inputs: RevisionInputs,
    *,
    by: Sequence[str] | None = None,
    method: str = "hdbscan",
    min_cluster_size: int | None = None,
    window: int = 1,
    seed: int = 0,
) -> Revision:
    clusters, n_missed = find_missing(inputs, method=method, min_cluster_size=min_cluster_size, seed=seed)
    return Revision(
        missing=clusters,
        n_missed=n_missed,
        n_segments=len(inputs.segments),
        confusions=find_confusions(inputs),
        unused=find_unused(inputs),
        coverage=coverage_table(inputs, by),
        integrative=find_integrative(inputs, window=window),
    )
