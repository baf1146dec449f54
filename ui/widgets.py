"""What the pages share on screen: the review style sheet and the passage-in-context HTML
(Review, blind double-coding), the one Markdown escape, and the flash message (a callback leaves
a message for the next run of the page, which shows it once).

Renders only: no project reads or writes here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

import streamlit as st

from coder_assist.app.export import md_escape

if TYPE_CHECKING:
    from coder_assist.app.review import ContextTurn

__all__ = ["CSS", "context_html", "md_escape", "flash", "show_flash"]

CSS = """
<style>
.ca-context { line-height: 1.55; }
.ca-turn { padding: .35rem .7rem; margin: 0 0 .4rem 0; border-left: 3px solid transparent; border-radius: .25rem; }
.ca-turn.ca-other { opacity: .62; }
.ca-turn.ca-current { border-left-color: #f0b400; background: rgba(240, 180, 0, .07); }
.ca-speaker { font-weight: 600; margin-right: .35rem; }
.ca-ts { font-size: .8em; opacity: .7; margin-right: .35rem; }
.ca-context mark { background: rgba(255, 200, 40, .55); color: inherit; padding: .05rem .1rem; border-radius: .15rem; }
.ca-parents { font-size: .85em; opacity: .7; }
.ca-code { font-size: 1.2em; font-weight: 650; margin: .1rem 0 .4rem 0; }
.ca-desc { margin: 0 0 .6rem 0; }
.ca-conf { display: inline-block; padding: .1rem .55rem; border-radius: 1rem; background: rgba(128, 128, 128, .16);
           font-size: .9em; margin-bottom: .6rem; cursor: help; }
.ca-why { font-size: .8em; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; opacity: .7; margin-top: .3rem; }
.ca-evidence { border-left: 3px solid rgba(128, 128, 128, .45); padding: .2rem .7rem; margin: .3rem 0; font-style: italic; }
.ca-source { font-size: .85em; opacity: .75; }
.ca-mine { font-size: .85em; opacity: .8; margin-top: .5rem; }
.ca-other-q, .ca-pass-q, .ca-pass-keys { display: none; }
</style>
"""


#: Turns around the segment are cut to about this many characters (the segment's own turn never).
NEIGHBOUR_CHARS = 360


def _shorten(text: str, keep_end: bool, limit: int = NEIGHBOUR_CHARS) -> str:
    """Cut a neighbouring turn at a word boundary: a turn before the segment keeps its end
    (what leads into the segment), a turn after keeps its start."""
    if len(text) <= limit:
        return text
    if keep_end:
        cut = text[-limit:]
        return "… " + (cut.split(" ", 1)[1] if " " in cut else cut)
    cut = text[:limit]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + " …"


def context_html(turns: list[ContextTurn]) -> str:
    """The segment in its context as HTML. All transcript text is escaped here."""

    def esc(text: str) -> str:
        return html.escape(text).replace("\r\n", "\n").replace("\n", "<br>")

    current = next((t.idx for t in turns if t.is_current), None)
    parts = ['<div class="ca-context">']
    for t in turns:
        if t.highlight is not None:
            a, b = t.highlight
            body = f"{esc(t.text[:a])}<mark>{esc(t.text[a:b])}</mark>{esc(t.text[b:])}"
        else:
            body = esc(_shorten(t.text, keep_end=current is not None and t.idx < current))
        cls = "ca-current" if t.is_current else "ca-other"
        ts = f'<span class="ca-ts">[{html.escape(t.timestamp)}]</span>' if t.timestamp else ""
        speaker = html.escape(t.speaker or "(no speaker)")
        parts.append(f'<div class="ca-turn {cls}">{ts}<span class="ca-speaker">{speaker}:</span>{body}</div>')
    parts.append("</div>")
    return "".join(parts)


# --------------------------------------------------------------------------- flash messages


def flash(key: str, kind: str, text: str) -> None:
    """Leave ``text`` for the next run of the page (``kind``: "error", "info", or what the
    page's :func:`show_flash` shows as success or as a toast)."""
    st.session_state[key] = (kind, text)


def show_flash(key: str, *, toast: bool = False, icons: Mapping[str, str] | None = None) -> None:
    """Show (once) the message a callback left under ``key``: an error as an error, "info" as
    an info box, anything else as a success box, or with ``toast`` as a toast (its icon from
    ``icons`` by kind)."""
    item = st.session_state.pop(key, None)
    if not item:
        return
    kind, text = item
    if kind == "error":
        st.error(text)
    elif kind == "info":
        st.info(text, icon=":material/info:")
    elif toast:
        st.toast(text, icon=(icons or {}).get(kind))
    else:
        st.success(text)
