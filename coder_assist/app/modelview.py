"""What the app's Model page shows, as plain functions over a :class:`Project` (no Streamlit):
the model versions, the active model's per-code figures, agreement between the model and a
coder, the project's learning curve, and when an automatic retrain is due.

Model cards are the JSON stored with each model version (``model_versions.card``); a learned
version's card (kind ``learned``, see :func:`coder_assist.app.training.train_project`) has
``n_decisions`` and per-code ``codes`` rows (n_pos, n_neg, weight, precision, recall, f1,
verdict). The template-only similarity model has neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures as figures_
from ..ml.calibration import reliability
from ..store.models import card_path
from ..store.project import Project

LEARNED = "learned"  # LearnedScorer.version (not imported: keeps this module free of sklearn models)
AUTO_RETRAIN_KEY = "auto_retrain_every"
#: The model "says yes" to a pair when its calibrated confidence is at least this.
YES_AT = 0.5
#: ml.query.QUEUE_HEAD (not imported: see LEARNED).
QUEUE_HEAD = 200

VERSION_COLUMNS = ["id", "created", "kind", "kind_label", "encoder", "decisions", "codes_learned", "reliable", "codes_scored", "active"]
CODE_COLUMNS = ["code_id", "code_path", "n_pos", "n_neg", "weight", "precision", "recall", "f1", "verdict", "accepts_needed", "rejects_needed", "needs"]
CURVE_COLUMNS = ["version", "decisions", "macro_f1", "codes_with_f1", "reliable"]


# --------------------------------------------------------------------------- cards


def _card(raw: str | None) -> dict:
    try:
        card = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {}
    return card if isinstance(card, dict) else {}


def model_cards(project: Project) -> list[tuple[int, str, dict]]:
    """(id, kind, card) of every model version, oldest first."""
    return project.model_cards()


def active_card(project: Project) -> dict:
    """The active model version's card (``{}`` when there is no model version)."""
    active = project.latest_model_version()
    return next((card for mid, _, card in model_cards(project) if mid == active), {})


def is_retrained(kind: str, card: dict) -> bool:
    """A version made by a retrain (kind ``learned`` with the decisions it read), whether or
    not it could learn anything."""
    return kind == LEARNED and "n_decisions" in card


def codes_learned(card: dict) -> int:
    """Codes that got a classifier in this version: the ones with held-out figures (a code's
    F1 is estimated exactly when it had enough positives and negatives to be trained)."""
    return sum(isinstance(c, dict) and c.get("f1") is not None for c in card.get("codes", []))


def is_learned(kind: str, card: dict) -> bool:
    """The rule for presenting a version as "learned": a retrain in which at least one code got
    a classifier. A retrain in which none did scores every passage as the template does; the
    page calls it "template only (not enough decisions yet)"."""
    return is_retrained(kind, card) and codes_learned(card) > 0


#: How the page names a retrain that learned no code.
NOT_ENOUGH = "template only (not enough decisions yet)"


def kind_label(kind: str, card: dict) -> str:
    """What a version is, in words: "learned", "template only (not enough decisions yet)", or
    the template scorer's name with "(template only)"."""
    if is_learned(kind, card):
        return LEARNED
    if is_retrained(kind, card):
        return NOT_ENOUGH
    return f"{kind} (template only)"


