"""Model page: retrain from the decisions, the model versions (with rollback), the active
model's per-code figures and card, what a confidence means (the project's own reliability
table), agreement between the model and the coder, the project's learning curve, and the
consistency check.

What the page shows is computed by :mod:`coder_assist.app.modelview` (no Streamlit there); this
file draws it.

Retraining runs in the background (:mod:`coder_assist.app.jobs`), one job at a time per
project across all browser sessions. The page that started it shows the elapsed time and
redraws when it is done; leaving the page does not stop it. The new version becomes the active
one as it is saved, so the review queue uses it from its next redraw. ``ui.common.after_decision``
starts the same job after a decision, when "retrain automatically every N decisions" is on and
N decisions have been made since the last retrain.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from coder_assist.app import figures, jobs, modelview
from coder_assist.core.template import PATH_SEP
from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import Project
from ui import common, widgets

AUTO_KEY = "model_auto_every"
ROLLBACK_KEY = "model_rollback_version"
FLASH_KEY = "model_flash"
CONSISTENCY_KEY = "model_consistency"  # session_state: (project folder, checked at, result frame)
POLL_S = 0.5

VERDICT_HELP = (
    "reliable: held-out precision and recall at or above the project's target; "
    "needs more decisions: below target, or too few accepts/rejects (3 of each) for a held-out estimate; "
    "not automatable: the code's learning curve has flattened below target; "
    "stale: the code's description or examples were edited after this model was trained; "
    "cold start: the active model is the template-only similarity model."
)


# --------------------------------------------------------------------------- callbacks


def _project() -> Project:
    return common.get_project(Path(st.session_state["project_path"]))


def _flash(kind: str, text: str) -> None:
    widgets.flash(FLASH_KEY, kind, text)


def _on_auto_every() -> None:
    value = st.session_state.get(AUTO_KEY)
    n = int(value or 0)
    try:
        modelview.set_auto_retrain_every(_project(), n)
    except (CoderAssistError, ValueError) as exc:
        _flash("error", f"Not saved: {exc}")
        return
    st.toast(f"Automatic retraining every {n} decisions." if n else "Automatic retraining is off.", icon=":material/settings:")


def _on_rollback() -> None:
    version = st.session_state.get(ROLLBACK_KEY)
    if version is None:
        return
    project = _project()
    try:
        project.set_active_model_version(int(version))
    except CoderAssistError as exc:
        _flash("error", f"Not switched: {exc}")
        return
    del st.session_state[ROLLBACK_KEY]  # next draw offers another version than the one now active
    _flash("ok", f"Model version v{version} is active again: the review queue shows its suggestions.")


# --------------------------------------------------------------------------- sections


def _leaf(path) -> str | None:
    return str(path).split(PATH_SEP)[-1] if isinstance(path, str) else None


def _when(iso: str) -> str:
    """An ISO time stamp (UTC) in the machine's local time, to the minute."""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def _version_label(row: pd.Series) -> str:
    parts = [f"v{int(row['id'])}", str(row["kind_label"])]
    if pd.notna(row["decisions"]):
        parts.append(f"{int(row['decisions'])} decisions")
    parts.append(_when(row["created"]))
    return " · ".join(parts) + ("  (active)" if row["active"] else "")


