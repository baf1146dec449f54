"""Review page, in two modes (the switch at the top; the choice is kept in the page address,
``?mode=triage``, so a reload keeps it):

* **Passage** (the default): one passage in context with its candidate codes, the likely ones
  ticked. 1-9 tick or untick the numbered codes, D opens a code search (type, Enter ticks the
  first match, Esc closes), Enter confirms the passage as coded: a complete label (every ticked
  code accepted, every other code rejected), one undoable unit. U undoes the last action, and
  an undone passage comes back with the codes it had ticked.
* **Triage**: one suggestion at a time, in context, with the evidence behind it (below).

Every button acts through an ``on_click`` callback bound to the suggestion that was on screen
when it was drawn. Streamlit runs the callback, which writes the decision to SQLite and commits,
before the rerun that draws the next suggestion: nothing is shown as done that is not on disk,
and a click always applies to the suggestion the coder was looking at.

Keyboard: A accept, R reject, S skip, U undo last, D "Different code..." (opens a code search
under the buttons with the cursor in it: type, and Enter picks the first match, which is
recorded at once; Esc closes it). A, S and U are Streamlit's own button shortcuts
(``st.button(shortcut=...)``, Streamlit >= 1.52), which ignore keys typed into text boxes and
select boxes. Streamlit reserves R for "rerun" and refuses it as a button shortcut, so R, D and
the search's Enter and Esc are bound by a few lines of page script that follow the same rule
(no modifiers, not in an editable field, except Enter and Esc in the code search); R is taken
over from the rerun hotkey only while a Reject button is on the page.

Every widget of "Different code..." is keyed by the suggestion it belongs to. The browser keeps
a widget's last value for as long as a widget of that key is on the page, and sends it again
with every later rerun; a code search keyed once for the whole page therefore "changed" again
on the next suggestion, and its callback, now bound to that suggestion, recorded the earlier
pick a second time (issue 11). A per-suggestion key leaves the old value with a widget that is
gone, so no callback can fire on a suggestion the coder did not act on.

Passage mode does the same: every widget of a passage (its code boxes, the code search and its
matches) is keyed by the passage's segment id, so a value the browser keeps for a box of one
passage never ticks a box of the next, and the confirm callback is bound to the segment and the
codes listed when the page was drawn. Its keys are bound by its own page script (1-9, D, Enter;
the same rules: no modifiers, not in an editable field, Enter not on a focused button).
"""

from __future__ import annotations

import hashlib
import html
import inspect

import pandas as pd
import streamlit as st

from coder_assist.app import modelview, review
from coder_assist.core.template import PATH_SEP, Template
from coder_assist.core.errors import CoderAssistError
from coder_assist.app.projects import Project
from ui import common, widgets

ORDER_KEY = "review_order"
FILTER_KEYS = {"code": "review_filter_code", "transcript": "review_filter_transcript", "speaker": "review_filter_speaker"}
ATTR_FILTER_PREFIX = "review_filter_attr::"  # + attribute key
PER_CODE_KEY = "review_per_code"
OTHER_OPEN_KEY = "review_other_open"  # suggestion whose "Different code..." search is open (not a widget key)
OTHER_SEARCH_PREFIX = "review_other_search_"  # + suggestion id: the code search box
OTHER_PICK_PREFIX = "review_other_pick_"  # + suggestion id + "_" + rank: a matching code's button
OTHER_MATCHES = 8  # matches listed under the search box
FLASH_KEY = "review_flash"
LAST_KEY = "review_last"  # (suggestion, action) this tab recorded last: a repeat of it is a double press
PIN_KEY = "review_pin"  # suggestion to show first (the one just brought back by undo)

MODE_KEY = "review_mode"  # the mode switch (widget)
MODE_KEPT = "review_mode_kept"  # the mode, kept across pages (a widget's state is not); tests set it
MODES = {"passage": "Passage", "triage": "Triage"}
PASSAGE_BOX_PREFIX = "passage_box_"  # + segment id + "_" + code hash: a candidate's checkbox
PASSAGE_SEARCH_PREFIX = "passage_search_"  # + segment id: the code search box
PASSAGE_PICK_PREFIX = "passage_pick_"  # + segment id + "_" + rank: a matching code's button
PASSAGE_OPEN_KEY = "review_passage_search_open"  # segment whose code search is open (not a widget key)
PASSAGE_ADDED_PREFIX = "review_passage_added::"  # + segment id: codes added by search (not a widget key)
PASSAGE_PIN_KEY = "review_passage_pin"  # segment to show first (the one undo brought back)
PASSAGE_RESTORE_KEY = "review_passage_restore"  # (segment, codes it had ticked) after an undo
PASSAGE_MATCHES = 8

SHORTCUTS = {"accept": "A", "skip": "S", "undo": "U"}
_HAS_SHORTCUTS = "shortcut" in inspect.signature(st.button).parameters
_HAS_HTML_JS = "unsafe_allow_javascript" in inspect.signature(st.html).parameters
_HAS_LIVE = "live" in inspect.signature(st.text_input).parameters
REJECT_KEY = "R"

_VERBS = {"accept": "Accepted", "reject": "Rejected", "skip": "Skipped"}

