"""Agreement page (inter-coder reliability, reliability samples) and the Review page's blind
mode, in which a coder codes a reliability sample without seeing anyone else's coding or the
model's suggestions.

Blind mode shows the segment in its context and the template's codes as tick boxes; "Save and
next" (or "No code applies") commits the answer in its callback, before the page moves on.
The only coding it shows is the coder's own (their earlier accepts on the segment, pre-ticked).
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from coder_assist.app import agreement as ag
from coder_assist.app import review
from coder_assist.core.template import PATH_SEP
from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import Project
from ui import common, widgets

BLIND_KEY = "review_blind_sample"  # the sample coded in blind mode (None: normal review)
BLIND_POS_KEY = "blind_segment"  # segment to show instead of the next unanswered one
BLIND_FLASH_KEY = "blind_flash"
FLASH_KEY = "agreement_flash"
BOX_PREFIX = "blind_box::"  # + sample::segment::code

RATER_A_KEY = "agreement_a"
RATER_B_KEY = "agreement_b"
SAMPLE_KEY = "agreement_sample"
EXCLUDE_KEY = "agreement_exclude_uncoded"


# --------------------------------------------------------------------------- blind mode


def blind_mode_selector(project: Project) -> int | None:
    """The Review page's mode switch: normal review, or blind coding of one reliability sample."""
    df = ag.samples(project)
    if df.empty:
        return None
    names = dict(zip(df["id"].astype(int), df["name"]))
    if st.session_state.get(BLIND_KEY) not in names:
        st.session_state[BLIND_KEY] = None
    return st.selectbox(
        "Blind double-coding",
        list(names),
        format_func=lambda i: f"Blind: {names[i]}",
        index=None,
        placeholder="Off: review the model's suggestions",
        key=BLIND_KEY,
        help="Code a reliability sample without seeing the model's suggestions or anyone else's decisions. "
        "Draw samples on the Agreement page.",
    )


def _box_key(sample_id: int, segment_id: int, code_id: str) -> str:
    return f"{BOX_PREFIX}{sample_id}::{segment_id}::{code_id}"


def _on_answer(sample_id: int, segment_id: int, codes: list[str], none: bool) -> None:
    project, name = common.page_context()
    if not name:
        widgets.flash(BLIND_FLASH_KEY, "error", "Enter your name in the sidebar first.")
        return
    ticked = [] if none else [c for c in codes if st.session_state.get(_box_key(sample_id, segment_id, c))]
    try:
        ag.record_answer(project, sample_id, segment_id, name, ticked)
    except CoderAssistError as exc:
        widgets.flash(BLIND_FLASH_KEY, "error", f"Not recorded: {exc}")
        return
    st.session_state.pop(BLIND_POS_KEY, None)
    widgets.flash(BLIND_FLASH_KEY, "ok", f"Saved: {len(ticked)} code{'s' if len(ticked) != 1 else ''}" if ticked else "Saved: no code applies")


def _on_goto(segment_id: int | None) -> None:
    if segment_id is None:
        st.session_state.pop(BLIND_POS_KEY, None)
    else:
        st.session_state[BLIND_POS_KEY] = segment_id


