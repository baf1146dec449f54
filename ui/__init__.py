"""Streamlit pages of the coder-assist app (``app.py`` wires them together).

Pages only render and call :mod:`coder_assist` functions; anything worth testing without a
browser lives in :mod:`coder_assist.app.review` and friends.
"""