def _retrain_section(project: Project, job: jobs.TrainJob | None):
    """Button, automatic setting, and the status of the last retrain. Returns the status
    container of a retrain in progress (the page end keeps its elapsed time current)."""
    running = job is not None and job.running
    since = modelview.decisions_since_training(project)
    every = modelview.auto_retrain_every(project)
    if AUTO_KEY not in st.session_state:
        st.session_state[AUTO_KEY] = every

    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    clicked = c1.button(
        "Retrain now",
        key="model_retrain",
        type="primary",
        icon=":material/model_training:",
        disabled=running,
        width="stretch",
        help="Learn from every accept and reject made so far (all coders) and re-score every passage. "
        "The new model becomes the active one; the review queue uses it from then on.",
    )
    c2.number_input(
        "Retrain automatically every N decisions",
        min_value=0,
        step=10,
        key=AUTO_KEY,
        on_change=_on_auto_every,
        help="0 = off. Counted over all coders' accepts and rejects since the last retrain; "
        "the retrain runs in the background while you keep reviewing.",
    )
    L = figures.label
    now, then = figures.decisions_in_force(project), figures.trained_on(project)
    note = (f"**{L(since, 'more decision', 'more decisions')}** in force than the last retrain learned from ({now} now, {then} then)."
            if then else f"**{L(now, 'decision in force', 'decisions in force')}** (all coders); no retrain yet.")
    if every:
        left = max(0, every - since)
        note += f" Next automatic retrain after {left} more." if left else " An automatic retrain is due with the next decision."
    else:
        note += " Automatic retraining is off."
    c3.markdown(note)
    _learnability_note(project)

    if clicked and not running:
        # Not ``with status:``: leaving the block would mark it complete while the retrain runs.
        status = st.status("Retraining…", expanded=True, state="running")
        status.write("Loading the embedding model…")
        encoder = common.get_encoder(project.meta("model"))
        job = jobs.start_retrain(project, encoder, trigger="button")
        if job is None:  # another session got there first
            job = jobs.current_job(project.folder)
        status.write(
            f"Learning from {job.n_decisions} decisions: passage features, one classifier per code blended with "
            "the template's examples, cross-validated figures, then new suggestions for every passage."
        )
        return status, job
    if not running:
        _finetune_button(project)
    if running:
        status = st.status(_running_label(job), expanded=True, state="running")
        who = {"auto": "after the last batch of decisions (automatic)", "finetune": "from Fine-tune the encoder"}.get(job.trigger, "from the Retrain button")
        status.write(f"Started {who}, learning from {job.n_decisions} decisions.")
        return status, job
    _last_job(project, job)
    return None, job


def _last_job(project: Project, job: jobs.TrainJob | None) -> None:
    """How the last retrain of this project went (failed, learned codes, or learned none)."""
    if job is not None and job.error:
        st.status(f"The last retrain failed after {job.elapsed():.1f} s", state="error", expanded=True).write(job.error)
    elif job is not None:
        card = next((c for mid, _, c in modelview.model_cards(project) if mid == job.version), {})
        when = f"{datetime.fromtimestamp(job.started).strftime('%H:%M')}{', automatic' if job.trigger == 'auto' else ''}"
        n_learned = modelview.codes_learned(card)
        if n_learned:
            box = st.status(
                f"Retrained in {job.elapsed():.1f} s: model version v{job.version} learned "
                f"{figures.label(n_learned, 'code')} from {figures.label(job.n_decisions, 'decision')} ({when}).",
                state="complete", expanded=False)
            box.write("It became the active model when it was saved; the review queue uses its suggestions.")
        else:
            box = st.status(
                f"Retrained in {job.elapsed():.1f} s, but no code could be learned yet from "
                f"{figures.label(job.n_decisions, 'decision')} ({when}): v{job.version} is {modelview.NOT_ENOUGH}.",
                state="complete", expanded=True)
            box.write(f"A code's classifier needs at least {figures.MIN_CLASS} accepts and {figures.MIN_CLASS} rejects of that "
                      "code; the Per code table says what each still needs. Its suggestions are the template's, in a new "
                      "review order, plus one for each passage that order asks about first.")