def model_versions_table(project: Project) -> pd.DataFrame:
    """One row per model version: id, created, kind (as stored), kind_label (:func:`kind_label`:
    a retrain that learned no code is not called "learned"), encoder, decisions (decisions in
    force the retrain read; None for the template-only model), codes_learned (codes that got a
    classifier), reliable (codes with a "reliable" verdict; None unless learned), codes_scored
    (codes with held-out figures; None unless learned), active."""
    active = project.latest_model_version()
    versions = project.model_versions()
    rows = []
    for r in versions.itertuples(index=False):
        card = _card(r.card)
        learned = is_learned(str(r.kind), card)
        retrained = is_retrained(str(r.kind), card)
        codes = card.get("codes", []) if learned else []
        rows.append({
            "id": int(r.id),
            "created": str(r.created_at),
            "kind": str(r.kind),
            "kind_label": kind_label(str(r.kind), card),
            "encoder": str(r.encoder),
            "decisions": int(card["n_decisions"]) if retrained else None,
            "codes_learned": codes_learned(card) if retrained else None,
            "reliable": sum(c.get("verdict") == "reliable" for c in codes) if learned else None,
            "codes_scored": sum(c.get("f1") is not None for c in codes) if learned else None,
            "active": int(r.id) == active,
        })
    df = pd.DataFrame(rows, columns=VERSION_COLUMNS)
    for col in ("decisions", "codes_learned", "reliable", "codes_scored"):
        df[col] = df[col].astype("Int64")
    return df


