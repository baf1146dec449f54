"""A standalone page with only the Revise tab, for trying it and for screenshots before it is
wired into the Template page: ``streamlit run tests/revise_page.py -- --project PATH --coder NAME``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coder_assist.store.project import Project  # noqa: E402
from ui.revise import render_revise  # noqa: E402

st.set_page_config(page_title="coder-assist: revise", layout="wide")
parser = argparse.ArgumentParser(add_help=False)
parser.add_argument("--project", required=True)
parser.add_argument("--coder", default=None)
opts, _ = parser.parse_known_args(sys.argv[1:])
st.title("Revise the template", anchor=False)
render_revise(Project.open(opts.project), opts.coder)