def _learnability_note(project: Project) -> None:
    """Before a retrain: how many codes it could learn, and what the closest ones still need."""
    learn = figures.learnability(project)
    table, L = learn.table, figures.label
    if table.empty:
        return
    if learn.n_learnable:
        st.caption(f"A retrain now can give {learn.n_learnable} of {L(len(table), 'code')} (those with at least "
                   f"{figures.MIN_CLASS} accepts and {figures.MIN_CLASS} rejects) a classifier of their own; the others are scored by the "
                   "code matcher, which learns from every code's decisions at once (with few decisions, by the template's similarity). "
                   "What each still needs is in the Per code table below.")
        return
    short = table.assign(missing=table["accepts_needed"] + table["rejects_needed"]).sort_values("missing", kind="stable").head(3)
    closest = "; ".join(f"{_leaf(r.code_path)}: {figures.needs_text(r.accepts_needed, r.rejects_needed)}" for r in short.itertuples())
    st.warning(f"A retrain now cannot learn any code yet: each needs at least {figures.MIN_CLASS} accepts and "
               f"{figures.MIN_CLASS} rejects (all coders together). Closest: {closest}. Until then a retrain keeps the template's "
               "suggestions: it only sets a new review order and adds a suggestion for each passage that order asks about "
               "first. Every code's count is in the Per code table below.",
               icon=":material/info:")


def _finetune_button(project: Project) -> None:
    """Start a contrastive fine-tune of the encoder on the decisions, then a retrain, in the
    background (minutes on a laptop CPU)."""
    from coder_assist.app.training import MIN_DECISIONS, finetune_unavailable

    n = modelview.n_decisions(project)
    why_not = finetune_unavailable(project)
    with st.expander("Fine-tune the embedding model on your decisions (advanced, minutes)"):
        st.caption(
            "Pairs of passages you accepted for the same code are pulled together and passages of different codes "
            "(or a rejected one) pushed apart, then every passage is re-embedded and the model retrained. On AnnoMI "
            "therapist talk with 500 decisions this raised held-out kappa from 0.65 to 0.67 "
            "(bench/results/finetune_probe.json). The project then uses the fine-tuned model; "
            f"it stays on this machine under {project.folder / 'models'}."
        )
        if st.button(
            "Fine-tune and retrain",
            key="model_finetune",
            icon=":material/tune:",
            disabled=why_not is not None or n < MIN_DECISIONS,
            help=(why_not[0].upper() + why_not[1:] + "." if why_not is not None
                  else None if n >= MIN_DECISIONS else f"Needs at least {MIN_DECISIONS} accept/reject decisions ({n} so far)."),
        ):
            jobs.start_finetune(project)
            st.rerun()


def _running_label(job: jobs.TrainJob) -> str:
    what = "Fine-tuning the embedding model, then retraining" if job.trigger == "finetune" else "Retraining"
    return f"{what}… {job.elapsed():.0f} s"


def _summary(project: Project, versions: pd.DataFrame, report: pd.DataFrame) -> None:
    active = versions[versions["active"]]
    c1, c2, c3, c4 = st.columns(4)
    if active.empty:
        c1.metric("Active model", "none")
        return
    row = active.iloc[0]
    learned = row["kind_label"] == modelview.LEARNED
    c1.metric("Active model", f"v{int(row['id'])}", help=_version_label(row))
    if learned:
        c2.metric("Learned from", figures.label(int(row["decisions"]), "decision"),
                  help=f"Decisions in force (all coders) when it was trained; {figures.label(int(row['codes_learned']), 'code')} "
                  "got a classifier of their own; every code is also scored by the code matcher, learned from all decisions at once "
                  "(until there are a few accepts and rejects, by the template's similarity).")
    else:
        c2.metric("Learned from", "template only",
                  help=(f"The retrain read {int(row['decisions'])} decisions, but no code had {figures.MIN_CLASS} accepts and "
                        f"{figures.MIN_CLASS} rejects, so it learned nothing: suggestions are the template's." if pd.notna(row["decisions"])
                        else "The active model only knows the template's descriptions and examples: retrain to learn from decisions."))
    counts = modelview.verdict_counts(report)
    c3.metric("Reliable codes", f"{counts.get('reliable', 0)} of {len(report)}", help=VERDICT_HELP)
    c4.metric("Model versions", len(versions))
    change = modelview.queue_change(project)
    if change and change["after"] != change["before"]:
        L = figures.label
        grew = change["after"] > change["before"]
        st.caption(
            f"The review queue has {L(change['after'], 'suggestion')} from v{int(row['id'])}, against {change['before']} from "
            f"v{change['previous']}. "
            + (f"It grew because a retrained model also stores a suggestion (its most likely code) for each of the up to "
               f"{change['probes']} passages its review order asks about first, even where no code reaches its threshold: "
               "those are the passages whose answers teach it most ('Most uncertain first' on the Review page)."
               if grew else "It shrank because the retrained model is surer about which passages no code applies to.")
        )


