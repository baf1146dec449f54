"""Template page: browse the code tree, and edit it with the decisions following.

Every edit goes through :mod:`coder_assist.app.edit` in one transaction, so decisions are never
left on a code that is gone: merging moves them to the target, splitting asks where each
coded passage goes, and replacing the template from YAML asks where the decisions of codes
that would disappear go (or keeps those codes retired, decisions and all).
"""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st
import yaml

from coder_assist.app import edit
from coder_assist.core.template import PATH_SEP, Template, parse_template, slugify
from coder_assist.core.errors import CoderAssistError
from coder_assist.app.edit import FIELD_LABELS
from coder_assist.app.projects import Project
from ui import common, widgets

CODE_KEY = "tpl_code"
FLASH_KEY = "tpl_flash"
TAB_KEY = "tpl_tab"  # the open tab of the edit tabs (its label)
SPLIT_N_KEY = "tpl_split_n"
SPLIT_ASSIGN_KEY = "tpl_split_assign"  # {segment_id: part index}
SPLIT_EDITOR_VERSION = "tpl_split_editor_v"
KEEP_RETIRED = "__retire__"

_CSS = """
<style>
.ca-ex { border-left: 3px solid rgba(128, 128, 128, .45); padding: .15rem .6rem; margin: .3rem 0; font-style: italic; }
.ca-exsrc { font-size: .8em; opacity: .7; font-style: normal; }
.st-key-tpl_tree [data-testid="stVerticalBlock"] { gap: 0; }
[class*="st-key-tpl_tree_"] button { min-height: 1.7rem; padding: .05rem .4rem; justify-content: flex-start; text-align: left; width: 100%; }
[class*="st-key-tpl_tree_"] button p { font-size: .92rem; text-align: left; }
.st-key-tpl_tree [class*="st-key-tpl_tree_1_"] { padding-left: 1.1rem; }
.st-key-tpl_tree [class*="st-key-tpl_tree_2_"] { padding-left: 2.2rem; }
.st-key-tpl_tree [class*="st-key-tpl_tree_3_"] { padding-left: 3.3rem; }
.st-key-tpl_tree [class*="st-key-tpl_tree_4_"] { padding-left: 4.4rem; }
.ca-rv-text { border-left: 3px solid rgba(128, 128, 128, .45); padding: .15rem .6rem; margin: .2rem 0 .4rem; font-size: .92em; }
.ca-rv-new { border-left-color: rgba(0, 150, 80, .7); }
</style>
"""




def _flash(kind: str, text: str) -> None:
    widgets.flash(FLASH_KEY, kind, text)


def _leaf(path: str) -> str:
    return path.split(PATH_SEP)[-1]


def _run(action, success: str) -> bool:
    """Run one edit; show its error instead of raising. Returns whether it worked."""
    try:
        result = action()
    except CoderAssistError as exc:
        _flash("error", f"Not changed: {exc}")
        return False
    _flash("ok", success.format(result=result))
    return True


# --------------------------------------------------------------------------- callbacks
#
# Every edit runs in an on_click callback: before the page is drawn again, so the page shows
# the template as the edit left it, and the callback may move the code selection.


def _on_save(cid: str) -> None:
    project, name = common.page_context()
    new_name = st.session_state.get(f"tpl_name_{cid}", "")
    keys = {"description": f"tpl_desc_{cid}", "include": f"tpl_inc_{cid}", "exclude": f"tpl_exc_{cid}"}
    fields = {field: st.session_state.get(key) or "" for field, key in keys.items()}

    def save():
        code = project.template().codes[cid]
        updated = 0
        if " ".join(new_name.split()) != code.name:
            edit.apply_rename(project, cid, new_name, coder=name)
            updated = len(edit.history(project)[-1].get("references_updated", []))
        if (fields["description"], fields["include"], fields["exclude"]) != (code.description, code.include, code.exclude):
            edit.apply_update(project, cid, coder=name, **fields)
        return (f" {_count(updated, 'note')} of other codes naming it in quotes now use{'s' if updated == 1 else ''} the new name."
                if updated else "")

    _run(save, "Saved. Decisions stay with the code (its id does not change).{result}")


