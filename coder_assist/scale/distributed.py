"""Scale-out of batch scoring on Ray Data (optional: ``pip install -e .[scale]``).

Segmenting is cheap and stays on the driver; encoding and scoring run in a pool of Ray actors,
each of which loads the model and fits the template's scorer once (``map_batches`` with a
callable class), and return plain suggestion rows. Only the driver writes: the CSV, or the
project database through :meth:`Project.add_suggestions` (SQLite has one writer; workers
never open it). The same code runs on a laptop (``ray.init()`` starts a local cluster) and on
a cluster (``address="ray://head:10001"`` or ``"auto"``). See docs/scale.md.

Nothing here may reach the network on its own: usage statistics are switched off before Ray
starts, the dashboard is not started, and a local cluster binds to 127.0.0.1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from ..core.template import Template
from ..core.errors import CoderAssistError
from ..core.segment import Segmenter

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # transcripts are confidential: no telemetry

INSTALL_HINT = "distributed scoring needs Ray Data: pip install 'coder-assist[scale]' (or pip install 'ray[data]')"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise CoderAssistError(INSTALL_HINT) from exc
    return ray


def start(address: str | None = None, *, num_cpus: int | None = None):
    """Connect to a Ray cluster (``address``) or start a local one; returns the ray module."""
    ray = _ray()
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None:
            kwargs |= {"num_cpus": num_cpus, "_node_ip_address": "127.0.0.1"}
        else:
            kwargs["address"] = address
        ray.init(**kwargs)
    return ray


class _ScoreActor:
    """One per worker process: the model and the fitted scorer stay loaded between batches."""

    def __init__(self, template: dict, model: str | None, threshold: float | None, top_k: int | None):
        from ..core.template import parse_template
        from ..ml.embed import load_encoder
        from ..ml.suggest import ExampleSimilarityScorer

        self.template = parse_template(template)
        self.encoder = load_encoder(model)
        self.scorer = ExampleSimilarityScorer().fit(self.template, self.encoder)
        self.threshold, self.top_k = threshold, top_k

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        from ..ml.scoring import score_frame

        out = score_frame(batch, self.template, encoder=self.encoder, scorer=self.scorer, threshold=self.threshold, top_k=self.top_k, progress=False)
        out["encoder"] = self.encoder.model_id
        out["_pid"] = os.getpid()
        # Plain columns only: what crosses the wire is rows, never model objects.
        return out.drop(columns=["segment"]).reset_index(drop=True)


def score_segments(
    segments: pd.DataFrame,
    template: Template,
    *,
    model: str | None = None,
    threshold: float | None = None,
    top_k: int | None = 3,
    workers: int = 2,
    batch_size: int = 512,
    address: str | None = None,
) -> pd.DataFrame:
    """:func:`coder_assist.ml.scoring.score_frame` over a Ray actor pool of ``workers``: the
    same rows (one per suggestion, joined to the segment's columns), in segment order."""
    ray = start(address, num_cpus=None if address else workers)
    segs = segments.reset_index(drop=True).assign(_row=lambda d: range(len(d)))
    if segs.empty:
        return pd.DataFrame()
    # One block per batch, so the actors share the work even on a small input.
    blocks = [segs.iloc[i : i + batch_size] for i in range(0, len(segs), batch_size)]
    ds = ray.data.from_pandas(blocks).map_batches(
        _ScoreActor,
        fn_constructor_kwargs={"template": template.to_dict(), "model": model, "threshold": threshold, "top_k": top_k},
        batch_size=batch_size,
        batch_format="pandas",
        concurrency=workers,
        num_cpus=1,
    )
    out = ds.to_pandas()
    # Ray hands back Arrow-backed columns (large_string[pyarrow], ...); rebuilt from plain
    # arrays they get pandas' own dtypes, so the frame and CSV equal the single-process ones.
    out = pd.DataFrame({c: out[c].to_numpy() for c in out.columns})
    if out.empty:
        return out
    encoders = set(out["encoder"])
    if len(encoders) > 1:
        raise CoderAssistError(f"workers used different models {sorted(encoders)}: install the same model on every node")
    pids = sorted(set(out["_pid"].tolist()))
    out = out.sort_values(["_row", "rank"], kind="stable").drop(columns=["_row", "encoder", "_pid"]).reset_index(drop=True)
    out.attrs["worker_pids"] = pids  # which processes did the work
    out["code_path"] = out["code_id"].map(lambda c: template.codes[c].path_str)
    return out


def precode(
    paths: Iterable[str | Path] | str | Path,
    template: Template | str | Path | None = None,
    *,
    attributes: str | Path | pd.DataFrame | None = None,
    extra_attributes: Mapping[str, str] | None = None,
    segmenter: Segmenter | None = None,
    model: str | None = None,
    threshold: float | None = None,
    top_k: int | None = 3,
    workers: int = 2,
    batch_size: int = 512,
    address: str | None = None,
) -> pd.DataFrame:
    """:func:`coder_assist.app.pipeline.precode` (template scorer) with scoring on Ray."""
    from ..formats.transcripts import load_transcripts
    from ..formats.template import as_template
    from ..ml.scoring import OUTPUT_COLUMNS

    template = as_template(template)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    transcripts = load_transcripts(paths, attributes=attributes, extra_attributes=extra_attributes)
    segs = (segmenter or Segmenter()).frame(transcripts)
    attr_names = sorted({k for t in transcripts for k in t.attributes})
    attrs = pd.DataFrame([{"transcript": t.name, **t.attributes} for t in transcripts], columns=["transcript", *attr_names])
    segs = segs.merge(attrs, on="transcript", how="left")
    out = score_segments(segs, template, model=model, threshold=threshold, top_k=top_k, workers=workers, batch_size=batch_size, address=address)
    out["verdict"] = "cold start"
    cols = OUTPUT_COLUMNS[:2] + attr_names + OUTPUT_COLUMNS[2:]
    result = out.reindex(columns=cols).reset_index(drop=True)
    result.attrs["n_segments"] = len(segs)
    result.attrs["worker_pids"] = out.attrs.get("worker_pids", [])
    return result