# Capture-phase listener for the keys Streamlit's own button shortcuts cannot take: R (Streamlit
# reserves it for "rerun": taken over only while a Reject button is on the page) and D (opens
# "Different code..." and puts the cursor in its code search). Same rules as Streamlit's
# shortcuts: never while typing in a field, never with modifiers or on key repeat. In the code
# search, Enter picks the first match and Esc closes the search. Enter also makes Streamlit
# commit the typed text, so the list may still show matches for fewer letters: the first match
# is clicked only once the list's marker (.ca-other-q, drawn after the list) names the text typed,
# and the marker names that button, so a button left over from an earlier list is never clicked.
_KEYS_JS = """
<script>
(function () {
  var w = window;
  if (w.__coderAssistReviewKeys) return;
  w.__coderAssistReviewKeys = true;
  var doc = w.document;
  var targets = {r: ".st-key-btn_reject button", d: ".st-key-btn_other button"};
  var SEARCH = "[class*='st-key-review_other_search_'] input";
  function norm(s) { return (s || "").trim().toLowerCase().split(/\\s+/).join(" "); }
  function inSearch(t) { return t && t.closest && t.closest("[class*='st-key-review_other_search_']"); }
  w.addEventListener("keydown", function (e) {
    var k = (e.key || "").toLowerCase();
    var t = e.target;
    if (inSearch(t) && !e.isComposing) {
      if (k === "escape") {
        var c = doc.querySelector(".st-key-review_other_cancel button");
        if (c) { e.preventDefault(); c.click(); }
        return;
      }
      if (k !== "enter") return;
      var q = norm(t.value), tries = 0;
      (function pick() {
        // Streamlit keeps an earlier run's elements (marked data-stale) until the new run
        // replaces them: only a marker of this run counts.
        var m = doc.querySelector("[data-stale='false'] .ca-other-q");
        if (m && m.getAttribute("data-q") === q) {
          var key = m.getAttribute("data-pick");
          var b = key ? doc.querySelector(".st-key-" + key + " button") : null;
          if (b && !b.disabled) b.click();
          return;
        }
        if (tries++ < 100) setTimeout(pick, 50);
      })();
      return;
    }
    if (!(k in targets)) return;
    if (e.ctrlKey || e.metaKey || e.altKey || e.shiftKey || e.repeat || e.isComposing) return;
    // The same test as Streamlit's own shortcuts: typing in a text field never triggers.
    var nonText = ["checkbox", "radio", "range", "button", "file", "reset", "submit", "color"];
    if (t && (t.isContentEditable || ((t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
        (t.tagName === "INPUT" && nonText.indexOf(t.type) < 0)) && !t.readOnly))) return;
    var b = doc.querySelector(targets[k]);
    if (!b) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (b.disabled) return;
    b.click();  // a click on "Different code..." focuses the search (listener below)
  }, true);
  // Opened with the mouse too, the search takes the cursor: typing right away must go into
  // it, not reach the A/S/U shortcuts (typing "value" would otherwise accept).
  doc.addEventListener("click", function (e) {
    var t = e.target;
    if (!(t && t.closest && t.closest(".st-key-btn_other")) || doc.querySelector(SEARCH)) return;
    var tries = 0;
    (function focusSearch() {
      var input = doc.querySelector(SEARCH);
      if (input) { input.focus(); return; }
      if (tries++ < 60) setTimeout(focusSearch, 50);
    })();
  }, true);
})();
</script>
"""


# Passage mode's keys: 1-9 click the numbered code's checkbox (the marker .ca-pass-keys lists
# their widget keys in number order), D opens the code search and puts the cursor in it, Enter
# clicks "Confirm passage". In the search, Enter ticks the first match once the marker
# .ca-pass-q names the text typed (as in triage's search), Esc closes it. The same rules as
# Streamlit's shortcuts: no modifiers, no key repeat, never while typing in a field; Enter is
# left alone on a focused button or link, which Enter activates itself.
_PASSAGE_KEYS_JS = """
<script>
(function () {
  var w = window;
  if (w.__coderAssistPassageKeys) return;
  w.__coderAssistPassageKeys = true;
  var doc = w.document;
  var SEARCH = "[class*='st-key-passage_search_'] input";
  function norm(s) { return (s || "").trim().toLowerCase().split(/\\s+/).join(" "); }
  function fresh(sel) { return doc.querySelector("[data-stale='false'] " + sel) || doc.querySelector(sel); }
  function inSearch(t) { return t && t.closest && t.closest("[class*='st-key-passage_search_']"); }
  function focusSearch() {
    var tries = 0;
    (function f() {
      var input = doc.querySelector(SEARCH);
      if (input) { input.focus(); return; }
      if (tries++ < 60) setTimeout(f, 50);
    })();
  }
  w.addEventListener("keydown", function (e) {
    var k = (e.key || "").toLowerCase();
    var t = e.target;
    if (inSearch(t) && !e.isComposing) {
      if (k === "escape") {
        var c = doc.querySelector(".st-key-passage_search_close button");
        if (c) { e.preventDefault(); c.click(); }
        return;
      }
      if (k !== "enter") return;
      e.preventDefault();
      var q = norm(t.value), tries = 0;
      (function pick() {
        var m = doc.querySelector("[data-stale='false'] .ca-pass-q");
        if (m && m.getAttribute("data-q") === q) {
          var key = m.getAttribute("data-pick");
          var b = key ? doc.querySelector(".st-key-" + key + " button") : null;
          if (b && !b.disabled) b.click();
          return;
        }
        if (tries++ < 100) setTimeout(pick, 50);
      })();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || e.shiftKey || e.repeat || e.isComposing) return;
    var nonText = ["checkbox", "radio", "range", "button", "file", "reset", "submit", "color"];
    if (t && (t.isContentEditable || ((t.tagName === "TEXTAREA" || t.tagName === "SELECT" ||
        (t.tagName === "INPUT" && nonText.indexOf(t.type) < 0)) && !t.readOnly))) return;
    var m = fresh(".ca-pass-keys");
    if (!m) return;  // not in passage mode
    var target = null;
    if (k.length === 1 && k >= "1" && k <= "9") {
      var keys = (m.getAttribute("data-keys") || "").split(" ");
      var key = keys[parseInt(k, 10) - 1];
      if (!key) return;
      target = doc.querySelector(".st-key-" + key + " input");
    } else if (k === "d") {
      target = doc.querySelector(".st-key-passage_add button");
    } else if (k === "enter") {
      if (t && t.closest && t.closest("button, a")) return;
      target = doc.querySelector(".st-key-passage_confirm button");
    } else {
      return;
    }
    if (!target) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    if (target.disabled) return;
    target.click();
    if (k === "d") focusSearch();
  }, true);
  doc.addEventListener("click", function (e) {
    var t = e.target;
    if (t && t.closest && t.closest(".st-key-passage_add") && !doc.querySelector(SEARCH)) focusSearch();
  }, true);
})();
</script>
"""