def _on_move(cid: str, parent: str | None) -> None:
    project, name = common.page_context()
    _run(lambda: edit.apply_move(project, cid, parent, coder=name), "Moved. Decisions stay with the code.")


def _on_merge(cid: str, target: str) -> None:
    project, name = common.page_context()
    if _run(lambda: edit.apply_merge(project, cid, target, coder=name), "Merged: {result} log entries moved to the code kept."):
        st.session_state[CODE_KEY] = target


def _on_add_example(cid: str, text: str, source: str) -> None:
    project, name = common.page_context()
    _run(lambda: edit.apply_add_example(project, cid, text, source, coder=name),
         "Added as an example excerpt. It is used the next time suggestions are computed.")


def _on_add_code(cid: str) -> None:
    project, name = common.page_context()
    ss = st.session_state
    example = (ss.get("tpl_new_example") or "").strip()
    result: list[str] = []

    def add():
        result.append(edit.apply_add_code(project, ss.get("tpl_new_name") or "", parent_id=ss.get(f"tpl_new_parent_{cid}"),
                                          description=ss.get("tpl_new_desc") or "", examples=[example] if example else [], coder=name))

    if _run(add, "Added. It gets suggestions the next time they are computed; code passages with it by hand meanwhile."):
        ss[CODE_KEY] = result[0]
        for k in ("tpl_new_name", "tpl_new_desc", "tpl_new_example"):
            ss[k] = ""


def _on_split(cid: str, parts: list, assign: dict, ex_assign: dict, n_segs: int) -> None:
    project, name = common.page_context()
    result: list[list[str]] = []
    if _run(lambda: result.append(edit.apply_split(project, cid, parts, assign, examples=ex_assign, coder=name)),
            f"Split into {len(parts)} codes; {_count(n_segs, 'coded passage')} reassigned."):
        st.session_state.pop(SPLIT_ASSIGN_KEY, None)
        st.session_state[CODE_KEY] = result[0][0]


def _on_pick(cid: str) -> None:
    st.session_state[CODE_KEY] = cid


def _on_review_fix(item_id: int, cid: str) -> None:
    project, name = common.page_context()
    if _run(lambda: edit.apply_review_fix(project, item_id, coder=name), "Fixed."):
        st.session_state[CODE_KEY] = cid
        # The edit form keeps what it last showed; drawn again from the template, a later Save
        # cannot put the text the fix replaced back.
        for key in (f"tpl_name_{cid}", f"tpl_desc_{cid}", f"tpl_inc_{cid}", f"tpl_exc_{cid}"):
            st.session_state.pop(key, None)


def _on_review_keep(item_id: int) -> None:
    project, name = common.page_context()
    _run(lambda: edit.keep_review_item(project, item_id, coder=name), "Kept as it is.")


def _on_undo() -> None:
    project, name = common.page_context()
    if _run(lambda: edit.undo_last_edit(project, coder=name)["op"].replace("_", " "),
            "Undone ({result}): the template is as it was before that edit, and the decisions it moved are back."):
        # The edit forms keep what they last showed: drawn again from the restored template.
        for key in [k for k in st.session_state if str(k).startswith(("tpl_name_", "tpl_desc_", "tpl_inc_", "tpl_exc_"))]:
            st.session_state.pop(key, None)


def _on_replace(new: Template, mapping: dict) -> None:
    project, name = common.page_context()
    if _run(lambda: sum(edit.replace_template(project, new, mapping, coder=name).values()),
            "Template replaced: {result} decisions moved. Compute suggestions again (Import page) to score the new codes."):
        st.session_state.pop(CODE_KEY, None)


# --------------------------------------------------------------------------- the tree


def _label(n: int, singular: str, plural: str | None = None) -> str:
    from coder_assist.app.figures import label

    return label(n, singular, plural)


