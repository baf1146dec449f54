"""Every count and agreement figure the app shows, each defined once.

The pages (sidebar, Review, Model, Template, Agreement) and the command line read their
numbers from here, so the same thing is never counted two ways. Each function's name and
docstring say exactly what it counts; :func:`label` writes the count with its noun, singular
or plural ("1 passage coded", "3 passages coded").

Terms (the decision log is append-only, see :mod:`coder_assist.store`):

* **log entry**: one row of the decision log, of any action: accept, reject, skip or undo.
* **current decision** of a coder on a (passage, code) pair: that coder's latest accept,
  reject or skip on the pair that has not been undone. The one rule is
  :meth:`Project.current_decisions`; :func:`current_decisions` is it.
* **decision in force**: a current decision that is an accept or a reject (a skip says
  nothing about the code). This is what a retrain learns from, and what "decided" means
  everywhere a number of decisions is shown. A passage confirmed in passage review is one
  decision, though it writes a row per code (accepts for the ticked codes, rejects for the
  rest): the coder made one decision, and "retrain every N decisions" means N passages there.
* **passage coded** with a code: a passage (segment) on which at least one coder's current
  decision on that code is an accept. Two coders coding the same passage is one passage.
* **suggestion decided** (Review progress): a suggestion of the active model version whose
  pair this coder has a decision in force on. A decision on a pair the model did not suggest
  ("Different code...", the Transcripts page) is in force but decides no suggestion.

Agreement figures: one Cohen's kappa (scikit-learn's ``cohen_kappa_score``, ``None`` where
it is undefined) and one percent agreement, both from :mod:`coder_assist.app.agreement`; the
model-vs-coder figure on the Model page and the Agreement page is :func:`model_agreement`.

No Streamlit here, and nothing that loads scikit-learn's models at import time: the sidebar
reads these on every click.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..ml.statistics import cohen_kappa, percent_agreement  # noqa: F401  (the one kappa and agreement, re-exported)
from ..store.project import ORIGIN_PASSAGE, Project

#: The learner trains a code's classifier only with at least this many positives and this many
#: negatives (ml.classifier.MIN_CLASS; not imported, so that reading counts never loads scikit-learn).
MIN_CLASS = 3

_IN_FORCE = ("accept", "reject")


# --------------------------------------------------------------------------- labels


def label(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with its noun: ``label(1, "passage coded", "passages coded")`` is "1 passage
    coded", ``label(3, "code")`` is "3 codes". A one-word noun gets an "s"; a longer phrase
    needs its ``plural`` spelled out (no rule guesses "decisions in force" right)."""
    n = int(n)
    if plural is None:
        if " " in singular.strip():
            raise ValueError(f"label({singular!r}) needs its plural: the phrase has more than one word")
        plural = f"{singular}s"
    return f"{n} {singular if n == 1 else plural}"


# --------------------------------------------------------------------------- the one rule


def current_decisions(project: Project, coder: str | None = None) -> pd.DataFrame:
    """Current decisions (one row per (segment, code, coder): the latest accept, reject or
    skip not undone), all coders or one. The only definition of "current" the figures use."""
    return project.current_decisions(coder)


def _in_force(project: Project, coder: str | None = None) -> pd.DataFrame:
    cur = current_decisions(project, coder)
    return cur[cur["action"].isin(_IN_FORCE)]


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Tally:
    """Current decisions by action (rows: one per passage and code). ``in_force`` = accepted +
    rejected, with the rows of each confirmed passage (``passage_rows`` of them, from
    ``passages`` confirmations) counted as one decision each."""

    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    passages: int = 0
    passage_rows: int = 0

    @property
    def in_force(self) -> int:
        return self.accepted + self.rejected - self.passage_rows + self.passages


def tally(project: Project, coder: str | None = None) -> Tally:
    """Current decisions of one coder (or all coders) counted by action: accepts, rejects and
    skips in force. Decisions on retired codes count: they are still in the log and a retrain
    still reads them."""
    return tally_of(current_decisions(project, coder))