def render_blind(project: Project, name: str | None, sample_id: int) -> None:
    widgets.show_flash(BLIND_FLASH_KEY, toast=True)
    if not name:
        st.info("Enter your name in the sidebar to start blind coding: answers are recorded under it.", icon=":material/badge:")
        return
    segs = ag.sample_segments(project, sample_id)
    order = [int(s) for s in segs["segment_id"]]
    prog = ag.sample_progress(project, sample_id, name)
    st.progress(prog["answered"] / prog["total"] if prog["total"] else 0.0,
                text=f"Blind coding: {prog['answered']} of {prog['total']} segments answered")
    current = st.session_state.get(BLIND_POS_KEY)
    if current not in order:
        current = prog["next"]
    if current is None:
        st.success(f"All {prog['total']} segments of this sample answered. Compare coders on the Agreement page.")
        st.button("Look at the last segment again", key="blind_back_last", on_click=_on_goto, args=(order[-1],))
        return
    pos = order.index(current)
    row = segs.iloc[pos]
    done = ag.completed(project, sample_id, name)

    left, right = st.columns([11, 9], gap="large")
    with left:
        st.subheader(str(row["transcript"]), anchor=False)
        st.caption(f"Segment {pos + 1} of {len(order)}" + (" · answered already: saving again replaces your answer" if current in done else ""))
        with st.container(border=True):
            st.html(widgets.CSS + widgets.context_html(review.segment_context(project, current)))
    with right:
        st.caption("Tick every code that applies to the highlighted passage, or none.")
        leaves = review.leaf_codes(project)
        own = set(ag.blind_codes(project, current, name))  # only this coder's own coding
        with st.form(key=f"blind_form::{sample_id}::{current}", border=True):
            groups: dict[str, list[tuple[str, str]]] = {}
            for code_id, path in leaves:
                parts = path.split(PATH_SEP)
                groups.setdefault(PATH_SEP.join(parts[:-1]) or "Codes", []).append((code_id, parts[-1]))
            for group, codes in groups.items():
                st.markdown(f"**{widgets.md_escape(group)}**")
                for code_id, leaf in codes:
                    st.checkbox(leaf, value=code_id in own, key=_box_key(sample_id, current, code_id))
            ids = [c for c, _ in leaves]
            c1, c2 = st.columns(2)
            c1.form_submit_button("Save and next", type="primary", on_click=_on_answer, args=(sample_id, current, ids, False), width="stretch")
            c2.form_submit_button("No code applies", on_click=_on_answer, args=(sample_id, current, ids, True), width="stretch")
        b1, b2 = st.columns(2)
        b1.button("Previous segment", key="blind_prev", disabled=pos == 0, on_click=_on_goto,
                  args=(order[pos - 1] if pos else None,), width="stretch")
        b2.button("Next unanswered", key="blind_next", disabled=prog["next"] in (None, current), on_click=_on_goto,
                  args=(None,), width="stretch")


# --------------------------------------------------------------------------- Agreement page


def _on_draw() -> None:
    project, name = common.page_context()
    try:
        sid = ag.draw_sample(project, float(st.session_state["agreement_share"]) / 100, seed=int(st.session_state["agreement_seed"]),
                             name=(st.session_state.get("agreement_sample_name") or "").strip() or None, created_by=name)
    except CoderAssistError as exc:
        widgets.flash(FLASH_KEY, "error", str(exc))
        return
    st.session_state[SAMPLE_KEY] = sid
    widgets.flash(FLASH_KEY, "ok", "Sample drawn. Second coders: Review page, 'Blind double-coding'.")


def _fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "–"
    return f"{v:.0%}" if pct else f"{v:.2f}"


def _samples_section(project: Project) -> pd.DataFrame:
    df = ag.samples(project)
    with st.expander("Reliability samples (blind double-coding)", expanded=df.empty):
        st.caption("Draw a share of every transcript's segments (coded or not) at random with a fixed seed. A second coder "
                   "then codes them on the Review page in blind mode, without seeing anyone's decisions or the model's "
                   "suggestions; agreement on the sample counts every code on every segment both completed.")
        c1, c2, c3, c4 = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
        c1.number_input("Share of segments (%)", min_value=1, max_value=100, value=10, step=1, key="agreement_share")
        c2.number_input("Seed", min_value=0, value=0, step=1, key="agreement_seed")
        c3.text_input("Name (optional)", key="agreement_sample_name", placeholder="e.g. pilot round")
        c4.button("Draw sample", key="agreement_draw", on_click=_on_draw, width="stretch")
        if not df.empty:
            view = df.assign(answered=[", ".join(f"{c}: {n}" for c, n in ag.completion(project, int(i)).items()) or "–" for i in df["id"]])
            st.dataframe(view[["id", "name", "n_segments", "share", "seed", "created_at", "answered"]], hide_index=True, width="stretch")
    return df


