"""The Revise tab of the Template page: the revision report, with its edits one click away.

Four sections (:mod:`coder_assist.ml.revision`): what the template misses (clusters of passages no
code fits, each with "Add as a new code"), codes that coders confuse (each pair with "Merge"
and "Sharpen notes"), codes that do not apply, and coverage (table, heatmap, integrative
candidates). Every edit runs in a button callback through :mod:`coder_assist.app.revise_project`,
which goes through :mod:`coder_assist.app.edit` (the Template page's edits): committed before the
page is drawn again, and recorded in the template history.
"""

from __future__ import annotations

import hashlib
import html

import pandas as pd
import streamlit as st

from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import Project
from ui import widgets

REPORT_KEY = "rev_report"  # (fingerprint, ProjectRevision)
FLASH_KEY = "rev_flash"
TOP_LEVEL = "__top__"

_CSS = """
<style>
.ca-rv-q { border-left: 3px solid rgba(128, 128, 128, .45); padding: .15rem .6rem; margin: .25rem 0; font-size: .93em; }
.ca-rv-src { font-size: .8em; opacity: .7; }
.ca-rv-words { font-size: .9em; }
.ca-rv-note { font-size: .88em; opacity: .85; }
</style>
"""


def _fingerprint(project: Project) -> str:
    """Changes whenever anything the report reads changes: decisions, template, suggestions."""
    parts = project.change_mark()
    return hashlib.sha1(repr(parts).encode("utf-8")).hexdigest()


def _report(project: Project, encoder):
    from coder_assist.app.revise_project import revise_project

    fp = _fingerprint(project)
    held = st.session_state.get(REPORT_KEY)
    if held and held[0] == fp:
        return held[1]
    if encoder is None:
        from ui import common

        encoder = common.get_encoder(project.meta("model"))
    with st.spinner("Reading the decisions and clustering the passages no code fits ..."):
        report = revise_project(project, encoder, progress=False)
    st.session_state[REPORT_KEY] = (fp, report)
    return report


def _flash(kind: str, text: str) -> None:
    widgets.flash(FLASH_KEY, kind, text)


def _run(action, success) -> None:
    try:
        result = action()
    except CoderAssistError as exc:
        _flash("error", f"Not changed: {exc}")
        return
    _flash("success", success(result) if callable(success) else success)
    st.session_state.pop(REPORT_KEY, None)


# --------------------------------------------------------------------------- callbacks (commit before the rerun)


def _on_add(project_path: str, coder: str, key: str, proposal) -> None:
    from coder_assist.app.revise_project import NewCodeProposal, add_code

    ss = st.session_state
    parent = ss.get(f"rev_parent_{key}", proposal.parent_id or TOP_LEVEL)
    chosen = NewCodeProposal(ss.get(f"rev_name_{key}", proposal.name), None if parent == TOP_LEVEL else parent,
                             proposal.description, list(proposal.examples))

    def act():
        with Project.open(project_path) as p:
            cid = add_code(p, chosen, coder=coder)
            return p.template().codes[cid].path_str

    _run(act, lambda path: f"Added the code {path} with {len(chosen.examples)} example excerpt(s). Compute suggestions to have it suggested.")


def _on_merge(project_path: str, coder: str, key: str, a: str, b: str) -> None:
    from coder_assist.app.revise_project import merge

    keep = st.session_state.get(f"rev_keep_{key}", b)
    source = a if keep == b else b

    def act():
        with Project.open(project_path) as p:
            return merge(p, source, keep, coder=coder)

    _run(act, lambda n: f"Merged: {n} decision(s) moved to the code kept.")


def _on_toggle_sharpen(key: str) -> None:
    st.session_state[f"rev_sharpen_{key}"] = not st.session_state.get(f"rev_sharpen_{key}", False)


