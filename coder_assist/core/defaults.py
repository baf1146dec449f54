"""Defaults shared by the pipeline and the command line, in a module that imports nothing, so
that the command line starts (and shows progress) before the heavy libraries load."""

DEFAULT_THRESHOLD: float | None = None  # None: each code's own threshold (ml.suggest.decide)
DEFAULT_TOP_K = 3