def code_report(project: Project) -> pd.DataFrame:
    """Per active leaf code, in template order: the active model card's figures (None where the
    code has none), the verdict from :meth:`Project.verdicts` (which says "stale" after a
    template edit and "cold start" for a model that learned nothing), and what a retrain now
    would still lack for the code (:func:`coder_assist.app.figures.learnability`, over the current
    decisions): ``accepts_needed``, ``rejects_needed`` and ``needs`` in words ("needs 2 more
    accepts and 1 more reject"; empty once a retrain can learn it)."""
    codes = pd.DataFrame(list(project.code_paths(active=True, leaves=True).items()), columns=["code_id", "code_path"])
    card = active_card(project)
    on_card = {c["code_id"]: c for c in card.get("codes", []) if isinstance(c, dict) and "code_id" in c}
    verdicts = project.verdicts()
    needs = figures_.learnability(project).table.set_index("code_id")
    rows = []
    for r in codes.itertuples(index=False):
        c = on_card.get(r.code_id, {})
        a_need = int(needs["accepts_needed"].get(r.code_id, figures_.MIN_CLASS))
        r_need = int(needs["rejects_needed"].get(r.code_id, figures_.MIN_CLASS))
        rows.append({
            "code_id": r.code_id,
            "code_path": r.code_path,
            "n_pos": c.get("n_pos"),
            "n_neg": c.get("n_neg"),
            "weight": c.get("weight"),
            "precision": c.get("precision"),
            "recall": c.get("recall"),
            "f1": c.get("f1"),
            "verdict": verdicts.get(r.code_id, "cold start"),
            "accepts_needed": a_need,
            "rejects_needed": r_need,
            "needs": figures_.needs_text(a_need, r_need),
        })
    df = pd.DataFrame(rows, columns=CODE_COLUMNS)
    for col in ("n_pos", "n_neg", "accepts_needed", "rejects_needed"):
        df[col] = df[col].astype("Int64")
    for col in ("weight", "precision", "recall", "f1"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def verdict_counts(report: pd.DataFrame) -> dict[str, int]:
    """How many codes have each verdict, most common first."""
    return {str(k): int(v) for k, v in report["verdict"].value_counts().items()}


def card_text_path(project: Project, version: int | None = None) -> Path:
    version = project.latest_model_version() if version is None else version
    return card_path(project, version, text=True)


def card_text(project: Project, version: int | None = None) -> str | None:
    """The readable model card (``models/v{id}/card.txt``) of a version (the active one by
    default), or None: the template-only model and versions without a saved folder have none."""
    if version is None and project.latest_model_version() is None:
        return None
    path = card_text_path(project, version)
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None


# --------------------------------------------------------------------------- agreement


def decided_suggestions(project: Project, coder: str | None) -> pd.DataFrame:
    """This coder's (None: every coder's) current accept/reject decisions that were made on a suggestion, with the
    confidence the suggestion had when it was shown and the model version that made it.
    Columns: decision_id, segment_id, code_id, accepted (bool), confidence, model_version_id."""
    cur = project.current_decisions(coder)
    cur = cur[cur["action"].isin(["accept", "reject"]) & cur["suggestion_id"].notna()]
    cols = ["decision_id", "segment_id", "code_id", "accepted", "confidence", "model_version_id"]
    if cur.empty:
        return pd.DataFrame(columns=cols)
    ids = sorted({int(s) for s in cur["suggestion_id"]})
    sugg = project.suggestion_confidences(ids).rename(columns={"model_version_id": "mv"})
    df = cur.assign(suggestion_id=cur["suggestion_id"].astype(int)).merge(sugg, on="suggestion_id", how="inner")
    return pd.DataFrame({
        "decision_id": df["id"].astype(int),
        "segment_id": df["segment_id"].astype(int),
        "code_id": df["code_id"],
        "accepted": df["action"].eq("accept"),
        "confidence": df["confidence"].astype(float),
        "model_version_id": df["mv"].astype(int),
    }, columns=cols).reset_index(drop=True)


def _agreement(df: pd.DataFrame) -> dict:
    n = len(df)
    coder = df["accepted"].to_numpy(dtype=bool)
    model = (df["confidence"].to_numpy(dtype=float) >= YES_AT) if n else np.zeros(0, dtype=bool)
    return {
        "n": n,
        "accepted": int(coder.sum()),
        "rejected": int(n - coder.sum()),
        "accept_rate": float(coder.mean()) if n else None,
        "model_yes_rate": float(model.mean()) if n else None,
        "observed_agreement": float((coder == model).mean()) if n else None,
        "kappa": figures_.cohen_kappa(coder.astype(int), model.astype(int)),
    }


def coder_model_agreement(project: Project, coder: str) -> dict:
    """Agreement between ``coder`` and the model on the suggestions the coder decided.

    Each accept/reject on a suggestion is one item: the coder said yes (accept) or no (reject);
    the model said yes when the suggestion's confidence at the time (of the model version that
    made it) was at least :data:`YES_AT`. Returns n, accepted, rejected, accept_rate,
    model_yes_rate, observed_agreement, kappa (Cohen's; None where undefined), and
    ``by_version``: the same figures per model version that made the suggestions (a frame).
    """
    df = decided_suggestions(project, coder)
    out = _agreement(df)
    rows = [{"model_version_id": int(mv), **_agreement(g)} for mv, g in df.groupby("model_version_id", sort=True)] if len(df) else []
    out["by_version"] = pd.DataFrame(rows, columns=["model_version_id", "n", "accepted", "rejected", "accept_rate", "model_yes_rate", "observed_agreement", "kappa"])
    return out


# --------------------------------------------------------------------------- what a confidence means

#: A bin of the reliability table needs this many decided suggestions before a sentence quotes it.
MIN_BIN = 10
#: The sentence quotes the well-filled bin nearest this confidence ("shown at about 60%").
QUOTE_AT = 0.6
RELIABILITY_COLUMNS = ["bin", "n", "mean_confidence", "accepted", "accept_rate"]
NOT_CALIBRATED = ("Not calibrated yet: confidences come from the template's examples only; use them to rank "
                  "suggestions, not as a probability.")


@dataclass
class ConfidenceNote:
    """What a confidence of the active model means, for the Model page and the Review page.

    ``calibrated``: the active model learned from the researchers' decisions (a retrain with at
    least one learned code); ``n_decisions``: the decisions that retrain read (0 before);
    ``sentence``: the one-line note; ``table``: the project's own reliability table, decided
    suggestions (accept/reject of a shown suggestion, every coder) binned by the confidence
    shown against how often they were accepted (columns :data:`RELIABILITY_COLUMNS`; of the
    learned model's suggestions when calibrated, else of all); ``quoted``: the table row the
    sentence quotes (None when no bin has :data:`MIN_BIN` decisions)."""

    calibrated: bool
    n_decisions: int
    sentence: str
    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RELIABILITY_COLUMNS))
    quoted: dict | None = None


