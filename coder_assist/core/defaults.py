"""Defaults shared by the pipeline and the command line, in a module that imports nothing, so
that the command line starts (and shows progress) before the heavy libraries load."""

DEFAULT_THRESHOLD: float | None = None  # None: twice the 1/K chance rate (suggest.auto_threshold)
DEFAULT_TOP_K = 3