def decision_counts(project: Project) -> dict[str, dict[str, int]]:
    """Per code, from :mod:`coder_assist.app.figures`: ``accepted`` (passages coded: distinct
    passages with a current accept by any coder), ``in_force`` (decisions in force, all
    coders) and ``decisions`` (log entries of any action, undos included)."""
    from coder_assist.app import figures

    out: dict[str, dict[str, int]] = {}
    for key, series in (("accepted", figures.passages_coded(project)), ("in_force", figures.decisions_in_force_per_code(project))):
        for code, n in series.items():
            out.setdefault(code, {})[key] = int(n)
    for code, n in project.decisions()["code_id"].value_counts().items():
        out.setdefault(code, {})["decisions"] = int(n)
    return out


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def tree_buttons(template: Template, counts: dict[str, dict[str, int]], selected: str | None) -> None:
    """The code tree as one button per code (a click, or Tab and Enter, selects it); the
    selected code's button is highlighted. Keys ``tpl_tree_<depth>_<id slug>`` carry the
    depth, which the page's CSS indents."""
    seen: set[str] = set()
    dots: list[str] = []
    for c in template.codes.values():
        slug = slugify(c.id)
        key = f"tpl_tree_{min(c.depth, 4)}_{slug}"
        if key in seen:
            key = f"{key}-{len(seen)}"
        seen.add(key)
        if c.is_leaf:
            label = f"{c.name} · {len(c.examples)} ex · {counts.get(c.id, {}).get('accepted', 0)} coded"
        else:
            label = f"**{c.name}**"
        st.button(label.replace("[", "\\[").replace("]", "\\]"), key=key, on_click=_on_pick, args=(c.id,),
                  type="primary" if c.id == selected else "tertiary", help=c.path_str)
        if c.color:
            dots.append(f'.st-key-{key} button p::before {{ content: ""; display: inline-block; width: .6rem; height: .6rem; '
                        f'border-radius: 50%; margin-right: .4rem; background: {c.color}; }}')
    if dots:
        st.html("<style>" + "\n".join(dots) + "</style>")


def tree_key(template: Template, cid: str) -> str:
    """The tree button's key for a code (tests click it)."""
    return f"tpl_tree_{min(template.codes[cid].depth, 4)}_{slugify(cid)}"


def _review_section(name: str | None, template: Template, items: list) -> None:
    """What the template edits left that may contradict, each with its fix or "keep as is"."""
    with st.container(border=True, key="tpl_review"):
        st.markdown(f"**Check after the last edits: {_count(len(items), 'item')}** · each may contradict the template as it "
                    "is now. *Fix* applies the proposed text; *Keep as is* takes it off the list.")
        for k, item in enumerate(items):
            if k:
                st.divider()
            code = template.codes[item.code_id]
            label = FIELD_LABELS.get(item.field, item.field)
            body = f'<div><b>{html.escape(code.name)}</b> · {label}: {html.escape(item.why)}</div>'
            if item.field == "examples":
                body += f'<div class="ca-rv-text"><b>Excerpt:</b> {html.escape(item.text)}</div>'
            elif item.field == "counter_examples":
                body += f'<div class="ca-rv-text"><b>Counter-example:</b> {html.escape(item.text)}</div>'
            else:
                body += f'<div class="ca-rv-text"><b>Now:</b> {html.escape(item.text or "(empty)")}</div>'
                if item.fix is not None:
                    body += f'<div class="ca-rv-text ca-rv-new"><b>Proposed:</b> {html.escape(item.fix or "(empty)")}</div>'
            text_col, buttons = st.columns([5, 1], vertical_alignment="center")
            text_col.html(_CSS + body)
            with buttons:
                if item.fix is not None:
                    st.button("Fix", key=f"tpl_rv_fix_{item.id}", type="primary", disabled=not name, help=item.fix_label,
                              on_click=_on_review_fix, args=(item.id, item.code_id), width="stretch")
                st.button("Keep as is", key=f"tpl_rv_keep_{item.id}", disabled=not name, on_click=_on_review_keep,
                          args=(item.id,), width="stretch", help="Take it off the list; the template stays as it is")
                st.button("Open the code", key=f"tpl_rv_open_{item.id}", on_click=_on_pick, args=(item.code_id,),
                          width="stretch", type="tertiary")


