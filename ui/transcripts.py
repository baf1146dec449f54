"""Transcripts page: read a transcript top to bottom with its codings, and code it by hand.

The reading view shows every turn in order. Each coded passage (a segment) carries coding
stripes in the margin (one coloured bar per code applied) and labels below it; a coding of
less than its passage (a hand-coded phrase, an imported span) is underlined in its code's
colour; the model's pending suggestions for the coder are marked with dashed labels.

Two ways to code by hand, both recorded under the coder's name and undoable like any other
decision: select any text with the mouse (within a passage or across passages) and pick codes
for exactly that span; or choose a passage in the panel on the right and add or remove codes on
it (an ``accept`` / ``reject`` of the passage). A pending suggestion can be widened or narrowed
by whole sentences before it is accepted; the accepted coding then carries that span.

The reading view is a small custom component (ui/components/span_select: plain HTML and JS,
no build, no network) that reports the selection as offsets into the stored transcript text.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import html
import re
from pathlib import Path

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from coder_assist.app import coding, review
from coder_assist.core.template import PATH_SEP, Template
from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import Project
from ui import common, widgets

TRANSCRIPT_KEY = "tr_transcript"
SEGMENT_KEY = "tr_segment"
WHOSE_KEY = "tr_whose"
PENDING_KEY = "tr_pending"
ADD_CODE_KEY = "tr_add_code"
FLASH_KEY = "tr_flash"
SPAN_CODES_KEY = "tr_span_codes"  # + "_" + the selection's nonce: one code box per selection
DONE_SPAN_KEY = "_tr_span_done"  # the nonce of the selection last coded or cleared
FIT_KEY = "_tr_fit"  # suggestion id -> the span the coder fitted it to
PANE_HEIGHT = 720

_span_select = components.declare_component("span_select", path=str(Path(__file__).parent / "components" / "span_select"))

_CSS = """
<style>
.ca-doc { line-height: 1.55; }
.ca-t { margin: 0 0 .55rem 0; }
.ca-t.ca-ctx { opacity: .7; }
.ca-spk { font-weight: 600; margin-right: .35rem; }
.ca-ts { font-size: .8em; opacity: .7; margin-right: .35rem; }
.ca-seg { display: grid; grid-template-columns: 2.6rem 1fr; gap: .5rem; padding: .25rem .3rem; border-radius: .3rem; margin: .1rem 0;
           scroll-margin-top: 3rem; }
