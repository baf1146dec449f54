"""Training use cases: learn from a project's decisions, rescore, check consistency, roll back
and fine-tune the encoder. The project side of :mod:`coder_assist.ml` (which holds no project):
this module reads the decisions and segments, calls the learner, and saves the model version
through :mod:`coder_assist.store.models` (the folder layout and its atomic save).
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.errors import ModelError, ProjectError
from ..core.template import Template
from ..ml.classifier import CAPPED_CV_FOLDS, MAX_ROWS, MIN_CLASS, LearnedScorer, apply_history
from ..ml.embed import Encoder
from ..ml.encoder import MINILM_MODEL, USE_MODEL, is_use_model
from ..ml.features import DEFAULT_FEATURES, FeatureSet, Featurizer, NgramCounts, decisions_on_segments, labels_from_decisions
from ..ml.finetune import MIN_DECISIONS, FinetuneConfig, FinetuneResult, contrastive_finetune, decision_labels
from ..ml.query import QUEUE_HEAD, query_order, with_probes
from ..ml.suggest import Inputs, Scores, suggest
from ..store import models, queries
from ..store.project import EPOCH_KEY, Project, now
from . import figures


def project_inputs(project: Project, encoder: Encoder, segments: pd.DataFrame | None = None) -> tuple[pd.DataFrame, Inputs]:
    """Every segment of the project with the text of the turn before its turn, embedded."""
    segs = project.segments() if segments is None else segments
    prev_texts = [""] * len(segs)
    # A transcript at a time, the turn before each segment's found by one search over its
    # sorted turns (a filter per segment took 4 s at 20,000 segments).
    for tid, rows in pd.Series(np.arange(len(segs))).groupby(segs["transcript_id"].to_numpy(), sort=False):
        text, turns = project.transcript_text(int(tid)), project.turns(int(tid))
        idx, start, end = (turns[c].to_numpy(dtype=np.int64) for c in ("idx", "start", "end"))
        before = np.searchsorted(idx, segs["turn_idx"].to_numpy(dtype=np.int64)[rows.to_numpy()], side="left") - 1
        for i, b in zip(rows.to_numpy(), before):
            if b >= 0:
                prev_texts[i] = text[start[b] : end[b]]
    texts = segs["text"].tolist()
    X = encoder.encode(texts)
    X_prev = encoder.encode(prev_texts)
    return segs, Inputs(X=X, texts=texts, X_prev=X_prev, prev_texts=prev_texts)


def model_card_text(card: dict, template: Template) -> str:
    """A readable model card a researcher can paste into a methods section."""
    # Older cards have no code_features: their codes' classifiers had every feature.
    code_features = card.get("code_features", card["features"])
    features = "segment embedding" + (", previous-turn embedding" if "prev" in code_features else "") + (
        ", TF-IDF word and character n-grams of the passage and word n-grams of the previous turn" if "ngrams" in code_features else ""
    )
    matcher = bool(card.get("matcher_codes"))
    prev = " and the previous turn's embedding times the prototype" if "prev" in card["features"] else ""
    base = ("a code matcher shared by all codes (one logistic regression over passage-code pairs, on the passage's "
            f"embedding times the code's prototype{prev}, built from its description, example excerpts and confirmed passages, "
            "trained on every decision and scored on held-out passages)") if matcher else "the template's example-similarity scorer"
    n_capped = sum(c["n_pos"] + c["n_neg"] > MAX_ROWS for c in card["codes"])
    capped = (f"A code with more than {MAX_ROWS:,} decided passages was trained on a sample of {MAX_ROWS:,} (every positive "
              f"up to half), weighted back to the full counts, and cross-validated on {CAPPED_CV_FOLDS} folds ({n_capped} "
              f"code{'s' if n_capped != 1 else ''}). ") if n_capped else ""
    prose = (
        f"Code suggestions were made with coder-assist. Passages were embedded with {card['encoder']}; features: {features}. "
        f"For each code, a logistic regression (C={card['C']}) trained on the researcher's accept/reject decisions and the "
        f"template's example excerpts was blended with {base} at a weight chosen by "
        f"{card['cv_folds']}-fold cross-validated log-loss, and calibrated (Platt) on the held-out folds. {capped}The model used "
        f"{card['n_decisions']} decisions ({card['n_labels']} labels including those implied by mutually exclusive codes). "
        f"A code counts as reliable when its held-out precision and recall are at least {card['target']}."
    )
    n_learned = sum(c.get("f1") is not None for c in card["codes"])
    if not n_learned:
        prose += (f" No code had at least {MIN_CLASS} positive and {MIN_CLASS} negative labels, so no classifier was trained: "
                  + ("every suggestion comes from the code matcher." if matcher else "every suggestion is the template's example similarity, as before the retrain."))
    elif matcher:
        prose += " Codes without a classifier of their own were served by the code matcher."
    lines = [f"coder-assist model card ({card.get('created_at', '')})", "", textwrap.fill(prose, 100), ""]
    lines.append(f"{'code':58s} {'+':>4s} {'-':>4s} {'w':>5s} {'P':>5s} {'R':>5s} {'F1':>5s}  verdict")
    fmt = lambda v: f"{v:5.2f}" if v is not None else "    -"  # noqa: E731
    for c in card["codes"]:
        code = template.codes.get(c["code_id"])
        name = f"{code.path[0]}: {code.name}" if code is not None else c["code_id"]
        name = name if len(name) <= 58 else name[:57] + "\u2026"
        short = [f"{k} more {w}{'s' if k != 1 else ''}" for k, w in ((MIN_CLASS - c["n_pos"], "accept"), (MIN_CLASS - c["n_neg"], "reject")) if k > 0]
        verdict = f"not learned yet: needs {' and '.join(short)}" if short else c["verdict"]
        lines.append(f"{name:58s} {c['n_pos']:4d} {c['n_neg']:4d} {c['weight']:5.2f} {fmt(c['precision'])} {fmt(c['recall'])} {fmt(c['f1'])}  {verdict}")
    lines += ["", f"+/-: decided positives/negatives; w: weight of the classifier in the blend (0 = {'the code matcher' if matcher else 'template similarity'} only);",
              "P/R/F1: held-out precision, recall and F1 at the code's threshold (chosen for held-out F1);",
              f"a code's classifier is trained once it has {MIN_CLASS} positives (accepts) and {MIN_CLASS} negatives (rejects)."]
    return "\n".join(lines) + "\n"


def consistency_check(project: Project, encoder: Encoder, *, z_cut: float = -2.0) -> pd.DataFrame:
    """Accepted codings that sit far from the rest of their code, or closer to another code:
    possible miscodings to look at again. Codes are represented by the mean of their accepted
    passages (leave-one-out for the passage being checked) and their template examples."""
    template = project.template()
    cur = project.current_decisions()
    acc = cur[cur["action"] == "accept"]
    if acc.empty:
        return pd.DataFrame(columns=["segment_id", "transcript", "code_id", "code_path", "coder", "text", "similarity", "nearest_other", "similarity_other", "flag"])
    segs = project.segments().set_index("id")
    acc = acc[acc["segment_id"].isin(segs.index) & acc["code_id"].isin(template.codes)].reset_index(drop=True)
    texts = segs.loc[acc["segment_id"], "text"].tolist()
    X = encoder.encode(texts)
    ex = {c.id: encoder.encode([e.text for e in c.examples]) for c in template.leaves() if c.examples}
    sums = {cid: v.sum(axis=0) for cid, v in ex.items()}
    counts = {cid: len(v) for cid, v in ex.items()}
    for i, cid in enumerate(acc["code_id"]):
        sums[cid] = sums.get(cid, 0) + X[i]
        counts[cid] = counts.get(cid, 0) + 1
    codes = sorted(sums)
    rows = []
    for i, r in acc.iterrows():
        own_n = counts[r.code_id] - 1
        own = (sums[r.code_id] - X[i]) / own_n if own_n else None
        sims = {}
        for cid in codes:
            v = own if cid == r.code_id else sums[cid] / counts[cid]
            if v is not None:
                sims[cid] = float(X[i] @ (v / (np.linalg.norm(v) or 1.0)))
        own_sim = sims.get(r.code_id, float("nan"))
        others = {k: v for k, v in sims.items() if k != r.code_id}
        best = max(others, key=others.get) if others else None
        rows.append({
            "segment_id": int(r.segment_id), "transcript": segs.loc[r.segment_id, "transcript"], "code_id": r.code_id,
            "code_path": template.codes[r.code_id].path_str, "coder": r.coder, "text": segs.loc[r.segment_id, "text"],
            "similarity": own_sim, "nearest_other": template.codes[best].path_str if best else None,
            "similarity_other": others[best] if best else float("nan"),
        })
    df = pd.DataFrame(rows)
    z = df.groupby("code_id")["similarity"].transform(lambda s: (s - s.mean()) / s.std(ddof=0) if len(s) > 2 and s.std(ddof=0) > 0 else s * 0)
    df["flag"] = np.where(df["similarity_other"] > df["similarity"], "closer to another code", np.where(z < z_cut, "far from its code", ""))
    return df[df["flag"] != ""].sort_values(["flag", "similarity"]).reset_index(drop=True)


class CurrentDecisions:
    """A project's current decisions (:meth:`Project.current_decisions`, every coder) kept
    between retrains: the log only grows, so a later read re-reads just the segments with log
    rows since the last one (a batch of reviews) instead of the whole log (1.4 s at 5,000
    confirmed passages, 245,000 rows). Read again from the start when a template edit moved
    decisions (:data:`EPOCH_KEY`) or the last row read is no longer there as it was (the
    database was replaced).

    The same rows and values as a fresh read, in id order. A nullable integer column may come
    back float64 (NaN) where a fresh read of fewer rows would give int64, or object for all-NULL:
    pandas types a read by the NULLs it happens to hold."""

    def __init__(self) -> None:
        self._frame: pd.DataFrame | None = None
        self._epoch: str | None = None
        self._last_id = 0
        self._last_key: tuple | None = None
        self._lock = threading.Lock()
        self.reread_last: int | None = None  # segments re-read by the latest call; None: the whole log

    def read(self, project: Project) -> pd.DataFrame:
        with self._lock:
            epoch = project.meta(EPOCH_KEY)
            # The log's top id first: rows committed while this reads are then read again next time.
            top = project.last_decision_id()
            fresh_start = (self._frame is None or epoch != self._epoch or top < self._last_id
                           or (self._last_key is not None and queries.decision_key(project, self._last_id) != self._last_key))
            if fresh_start:
                self._frame, self.reread_last = project.current_decisions(), None
            elif top > self._last_id:
                changed = project.segments_decided_since(self._last_id, top)
                kept = self._frame[~self._frame["segment_id"].isin(changed)]
                self._frame = _stack_as_read(kept, project.current_decisions(segment_ids=changed))
                self.reread_last = len(changed)
            else:
                self.reread_last = 0
            self._epoch, self._last_id = epoch, top
            self._last_key = queries.decision_key(project, top) if top else None
            # Shallow: a caller that adds a column does not change the kept frame.
            return self._frame.copy(deep=False)


def _stack_as_read(kept: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """``kept`` and ``fresh`` decision rows as one frame in id order. A column NULL in every
    row of one part is object there; it takes the other part's type (float64 for integers,
    which then hold NaN), as one read of both would type it."""
    if fresh.empty or kept.empty:
        out = kept if fresh.empty else fresh
    else:
        out = pd.concat([kept, fresh], ignore_index=True)
        for col in out.columns:
            a, b = kept[col], fresh[col]
            if a.dtype != b.dtype:
                full = b if a.isna().all() else a if b.isna().all() else None
                if full is not None:
                    out[col] = out[col].astype("float64" if full.dtype.kind in "iu" else full.dtype)
    return out.sort_values("id", kind="stable").reset_index(drop=True)


class _ProjectCache:
    """What a retrain keeps for the next one in this process: the n-gram counts and the
    latest feature matrix (only new passages are hashed; the same passages and vectors reuse
    the matrix) and the current decisions (only segments decided since are read)."""

    def __init__(self) -> None:
        self.ngrams = NgramCounts()
        self.decisions = CurrentDecisions()


#: The project retrained last in this process: a review server retrains one project again and
#: again. One slot, so a server that has opened many projects holds one project's.
_SLOT: tuple[str, _ProjectCache] | None = None
_SLOT_LOCK = threading.Lock()


def _project_cache(folder: str | Path) -> _ProjectCache:
    global _SLOT
    key = str(Path(folder).resolve())
    with _SLOT_LOCK:
        if _SLOT is None or _SLOT[0] != key:
            _SLOT = (key, _ProjectCache())
        return _SLOT[1]


def train_project(project: Project, encoder: Encoder, *, features: FeatureSet = DEFAULT_FEATURES, target: float = 0.7, threshold: float | None = None, top_k: int | None = 3) -> int:
    """Retrain from the project's decisions, save the model version (complete or absent), and
    store its suggestions. Returns the new model version id."""
    template = project.template()
    segs, inputs = project_inputs(project, encoder)
    # Codings are spans: each is a label for the segments it covers most of (never changed).
    cache = _project_cache(project.folder)
    current = cache.decisions.read(project)
    decisions = decisions_on_segments(current, segs, project.codings())
    labels = labels_from_decisions(decisions, template)
    row_of = {int(s): i for i, s in enumerate(segs["id"])}
    labels = labels[labels["segment_id"].isin(row_of)]
    scorer = LearnedScorer(features=features, target=target).fit(template, encoder)
    # Featurised once for training and scoring: n-gram hashing is the slow part of a retrain.
    featurizer = Featurizer(features)
    F = featurizer.fit_transform(inputs, cache=cache.ngrams)
    prior = scorer.prior.score(inputs)  # the fit's base before the matcher, and the suggestions' evidence
    scorer.fit_labels(inputs, labels, row_of=row_of, featurizer=featurizer, F=F, prior_conf=prior.confidence)
    history = [json.loads(c) for k, c in project.model_versions()[["kind", "card"]].itertuples(index=False) if k == LearnedScorer.version]
    history = [c for c in history if "rescored_from" not in c]  # a rescore is not a new point on the curve
    apply_history(scorer.reports, history, target)
    card = scorer.card() | {
        "created_at": now("seconds"),
        "encoder": encoder.model_id,
        # Counted as everywhere else (a confirmed passage is one decision), so that "decisions
        # since the last retrain" compares like with like.
        "n_decisions": figures.tally_of(current).in_force,
        "n_labels": len(labels),
        "template_sha1": hashlib.sha1(template.to_yaml().encode()).hexdigest(),
    }
    scores = scorer.score(inputs, features=F, prior=prior)
    return _save_version(project, scorer, card, scores, inputs, segs, template, threshold=threshold, top_k=top_k)


def rescore_project(project: Project, encoder: Encoder, *, threshold: float | None = None, top_k: int | None = 3) -> int:
    """Score every segment (new transcripts included) with the active learned model, without
    retraining, and store the result as a new model version that copies its weights: new
    interviews get learned suggestions, and the learning-curve history gains no fake point."""
    source = project.latest_model_version()
    kinds = dict(project.model_versions()[["id", "kind"]].itertuples(index=False))
    if source is None or kinds.get(source) != LearnedScorer.version:
        raise ProjectError(f"{project.folder}: the active model version is not a trained one; run `coder-assist train` first")
    scorer = load_model_version(project, source, encoder)
    card = json.loads(models.card_path(project, source).read_text(encoding="utf-8"))
    segs, inputs = project_inputs(project, encoder)
    scores = scorer.score(inputs)
    card = card | {"created_at": now("seconds"), "rescored_from": source, "segments": len(segs)}
    return _save_version(project, scorer, card, scores, inputs, segs, project.template(), threshold=threshold, top_k=top_k, fresh_verdicts=False)




def _save_version(
    project: Project, scorer: LearnedScorer, card: dict, scores: Scores, inputs: Inputs, segs: pd.DataFrame, template: Template,
    *, threshold: float | None, top_k: int | None, fresh_verdicts: bool = True,
) -> int:
    """Pick the suggestions and the review order from ``scores``, then write the model
    version's folder and rows: complete or absent (:func:`coder_assist.store.models.save_version`)."""
    order = query_order(scores.confidence, inputs.X)
    sugg = with_probes(suggest(scores, threshold=threshold, top_k=top_k), scores, order[:QUEUE_HEAD])
    sugg["segment_id"] = segs["id"].to_numpy()[sugg["segment"].to_numpy()]
    queue = segs["id"].to_numpy(dtype=np.int64)[order]

    def write(folder) -> None:
        scorer.save(folder)
        np.save(folder / models.QUEUE_FILE, queue, allow_pickle=False)
        (folder / models.CARD_FILE).write_text(json.dumps(card, indent=1), encoding="utf-8")
        (folder / models.CARD_TEXT_FILE).write_text(model_card_text(card, template), encoding="utf-8")

    return models.save_version(project, scorer.version, card["encoder"], card, sugg, write, fresh_verdicts=fresh_verdicts)