def tally_of(cur: pd.DataFrame) -> Tally:
    """:func:`tally` of current decisions already read (:func:`current_decisions`): a retrain
    reads them once for its labels and its count (two reads of 245,000 rows took 4 s)."""
    counts = cur["action"].value_counts()
    force = cur[cur["action"].isin(_IN_FORCE)]
    of_passage = force[(force["origin"] == ORIGIN_PASSAGE) & force["unit_id"].notna()]
    return Tally(int(counts.get("accept", 0)), int(counts.get("reject", 0)), int(counts.get("skip", 0)),
                 passages=int(len(of_passage[["coder", "unit_id"]].drop_duplicates())), passage_rows=int(len(of_passage)))


def decisions_in_force(project: Project, coder: str | None = None) -> int:
    """Decisions in force: (passage, code) pairs whose current decision is an accept or a
    reject, for one coder or summed over all coders, a confirmed passage counting once.
    Undone decisions, skips and decisions replaced by a later one on the same pair do not
    count; a "Different code..." counts as two (the reject of the suggestion and the accept
    of the chosen code)."""
    return tally(project, coder).in_force


def decisions_in_force_per_code(project: Project, coder: str | None = None) -> pd.Series:
    """:func:`decisions_in_force` per code id (codes with none are left out)."""
    return _in_force(project, coder).groupby("code_id").size().astype(int)


def passages_coded(project: Project, coder: str | None = None) -> pd.Series:
    """Per code id: the number of passages coded with it, i.e. distinct passages on which a
    coder's (or this coder's) current decision on that code is an accept. Codes coded on no
    passage are left out."""
    cur = current_decisions(project, coder)
    acc = cur[cur["action"] == "accept"]
    return acc.groupby("code_id")["segment_id"].nunique().astype(int)


def log_entries(project: Project, code_id: str | None = None) -> int:
    """Rows of the decision log (accepts, rejects, skips and undos, every coder), on one code
    or on all. Only this number moves with a code in a template edit; it never goes down."""
    df = project.decisions()
    return int(len(df) if code_id is None else (df["code_id"] == code_id).sum())


# --------------------------------------------------------------------------- retraining


def trained_on(project: Project) -> int:
    """Decisions in force that the last retrain learned from: ``n_decisions`` of the newest
    retrained model version's card (0 before the first retrain). The newest, not the active
    one: after a rollback the count goes on from the last retrain."""
    cards = [card for _, kind, card in project.model_cards() if kind == "learned" and "n_decisions" in card]
    return int(cards[-1]["n_decisions"]) if cards else 0


def decisions_beyond_retrain(project: Project) -> int:
    """Decisions in force now (all coders) minus those the last retrain learned from, never
    below 0: how many more decisions a retrain now would learn from. Undoing a decision the
    model learned from lowers it."""
    return max(0, decisions_in_force(project) - trained_on(project))


@dataclass(frozen=True)
class Learnability:
    """Per active leaf code, what the learner would have now: ``positives`` and ``negatives``
    (labels: accepts; rejects and accepts of an exclusive sibling), and how many more
    ``accepts`` and ``rejects`` it needs before a retrain trains its classifier."""

    table: pd.DataFrame  # code_id, code_path, positives, negatives, accepts_needed, rejects_needed, learnable

    @property
    def n_learnable(self) -> int:
        return int(self.table["learnable"].sum())


def learnability(project: Project) -> Learnability:
    """For each active leaf code, in template order: the labels a retrain now would train on
    (the learner's own rule, :func:`coder_assist.ml.features.labels_from_decisions`, all coders) and
    how many more accepts and rejects it needs to reach :data:`MIN_CLASS` of each, the least a
    code's classifier is trained with."""
    from ..ml.features import decisions_on_segments, labels_from_decisions

    template = project.template()
    on_segments = decisions_on_segments(current_decisions(project), project.segments(), project.codings())
    labels = labels_from_decisions(on_segments, template)
    pos = labels[labels["label"] == 1].groupby("code_id").size()
    neg = labels[labels["label"] == 0].groupby("code_id").size()
    rows = []
    for c in template.leaves():
        p, n = int(pos.get(c.id, 0)), int(neg.get(c.id, 0))
        rows.append({
            "code_id": c.id, "code_path": c.path_str, "positives": p, "negatives": n,
            "accepts_needed": max(0, MIN_CLASS - p), "rejects_needed": max(0, MIN_CLASS - n),
            "learnable": p >= MIN_CLASS and n >= MIN_CLASS,
        })
    cols = ["code_id", "code_path", "positives", "negatives", "accepts_needed", "rejects_needed", "learnable"]
    return Learnability(pd.DataFrame(rows, columns=cols))


