"""Scoring a frame of segments: encode, score, pick the suggestions, join them to the segments.

The one scoring step behind batch pre-coding (:func:`coder_assist.app.pipeline.precode`),
project suggestions (:func:`coder_assist.app.pipeline.suggest_project`) and the Ray scale-out
(:mod:`coder_assist.scale.distributed`). Frames in, frames out: no files, no project.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pandas as pd

from ..core.defaults import DEFAULT_THRESHOLD, DEFAULT_TOP_K
from ..core.template import Template
from .embed import Encoder, load_encoder
from .suggest import ExampleSimilarityScorer, Inputs, Scorer, suggest

#: Columns of a pre-coding result, in order; the participant attributes go after the first two.
OUTPUT_COLUMNS = [
    "transcript",
    "speaker",
    "start",
    "end",
    "text",
    "code_path",
    "code_id",
    "rank",
    "confidence",
    "verdict",
    "evidence",
    "evidence_source",
    "evidence_similarity",
]


class _Counter:
    def __init__(self, fn):
        self.update = fn


def _counter(progress: Any, total: int, desc: str):
    """What counts encoded passages: a callable taking a count (a stage the caller already
    shows), a display with ``stage(desc, total=, unit=)`` (:class:`coder_assist.app.progress.Progress`),
    or nothing (None, False, True: the display is the caller's to make)."""
    if progress is None or isinstance(progress, bool):
        return nullcontext(_Counter(lambda n: None))
    if hasattr(progress, "stage"):
        return progress.stage(desc, total=total, unit="seg")
    return nullcontext(_Counter(progress))


def score_frame(
    segments: pd.DataFrame,
    template: Template,
    *,
    encoder: Encoder | None = None,
    scorer: Scorer | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    top_k: int | None = DEFAULT_TOP_K,
    progress: Any = None,
) -> pd.DataFrame:
    """Suggestions for a frame of segments (needs a ``text`` column; ``prev_text`` for a
    scorer that needs context). Returns one row per suggestion, joined to the segment's
    columns, with code path and evidence; ``attrs["n_segments"]`` is the number scored.
    ``progress``: see :func:`_counter`."""
    encoder = encoder or load_encoder()
    scorer = scorer or ExampleSimilarityScorer().fit(template, encoder)
    texts = segments["text"].tolist()
    with _counter(progress, len(segments) * (2 if scorer.needs_context else 1), "Encoding segments") as bar:
        inputs = Inputs(X=encoder.encode(texts, progress=bar.update), texts=texts)
        if scorer.needs_context:
            inputs.prev_texts = segments["prev_text"].fillna("").tolist()
            inputs.X_prev = encoder.encode(inputs.prev_texts, progress=bar.update)
    sugg = suggest(scorer.score(inputs), threshold=threshold, top_k=top_k)
    seg = segments.reset_index(drop=True)
    out = sugg.merge(seg, left_on="segment", right_index=True, how="left")
    out["code_path"] = out["code_id"].map(lambda c: template.codes[c].path_str)
    out.attrs["n_segments"] = len(seg)
    return out


__all__ = ["OUTPUT_COLUMNS", "score_frame"]