def code_html(template: Template, cid: str) -> str:
    c = template.codes[cid]
    parts = [f'<div class="ca-exsrc">{html.escape(PATH_SEP.join(c.path[:-1]))}</div>' if c.parent_id else ""]
    if c.description:
        parts.append(f"<p>{html.escape(c.description)}</p>")
    for label, val in (("Include", c.include), ("Exclude", c.exclude)):
        if val:
            parts.append(f"<p><b>{label}:</b> {html.escape(val)}</p>")
    if c.examples:
        parts.append(f"<p><b>Example excerpts ({len(c.examples)})</b></p>")
        for e in c.examples:
            src = f' <span class="ca-exsrc">— {html.escape(e.source)}</span>' if e.source else ""
            parts.append(f'<div class="ca-ex">{html.escape(e.text)}{src}</div>')
    if c.counter_examples:
        parts.append(f"<p><b>Counter-examples ({len(c.counter_examples)})</b>: look alike, but are not this code</p>")
        for e in c.counter_examples:
            parts.append(f'<div class="ca-ex">{html.escape(e.text)}</div>')
    return "".join(parts)


# --------------------------------------------------------------------------- page


def render() -> None:
    project, name = common.page_context()
    st.header("Template", anchor=False)
    widgets.show_flash(FLASH_KEY)
    template = project.template()
    counts = decision_counts(project)
    codes = template.codes
    if st.session_state.get(CODE_KEY) not in codes:
        st.session_state[CODE_KEY] = next(iter(codes))
    last = edit.undoable_edit(project)
    if last:
        st.button(f"Undo last template edit ({last['op'].replace('_', ' ')}"
                  f"{': ' + _leaf(last.get('from') or last['path']) if last.get('from') or last.get('path') else ''})", key="tpl_undo", icon=":material/undo:",
                  disabled=not name, on_click=_on_undo,
                  help="Puts the template back as it was before the last edit made here or in Revise, and moves back "
                       "the decisions that edit moved. Recorded in the template history.")
    items = edit.open_review(project)
    if items:
        st.info(f"The last template edits left {_count(len(items), 'thing')} that may contradict the template: "
                "see **Check after the last edits**, under the edit tabs.", icon=":material/rule:")
    st.html(_CSS)
    left, right = st.columns([2, 3], gap="large")
    with left:
        st.caption(f"**{html.escape(template.name)}** · {_count(len(template.leaves()), 'code')} in "
                   f"{_count(len(template.roots()), 'theme')} · click a code to open it")
        with st.container(height=640, border=True, key="tpl_tree"):
            tree_buttons(template, counts, st.session_state.get(CODE_KEY))
    with right:
        st.selectbox("Code", list(codes), format_func=lambda c: codes[c].path_str, key=CODE_KEY,
                     help="Type to search. The code's details and the edits below apply to it.")
        cid = st.session_state[CODE_KEY]
        code = codes[cid]
        c_counts = counts.get(cid, {})
        st.subheader(code.name, anchor=False)
        st.caption(
            ("Theme / sub-theme (has sub-codes)" if not code.is_leaf else "Code")
            + f" · id `{cid}` · {_label(c_counts.get('accepted', 0), 'passage coded', 'passages coded')}"
            + f" · {_label(c_counts.get('in_force', 0), 'decision in force', 'decisions in force')} · {_label(c_counts.get('decisions', 0), 'log entry', 'log entries')}"
        )
        st.html(_CSS + code_html(template, cid))
        if not name:
            st.info("Enter your name in the sidebar to edit the template: every edit is recorded with it.", icon=":material/badge:")
        revise_open = _edits(project, name, template, cid, counts)
    if revise_open:
        from ui.revise import render_revise

        st.subheader("Revise the template", anchor=False)
        render_revise(project, name)
    if items:
        _review_section(name, template, items)
    st.divider()
    _replace_section(project, name, template)
    hist = edit.history(project)
    if hist:
        with st.expander(f"Template history ({_count(len(hist), 'edit')})"):
            st.dataframe(
                pd.DataFrame([{"when": h.get("at") or "", "who": h.get("coder") or "", "what": h.get("op") or "",
                               "code": h.get("from") or h.get("path") or h.get("code") or h.get("template") or "",
                               "decisions moved": sum(len(v) for v in h.get("moved_decisions", {}).values()),
                               "notes updated": len(h.get("references_updated", [])),
                               "to review": len(h.get("review", [])) if h.get("op") not in ("review_fix", "review_keep") else 0}
                              for h in reversed(hist)]),
                hide_index=True, width="stretch",
            )