def needs_text(accepts_needed: int, rejects_needed: int) -> str:
    """"needs 2 more accepts and 1 more reject" (empty when it needs nothing)."""
    parts = []
    if accepts_needed:
        parts.append(label(accepts_needed, "more accept", "more accepts"))
    if rejects_needed:
        parts.append(label(rejects_needed, "more reject", "more rejects"))
    return ("needs " + " and ".join(parts)) if parts else ""


# --------------------------------------------------------------------------- template edits


@dataclass(frozen=True)
class MergeEffect:
    """What merging ``source`` into ``target`` does to the counts."""

    log_entries: int  # log entries on the source, all of which move to the target
    source_in_force: int  # decisions in force on the source
    target_in_force: int  # decisions in force on the target
    collapsed: int  # (passage, coder) pairs with a current decision on both codes: each becomes one
    in_force_after: int  # decisions in force on the target after the merge

    @property
    def lost(self) -> int:
        """Decisions in force the merge removes: where one coder has current decisions on both
        codes on one passage, only the later one counts afterwards (and a later skip leaves
        none in force)."""
        return self.source_in_force + self.target_in_force - self.in_force_after


def merge_effect(project: Project, source: str, target: str) -> MergeEffect:
    """The counts before and after merging ``source`` into ``target``, computed from the log
    as :func:`coder_assist.app.edit.apply_merge` will leave it: every log entry on the source is
    re-pointed to the target, so on a passage where a coder has current decisions on both
    codes, the later one (by log order) is that coder's current decision afterwards."""
    cur = current_decisions(project)
    both = cur[cur["code_id"].isin([source, target])]
    # After the merge, per (passage, coder), the latest of the two current decisions wins.
    after = both.sort_values("id").drop_duplicates(["segment_id", "coder"], keep="last")
    in_force = lambda df: int(df["action"].isin(_IN_FORCE).sum())  # noqa: E731
    src, tgt = both[both["code_id"] == source], both[both["code_id"] == target]
    keys = ["segment_id", "coder"]
    collapsed = len(src[keys].merge(tgt[keys], on=keys))
    return MergeEffect(log_entries(project, source), in_force(src), in_force(tgt), collapsed, in_force(after))


# --------------------------------------------------------------------------- the review queue


def queue_progress(project: Project, coder: str | None) -> dict:
    """Review progress of one coder on the active model's suggestions (the pool):
    ``suggestions_decided`` (suggestions with a decision in force), ``to_go`` (suggestions
    not decided: unseen and skipped), ``total``, ``accepted``, and ``accept_rate``: accepted /
    suggestions decided (``None`` before the first), the one accept rate the pages show. The
    fast path is :func:`coder_assist.app.review.progress`."""
    from .review import progress

    prog = progress(project, coder, per_code=False)
    return {"suggestions_decided": prog["decided"], "to_go": prog["queued"], "total": prog["total"],
            "skipped": prog["skipped"], "accepted": prog["accepted"], "accept_rate": prog["accept_rate"]}


# --------------------------------------------------------------------------- agreement


def model_agreement(project: Project, coder: str) -> dict:
    """Agreement between ``coder`` and the active model version, as the Agreement page shows
    it (Rater A the coder, Rater B the model, all decisions): items are, per code, the
    passages the coder accepted or rejected that code on; the model says yes where it stored
    a suggestion of the code. Returns ``items``, ``percent_agreement``, ``kappa`` (pooled over
    the items; ``None`` where undefined) and ``unit`` (the sentence describing the items)."""
    from . import agreement as ag

    rep = ag.agreement(project, coder, ag.MODEL)
    o = rep.overall
    return {"items": o["items"], "percent_agreement": o["pooled_percent_agreement"], "kappa": o["pooled_kappa"], "unit": rep.unit}


__all__ = [
    "label",
    "current_decisions",
    "Tally",
    "tally",
    "tally_of",
    "decisions_in_force",
    "decisions_in_force_per_code",
    "passages_coded",
    "log_entries",
    "trained_on",
    "decisions_beyond_retrain",
    "Learnability",
    "learnability",
    "needs_text",
    "MergeEffect",
    "merge_effect",
    "queue_progress",
    "cohen_kappa",
    "percent_agreement",
    "model_agreement",
]