def _on_sharpen(project_path: str, coder: str, key: str, a: str, b: str) -> None:
    from coder_assist.app.revise_project import sharpen

    ss = st.session_state
    notes = {c: {"include": ss.get(f"rev_inc_{key}_{i}", ""), "exclude": ss.get(f"rev_exc_{key}_{i}", "")} for i, c in enumerate((a, b))}

    def act():
        with Project.open(project_path) as p:
            return sharpen(p, notes, coder=coder)

    _run(act, lambda changed: f"Saved the notes of {len(changed)} code(s)." if changed else "The notes were already like that; nothing changed.")
    ss[f"rev_sharpen_{key}"] = False


# --------------------------------------------------------------------------- the tab


def render_revise(project: Project, coder_name: str | None, encoder=None) -> None:
    """Draw the revision report of ``project`` with its edit buttons (edits need a coder's name)."""
    st.html(_CSS)
    widgets.show_flash(FLASH_KEY)
    report = _report(project, encoder)
    rev, template = report.revision, report.template
    st.caption(
        f"From the decisions, suggestions and embeddings this project holds ({rev.n_segments} passages). "
        "Edits made here are the Template page's edits: decisions follow them and the template history records them."
    )
    if not coder_name:
        st.info("Enter your name in the sidebar to edit the template from here.")
    off = not coder_name
    folder = str(project.folder)
    tabs = st.tabs([f"What the template misses ({len(rev.missing)})", f"Codes that coders confuse ({len(rev.confusions)})",
                    f"Codes that do not apply ({len(rev.unused)})", "Coverage"])
    with tabs[0]:
        _missing(report, folder, coder_name, off)
    with tabs[1]:
        _confusions(report, folder, coder_name, off)
    with tabs[2]:
        _unused(report)
    with tabs[3]:
        _coverage(report)


def _q(text: str, src: str = "") -> str:
    s = f' <span class="ca-rv-src">({html.escape(src)})</span>' if src else ""
    return f'<div class="ca-rv-q">{html.escape(text)}{s}</div>'


def _missing(report, folder: str, coder: str | None, off: bool) -> None:
    from coder_assist.app.revise_project import propose_code

    rev, template = report.revision, report.template
    st.markdown(f"**{rev.n_missed}** passage(s) no code fits: nobody accepted a code on them, and nothing was suggested "
                f"or every suggestion was rejected. **{len(rev.missing)}** cluster(s) among them, largest and most coherent first.")
    if not rev.missing:
        st.caption("Nothing to cluster yet: decide more suggestions, or there are too few passages that no code fits.")
    themes = [c.id for c in template.codes.values() if not c.is_leaf]
    labels = {TOP_LEVEL: "(top level: a new theme)"} | {t: template.codes[t].path_str for t in themes}
    examples_of = {cid: {e.text for e in code.examples} for cid, code in template.codes.items() if code.is_leaf}
    for c in rev.missing:
        key = str(c.segment_ids[0])
        proposal = propose_code(c, template)
        quotes = {" ".join(q.text.split()) for q in c.quotes}
        # A code made from this cluster holds its quotes as examples: say so instead of offering it twice.
        added = next((cid for cid, ex in examples_of.items() if len(ex & quotes) >= min(2, len(quotes))), None)
        with st.container(border=True, key=f"rev_cluster_{key}"):
            st.markdown(f"**{c.rank}. {c.suggested_name}** · {c.size} passages · cohesion {c.cohesion:.2f}")
            st.markdown(f'<div class="ca-rv-words">Distinctive words: <b>{html.escape(", ".join(c.words) or "(none)")}</b></div>', unsafe_allow_html=True)
            where = ", ".join(f"{t} ({n})" for t, n in list(c.transcripts.items())[:6]) + (" …" if len(c.transcripts) > 6 else "")
            attrs = " · ".join(f"{a}: " + ", ".join(f"{v} ({n})" for v, n in counts.items()) for a, counts in c.attributes.items() if counts)
            st.caption(f"From {where}" + (f" · {attrs}" if attrs else ""))
            if c.nearest_code:
                st.caption(f"Nearest existing code: {report.path(c.nearest_code)} ({c.nearest_code_similarity:.2f}); if it belongs there, "
                           "the code may need a broader description instead.")
            st.html("".join(_q(q.text, q.transcript) for q in c.quotes))
            if added:
                st.success(f"Added as {template.codes[added].path_str}: its examples are these quotes. Compute suggestions "
                           "(Import page) to have it suggested for these passages.")
                continue
            left, mid, right = st.columns([3, 3, 2], vertical_alignment="bottom")
            left.text_input("Name", value=proposal.name, key=f"rev_name_{key}", disabled=off)
            default = proposal.parent_id if proposal.parent_id in labels else TOP_LEVEL
            mid.selectbox("Parent (nearest theme first)", list(labels), index=list(labels).index(default), format_func=labels.get,
                          key=f"rev_parent_{key}", disabled=off)
            right.button("Add as a new code", key=f"rev_add_{key}", type="primary", disabled=off, on_click=_on_add,
                         args=(folder, coder, key, proposal), help="Adds the code with the first three quotes as its example excerpts.")