def _edits(project: Project, name: str | None, template: Template, cid: str, counts: dict) -> bool:
    """The edit tabs of code ``cid``. True if the Revise tab is the open one."""
    code = template.codes[cid]
    off = not name
    # "rerun": a tab knows whether it is open, so the revision report (encoder, clustering) is
    # only computed while its tab is the one shown.
    tabs = st.tabs(["Edit", "Add example", "Add code", "Move", "Merge", "Split", "Revise"], key=TAB_KEY, on_change="rerun")
    with tabs[0]:
        with st.form(f"tpl_edit_form_{cid}", border=False):
            st.text_input("Name", value=code.name, key=f"tpl_name_{cid}")
            st.text_area("Description", value=code.description, height=100, key=f"tpl_desc_{cid}")
            st.text_input("Include when", value=code.include, key=f"tpl_inc_{cid}")
            st.text_input("Exclude when", value=code.exclude, key=f"tpl_exc_{cid}")
            st.form_submit_button("Save", type="primary", disabled=off, on_click=_on_save, args=(cid,))
    with tabs[1]:
        _add_example(project, name, template, cid)
    with tabs[2]:
        _add_code(project, name, template, cid)
    with tabs[3]:
        top = "__top__"
        parents = [top] + [c.id for c in template.codes.values() if not c.is_leaf and c.id != cid and not _is_under(template, c.id, cid)]
        parents += [c.id for c in template.leaves() if c.id != cid and not counts.get(c.id, {}).get("decisions")]
        label = lambda p: "(top level)" if p == top else template.codes[p].path_str + ("  (becomes a theme)" if template.codes[p].is_leaf else "")  # noqa: E731
        target = st.selectbox("Move under", parents, format_func=label, index=None, placeholder="Choose the new parent…", key="tpl_move_to")
        st.button("Move", key="tpl_move", disabled=off or target is None, type="primary", on_click=_on_move,
                  args=(cid, None if target == top else target))
    with tabs[4]:
        if not code.is_leaf:
            st.caption("Only codes without sub-codes can be merged.")
        else:
            leaves = [c.id for c in template.leaves() if c.id != cid]
            target = st.selectbox("Merge into", leaves, format_func=lambda c: template.codes[c].path_str, index=None,
                                  placeholder="Choose the code to keep…", key="tpl_merge_into")
            if target:
                from coder_assist.app import figures

                fx, L = figures.merge_effect(project, cid, target), figures.label
                kept = template.codes[target].name
                text = (f"**{code.name}** leaves the template. Moving to **{kept}**: its {L(fx.source_in_force, 'decision in force', 'decisions in force')} "
                        f"({L(fx.log_entries, 'log entry', 'log entries')}, skips and undos included) and its "
                        f"{L(len(code.examples), 'example excerpt', 'example excerpts')}. ")
                if fx.lost:
                    text += (f"On {L(fx.collapsed, 'passage')} a coder has decisions on both codes: there the later one counts, so "
                             f"decisions in force on the two codes go from {fx.source_in_force + fx.target_in_force} to "
                             f"{fx.in_force_after} ({L(fx.lost, 'decision')} fewer).")
                else:
                    text += f"Decisions in force on the two codes stay {fx.in_force_after}, all on {kept}."
                st.warning(text, icon=":material/merge:")
            st.button("Merge", key="tpl_merge", type="primary", disabled=off or not target, on_click=_on_merge, args=(cid, target))
    with tabs[5]:
        _split(project, name, template, cid)
    with tabs[6]:
        if tabs[6].open:
            st.caption("The revision report covers the whole template, not only this code: it is below, across the page.")
    return bool(tabs[6].open)


def _is_under(template: Template, cid: str, ancestor: str) -> bool:
    p = template.codes[cid].parent_id
    while p is not None:
        if p == ancestor:
            return True
        p = template.codes[p].parent_id
    return False