.ca-seg.ca-sel { background: rgba(240, 180, 0, .13); outline: 2px solid rgba(240, 180, 0, .55); }
.ca-bars { display: flex; gap: 3px; justify-content: flex-end; align-items: stretch; }
.ca-bar { width: 5px; border-radius: 2px; }
.ca-num { font-size: .75em; opacity: .55; margin-right: .35rem; font-variant-numeric: tabular-nums; }
.ca-labels { display: flex; flex-wrap: wrap; gap: .25rem; align-content: flex-start; margin-top: .2rem; }
.ca-labels:empty { display: none; }
.ca-chip { font-size: .74em; line-height: 1.3; padding: .05rem .4rem; border-radius: .6rem; border: 1px solid; max-width: 13rem;
           overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ca-chip.ca-pend { border-style: dashed; opacity: .8; background: transparent !important; }
.ca-legend { display: flex; flex-wrap: wrap; gap: .3rem; margin: .2rem 0 .6rem 0; }
.ca-legend .ca-chip { max-width: none; }
</style>
"""

_PALETTE = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e"]


# --------------------------------------------------------------------------- colours


def code_colors(template: Template) -> dict[str, str]:
    """A colour per code: its own, else a shade of the nearest ancestor's (so the codes of one
    theme read as one family), else one picked from its id."""
    out: dict[str, str] = {}
    for code in template.codes.values():
        base, depth, c = None, 0, code
        while c is not None:
            if c.color:
                base = c.color
                break
            depth += 1
            c = template.codes.get(c.parent_id) if c.parent_id else None
        if base is None:
            h = int(hashlib.sha1(code.id.encode()).hexdigest(), 16)
            out[code.id] = _PALETTE[h % len(_PALETTE)]
            continue
        if depth == 0:
            out[code.id] = base
            continue
        # Vary the lightness a little per leaf so neighbours in one theme can be told apart.
        r, g, b = (int(base[i : i + 2], 16) / 255 for i in (1, 3, 5))
        hh, ll, ss = colorsys.rgb_to_hls(r, g, b)
        k = int(hashlib.sha1(code.id.encode()).hexdigest(), 16) % 5
        ll = min(0.75, max(0.25, ll + (k - 2) * 0.07))
        r, g, b = colorsys.hls_to_rgb(hh, ll, ss)
        out[code.id] = "#%02x%02x%02x" % (int(r * 255), int(g * 255), int(b * 255))
    return out


def _chip(label: str, color: str, title: str, pending: bool = False) -> str:
    bg = f"{color}22"
    cls = "ca-chip ca-pend" if pending else "ca-chip"
    return f'<span class="{cls}" style="border-color:{color};background:{bg}" title="{html.escape(title)}">{html.escape(label)}</span>'


def _leaf(path: str) -> str:
    return path.split(PATH_SEP)[-1]


# --------------------------------------------------------------------------- the reading view


# Characters an HTML parser would not keep as they are (CR LF becomes LF, NUL is dropped): written
# as character references, so each text piece's DOM text is exactly the stored text.
_HTML_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _text_html(s: str) -> str:
    return _HTML_CONTROL.sub(lambda m: f"&#{ord(m.group())};", html.escape(s, quote=False))


def _pieces(text: str, start: int, end: int, marks: list[tuple[int, int, str, str]]) -> str:
    """``text[start:end]`` as runs of ``<span class="ca-x" data-s data-e>``, cut where a
    partial coding (``marks``: start, end, colour, title) begins or ends, each run under such a
    coding underlined in its colour. The component maps a selection to offsets through these."""
    cuts = sorted({start, end} | {x for a, b, _, _ in marks for x in (a, b) if start < x < end})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        over = [(c, t) for ma, mb, c, t in marks if ma <= a and b <= mb]
        style = f' style="text-decoration-color:{over[0][0]}" title="{html.escape("; ".join(t for _, t in over))}"' if over else ""
        cls = "ca-x ca-mark" if over else "ca-x"
        out.append(f'<span class="{cls}" data-s="{a}" data-e="{b}"{style}>{_text_html(text[a:b])}</span>')
    return "".join(out)


def document_html(
    text: str,
    turns: pd.DataFrame,
    segments: pd.DataFrame,
    codings: pd.DataFrame,
    pending: pd.DataFrame,
    colors: dict[str, str],
    selected: int | None,
    show_coder: bool,
    spans: pd.DataFrame | None = None,
) -> str:
    """The transcript as HTML: turns in order, coded passages with stripes and labels, partial
    codings (``spans``: start, end, code_id, code_path, coder) underlined. All transcript text
    is escaped, and every character of it is in exactly one text piece (see :func:`_pieces`)."""
    accepted = codings[codings["action"] == "accept"]
    by_seg: dict[int, list] = {}
    for r in accepted.itertuples(index=False):
        by_seg.setdefault(int(r.segment_id), []).append(r)
    pend_by_seg: dict[int, list] = {}
    for r in pending.itertuples(index=False):
        pend_by_seg.setdefault(int(r.segment_id), []).append(r)
    segs_by_turn: dict[int, list] = {}
    for s in segments.itertuples(index=False):
        segs_by_turn.setdefault(int(s.turn_idx), []).append(s)
    marks = [] if spans is None else [
        (int(r.start), int(r.end), colors.get(r.code_id, "#888"), f"{r.code_path} (coded by {r.coder})") for r in spans.itertuples(index=False)
    ]

    out = ['<div class="ca-doc">']
    for t in turns.itertuples(index=False):
        ts = f'<span class="ca-ts">[{html.escape(t.timestamp)}]</span>' if t.timestamp else ""
        spk = f'<span class="ca-spk">{html.escape(t.speaker or "(no speaker)")}:</span>'
        segs = sorted(segs_by_turn.get(int(t.idx), []), key=lambda x: int(x.start))
        if not segs:
            out.append(f'<div class="ca-t ca-ctx">{ts}{spk}{_pieces(text, int(t.start), int(t.end), marks)}</div>')
            continue
        out.append(f'<div class="ca-t">{ts}{spk}')
        for i, s in enumerate(segs):
            # Text of the turn outside every passage (rare: the segmenter covers the turn) goes
            # with the passage after it, or the last one, so the pieces stay in reading order.
            a = int(t.start) if i == 0 else int(s.start)
            b = int(t.end) if i == len(segs) - 1 else int(segs[i + 1].start)
            lead, body, tail = (a, int(s.start)), (int(s.start), int(s.end)), (int(s.end), b)
            codes = {}
            for r in by_seg.get(int(s.id), []):
                codes.setdefault(r.code_id, (r.code_path, []))[1].append(r.coder)
            bars = "".join(
                f'<span class="ca-bar" style="background:{colors.get(cid, "#888")}" title="{html.escape(p)}"></span>'
                for cid, (p, _) in codes.items()
            )
            chips = [
                _chip(_leaf(p) + (f" · {', '.join(who)}" if show_coder else ""), colors.get(cid, "#888"), f"{p} (coded by {', '.join(who)})")
                for cid, (p, who) in codes.items()
            ]
            chips += [
                _chip(f"? {_leaf(r.code_path)} {float(r.confidence):.0%}", colors.get(r.code_id, "#888"),
                      f"Suggested, not decided yet: {r.code_path} (confidence {float(r.confidence):.0%})", pending=True)
                for r in pend_by_seg.get(int(s.id), [])
            ]
            sel = " ca-sel" if selected == int(s.id) else ""
            runs = "".join(_pieces(text, x, y, marks) for x, y in (lead, body, tail) if y > x and (text[x:y].strip() or (x, y) == body))
            out.append(
                f'<div class="ca-seg{sel}" id="seg-{int(s.id)}"><div class="ca-bars">{bars}</div>'
                # Labels under the passage, not in a column beside it: the text keeps the pane's
                # width (a third column left it about 200 px wide at 1400 px).
                f'<div><span class="ca-num" data-seg="{int(s.id)}" title="Code this passage in the panel">{int(s.idx) + 1}</span>{runs}'
                f'<div class="ca-labels">{"".join(chips)}</div></div></div>'
            )
        out.append("</div>")
    out.append("</div>")
    return "".join(out)


def legend_html(codings: pd.DataFrame, colors: dict[str, str]) -> str:
    acc = codings[codings["action"] == "accept"].drop_duplicates(["segment_id", "code_id"])
    if acc.empty:
        return ""
    counts = acc.groupby(["code_id", "code_path"]).size().reset_index(name="n").sort_values("n", ascending=False)
    chips = "".join(_chip(f"{r.n} × {_leaf(r.code_path)}", colors.get(r.code_id, "#888"), r.code_path) for r in counts.itertuples(index=False))
    return f'<div class="ca-legend">{chips}</div>'


# --------------------------------------------------------------------------- callbacks




def _flash(kind: str, text: str) -> None:
    st.session_state[FLASH_KEY] = (kind, text)


def _show_flash() -> None:
    item = st.session_state.pop(FLASH_KEY, None)
    if item:
        kind, text = item
        (st.error if kind == "error" else st.toast)(text)


def _path(project: Project, code_id: str) -> str:
    return project.code_path(code_id) or code_id


def _on_add(segment_id: int) -> None:
    project, name = common.page_context()
    code_id = st.session_state.get(ADD_CODE_KEY)
    if not name or not code_id:
        return
    try:
        done = review.add_code(project, segment_id, code_id, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    st.session_state[ADD_CODE_KEY] = None
    _flash("ok", f"Coded as {_leaf(_path(project, code_id))}" if done else "You already have that code on this passage.")
    if done:
        common.after_decision(project, name)


def _on_remove(segment_id: int, code_id: str) -> None:
    project, name = common.page_context()
    if not name:
        return
    try:
        done = review.remove_code(project, segment_id, code_id, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    _flash("ok", f"Removed {_leaf(_path(project, code_id))}" if done else "That code was already off this passage.")
    if done:
        common.after_decision(project, name)


def _on_decide(suggestion_id: int, action: str) -> None:
    project, name = common.page_context()
    if not name:
        return
    try:
        done = review.decide_once(project, suggestion_id, action, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    if done is None:
        _flash("ok", "Already decided (in another tab?); nothing recorded twice.")
    else:
        common.after_decision(project, name)


def _fitted(suggestion_id: int, default: tuple[int, int]) -> tuple[int, int]:
    return tuple(st.session_state.get(FIT_KEY, {}).get(suggestion_id, default))


def _sentences(tid: int, text: str, turns: pd.DataFrame) -> list[tuple[int, int]]:
    """The transcript's sentences, kept per transcript text for the session (a click on a fit
    button should not run the sentencizer over the whole transcript again)."""
    cache = st.session_state.setdefault("_tr_sentences", {})
    key = (tid, hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest())
    if key not in cache:
        cache.clear()
        cache[key] = coding.sentence_bounds(text, turns)
    return cache[key]


def _on_fit(tid: int, suggestion_id: int, passage: tuple[int, int], edge: str, step: int) -> None:
    """Move one edge of the suggestion's span (its passage until fitted) by a sentence. The
    span is read here, not bound at drawing time, so two quick clicks move it twice."""
    project, _ = common.page_context()
    sentences = _sentences(tid, project.transcript_text(tid), project.turns(tid))
    fits = st.session_state.setdefault(FIT_KEY, {})
    span = _fitted(suggestion_id, passage)
    fits[suggestion_id] = coding.move_span(span, sentences, edge, step)
    if tuple(fits[suggestion_id]) == tuple(span):
        _flash("ok", "No sentence to move to in that direction.")


def _on_accept_fitted(suggestion_id: int, segment_id: int, code_id: str, passage: tuple[int, int]) -> None:
    """Accept a suggestion: on its passage, or on the span the coder fitted it to."""
    span = _fitted(suggestion_id, passage)
    if span == passage:
        _on_decide(suggestion_id, "accept")
        return
    project, name = common.page_context()
    if not name:
        return
    try:
        done = coding.accept_span(project, suggestion_id, segment_id, code_id, span, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    if done is None:
        _flash("ok", "Already decided (in another tab?); nothing recorded twice.")
        return
    st.session_state.get(FIT_KEY, {}).pop(suggestion_id, None)
    _flash("ok", f"Accepted on the fitted span ({span[1] - span[0]} characters)")
    common.after_decision(project, name)


def _on_undo() -> None:
    project, name = common.page_context()
    if not name:
        return
    undone = review.undo_last(project, name)
    if not undone:
        _flash("ok", "Nothing to undo.")
        return
    # undone[0] is the latest decision: for a "Different code..." the accept of the chosen code.
    what = "different code" if len(undone) > 1 else {"accept": "accepted", "reject": "rejected", "skip": "skipped"}.get(undone[0].action, undone[0].action)
    _flash("ok", f"Undone: {what} ({_leaf(_path(project, undone[0].code_id))})")


def _step(ids: list[int], delta: int) -> None:
    cur = st.session_state.get(SEGMENT_KEY)
    i = ids.index(cur) if cur in ids else 0
    st.session_state[SEGMENT_KEY] = ids[max(0, min(len(ids) - 1, i + delta))]


def _next_pending(ids: list[int], pending_segs: set[int]) -> None:
    cur = st.session_state.get(SEGMENT_KEY)
    i = ids.index(cur) if cur in ids else -1
    for sid in ids[i + 1 :] + ids[: i + 1]:
        if sid in pending_segs:
            st.session_state[SEGMENT_KEY] = sid
            return


# --------------------------------------------------------------------------- page


def render() -> None:
    project, name = common.page_context()
    st.header("Transcripts", anchor=False)
    _show_flash()
    transcripts = project.transcripts()
    if transcripts.empty:
        st.info("No transcripts yet: add some on the Import page.")
        return
    labels = {int(r.id): f"{r.name}  ·  {int(r.n_segments)} passages" for r in transcripts.itertuples(index=False)}
    c1, c2, c3 = st.columns([3, 2, 2], vertical_alignment="bottom")
    tid = c1.selectbox("Transcript", list(labels), format_func=labels.get, key=TRANSCRIPT_KEY)
    whose = c2.radio("Codings shown", ["mine", "all"], format_func={"mine": "Mine", "all": "All coders"}.get, horizontal=True,
                     key=WHOSE_KEY, index=0 if name else 1, help="Whose accepted codes the stripes and labels show")
    show_pending = c3.toggle("Mark pending suggestions", value=True, key=PENDING_KEY,
                             help="Dashed labels: the model's suggestions you have not decided yet")
    tid = int(tid)
    attrs = review.transcript_attributes(project, tid)
    if attrs:
        st.caption(" · ".join(f"{k}: {v}" for k, v in attrs.items()))

    template = project.template()
    colors = code_colors(template)
    segments = review.transcript_segments(project, tid)
    turns = project.turns(tid)
    text = project.transcript_text(tid)
    codings = review.transcript_codings(project, tid)
    codings = codings[codings["code_active"] == 1]
    shown = codings[codings["coder"] == name] if whose == "mine" and name else codings
    sugg = review.transcript_suggestions(project, tid)
    mine = codings[codings["coder"] == name] if name else codings.iloc[0:0]
    decided = {(int(s), c) for s, c, a in zip(mine["segment_id"], mine["code_id"], mine["action"]) if a in ("accept", "reject")}
    pending = sugg[[(int(s), c) not in decided for s, c in zip(sugg["segment_id"], sugg["code_id"])]] if len(sugg) else sugg

    ids = [int(x) for x in segments["id"]]
    if not ids:
        st.info("This transcript has no passages to code (only interviewer turns or notes).")
        return
    if st.session_state.get(SEGMENT_KEY) not in ids:
        st.session_state[SEGMENT_KEY] = ids[0]
    selected = int(st.session_state[SEGMENT_KEY])

    spans = _partial_codings(project, tid, segments, name if whose == "mine" else None)
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.html(_CSS + legend_html(shown, colors))
        doc = document_html(text, turns, segments, shown, pending if show_pending else pending.iloc[0:0],
                            colors, selected, show_coder=whose == "all", spans=spans)
        # Component keyword arguments all go to the frontend, so the callback's own are bound here.
        _span_select(html=doc, height=PANE_HEIGHT, scroll_to=f"seg-{selected}", key=f"tr_doc_{tid}", default=None,
                     on_change=functools.partial(_on_select, f"tr_doc_{tid}", ids))
    with right:
        _span_panel(project, name, tid, text)
        _panel(project, name, segments, ids, selected, codings, pending, text, tid)


def _partial_codings(project: Project, tid: int, segments: pd.DataFrame, coder: str | None) -> pd.DataFrame:
    """The codings in force on this transcript whose span is not their passage's (a hand-coded
    phrase, a span across passages, an imported span, a fitted suggestion): underlined in the
    text. Only active codes; one coder's or everyone's."""
    cod = project.codings(tid)
    paths = dict(review.leaf_codes(project))  # active codes only, as the stripes show
    seg = segments.set_index("id")
    own = [(int(r.start), int(r.end)) != (int(seg.at[r.segment_id, "start"]), int(seg.at[r.segment_id, "end"])) if r.segment_id in seg.index else True
           for r in cod.itertuples(index=False)]
    cod = cod[pd.Series(own, index=cod.index, dtype=bool) & cod["code_id"].isin(paths)]
    if coder:
        cod = cod[cod["coder"] == coder]
    return cod.assign(code_path=cod["code_id"].map(paths))


def _on_select(key: str, ids: list[int]) -> None:
    """The reading view reported a selection (a span) or a click on a passage's number."""
    value = st.session_state.get(key)
    if not isinstance(value, dict):
        return
    if value.get("kind") == "passage" and value.get("id") in ids:
        st.session_state[SEGMENT_KEY] = int(value["id"])