def _versions_section(versions: pd.DataFrame, running: bool) -> None:
    st.subheader("Model versions", anchor=False)
    if versions.empty:
        st.info("No model yet: compute suggestions on the Import page (Compute suggestions), then retrain here.")
        return
    show = versions.sort_values("id", ascending=False).assign(
        version=lambda d: d["id"].map(lambda i: f"v{i}"),
        created=lambda d: d["created"].map(_when),
        active=lambda d: d["active"].map({True: "● active", False: ""}),
        kind=lambda d: d["kind_label"],
    )
    st.dataframe(
        show,
        hide_index=True,
        column_order=["active", "version", "created", "kind", "decisions", "codes_learned", "reliable", "codes_scored"],
        column_config={
            "active": st.column_config.TextColumn("", width=80),
            "version": st.column_config.TextColumn("Version", width=70),
            "created": st.column_config.TextColumn("Created"),
            "kind": st.column_config.TextColumn("Kind", width=240),
            "decisions": st.column_config.NumberColumn("Decisions", help="Decisions in force (all coders) the retrain read"),
            "codes_learned": st.column_config.NumberColumn("Codes learned", help="Codes that got a classifier (3+ accepts and 3+ rejects)"),
            "reliable": st.column_config.NumberColumn("Reliable codes", help="Codes with the verdict 'reliable'"),
            "codes_scored": st.column_config.NumberColumn("Codes with figures", help="Codes with enough decisions for held-out precision/recall"),
        },
        placeholder="–",
        key="model_versions_table",
    )
    if len(versions) < 2:
        return
    labels = {int(r["id"]): _version_label(r) for _, r in versions.iterrows()}
    active = int(versions.loc[versions["active"], "id"].iloc[0]) if versions["active"].any() else None
    options = sorted(labels, reverse=True)
    if st.session_state.get(ROLLBACK_KEY) not in options:
        st.session_state[ROLLBACK_KEY] = next((v for v in options if v != active), options[0])
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    chosen = c1.selectbox("Roll back to", options, format_func=labels.get, key=ROLLBACK_KEY,
                          help="Make an earlier (or later) version the active model again. Nothing is deleted; "
                          "its saved suggestions feed the review queue.")
    c2.button(
        "Roll back" if active is None or (chosen or 0) < active else "Switch to it",
        key="model_rollback",
        icon=":material/history:",
        on_click=_on_rollback,
        disabled=running or chosen is None or chosen == active,
        width="stretch",
    )