def _learned_versions(project: Project) -> set[int]:
    return {mid for mid, kind, card in model_cards(project) if is_learned(kind, card)}


def reliability_frame(decided: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Decided suggestions (:func:`decided_suggestions`) binned by the confidence they were
    shown with: n, mean_confidence, accepted, accept_rate per non-empty bin."""
    if decided.empty:
        return pd.DataFrame(columns=RELIABILITY_COLUMNS)
    rows = reliability(decided["confidence"].to_numpy(float), decided["accepted"].to_numpy(bool), bins)
    return pd.DataFrame(
        [{"bin": r["bin"], "n": r["n"], "mean_confidence": r["mean_confidence"], "accepted": int(round(r["hit_rate"] * r["n"])),
          "accept_rate": r["hit_rate"]} for r in rows],
        columns=RELIABILITY_COLUMNS,
    )


def _quote(table: pd.DataFrame) -> dict | None:
    full = table[table["n"] >= MIN_BIN]
    if full.empty:
        return None
    row = full.iloc[int((full["mean_confidence"] - QUOTE_AT).abs().to_numpy().argmin())]
    return {k: row[k] for k in RELIABILITY_COLUMNS}


def confidence_meaning(project: Project, coder: str | None = None) -> ConfidenceNote:
    """What the active model's confidence means, from the project's own decision log.

    Calibrated (a learned version is active): "Calibrated on N of your decisions: of
    suggestions shown at about 60%, 57% were accepted (34 of 60)." from the learned versions'
    decided suggestions, or a sentence that says there are too few of them yet to check.
    Otherwise :data:`NOT_CALIBRATED`, with the accept rate of the template's suggestions so
    far when there are decided ones. ``coder``: one coder's decisions (None: every coder's)."""
    card = active_card(project)
    active = project.latest_model_version()
    kind = project.model_version_kind(active) if active is not None else None
    calibrated = kind is not None and is_learned(kind, card)
    n = int(card.get("n_decisions", 0)) if calibrated else 0
    decided = decided_suggestions(project, coder)
    if calibrated:
        decided = decided[decided["model_version_id"].isin(_learned_versions(project))]
    table = reliability_frame(decided)
    if not calibrated:
        sentence = NOT_CALIBRATED
        if len(decided):
            acc = int(decided["accepted"].sum())
            sentence += f" So far {acc} of {len(decided)} decided suggestions were accepted ({acc / len(decided):.0%})."
        return ConfidenceNote(False, 0, sentence, table, None)
    quoted = _quote(table)
    if quoted is None:
        sentence = (f"Calibrated on {figures_.label(n, 'decision')} of yours; too few decided suggestions of the learned "
                    f"model yet ({len(decided)}) to check what a confidence means: no confidence bin has {MIN_BIN}.")
    else:
        sentence = (f"Calibrated on {n} of your decisions: of suggestions shown at about {quoted['mean_confidence']:.0%}, "
                    f"{quoted['accept_rate']:.0%} were accepted ({quoted['accepted']} of {quoted['n']}).")
    return ConfidenceNote(True, n, sentence, table, quoted)


# --------------------------------------------------------------------------- learning curve


def learning_curve(project: Project) -> pd.DataFrame:
    """One point per learned model version (:func:`is_learned`: a retrain that learned no code
    is no point): decisions it was trained on (card n_decisions) and macro-F1, the mean of the
    cross-validated per-code F1 over the codes that have one (codes with too few decisions
    have none and are left out; ``codes_with_f1`` says how many count). Sorted by decisions,
    then version."""
    rows = []
    for mid, kind, card in model_cards(project):
        if not is_learned(kind, card) or "rescored_from" in card:
            continue  # a rescore (new transcripts, same model) is not a new point on the curve
        f1 = [float(c["f1"]) for c in card.get("codes", []) if c.get("f1") is not None]
        rows.append({
            "version": mid,
            "decisions": int(card["n_decisions"]),
            "macro_f1": float(np.mean(f1)) if f1 else None,
            "codes_with_f1": len(f1),
            "reliable": sum(c.get("verdict") == "reliable" for c in card.get("codes", [])),
        })
    df = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    df["macro_f1"] = pd.to_numeric(df["macro_f1"], errors="coerce").astype(float)
    return df.sort_values(["decisions", "version"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- automatic retraining


def auto_retrain_every(project: Project) -> int:
    """The project's "retrain automatically every N decisions" setting; 0 = off."""
    try:
        return max(0, int(project.meta(AUTO_RETRAIN_KEY) or 0))
    except ValueError:
        return 0