def _add_example(project: Project, name: str | None, template: Template, cid: str) -> None:
    code = template.codes[cid]
    if not code.is_leaf:
        st.caption("Examples belong to codes without sub-codes.")
        return
    acc = project.accepted_passages(cid)
    have = {e.text for e in code.examples}
    acc = acc[[" ".join(t.split()) not in have for t in acc["text"]]]
    if acc.empty:
        st.caption("No accepted passage of this code to add yet (passages already in the examples are left out).")
        return
    opts = {int(r.segment_id): r for r in acc.itertuples(index=False)}
    seg = st.selectbox(
        "Accepted passage", list(opts),
        format_func=lambda s: f"{opts[s].transcript}: {' '.join(opts[s].text.split())[:90]}…",
        key="tpl_example_seg",
    )
    if seg is not None:
        r = opts[seg]
        st.html(_CSS + f'<div class="ca-ex">{html.escape(r.text)}<br><span class="ca-exsrc">{html.escape(r.transcript)} · coded by {html.escape(r.coders)}</span></div>')
        st.button("Add as example excerpt", key="tpl_add_example", type="primary", disabled=not name,
                  on_click=_on_add_example, args=(cid, r.text, f"{r.transcript} (coded by {r.coders})"))


def _add_code(project: Project, name: str | None, template: Template, cid: str) -> None:
    code = template.codes[cid]
    default_parent = cid if not code.is_leaf else code.parent_id
    parents = [None] + [c.id for c in template.codes.values() if not c.is_leaf]
    with st.form("tpl_add_form", border=False):
        st.selectbox("Under", parents, index=parents.index(default_parent) if default_parent in parents else 0,
                     format_func=lambda p: "(top level: a new theme)" if p is None else template.codes[p].path_str,
                     key=f"tpl_new_parent_{cid}")
        st.text_input("Name of the new code", key="tpl_new_name")
        st.text_area("Description", height=80, help="What the code means; a code needs a description or an example excerpt", key="tpl_new_desc")
        st.text_area("An example excerpt (optional)", height=68, key="tpl_new_example")
        st.form_submit_button("Add code", type="primary", disabled=not name, on_click=_on_add_code, args=(cid,))


def _split(project: Project, name: str | None, template: Template, cid: str) -> None:
    code = template.codes[cid]
    if not code.is_leaf:
        st.caption("Only codes without sub-codes can be split.")
        return
    n = st.number_input("Into how many codes", min_value=2, max_value=6, value=2, step=1, key=SPLIT_N_KEY)
    parts = []
    for k in range(int(n)):
        c1, c2 = st.columns([1, 2])
        pname = c1.text_input(f"Code {k + 1} name", key=f"tpl_split_name_{cid}_{k}")
        pdesc = c2.text_input(f"Code {k + 1} description", key=f"tpl_split_desc_{cid}_{k}")
        parts.append(edit.Part(pname.strip(), pdesc.strip()))
    labels = [p.name or f"Code {k + 1}" for k, p in enumerate(parts)]

    segs = edit.split_segments(project, cid)
    assign: dict[int, int] = st.session_state.setdefault(SPLIT_ASSIGN_KEY, {})
    assign = {s: k for s, k in assign.items() if s in segs and k < len(parts)}
    if segs:
        st.markdown(f"**Where {'does the coded passage' if len(segs) == 1 else f'do the {len(segs)} coded passages'} go?** Every decision on a passage (every coder's) moves to the code you choose.")
        info = project.decided_passages(cid)
        info["text"] = info["text"].map(lambda t: " ".join(t.split()))
        info["new code"] = [labels[assign[s]] if s in assign else "" for s in info["segment_id"]]
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        bulk = c1.selectbox("Assign every unassigned passage to", range(len(labels)), format_func=lambda k: labels[k], index=None,
                            key="tpl_split_bulk")
        if c2.button("Assign", key="tpl_split_bulk_go", disabled=bulk is None):
            for s in segs:
                assign.setdefault(s, int(bulk))
            st.session_state[SPLIT_ASSIGN_KEY] = assign
            st.session_state[SPLIT_EDITOR_VERSION] = st.session_state.get(SPLIT_EDITOR_VERSION, 0) + 1
            st.rerun()
        edited = st.data_editor(
            info[["new code", "transcript", "text", "decisions", "segment_id"]],
            key=f"tpl_split_editor_{cid}_{st.session_state.get(SPLIT_EDITOR_VERSION, 0)}",
            hide_index=True,
            width="stretch",
            disabled=["transcript", "text", "decisions", "segment_id"],
            column_config={
                "new code": st.column_config.SelectboxColumn("New code", options=labels, required=True, width="medium"),
                "text": st.column_config.TextColumn("Passage", width="large"),
                "segment_id": None,
            },
        )
        for s, lab in zip(edited["segment_id"], edited["new code"]):
            if lab in labels:
                assign[int(s)] = labels.index(lab)
        st.session_state[SPLIT_ASSIGN_KEY] = assign
    ex_assign = {}
    if code.examples:
        with st.expander(f"Example excerpts ({len(code.examples)}): which new code keeps each"):
            for i, e in enumerate(code.examples):
                ex_assign[i] = st.selectbox(e.text[:120], range(len(labels)), format_func=lambda k: labels[k], key=f"tpl_split_ex_{cid}_{i}")
    missing = [s for s in segs if s not in assign]
    ready = all(p.name for p in parts) and not missing
    if missing:
        st.caption(f"{len(missing)} of {_count(len(segs), 'passage')} still to assign.")
    st.button("Split", key="tpl_split", type="primary", disabled=not name or not ready, on_click=_on_split,
              args=(cid, parts, dict(assign), ex_assign, len(segs)))