def _codes_section(project: Project, report: pd.DataFrame, versions: pd.DataFrame) -> None:
    st.subheader("Per code", anchor=False)
    active = versions[versions["active"]]
    learned = not active.empty and active.iloc[0]["kind_label"] == modelview.LEARNED
    counts = modelview.verdict_counts(report)
    waiting = int((report["needs"] != "").sum())
    st.caption(
        " · ".join(f"{n} {v}" for v, n in counts.items())
        + (". Precision, recall and F1 are estimated by cross-validation on this project's decisions (at the code's threshold)."
           if learned else ". The active model has not learned from decisions yet: retrain to get per-code figures.")
        + (f" {figures.label(waiting, 'code')} cannot be learned by a retrain now: 'Still needs' says how many more accepts "
           f"and rejects each needs (at least {figures.MIN_CLASS} of each, all coders together)." if waiting else "")
    )
    parts = report["code_path"].str.rsplit(PATH_SEP, n=1)
    table = report.assign(
        theme=parts.map(lambda p: p[0] if len(p) > 1 else ""),
        code=parts.map(lambda p: p[-1]),
    )
    st.dataframe(
        table,
        hide_index=True,
        height=460,
        column_order=["code", "verdict", "needs", "n_pos", "n_neg", "precision", "recall", "f1", "weight", "theme"],
        column_config={
            "theme": st.column_config.TextColumn("Theme > sub-theme", width=260),
            "code": st.column_config.TextColumn("Code", width=330),
            "verdict": st.column_config.TextColumn("Verdict", help=VERDICT_HELP, width=145),
            "needs": st.column_config.TextColumn("Still needs", width=300,
                                                 help="What a retrain now would still lack to learn this code, counted over the current "
                                                 "decisions of all coders (empty: a retrain can learn it)"),
            "n_pos": st.column_config.NumberColumn("+", help="Positive labels: accepts (and codings) of this code", width=42),
            "n_neg": st.column_config.NumberColumn("−", help="Negative labels: rejects, and accepts of an exclusive sibling", width=42),
            "precision": st.column_config.ProgressColumn("Precision", min_value=0.0, max_value=1.0, format="%.2f", width=75),
            "recall": st.column_config.ProgressColumn("Recall", min_value=0.0, max_value=1.0, format="%.2f", width=75),
            "f1": st.column_config.ProgressColumn("F1", min_value=0.0, max_value=1.0, format="%.2f", width=75),
            "weight": st.column_config.NumberColumn("Weight", format="%.2f", width=60,
                                                    help="Share of the code's own classifier in the blend with its base: the code matcher, learned from "
                                                         "all decisions (or, before there are enough, the template prior); 0 = the base only"),
        },
        placeholder="–",
        key="model_codes_table",
    )
    version = int(active.iloc[0]["id"]) if not active.empty else None
    text = modelview.card_text(project, version) if version is not None else None
    with st.expander(f"Model card of v{version} (for a methods section)" if version is not None else "Model card"):
        if text is None:
            st.caption("The template-only model has no card: retrain to get one.")
        else:
            st.code(text, language=None, wrap_lines=False)
            st.download_button("Download model card (.txt)", data=text, file_name=f"model-card-v{version}.txt", mime="text/plain",
                               icon=":material/download:", key="model_card_download")


def _agreement_section(project: Project, coder: str | None) -> None:
    st.subheader("Agreement with you", anchor=False)
    if not coder:
        st.info("Enter your name in the sidebar to see how often the model agrees with your decisions.", icon=":material/badge:")
        return
    agr = figures.model_agreement(project, coder)
    if agr["items"] == 0:
        st.info("No accept or reject yet: decide some on the Review page.")
        return
    c1, c2, c3 = st.columns(3)
    kappa = agr["kappa"]
    c1.metric("Cohen's kappa", f"{kappa:.2f}" if kappa is not None else "–",
              help="Agreement corrected for chance: 0 = no better than chance, 1 = perfect. "
              "Undefined (–) when both sides gave the same answer throughout. The same figure as on the Agreement page "
              "(you against the model, all decisions).")
    c2.metric("Agreement", f"{agr['percent_agreement']:.0%}", help=f"Over {figures.label(agr['items'], 'item')}")
    queue = figures.queue_progress(project, coder)
    rate = queue["accept_rate"]
    c3.metric("Your accept rate", f"{rate:.0%}" if rate is not None else "–",
              help=f"Of the active model's suggestions you decided, the share you accepted ({queue['accepted']} of "
              f"{queue['suggestions_decided']}), as on the Review page.")
    st.caption(
        f"Over {figures.label(agr['items'], 'item')}: {agr['unit']} (stored suggestions of the active version). "
        "The Agreement page breaks this down per code and lists the disagreements."
    )
    by = modelview.coder_model_agreement(project, coder)["by_version"]
    if len(by) > 1:
        st.caption("How often you accepted the suggestions of each model version you decided on:")
        st.dataframe(
            by.assign(version=by["model_version_id"].map(lambda v: f"v{v}"), accept_rate=by["accept_rate"] * 100),
            hide_index=True,
            column_order=["version", "n", "accepted", "accept_rate"],
            column_config={
                "version": st.column_config.TextColumn("Suggested by"),
                "n": st.column_config.NumberColumn("Suggestions decided"),
                "accepted": st.column_config.NumberColumn("Accepted"),
                "accept_rate": st.column_config.NumberColumn("Accept rate", format="%.0f%%"),
            },
            key="model_agreement_table",
        )