def render() -> None:
    project, name = common.page_context()
    st.header("Agreement", anchor=False)
    widgets.show_flash(FLASH_KEY)
    samples = _samples_section(project)

    raters = ag.coders(project)
    has_model = project.latest_model_version() is not None
    options = raters + ([ag.MODEL] if has_model else [])
    if len(options) < 2:
        st.info("Agreement needs two raters: two coders' decisions, or one coder's and the model's suggestions.")
        return
    sample_names = dict(zip(samples["id"].astype(int), samples["name"]))
    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    if st.session_state.get(RATER_A_KEY) not in options:
        st.session_state[RATER_A_KEY] = name if name in raters else options[0]
    a = c1.selectbox("Rater A", options, key=RATER_A_KEY, format_func=lambda r: "Model (active version)" if r == ag.MODEL else r)
    rest = [r for r in options if r != a]
    if st.session_state.get(RATER_B_KEY) not in rest:
        st.session_state[RATER_B_KEY] = rest[0]
    b = c2.selectbox("Rater B", rest, key=RATER_B_KEY, format_func=lambda r: "Model (active version)" if r == ag.MODEL else r)
    if st.session_state.get(SAMPLE_KEY) not in sample_names:
        st.session_state[SAMPLE_KEY] = None
    sample_id = c3.selectbox("Items", list(sample_names), key=SAMPLE_KEY, index=None, placeholder="All decisions (partial labels)",
                             format_func=lambda i: f"Reliability sample: {sample_names[i]}")
    exclude = st.toggle("Exclude segments neither rater coded", key=EXCLUDE_KEY,
                        help="Text nobody codes piles up 'both said no' answers and inflates agreement. Report which you used.")
    try:
        rep = ag.agreement(project, a, b, sample_id=sample_id, exclude_uncoded=exclude)
    except CoderAssistError as exc:
        st.error(str(exc))
        return
    o = rep.overall
    st.caption(f"Items: {rep.unit}." + (f" {rep.excluded_segments} segments neither coded are left out." if exclude else ""))
    m = st.columns(5)
    m[0].metric("Items (segment × code)", o["items"], help=f"on {o['segments']} segments")
    m[1].metric("Agreement", _fmt(o["pooled_percent_agreement"], True), help="Pooled over every (segment, code) item")
    m[2].metric("Cohen's kappa (pooled)", _fmt(o["pooled_kappa"]))
    m[3].metric("Mean kappa per code", _fmt(o["mean_kappa"]), help=f"Mean over the {o['codes_with_kappa']} codes where kappa is defined")
    m[4].metric("Alpha (pooled)", _fmt(o["pooled_alpha"]),
                help=f"Krippendorff's alpha, nominal. Mean per code: {_fmt(o['mean_alpha'])}")
    for n in rep.notes:
        st.info(n)

    st.subheader("Per code", anchor=False)
    who = lambda r: "Model" if r == ag.MODEL else r  # noqa: E731
    per = rep.per_code.rename(columns={"a_only": f"{who(a)} only", "b_only": f"{who(b)} only"})
    for col in ("percent_agreement", "kappa", "alpha"):
        per[col] = pd.to_numeric(per[col], errors="coerce")  # undefined figures show as "–", not "None"
    parts = per["code_path"].str.split(PATH_SEP)
    per = per.assign(code=parts.str[-1], theme=parts.str[:-1].str.join(PATH_SEP))
    cols = ["code", "theme", "n", "both_yes", f"{who(a)} only", f"{who(b)} only", "both_no", "percent_agreement", "kappa", "alpha"]
    st.dataframe(per[cols], hide_index=True, width="stretch", placeholder="–",
                 column_config={"code": st.column_config.TextColumn("Code", width="medium"),
                                "theme": st.column_config.TextColumn("Theme", width="small"),
                                "n": st.column_config.NumberColumn("Items", help="Segments with an answer from both on this code"),
                                "both_yes": "Both yes", "both_no": "Both no",
                                "percent_agreement": st.column_config.NumberColumn("Agreement", format="percent"),
                                "kappa": st.column_config.NumberColumn("Kappa", format="%.2f"),
                                "alpha": st.column_config.NumberColumn("Alpha", format="%.2f")})

    st.subheader(f"Disagreements to discuss ({len(rep.disagreements)})", anchor=False)
    if rep.disagreements.empty:
        st.caption("None.")
    else:
        d = rep.disagreements.rename(columns={"a_only": f"{a} says (and {b} not)", "b_only": f"{b} says (and {a} not)",
                                              "both": "Both say"})
        st.dataframe(d.drop(columns=["segment_id"]), hide_index=True, width="stretch",
                     column_config={"text": st.column_config.TextColumn("Segment", width="large")})
    st.download_button("Download report (JSON)", json.dumps(rep.to_dict(), indent=2, ensure_ascii=False),
                       file_name="agreement.json", mime="application/json", key="agreement_download")