def _replace_section(project: Project, name: str | None, template: Template) -> None:
    st.subheader("Import or replace the template", anchor=False)
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    up = c1.file_uploader("A template in YAML (see the README's template format)", type=["yaml", "yml"], key="tpl_upload")
    c2.download_button("Download this template (YAML)", template.to_yaml(), file_name=f"{slugify(template.name)}.yaml",
                       mime="application/x-yaml", width="stretch")
    if up is None:
        return
    try:
        new = parse_template(yaml.safe_load(up.getvalue().decode("utf-8-sig")), up.name)
    except yaml.YAMLError as exc:
        st.error(f"{up.name}: not valid YAML: {exc}")
        return
    except UnicodeDecodeError:
        st.error(f"{up.name}: the template is not UTF-8 text")
        return
    except CoderAssistError as exc:
        st.error(str(exc))
        return
    plan = edit.plan_replace(project, new)
    st.markdown(
        f"**{html.escape(new.name)}**: {len(new.leaves())} codes. Compared with the current template: "
        f"{len(plan.added)} new, {len(plan.removed)} gone, {len(plan.changed_path)} renamed or moved (same id: decisions stay)."
    )
    mapping: dict[str, str | None] = {}
    if plan.needs_mapping:
        st.warning(f"{_count(len(plan.needs_mapping), 'code')} that would leave the template {'has' if len(plan.needs_mapping) == 1 else 'have'} decisions. Choose where their decisions go: "
                   "a code of the new template, or keep the old code retired with its decisions.", icon=":material/call_split:")
        leaves = [c.id for c in new.leaves()]
        options = [KEEP_RETIRED] + leaves
        label = lambda c: "Keep it retired (decisions stay under the old code)" if c == KEEP_RETIRED else new.codes[c].path_str  # noqa: E731
        paths = project.code_paths()
        for cid, n in plan.needs_mapping.items():
            sug = plan.suggested_mapping.get(cid)
            choice = st.selectbox(f"{paths.get(cid, cid)} · {_count(n, 'decision')}", options, format_func=label,
                                  index=options.index(sug) if sug in options else None, placeholder="Choose…", key=f"tpl_map_{cid}")
            if choice is not None:
                mapping[cid] = None if choice == KEEP_RETIRED else choice
    missing = [c for c in plan.needs_mapping if c not in mapping]
    st.button("Replace the template", key="tpl_replace", type="primary", disabled=not name or bool(missing),
              on_click=_on_replace, args=(new, mapping))