def _confidence_section(project: Project) -> None:
    st.subheader("What a confidence means", anchor=False)
    note = modelview.confidence_meaning(project)
    (st.success if note.calibrated and note.quoted is not None else st.info)(note.sentence, icon=":material/percent:")
    if note.table.empty:
        st.caption("The table fills as you accept and reject suggestions: each row is a range of the confidence a "
                   "suggestion was shown with, and how often such suggestions were accepted.")
        return
    table = note.table.assign(mean_confidence=note.table["mean_confidence"] * 100, accept_rate=note.table["accept_rate"] * 100)
    st.dataframe(
        table,
        hide_index=True,
        column_order=["bin", "n", "mean_confidence", "accepted", "accept_rate"],
        column_config={
            "bin": st.column_config.TextColumn("Confidence shown"),
            "n": st.column_config.NumberColumn("Suggestions decided"),
            "mean_confidence": st.column_config.NumberColumn("Mean confidence", format="%.0f%%"),
            "accepted": st.column_config.NumberColumn("Accepted"),
            "accept_rate": st.column_config.NumberColumn("Accept rate", format="%.0f%%"),
        },
        key="model_reliability_table",
    )
    st.caption(
        ("Suggestions of the learned model, every coder's accepts and rejects. " if note.calibrated else
         "Suggestions made from the template's examples, every coder's accepts and rejects. ")
        + "A confidence means what it says when the accept rate is close to the mean confidence in each row."
    )


def _curve_section(project: Project) -> None:
    st.subheader("Learning curve", anchor=False)
    curve = modelview.learning_curve(project).dropna(subset=["macro_f1"])
    if curve.empty:
        retrains = sum(modelview.is_retrained(k, c) for _, k, c in modelview.model_cards(project))
        n = figures.learnability(project).n_learnable
        why = (f"{figures.label(retrains, 'retrain')} so far, none of which could learn a code: " if retrains else "No retrain yet. ")
        st.info(why + "a point is added by each retrain that learns at least one code (macro-F1 against the number of "
                f"decisions), and a code is learned once it has {figures.MIN_CLASS} accepts and {figures.MIN_CLASS} rejects. "
                + (f"{figures.label(n, 'code')} would be learned by a retrain now (Retrain now, above)." if n else
                   "No code has that many yet: the Per code table says what each still needs."))
        return
    import altair as alt

    data = curve.assign(version=curve["version"].map(lambda v: f"v{v}"))
    chart = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=90, filled=True))
        .encode(
            x=alt.X("decisions:Q", title="Decisions", scale=alt.Scale(domain=[0, max(10, int(curve["decisions"].max() * 1.15))])),
            y=alt.Y("macro_f1:Q", title="Macro-F1", scale=alt.Scale(domain=[0, 1])),
            tooltip=[alt.Tooltip("version:N", title="Version"), alt.Tooltip("decisions:Q", title="Decisions"),
                     alt.Tooltip("macro_f1:Q", title="Macro-F1", format=".2f"), alt.Tooltip("codes_with_f1:Q", title="Codes with F1"),
                     alt.Tooltip("reliable:Q", title="Reliable codes")],
        )
        .properties(height=260)
    )
    st.altair_chart(chart, width="stretch", key="model_curve")
    st.caption(
        "One point per retrained version. Macro-F1: the mean cross-validated F1 over the codes that had enough decisions "
        "for an estimate at that point (at least 3 accepts and 3 rejects), so early points average over few codes "
        f"(latest: {int(curve.iloc[-1]['codes_with_f1'])})."
    )