def _confusions(report, folder: str, coder: str | None, off: bool) -> None:
    rev, template = report.revision, report.template
    if not rev.confusions:
        st.caption("No pair of codes is confused in the decisions or the template.")
        return
    p = report.path
    table = pd.DataFrame([{
        "#": c.rank, "code A": p(c.code_a), "code B": p(c.code_b), "rejected A, chose B": c.rejected_a_chose_b,
        "rejected B, chose A": c.rejected_b_chose_a, "model A, coder B": c.model_a_coder_b, "model B, coder A": c.model_b_coder_a,
        "coded with both": c.coded_both, "template examples": c.template, "score": c.score,
    } for c in rev.confusions])
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption("Score: passages where one code was taken for the other (by a coder or the model) + template examples nearer the "
               f"other code + a quarter for each passage accepted with both.")
    for c in rev.confusions[:10]:
        key = f"{c.rank}"
        a, b = template.codes.get(c.code_a), template.codes.get(c.code_b)
        if a is None or b is None:
            continue
        with st.expander(f"{c.rank}. {a.name}  /  {b.name}  (score {c.score:g})", expanded=c.rank == 1):
            cols = st.columns(2)
            for col, code in zip(cols, (a, b)):
                with col:
                    st.markdown(f"**{code.path_str}**")
                    st.markdown(f'<div class="ca-rv-note">{html.escape(code.description or "(no description)")}</div>', unsafe_allow_html=True)
                    if code.include:
                        st.caption(f"Include: {code.include}")
                    if code.exclude:
                        st.caption(f"Exclude: {code.exclude}")
            st.html("".join(_q(e.text, f"{e.kind}: {e.detail}") for e in c.examples))
            k1, k2, k3 = st.columns([3, 1, 1], vertical_alignment="bottom")
            k1.selectbox("Merge, keeping", [c.code_b, c.code_a], format_func=p, key=f"rev_keep_{key}", disabled=off)
            k2.button("Merge", key=f"rev_merge_{key}", disabled=off, on_click=_on_merge, args=(folder, coder, key, c.code_a, c.code_b),
                      help="The other code leaves the template; its decisions and examples move to the one kept.")
            k3.button("Sharpen notes", key=f"rev_sharpen_btn_{key}", disabled=off, on_click=_on_toggle_sharpen, args=(key,))
            if st.session_state.get(f"rev_sharpen_{key}") and not off:
                with st.form(f"rev_notes_{key}", border=False):
                    cols = st.columns(2)
                    for i, (col, code) in enumerate(zip(cols, (a, b))):
                        with col:
                            st.markdown(f"**{code.name}**")
                            st.text_area("Include", value=code.include, key=f"rev_inc_{key}_{i}")
                            st.text_area("Exclude", value=code.exclude, key=f"rev_exc_{key}_{i}")
                    st.form_submit_button("Save notes", type="primary", on_click=_on_sharpen, args=(folder, coder, key, c.code_a, c.code_b))