# --------------------------------------------------------------------------- helpers


def _template(project: Project) -> Template:
    raw = project.meta("template") or ""
    cached = st.session_state.get("_review_template")
    if cached is None or cached[0] != raw:
        cached = (raw, project.template())
        st.session_state["_review_template"] = cached
    return cached[1]


def _flash(kind: str, text: str) -> None:
    widgets.flash(FLASH_KEY, kind, text)


_TOAST_ICONS = {"accept": ":material/check:", "reject": ":material/close:", "skip": ":material/skip_next:", "undo": ":material/undo:"}


def _leaf(path: str) -> str:
    return path.split(PATH_SEP)[-1]




# --------------------------------------------------------------------------- callbacks


def _on_decide(suggestion_id: int, action: str, code_path: str) -> None:
    st.session_state.pop(OTHER_OPEN_KEY, None)
    project, name = common.page_context()
    if not name:
        _flash("error", "Enter your name in the sidebar first.")
        return
    try:
        if review.decide_once(project, suggestion_id, action, name) is None:
            if st.session_state.get(LAST_KEY) != (suggestion_id, action):
                # Decided meanwhile in another tab or session: nothing is recorded twice.
                _flash("info", "That suggestion was already decided in another tab or session; nothing was recorded twice.")
            return  # else: the same key pressed twice in this tab before the page moved on
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    st.session_state[LAST_KEY] = (suggestion_id, action)
    if action != "skip":
        common.after_decision(project, name)
    st.session_state.pop(PIN_KEY, None)
    _flash(action, f"{_VERBS[action]}: {_leaf(code_path)}  (U to undo)")


def _on_toggle_other(suggestion_id: int) -> None:
    open_ = st.session_state.get(OTHER_OPEN_KEY) == suggestion_id
    st.session_state[OTHER_OPEN_KEY] = None if open_ else suggestion_id


def _on_close_other() -> None:
    st.session_state[OTHER_OPEN_KEY] = None


