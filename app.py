"""coder-assist in the browser: ``streamlit run app.py -- --project PATH`` (or ``make run``).

The project comes from ``--project`` (default ``demo-project``; ``$CODER_ASSIST_PROJECT``
when no ``--project`` is given). A folder without a project gets the demo project on first
start. Pages live in :mod:`ui` (``ui/pages/*.py`` are the scripts st.navigation runs, each
calling its page's ``render``); this file only wires them together.
"""

from __future__ import annotations

import streamlit as st

# Page icons become the favicon: Streamlit fetches ":material/...:" icons from Google's font
# servers for that, so they must be emoji (drawn locally as a data: URL). Nothing leaves this
# machine, not even a favicon request.
st.set_page_config(page_title="coder-assist", page_icon="🏷️", layout="wide")

# First paint before anything heavy is imported (the library pulls in pandas): on a cold
# server the first run of this script pays for those imports, and the page should not be
# blank meanwhile.
with st.sidebar:
    st.title("coder-assist", anchor=False)
    st.caption("Offline coding suggestions for template analysis. Nothing leaves this machine.")

from ui import common  # noqa: E402

folder = common.project_path()
st.session_state["project_path"] = str(folder)

# Sidebar first, so the page paints before any slow first-start work.
with st.sidebar:
    name = common.coder_box()
    st.divider()
    st.caption(f"Project: `{folder}`")
    counts_slot = st.empty()
# The name rides in the address (?coder=...) so that a reload keeps it; moving to another page
# clears the address's parameters, so put it back on every run.
if name and st.query_params.get("coder") != name:
    st.query_params["coder"] = name

common.ensure_demo_project(folder)
project = common.get_project(folder)
with counts_slot.container():
    common.sidebar_counts(project, name)

review_page = st.Page("ui/pages/review.py", title="Review", icon="🏷️", url_path="review")


def _start() -> None:
    # Streamlit serves its default page at "/" only, and "/review" then reads "Page not found":
    # so the default is this hidden page, which opens Review at its own address.
    st.switch_page(review_page)


pages = [
    st.Page(_start, title="Review", url_path="start", default=True, visibility="hidden"),
    review_page,
    st.Page("ui/pages/transcripts.py", title="Transcripts", icon="📄", url_path="transcripts"),
    st.Page("ui/pages/template.py", title="Template", icon="🌳", url_path="template"),
    st.Page("ui/pages/import_page.py", title="Import", icon="📥", url_path="import"),
    st.Page("ui/pages/export.py", title="Export", icon="📤", url_path="export"),
    st.Page("ui/pages/model.py", title="Model", icon="📈", url_path="model"),
    st.Page("ui/pages/agreement.py", title="Agreement", icon="🤝", url_path="agreement"),
]
st.navigation(pages).run()