def load_model_version(project: Project, version: int, encoder: Encoder) -> LearnedScorer:
    folder = models.version_dir(project, version)
    if not models.has_model(project, version):
        raise ProjectError(f"{folder}: no saved model for version {version}")
    return LearnedScorer.load(folder, project.template(), encoder)


def rollback(project: Project, version: int) -> None:
    """Make an earlier model version current again: its saved suggestions feed the queue."""
    project.set_active_model_version(version)


def finetune_unavailable(project: Project) -> str | None:
    """Why the project's encoder cannot be fine-tuned (None: it can). Only sentence-transformers
    encoders can; the multilingual USE (the default) is a single int8 ONNX graph."""
    if is_use_model(project.meta("model")):
        return (f"this project's encoder is {USE_MODEL}, an ONNX model that cannot be fine-tuned; fine-tuning needs a "
                f"sentence-transformers encoder, e.g. a project made with `coder-assist init --model {MINILM_MODEL}`")
    return None


def finetune_project(project: Project, *, config: FinetuneConfig | None = None, min_decisions: int = MIN_DECISIONS, use: bool = False, progress=None) -> FinetuneResult:
    """Fine-tune the project's encoder on its decisions and the template's examples; saves it
    under ``models/encoder-<time>/``. With ``use``, the project switches to it (its meta
    ``model``): the next ``train`` re-embeds every passage with it (new cache entries).

    A project on the multilingual USE raises ModelError (:func:`finetune_unavailable`) rather
    than fine-tuning MiniLM instead: switching to it would change the project's encoder to one
    that scored lower before fine-tuning than USE does without it (docs/models.md)."""
    why = finetune_unavailable(project)
    if why is not None:
        raise ModelError(f"{project.folder}: {why}")
    template = project.template()
    segs = project.segments()
    item_of = {int(s): i for i, s in enumerate(segs["id"])}
    labels = decision_labels(decisions_on_segments(project.current_decisions(), segs, project.codings()), item_of)
    if len(labels) < min_decisions:
        raise ModelError(f"{project.folder}: {len(labels)} accept/reject decisions; fine-tuning needs at least {min_decisions}")
    texts = segs["text"].tolist()
    ex = [(c.id, e.text) for c in template.leaves() for e in c.examples]
    ex_labels = pd.DataFrame({"item": range(len(texts), len(texts) + len(ex)), "code": [c for c, _ in ex], "label": 1})
    texts += [t for _, t in ex]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    res = contrastive_finetune(
        texts, pd.concat([labels, ex_labels], ignore_index=True), models.encoder_dir(project, stamp),
        model=project.meta("model"), config=config, progress=progress,
    )
    if use:
        models.use_encoder(project, res.path)
    return res


__all__: Sequence[str] = [
    "project_inputs",
    "model_card_text",
    "consistency_check",
    "train_project",
    "rescore_project",
    "load_model_version",
    "rollback",
    "finetune_project",
    "finetune_unavailable",
    "MIN_DECISIONS",
]