def _on_other(suggestion_id: int, code_id: str) -> None:
    """One code picked in the search of one suggestion: both are bound when the button is drawn,
    nothing is read from widget state that could outlive the suggestion."""
    project, name = common.page_context()
    st.session_state[OTHER_OPEN_KEY] = None
    if not name:
        _flash("error", "Enter your name in the sidebar first.")
        return
    try:
        review.choose_other_code(project, suggestion_id, code_id, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    common.after_decision(project, name)
    st.session_state.pop(LAST_KEY, None)
    st.session_state.pop(PIN_KEY, None)
    path = project.code_path(code_id)
    _flash("accept", f"Coded as {_leaf(path)} instead  (U to undo)")


def _on_undo() -> None:
    project, name = common.page_context()
    st.session_state.pop(OTHER_OPEN_KEY, None)
    if not name:
        return
    try:
        undone = review.undo_last(project, name)
    except CoderAssistError as exc:
        _flash("error", f"Undo failed: {exc}")
        return
    # A later identical press is a new decision, not a double press of the undone one.
    st.session_state.pop(LAST_KEY, None)
    if not undone:
        _flash("undo", "Nothing to undo.")
        return
    unit = review.unit_of(project, undone)
    if unit["passage"] is not None:
        # A passage confirmation: the passage comes back first, with the codes it had ticked.
        st.session_state[PASSAGE_PIN_KEY] = unit["passage"]
        st.session_state[PASSAGE_RESTORE_KEY] = (unit["passage"], list(unit["accepted"]))
        names = ", ".join(_leaf(project.code_path(c) or c) for c in unit["accepted"]) or "no code applies"
        _flash("undo", f"Undone: passage confirmation ({names})")
        return
    # Bring the suggestion back to the front (the last one undone is the earliest decision:
    # for a "Different code..." the reject of the suggestion that was on screen).
    last = undone[-1]
    sid = review.suggestion_for_pair(project, last.segment_id, last.code_id)
    if sid is not None:
        st.session_state[PIN_KEY] = sid
    # Name what the coder chose: for a "Different code..." that is the accepted code (undone[0]).
    shown = undone[0]
    path = project.code_path(shown.code_id)
    what = "different code" if len(undone) > 1 else _VERBS.get(shown.action, shown.action).lower()
    _flash("undo", f"Undone: {what} ({_leaf(path)})")


def _clear_filters() -> None:
    for key in list(st.session_state):
        if key in FILTER_KEYS.values() or str(key).startswith(ATTR_FILTER_PREFIX):
            st.session_state[key] = None


# --------------------------------------------------------------------------- rendering


def card_html(row: pd.Series, template: Template, n_for_segment: int, mine: pd.DataFrame) -> str:
    """The suggested code, its confidence, and the evidence for it. All text is escaped."""
    path = str(row["code_path"])
    parents, leaf = PATH_SEP.join(path.split(PATH_SEP)[:-1]), _leaf(path)
    code = template.codes.get(row["code_id"])
    desc = code.description if code is not None else ""
    conf = float(row["confidence"])
    conf_help = (
        f"Calibrated on the template's own examples: passages that score like this one carry this code about "
        f"{conf:.0%} of the time. Cold-start confidences are low across the board; compare them with each other."
    )
    rank = f" · suggestion {int(row['rank'])} of {n_for_segment} for this passage" if n_for_segment > 1 else ""
    out = [
        f'<div class="ca-card" data-suggestion="{int(row["suggestion_id"])}">',
        f'<div class="ca-parents">{html.escape(parents)}</div>' if parents else "",
        f'<div class="ca-code">{html.escape(leaf)}</div>',
        f'<div class="ca-desc">{html.escape(desc)}</div>' if desc else "",
        f'<span class="ca-conf" title="{html.escape(conf_help)}">Confidence {conf:.0%}{html.escape(rank)}</span>',
    ]
    sim = row.get("evidence_similarity")
    sim_txt = f"similarity {float(sim):.2f}" if sim is not None and pd.notna(sim) else ""
    if row.get("evidence") and row.get("evidence_source") == "description":
        # The nearest "example" is the description shown above: say so rather than repeat it.
        out += [
            '<div class="ca-why">Why this code</div>',
            f'<div class="ca-source">The passage reads most like the code\'s description above'
            f'{" (" + html.escape(sim_txt) + ")" if sim_txt else ""}; no example excerpt of the code is closer.</div>',
        ]
    elif row.get("evidence"):
        source = str(row.get("evidence_source") or "") or "a template example"
        out += [
            '<div class="ca-why">Why: nearest template example</div>',
            f'<div class="ca-evidence">{html.escape(str(row["evidence"]))}</div>',
            f'<div class="ca-source">{html.escape(sim_txt + " · " if sim_txt else "")}from {html.escape(source)}</div>',
        ]
    if len(mine):
        marks = {"accept": "✓", "reject": "✗", "skip": "↷"}
        items = ", ".join(f"{marks.get(a, a)} {html.escape(_leaf(p))}" for p, a in zip(mine["code_path"], mine["action"]))
        out.append(f'<div class="ca-mine">Your decisions on this passage: {items}</div>')
    out.append("</div>")
    return "".join(out)


def _controls(project: Project) -> dict:
    opts = _filter_options(project)
    c1, c2 = st.columns([3, 2], vertical_alignment="top")
    order = c1.radio(
        "Queue order",
        list(review.ORDERS),
        format_func=review.ORDERS.get,
        horizontal=True,
        key=ORDER_KEY,
        help="Most uncertain first: confidence closest to the median of all suggestions, the model's borderline calls. "
        "Skipped suggestions always come last.",
    )
    attr_keys = {k: ATTR_FILTER_PREFIX + k for k in opts["attributes"]}
    active = sum(st.session_state.get(k) is not None for k in [*FILTER_KEYS.values(), *attr_keys.values()])
    paths = dict(opts["codes"])
    with c2.expander(f"Filters ({active} active)" if active else "Filters"):
        f1, f2, f3 = st.columns([2, 1, 1])
        code = f1.selectbox("Code", list(paths), format_func=paths.get, index=None, placeholder="All codes", key=FILTER_KEYS["code"])
        transcript = f2.selectbox("Transcript", opts["transcripts"], index=None, placeholder="All transcripts", key=FILTER_KEYS["transcript"])
        speaker = f3.selectbox("Speaker", opts["speakers"], index=None, placeholder="All speakers", key=FILTER_KEYS["speaker"])
        attributes = {}
        if attr_keys:
            cols = st.columns(min(len(attr_keys), 4))
            for i, (attr, key) in enumerate(attr_keys.items()):
                value = cols[i % len(cols)].selectbox(
                    attr.capitalize(), opts["attributes"][attr], index=None, placeholder="Any", key=key,
                    help=f"Participant attribute '{attr}' (from the attribute sheet)",
                )
                if value is not None:
                    attributes[attr] = value
        if active:
            st.button("Clear filters", key="review_clear_filters", on_click=_clear_filters)
    filters = {"code_id": code, "transcript": transcript, "speaker": speaker, "attributes": attributes or None}
    return {"order": order or "likely", "filters": {k: v for k, v in filters.items() if v is not None}, "active": active}


def _filter_options(project: Project) -> dict:
    """Filter choices, kept for the session until the pool or the transcripts change."""
    stats = review.pool_stats(project)
    key = (stats.model_version_id, stats.total, tuple(sorted(stats.per_code.items())), review.filter_values_mark(project))
    cached = st.session_state.get("_review_filter_options")
    if cached is None or cached[0] != key:
        cached = (key, review.filter_options(project))
        st.session_state["_review_filter_options"] = cached
    return cached[1]


def _progress(prog: dict, in_filter: dict | None) -> None:
    total, decided = prog["total"], prog["decided"]
    rate = prog["accept_rate"]
    text = f"{decided} of {total} decided · {prog['queued']} in queue"
    if prog["skipped"]:
        text += f" ({prog['skipped']} skipped)"
    if in_filter is not None:
        text += f" · filters: {in_filter['queued']} of {in_filter['total']} left"
    text += f" · accept rate {rate:.0%}" if rate is not None else ""
    st.progress(decided / total if total else 0.0, text=text)


def _undo_button(name: str | None, can_undo: bool) -> None:
    _button(
        "Undo last",
        key="btn_undo",
        icon=":material/undo:",
        shortcut=SHORTCUTS["undo"],
        on_click=_on_undo,
        disabled=not name or not can_undo,
        width="stretch",
        help="Take back your last decision (it stays in the log as an undo event)",
    )


def _button(label: str, **kwargs) -> bool:
    """``st.button``, minus the keyboard shortcut on a Streamlit too old to have them (< 1.52)."""
    if "shortcut" in kwargs and not _HAS_SHORTCUTS:
        kwargs.pop("shortcut")
    return st.button(label, **kwargs)


def _per_code(project: Project, name: str | None) -> None:
    if not st.toggle("Per-code counts", key=PER_CODE_KEY, help="Suggested, accepted, rejected, skipped and pending per code, "
                     "and codes you added to passages the model did not suggest them for"):
        return
    per = review.progress(project, name)["per_code"]
    if per.empty:
        st.caption("No suggestions yet.")
        return
    st.dataframe(
        per.drop(columns=["code_id"]),
        hide_index=True,
        width="stretch",
        height=min(36 * (len(per) + 1) + 2, 420),
        column_config={"code_path": st.column_config.TextColumn("Code", width="large")},
    )


def _code_search(panel_key: str, label: str, search_key: str, codes, n: int, pick_prefix: str, on_pick, args,
                 marker: str, caption: str, cancel_key: str, on_cancel) -> None:
    """A code search under the buttons, shared by triage's "Different code..." and passage
    mode's D: a search box, the first ``n`` matching ``codes`` as buttons (``on_pick(*args,
    code_id)``; the first highlighted), and after them the ``marker`` div the page script reads
    to click the first match on Enter once it names the typed text."""
    with st.container(border=True, key=panel_key):
        kw = {"live": "200ms"} if _HAS_LIVE else {}
        query = st.text_input(label, key=search_key, placeholder="Type to search the codes…",
                              help="Matches on the code's name lead, then its parents' names", **kw)
        matches = review.search_codes(codes, query or "")[:n]
        if not matches:
            st.caption("No code matches that. Try another word.")
        for i, (code_id, path) in enumerate(matches):
            parts = path.split(PATH_SEP)
            parents = widgets.md_escape(PATH_SEP.join(parts[:-1]))
            # Grey would not read on the first (primary, highlighted) button.
            label_i = widgets.md_escape(parts[-1]) + ((f"  · {parents}" if i == 0 else f"  :gray[· {parents}]") if parents else "")
            st.button(label_i, key=f"{pick_prefix}_{i}", type="primary" if i == 0 else "tertiary",
                      on_click=on_pick, args=(*args, code_id), help=path)
        first = f"{pick_prefix}_0" if matches else ""
        # After the list on purpose: the page script acts on Enter once this marker names the
        # typed text (see _KEYS_JS and _PASSAGE_KEYS_JS).
        st.html(f'<div class="{marker}" data-q="{html.escape(" ".join((query or "").lower().split()))}" '
                f'data-pick="{html.escape(first)}"></div>')
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.caption(caption)
        c2.button("Cancel", key=cancel_key, type="tertiary", on_click=on_cancel)


def _other_panel(project: Project, sid: int, suggested: str) -> None:
    """The code search of "Different code...", under the buttons (it covers nothing). Every key
    carries the suggestion id (see the module docstring)."""
    _code_search(f"review_other_panel_{sid}", "Code for this passage", f"{OTHER_SEARCH_PREFIX}{sid}",
                 [c for c in review.leaf_codes(project) if c[0] != suggested], OTHER_MATCHES, f"{OTHER_PICK_PREFIX}{sid}",
                 _on_other, (sid,), "ca-other-q",
                 "Enter picks the first match (highlighted) and records it at once: the suggested code is rejected and "
                 "this one applied, as one step (U takes back both). Esc closes.", "review_other_cancel", _on_close_other)


def _on_mode() -> None:
    mode = st.session_state.get(MODE_KEY) or st.session_state.get(MODE_KEPT) or "passage"
    st.session_state[MODE_KEY] = mode  # clicking the selected segment again leaves it selected
    st.session_state[MODE_KEPT] = mode
    st.query_params["mode"] = mode
    st.session_state.pop(OTHER_OPEN_KEY, None)
    st.session_state.pop(PASSAGE_OPEN_KEY, None)


def _mode_switch() -> str:
    """Passage (the default) or Triage; kept across pages and in the page address."""
    if st.session_state.get(MODE_KEY) not in MODES:
        kept = st.session_state.get(MODE_KEPT) or st.query_params.get("mode")
        st.session_state[MODE_KEY] = kept if kept in MODES else "passage"
    mode = st.segmented_control(
        "Review mode", list(MODES), format_func=MODES.get, key=MODE_KEY, on_change=_on_mode, label_visibility="collapsed",
        help="Passage: a passage and its likely codes, confirmed as coded in one step (every code not ticked is recorded as "
        "not applying). Triage: one suggestion at a time, accept or reject.",
    ) or st.session_state.get(MODE_KEPT) or "passage"
    st.session_state[MODE_KEPT] = mode
    # Moving between pages clears the address's parameters (see app.py): put it back, so that a
    # reload keeps the mode.
    if st.query_params.get("mode") != mode:
        st.query_params["mode"] = mode
    return mode


def render() -> None:
    project, name = common.page_context()
    heading = st.empty()  # filled once the mode is known: a blind coder should not read "suggestions"
    widgets.show_flash(FLASH_KEY, toast=True, icons=_TOAST_ICONS)

    from ui import agreement  # blind mode: a reliability sample, no suggestions or others' decisions shown

    blind = agreement.blind_mode_selector(project)
    if blind is not None:
        heading.header("Blind double-coding", anchor=False)
        agreement.render_blind(project, name, blind)
        return

    if project.latest_model_version() is None:
        heading.header("Review suggestions", anchor=False)
        st.info(f"This project has no suggestions yet. Compute them on the Import page, or with `coder-assist suggest {project.folder}`.")
        return

    with heading.container():
        h1, h2 = st.columns([3, 2], vertical_alignment="bottom")
        with h2:
            mode = _mode_switch()
        h1.header("Review passages" if mode == "passage" else "Review suggestions", anchor=False)
    if mode == "passage":
        _render_passages(project, name)
        return

    ctl = _controls(project)
    pin = st.session_state.get(PIN_KEY)
    data = review.page_data(project, name, ctl["order"], filters=ctl["filters"], pin=pin)
    _progress(data.progress, data.in_filter)
    if not name:
        st.info("Enter your name in the sidebar to start: decisions are recorded under it. Until then this is a preview.", icon=":material/badge:")

    row = data.row
    if row is None:
        _queue_done(name, data, ctl["active"])
    else:
        if pin is not None and row["suggestion_id"] != pin:
            st.session_state.pop(PIN_KEY, None)
        left, right = st.columns([11, 9], gap="large")
        with left:
            _passage(row, data)
        with right:
            _suggestion(project, name, row, data)
    _per_code(project, name)


def _queue_done(name: str | None, data: review.PageData, filtered: bool) -> None:
    """Nothing left to show: under the filters, or at all."""
    if filtered:
        st.success("Nothing left to review under these filters.")
        st.button("Clear filters", key="review_clear_filters_empty", on_click=_clear_filters)
    else:
        total = data.progress["total"]
        st.success(f"All {total} suggestions decided. Thank you!" if total else "No suggestions to review.")
    c1, _ = st.columns([1, 3])
    with c1:
        _undo_button(name, data.can_undo)


def _passage(row, data: review.PageData) -> None:
    """The transcript, its attributes, and the passage in its context."""
    st.subheader(str(row["transcript"]), anchor=False)
    meta = [f"{k}: {v}" for k, v in data.attributes.items()]
    if bool(row["skipped"]):
        meta.append("skipped earlier")
    if meta:
        st.caption(" · ".join(meta))
    with st.container(border=True):
        st.html(widgets.CSS + widgets.context_html(data.context))


def _suggestion(project: Project, name: str | None, row, data: review.PageData) -> None:
    """The suggested code with its evidence, and the decision buttons bound to it."""
    sid, path = int(row["suggestion_id"]), str(row["code_path"])
    template = _template(project)
    st.caption("Suggested code")
    st.html(widgets.CSS + card_html(pd.Series(row), template, data.n_for_segment, data.mine))

    disabled = not name
    b1, b2, b3 = st.columns(3)
    common_kw = dict(disabled=disabled, width="stretch")
    with b1:
        _button("Accept", key="btn_accept", type="primary", shortcut=SHORTCUTS["accept"],
                on_click=_on_decide, args=(sid, "accept", path), **common_kw)
    with b2:
        _button(f"Reject `{REJECT_KEY}`", key="btn_reject", help=f"Shortcut: {REJECT_KEY}",
                on_click=_on_decide, args=(sid, "reject", path), **common_kw)
    with b3:
        _button("Skip", key="btn_skip", shortcut=SHORTCUTS["skip"],
                on_click=_on_decide, args=(sid, "skip", path), **common_kw)
    b4, b5 = st.columns(2)
    is_open = st.session_state.get(OTHER_OPEN_KEY) == sid and not disabled
    with b4:
        _button("Different code…", key="btn_other", icon=":material/swap_horiz:", disabled=disabled, width="stretch",
                help="Shortcut: D. Search the template for the code this passage should have",
                on_click=_on_toggle_other, args=(sid,), type="secondary")
    with b5:
        _undo_button(name, data.can_undo)
    if is_open:
        _other_panel(project, sid, str(row["code_id"]))
    if _HAS_SHORTCUTS:
        st.caption("Keys: **A** accept · **R** reject · **S** skip · **U** undo · **D** different code "
                   "(type to search, Enter picks) · not while typing in a box")
    if _HAS_HTML_JS:
        st.html(_KEYS_JS, unsafe_allow_javascript=True)


# --------------------------------------------------------------------------- passage mode


def _code_hash(code_id: str) -> str:
    # Code ids hold "/" and other characters a widget key's CSS class cannot; a short digest is safe.
    return hashlib.blake2s(code_id.encode("utf-8"), digest_size=5).hexdigest()


def box_key(segment_id: int, code_id: str) -> str:
    return f"{PASSAGE_BOX_PREFIX}{int(segment_id)}_{_code_hash(code_id)}"


def _added_key(segment_id: int) -> str:
    return f"{PASSAGE_ADDED_PREFIX}{int(segment_id)}"


def _on_confirm(segment_id: int, code_ids: tuple[str, ...]) -> None:
    """Confirm one passage: the segment and the codes listed are bound when the button is
    drawn; which are ticked is read from this passage's own boxes."""
    st.session_state.pop(PASSAGE_OPEN_KEY, None)
    project, name = common.page_context()
    if not name:
        _flash("error", "Enter your name in the sidebar first.")
        return
    ticked = [c for c in code_ids if st.session_state.get(box_key(segment_id, c))]
    done = ("passage", int(segment_id), tuple(sorted(ticked)))
    try:
        unit = review.confirm_passage(project, segment_id, ticked, name)
    except CoderAssistError as exc:
        _flash("error", f"Not recorded: {exc}")
        return
    if unit is None:
        if st.session_state.get(LAST_KEY) != done:
            _flash("info", "This passage is already confirmed with exactly these codes (in another tab?); nothing was recorded twice.")
        return
    st.session_state[LAST_KEY] = done
    st.session_state.pop(_added_key(segment_id), None)
    st.session_state.pop(PASSAGE_PIN_KEY, None)
    st.session_state.pop(PASSAGE_RESTORE_KEY, None)
    common.after_decision(project, name)
    names = ", ".join(_leaf(project.code_path(c) or c) for c in ticked)
    _flash("accept", f"Confirmed: {names or 'no code applies'}  (U to undo)")


def _on_toggle_search(segment_id: int) -> None:
    open_ = st.session_state.get(PASSAGE_OPEN_KEY) == segment_id
    st.session_state[PASSAGE_OPEN_KEY] = None if open_ else segment_id


def _on_close_search() -> None:
    st.session_state[PASSAGE_OPEN_KEY] = None


def _on_add(segment_id: int, code_id: str) -> None:
    """A code picked in the search: listed (if it was not) and ticked. Nothing is recorded
    until the passage is confirmed."""
    st.session_state[PASSAGE_OPEN_KEY] = None
    added = st.session_state.setdefault(_added_key(segment_id), [])
    if code_id not in added:
        added.append(code_id)
    key = box_key(segment_id, code_id)
    if key in st.session_state:  # a listed box: tick it; a new one is drawn ticked (its default)
        st.session_state[key] = True


def _passage_progress(prog: dict, in_filter: dict | None) -> None:
    total, queued = prog["total"], prog["queued"]
    text = f"{prog['confirmed']} passage{'s' if prog['confirmed'] != 1 else ''} confirmed · {queued} of {total} to review"
    if in_filter is not None:
        text += f" · filters: {in_filter['queued']} of {in_filter['total']} left"
    st.progress((total - queued) / total if total else 0.0, text=text)


def _render_passages(project: Project, name: str | None) -> None:
    ctl = _controls(project)
    pin = st.session_state.get(PASSAGE_PIN_KEY)
    data = review.passage_page(project, name, ctl["order"], filters=ctl["filters"], pin=pin)
    _passage_progress(data.progress, data.in_filter)
    if not name:
        st.info("Enter your name in the sidebar to start: decisions are recorded under it. Until then this is a preview.", icon=":material/badge:")
    view = data.passage
    if view is None:
        if ctl["active"]:
            st.success("No passage left to review under these filters.")
            st.button("Clear filters", key="review_clear_filters_empty", on_click=_clear_filters)
        else:
            total = data.progress["total"]
            st.success(f"All {total} passages reviewed. Thank you!" if total else "No passages to review.")
        c1, _ = st.columns([1, 3])
        with c1:
            _undo_button(name, data.can_undo)
        _per_code(project, name)
        return
    seg = view.segment_id
    if pin is not None and pin != seg:
        st.session_state.pop(PASSAGE_PIN_KEY, None)
    restore = st.session_state.get(PASSAGE_RESTORE_KEY)
    if restore is not None and restore[0] != seg:
        st.session_state.pop(PASSAGE_RESTORE_KEY, None)
        restore = None
    left, right = st.columns([11, 9], gap="large")
    with left:
        st.subheader(str(view.segment["transcript"]), anchor=False)
        meta = [f"{k}: {v}" for k, v in view.attributes.items()]
        if view.skipped:
            meta.append("skipped earlier")
        if meta:
            st.caption(" · ".join(meta))
        with st.container(border=True):
            st.html(widgets.CSS + widgets.context_html(view.context))
    with right:
        _candidates(project, name, view, restore, data.can_undo)
    _per_code(project, name)


def _candidates(project: Project, name: str | None, view: review.PassageView, restore: tuple | None, can_undo: bool) -> None:
    """The numbered code boxes, the code search, Confirm and Undo, all keyed by the segment."""
    seg = view.segment_id
    template = _template(project)
    cands = list(view.candidates)
    listed = {c.code_id for c in cands}
    paths = dict(review.leaf_codes(project))
    wanted = list(restore[1]) if restore is not None else []
    for code in [*wanted, *st.session_state.get(_added_key(seg), [])]:
        if code not in listed and code in paths:
            listed.add(code)
            cands.append(review.Candidate(code, paths[code], True, False, "added"))
    st.caption("Codes for the highlighted passage: tick every code that applies, then confirm. "
               "Codes left unticked are recorded as not applying.  \n"
               f"What the percentages mean: {modelview.confidence_meaning(project).sentence}")
    keys = []
    with st.container(border=True, key=f"passage_codes_{seg}"):
        for i, c in enumerate(cands, start=1):
            key = box_key(seg, c.code_id)
            # The initial tick is the widget's own default, not a value seeded into session
            # state: a run that seeded it and was then cut short by the next rerun left the
            # next run drawing the box with Streamlit's default (unticked) while the state held
            # True, so a pre-ticked code showed unticked (the passage browser test, under load).
            initial = (c.code_id in wanted) if restore is not None else c.ticked
            if i <= 9:
                keys.append(key)
            parts = c.code_path.split(PATH_SEP)
            parents = PATH_SEP.join(parts[:-1])
            num = f"`{i}` " if i <= 9 else ""
            tail = []
            if c.confidence is not None:
                tail.append(f"{c.confidence:.0%}")
            if not c.suggested:
                tail.append(c.reason)
            label = num + f"**{widgets.md_escape(parts[-1])}**" + (f"  :gray[{widgets.md_escape(' · '.join(tail))}]" if tail else "")
            code = template.codes.get(c.code_id)
            desc = code.description if code is not None else ""
            st.checkbox(label, value=initial, key=key, disabled=not name, help=widgets.md_escape(c.code_path + (f": {desc}" if desc else "")))
            if c.suggested and c.evidence:
                st.html(widgets.CSS + _evidence_html(c, parents))
            elif parents:
                st.html(f'<div class="ca-source" style="margin:-.6rem 0 .3rem 1.9rem">{html.escape(parents)}</div>')
        st.html(f'<div class="ca-pass-keys" data-seg="{seg}" data-keys="{html.escape(" ".join(keys))}"></div>')
    if len(view.mine):
        marks = {"accept": "✓", "reject": "✗", "skip": "↷"}
        items = ", ".join(f"{marks.get(a, a)} {_leaf(p)}" for p, a in zip(view.mine["code_path"], view.mine["action"]))
        st.caption(f"Your decisions on this passage now: {widgets.md_escape(items)}")
    codes = tuple(c.code_id for c in cands)
    n = sum(bool(st.session_state.get(box_key(seg, c))) for c in codes)
    st.button(f"Confirm passage · {n} code{'s' if n != 1 else ''}" if n else "Confirm passage · no code applies",
              key="passage_confirm", type="primary", icon=":material/done_all:", disabled=not name,
              width="stretch", on_click=_on_confirm, args=(seg, codes),
              help="Shortcut: Enter. Records the ticked codes as applying and every other code as not applying")
    b2, b3 = st.columns(2)
    with b2:
        st.button("Add a code…", key="passage_add", icon=":material/search:", disabled=not name, width="stretch",
                  on_click=_on_toggle_search, args=(seg,), help="Shortcut: D. Search the template for any code and tick it")
    with b3:
        _undo_button(name, can_undo)
    if st.session_state.get(PASSAGE_OPEN_KEY) == seg and name:
        _passage_search(project, seg)
    st.caption("Keys: **1–9** tick / untick · **D** add a code (type, Enter ticks the first match, Esc closes) · "
               "**Enter** confirm · **U** undo · not while typing in a box")
    if _HAS_HTML_JS:
        st.html(_PASSAGE_KEYS_JS, unsafe_allow_javascript=True)


def _evidence_html(c: review.Candidate, parents: str) -> str:
    sim = f" (similarity {c.evidence_similarity:.2f})" if c.evidence_similarity is not None else ""
    text = str(c.evidence or "")
    if c.evidence_source == "description":
        body = f"reads most like the code's description{sim}"
    else:
        short = text if len(text) <= 160 else text[:157].rsplit(" ", 1)[0] + " …"
        body = f"nearest example{sim}: <i>{html.escape(short)}</i>"
    where = f"{html.escape(parents)} · " if parents else ""
    return f'<div class="ca-source" style="margin:-.6rem 0 .35rem 1.9rem">{where}{body}</div>'


def _passage_search(project: Project, seg: int) -> None:
    """The code search of passage mode (every key carries the segment id)."""
    _code_search(f"passage_search_panel_{seg}", "Add a code to this passage", f"{PASSAGE_SEARCH_PREFIX}{seg}",
                 review.leaf_codes(project), PASSAGE_MATCHES, f"{PASSAGE_PICK_PREFIX}{seg}", _on_add, (seg,), "ca-pass-q",
                 "Enter ticks the first match (highlighted); nothing is recorded until you confirm the passage. Esc closes.",
                 "passage_search_close", _on_close_search)