def _unused(report) -> None:
    rev = report.revision
    if not rev.unused:
        st.caption("Every code has accepted passages from more than one participant.")
        return
    st.dataframe(pd.DataFrame([{
        "code": report.path(u.code_id), "why": u.reason, "accepted": u.accepted, "suggested": u.suggested, "rejected": u.rejected,
        "participants": ", ".join(u.participants),
    } for u in rev.unused]), hide_index=True, width="stretch", height=min(36 * (len(rev.unused) + 1) + 4, 720))
    st.caption("Accepted, suggested, rejected: passages. A code nobody accepted may still be needed later; one accepted in one "
               "participant's transcripts only may be that person's topic rather than a code of the study.")


def _coverage(report) -> None:
    import altair as alt

    from coder_assist.app.revise_project import coverage_table

    rev = report.revision
    cov = rev.coverage
    attrs = [str(c) for c in report.inputs.attributes.columns] if report.inputs is not None else []
    if attrs:
        chosen = st.multiselect("Participant attributes (the design)", attrs, default=cov.by, key="rev_cov_by",
                                help="Columns are every combination of the chosen attributes' values, in the order chosen.")
        if list(chosen) != list(cov.by):
            cov = coverage_table(report.inputs, chosen)
    by = " x ".join(cov.by) if cov.by else "all transcripts"
    if cov.table.empty:
        st.caption("No codes.")
        return
    names = {cid: report.path(cid) for cid in cov.table.index}
    table = cov.table.rename(index=names)
    table.index.name = "code"
    table.columns = [f"{c} ({cov.transcripts[c]})" for c in cov.table.columns]
    gaps = {(names[c], f"{col} ({cov.transcripts[col]})") for c, col in cov.gaps}
    st.markdown(f"Accepted passages per code and **{by}** (transcripts per cell in brackets). "
                f"**{len(cov.gaps)}** gap(s), in red: a code found in at least half of the cells, with no passage in this one.")
    styled = table.style.apply(lambda col: ["background-color: rgba(220, 50, 50, .28)" if (i, col.name) in gaps else "" for i in col.index], axis=0)
    st.dataframe(styled, width="stretch", height=min(36 * (len(table) + 1) + 4, 640))
    long = cov.table.rename(index=names).reset_index(names="code").melt(id_vars="code", var_name="cell", value_name="passages")
    long["gap"] = [(c, f"{cell} ({cov.transcripts[cell]})") in gaps for c, cell in zip(long["code"], long["cell"])]
    order = list(names.values())
    x = alt.X("cell:N", sort=list(map(str, cov.table.columns)), title=by, axis=alt.Axis(labelAngle=-30, labelLimit=220))
    y = alt.Y("code:N", sort=order, title=None, axis=alt.Axis(labelLimit=460, labelOverlap=False))
    base = alt.Chart(long)
    heat = base.mark_rect().encode(x=x, y=y, color=alt.Color("passages:Q", scale=alt.Scale(scheme="blues")),
                                   tooltip=["code", "cell", "passages", "gap"])
    holes = base.transform_filter("datum.gap").mark_rect(fill=None, stroke="#d62728", strokeWidth=2).encode(x=x, y=y)
    st.altair_chart((heat + holes).properties(height=max(160, 22 * len(order))), width="stretch")
    st.caption("Heatmap: darker = more accepted passages; red outline = gap.")
    st.markdown("**Integrative candidates**: codes whose passages sit on or next to codes of most other themes.")
    if not rev.integrative:
        st.caption("None: no code co-occurs with codes of more than half the other themes (or fewer than three themes are in use).")
    else:
        st.dataframe(pd.DataFrame([{
            "code": report.path(i.code_id), "other themes reached": len(i.themes_reached), "share": f"{i.share:.0%}", "passages": i.passages,
            "co-occurrences": i.co_occurrences, "themes": ", ".join(report.template.codes[t].name if t in report.template.codes else t for t in i.themes_reached),
        } for i in rev.integrative]), hide_index=True, width="stretch")