def _consistency_section(project: Project) -> None:
    st.subheader("Consistency check", anchor=False)
    st.caption(
        "Accepted codings that sit far from the rest of their code, or closer to another code than to their own: "
        "possible miscodings to look at again. Codes are represented by their accepted passages and template examples."
    )
    if st.button("Run consistency check", key="model_consistency_run", icon=":material/rule:"):
        with st.spinner("Comparing every accepted coding with its code and the others…"):
            try:
                flagged = modelview.consistency_table(_consistency_check(project))
            except CoderAssistError as exc:
                st.error(f"Check failed: {exc}")
                return
        st.session_state[CONSISTENCY_KEY] = (str(project.folder), datetime.now().strftime("%H:%M"), flagged)
    result = st.session_state.get(CONSISTENCY_KEY)
    if not result or result[0] != str(project.folder):
        return
    _, when, flagged = result
    if flagged.empty:
        st.success(f"No accepted coding stands out (checked at {when}).")
        return
    st.caption(f"{len(flagged)} possible miscoding{'s' if len(flagged) != 1 else ''} (checked at {when}).")
    st.dataframe(
        flagged.assign(code=flagged["code_path"].map(_leaf), other=flagged["nearest_other"].map(_leaf)),
        hide_index=True,
        column_order=["flag", "code", "text", "other", "similarity", "similarity_other", "transcript", "coder"],
        column_config={
            "flag": st.column_config.TextColumn("Flag", width=165),
            "transcript": st.column_config.TextColumn("Transcript", width=120),
            "code": st.column_config.TextColumn("Coded as", width=200, help="The code's theme and sub-theme are in the CSV download"),
            "other": st.column_config.TextColumn("Nearest other code", width=200),
            "similarity": st.column_config.NumberColumn("Sim. own", format="%.2f", width=70, help="Cosine to the rest of its code"),
            "similarity_other": st.column_config.NumberColumn("Sim. other", format="%.2f", width=70, help="Cosine to the nearest other code"),
            "coder": st.column_config.TextColumn("Coder", width=60),
            "text": st.column_config.TextColumn("Passage", width=380),
        },
        key="model_consistency_table",
    )
    st.download_button("Download as CSV", data=flagged.to_csv(index=False), file_name="consistency-check.csv", mime="text/csv",
                       icon=":material/download:", key="model_consistency_download")


def _consistency_check(project: Project) -> pd.DataFrame:
    from coder_assist.app.training import consistency_check

    return consistency_check(project, common.get_encoder(project.meta("model")))


# --------------------------------------------------------------------------- page


def render() -> None:
    project = _project()
    coder = common.coder()
    st.header("Model", anchor=False)
    st.caption("The model learns from every accept and reject. Retrain it here, see how well it does per code, "
               "and go back to an earlier version if a new one is worse.")
    widgets.show_flash(FLASH_KEY)

    job = jobs.current_job(project.folder)
    status, job = _retrain_section(project, job)
    running = job is not None and job.running

    versions = modelview.model_versions_table(project)
    report = modelview.code_report(project)
    _summary(project, versions, report)
    _versions_section(versions, running)
    _codes_section(project, report, versions)
    _confidence_section(project)
    left, right = st.columns(2, gap="large")
    with left:
        _agreement_section(project, coder)
    with right:
        _curve_section(project)
    _consistency_section(project)

    if status is not None and job is not None:
        # Keep the elapsed time current until the retrain ends, then redraw with the new model.
        # A click elsewhere stops this loop (not the retrain); the next visit picks it up again.
        while job.running:
            status.update(label=_running_label(job), state="running")
            time.sleep(POLL_S)
        st.rerun()