def _selection(tid: int) -> tuple[int, int, float] | None:
    """The span last selected in this transcript's reading view and not yet coded or cleared."""
    value = st.session_state.get(f"tr_doc_{tid}")
    if not isinstance(value, dict) or value.get("kind") != "span":
        return None
    if st.session_state.get(DONE_SPAN_KEY) == value.get("nonce"):
        return None
    try:
        start, end = int(value["start"]), int(value["end"])
    except (KeyError, TypeError, ValueError):
        return None
    return (start, end, value.get("nonce")) if 0 <= start < end else None


def _on_code_span(tid: int, start: int, end: int, nonce) -> None:
    project, name = common.page_context()
    code_ids = list(st.session_state.get(_span_codes_key(nonce)) or [])
    if not name or not code_ids:
        return
    try:
        done = coding.code_span(project, tid, start, end, code_ids, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    st.session_state[DONE_SPAN_KEY] = nonce
    leaves = ", ".join(_leaf(_path(project, c)) for c in code_ids)
    _flash("ok", f"Coded the selected text ({end - start} characters) as {leaves}" if done else "You already have those codes on exactly this text.")
    if done:
        common.after_decision(project, name)


def _on_clear_span(nonce) -> None:
    st.session_state[DONE_SPAN_KEY] = nonce


def _span_codes_key(nonce) -> str:
    """The code box of one selection. Keyed by the selection, not once for the page: the
    browser keeps a widget's last value while a widget of that key is on the page and sends it
    with later reruns, so a box reset by a callback came back with the codes just recorded and
    they were recorded again on the next selection (the issue-11 lesson, as on the Review page)."""
    return f"{SPAN_CODES_KEY}_{nonce}"


def _span_panel(project: Project, name: str | None, tid: int, text: str) -> None:
    """Code the text selected with the mouse: exactly its characters, with one or more codes."""
    sel = _selection(tid)
    if sel is None:
        st.caption("Select text in the transcript with the mouse (a phrase, or across passages) to code exactly that text.")
        return
    start, end, nonce = sel
    if end > len(text):
        return
    with st.container(border=True, key="tr_span_box"):
        st.markdown(f"**Selected text** :gray[(characters {start}–{end})]")
        shown = " ".join(text[start:end].split())
        st.markdown("> " + widgets.md_escape(shown[:600] + ("…" if len(shown) > 600 else "")))
        paths = dict(review.leaf_codes(project))
        st.multiselect("Codes for the selected text", list(paths), format_func=paths.get, key=_span_codes_key(nonce),
                       placeholder="Type to search the codes…", disabled=not name)
        c1, c2 = st.columns(2)
        c1.button("Code selection", key="tr_code_span", type="primary", width="stretch", on_click=_on_code_span,
                  args=(tid, start, end, nonce), disabled=not name or not st.session_state.get(_span_codes_key(nonce)))
        c2.button("Clear", key="tr_clear_span", width="stretch", on_click=_on_clear_span, args=(nonce,))


def _panel(project: Project, name: str | None, segments: pd.DataFrame, ids: list[int], selected: int,
           codings: pd.DataFrame, pending: pd.DataFrame, text: str, tid: int) -> None:
    st.subheader("Code a passage", anchor=False)
    seg_rows = {int(r.id): r for r in segments.itertuples(index=False)}

    def label(sid: int) -> str:
        r = seg_rows[sid]
        snippet = " ".join(str(r.text).split())
        return f"{int(r.idx) + 1} · {r.speaker}: {snippet[:70]}{'…' if len(snippet) > 70 else ''}"

    st.selectbox("Passage", ids, format_func=label, key=SEGMENT_KEY, help="The number is the one in the margin of the transcript")
    # Two buttons a row at most: three in the panel's width were cut to "Previ...".
    b1, b2 = st.columns(2)
    b1.button("Previous", key="tr_prev", icon=":material/arrow_upward:", on_click=_step, args=(ids, -1), width="stretch")
    b2.button("Next", key="tr_next", icon=":material/arrow_downward:", on_click=_step, args=(ids, 1), width="stretch")
    pending_segs = {int(s) for s in pending["segment_id"]}
    st.button("Next pending suggestion", key="tr_next_pending", icon=":material/skip_next:", on_click=_next_pending, args=(ids, pending_segs),
              width="stretch", disabled=not pending_segs, help="The next passage with a suggestion you have not decided")

    seg = seg_rows[selected]
    with st.container(border=True):
        st.markdown(f"**{widgets.md_escape(str(seg.speaker))}:** " + widgets.md_escape(" ".join(str(seg.text).split())))

    if not name:
        st.info("Enter your name in the sidebar to code passages by hand.", icon=":material/badge:")
    mine = codings[(codings["segment_id"] == selected) & (codings["coder"] == name) & (codings["action"] == "accept")] if name else codings.iloc[0:0]
    st.markdown("**Your codes on this passage**")
    if mine.empty:
        st.caption("None yet.")
    for r in mine.itertuples(index=False):
        c1, c2 = st.columns([2, 1], vertical_alignment="center")
        c1.markdown(f"{widgets.md_escape(_leaf(r.code_path))}  \n:gray[{widgets.md_escape(r.code_path)}]")
        c2.button("Remove", key=f"tr_rm_{r.code_id}", help=f"Take {r.code_path} off this passage (recorded as a reject)",
                  on_click=_on_remove, args=(selected, r.code_id), disabled=not name, width="stretch")

    _suggestions_section(name, seg, selected, pending, text, tid)

    have = set(mine["code_id"])
    leaves = [(cid, path) for cid, path in review.leaf_codes(project) if cid not in have]
    paths = dict(leaves)
    c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
    c1.selectbox("Add a code", list(paths), format_func=paths.get, index=None, placeholder="Type to search the codes…",
                 key=ADD_CODE_KEY, disabled=not name)
    c2.button("Add", key="tr_add", type="primary", on_click=_on_add, args=(selected,), width="stretch",
              disabled=not name or not st.session_state.get(ADD_CODE_KEY))

    others = codings[(codings["segment_id"] == selected) & (codings["coder"] != name) & (codings["action"] == "accept")]
    if len(others):
        by = others.groupby("coder")["code_path"].apply(lambda s: ", ".join(_leaf(p) for p in s))
        st.caption("Other coders: " + "; ".join(f"{c}: {v}" for c, v in by.items()))
    can_undo = bool(name) and review.last_decision(project, name) is not None
    st.button("Undo last", key="tr_undo", icon=":material/undo:", on_click=_on_undo, disabled=not can_undo,
              help="Take back your last decision, made on any page (it stays in the log as an undo event)")


def _suggestions_section(name: str | None, seg, selected: int, pending: pd.DataFrame, text: str, tid: int) -> None:
    """The passage's pending suggestions: accept (on the passage, or on the span fitted to
    sentences) or reject."""
    here = pending[pending["segment_id"] == selected]
    if len(here):
        st.markdown("**Suggested, waiting for your decision**")
        for r in here.itertuples(index=False):
            sid = int(r.suggestion_id)
            passage = (int(seg.start), int(seg.end))
            span = _fitted(sid, passage)
            st.markdown(f"{widgets.md_escape(_leaf(r.code_path))} · {float(r.confidence):.0%}  \n:gray[{widgets.md_escape(r.code_path)}]")
            c2, c3 = st.columns(2)
            c2.button("Accept", key=f"tr_acc_{sid}", type="primary", width="stretch",
                      on_click=_on_accept_fitted, args=(sid, int(selected), r.code_id, (int(seg.start), int(seg.end))), disabled=not name)
            c3.button("Reject", key=f"tr_rej_{sid}", width="stretch",
                      on_click=_on_decide, args=(sid, "reject"), disabled=not name)
            fitted_now = span != (int(seg.start), int(seg.end))
            with st.expander("Fit to sentences before accepting", expanded=fitted_now):
                if fitted_now:
                    fitted = " ".join(text[span[0]:span[1]].split())
                    st.markdown(f"Accept codes this: :gray[(characters {span[0]}–{span[1]})]")
                    st.markdown("> " + widgets.md_escape(fitted[:600] + ("…" if len(fitted) > 600 else "")))
                else:
                    st.caption("Move the start or the end by one sentence; Accept then codes that span.")
                f1, f2 = st.columns(2)
                f1.button("Earlier start", key=f"tr_fit_start_earlier_{sid}", width="stretch", on_click=_on_fit,
                          args=(tid, sid, passage, "start", -1), help="Widen: take in the sentence before")
                f2.button("Later start", key=f"tr_fit_start_later_{sid}", width="stretch", on_click=_on_fit,
                          args=(tid, sid, passage, "start", 1), help="Narrow: leave out the first sentence")
                f3, f4 = st.columns(2)
                f3.button("Earlier end", key=f"tr_fit_end_earlier_{sid}", width="stretch", on_click=_on_fit,
                          args=(tid, sid, passage, "end", -1), help="Narrow: leave out the last sentence")
                f4.button("Later end", key=f"tr_fit_end_later_{sid}", width="stretch", on_click=_on_fit,
                          args=(tid, sid, passage, "end", 1), help="Widen: take in the sentence after")