def set_auto_retrain_every(project: Project, n: int) -> None:
    n = int(n)
    if n < 0:
        raise ValueError("the retrain interval cannot be negative (0 turns automatic retraining off)")
    project.set_meta(AUTO_RETRAIN_KEY, str(n))


def n_decisions(project: Project) -> int:
    """Decisions in force, all coders (:func:`coder_assist.app.figures.decisions_in_force`): what
    :func:`train_project` learns from and records as the card's ``n_decisions``."""
    return figures_.decisions_in_force(project)


def trained_on(project: Project) -> int:
    """:func:`coder_assist.app.figures.trained_on`: decisions in force the last retrain read (the
    newest retrained version, not the active one, so a rollback does not start a retrain at
    once, which would undo it)."""
    return figures_.trained_on(project)


def decisions_since_training(project: Project) -> int:
    """:func:`coder_assist.app.figures.decisions_beyond_retrain`: decisions in force now minus
    those the last retrain read (never below 0)."""
    return figures_.decisions_beyond_retrain(project)


def queue_change(project: Project) -> dict | None:
    """How the review queue's size changed with the active version, when it was made by a
    retrain: ``before`` (suggestions of the version active before it, on active codes),
    ``after`` (the active version's), and ``probes`` (the most it may have added for the
    passages its review order asks about first, which get a suggestion even where no code
    reaches its threshold). None for the template-only model or the first version."""
    active = project.latest_model_version()
    cards = model_cards(project)
    me = next(((mid, kind, card) for mid, kind, card in cards if mid == active), None)
    if me is None or not is_retrained(me[1], me[2]):
        return None
    earlier = [mid for mid, _, _ in cards if mid < active]
    if not earlier:
        return None
    count = project.pool_size
    return {"previous": earlier[-1], "before": count(earlier[-1]), "after": count(active), "probes": QUEUE_HEAD}


def needs_auto_retrain(project: Project) -> bool:
    """True when automatic retraining is on (every N > 0 decisions) and at least N decisions
    have been made since the last retrain."""
    every = auto_retrain_every(project)
    return every > 0 and decisions_since_training(project) >= every


# --------------------------------------------------------------------------- consistency check


CONSISTENCY_COLUMNS = ["flag", "transcript", "code_path", "nearest_other", "similarity", "similarity_other", "coder", "text", "segment_id"]


def consistency_table(flagged: pd.DataFrame) -> pd.DataFrame:
    """:func:`coder_assist.app.training.consistency_check`'s frame in the columns the page shows, in
    its order (closer to another code first, then far from its code, least similar first)."""
    return flagged.reindex(columns=CONSISTENCY_COLUMNS).reset_index(drop=True)


__all__ = [
    "model_versions_table",
    "code_report",
    "card_text",
    "coder_model_agreement",
    "ConfidenceNote",
    "confidence_meaning",
    "reliability_frame",
    "learning_curve",
    "auto_retrain_every",
    "set_auto_retrain_every",
    "decisions_since_training",
    "needs_auto_retrain",
    "consistency_table",
]
