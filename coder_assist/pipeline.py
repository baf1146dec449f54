"""The suggestion pipeline as plain functions over DataFrames: the API that the CLI and the app
call. Read files -> segments -> embeddings (cached) -> scores -> suggestions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from .codebook import Template, load_template
from .embed import Encoder, load_encoder
from .ingest import Transcript, load_transcripts
from .segment import Segmenter
from .store import Project
from .suggest import ExampleSimilarityScorer, Inputs, Scorer, auto_threshold, suggest

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
DEFAULT_THRESHOLD: float | None = None  # None: twice the 1/K chance rate (suggest.auto_threshold)
DEFAULT_TOP_K = 3

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


def _progress_bar(total: int, desc: str, enabled: bool | None):
    from tqdm.auto import tqdm

    # enabled=None: show on a terminal only (tqdm's own tty check), so logs and pipes stay clean.
    return tqdm(total=total, desc=desc, unit="seg", disable=None if enabled is None else not enabled, file=sys.stderr)


def _as_template(template: Template | str | Path | None) -> Template:
    return template if isinstance(template, Template) else load_template(template)


def score_frame(
    segments: pd.DataFrame,
    template: Template,
    *,
    encoder: Encoder | None = None,
    scorer: Scorer | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    top_k: int | None = DEFAULT_TOP_K,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Suggestions for a frame of segments (needs a ``text`` column). Returns one row per
    suggestion, joined to the segment's columns, with code path and evidence."""
    encoder = encoder or load_encoder()
    scorer = scorer or ExampleSimilarityScorer().fit(template, encoder)
    texts = segments["text"].tolist()
    with _progress_bar(len(segments) * (2 if scorer.needs_context else 1), "Encoding segments", progress) as bar:
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


def precode(
    paths: Iterable[str | Path] | str | Path,
    template: Template | str | Path | None = None,
    *,
    attributes: str | Path | pd.DataFrame | None = None,
    extra_attributes: Mapping[str, str] | None = None,
    segmenter: Segmenter | None = None,
    model: str | None = None,
    encoder: Encoder | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    top_k: int | None = DEFAULT_TOP_K,
    progress: bool | None = None,
    project: Project | str | Path | None = None,
) -> pd.DataFrame:
    """Pre-code transcript files: one row per suggestion.

    Columns: transcript, speaker, the participant attributes, start, end (character offsets into
    the transcript text), text, code_path, code_id, rank, confidence, verdict, evidence (nearest
    example excerpt), evidence_source, evidence_similarity.

    With ``project``, its template and its active model (the classifier trained on the
    researcher's decisions, if any) make the suggestions, and ``verdict`` says per code whether
    the model is reliable for it; without, the template's examples do ("cold start").
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    scorer: Scorer | None = None
    verdicts: dict[str, str] = {}
    if project is not None:
        proj = project if isinstance(project, Project) else Project.open(project)
        template = proj.template()
        encoder = encoder or load_encoder(model or proj.meta("model"))
        mv = proj.latest_model_version()
        kind = proj.conn.execute("SELECT kind FROM model_versions WHERE id = ?", (mv,)).fetchone() if mv else None
        if kind and kind[0] == "learned":
            from .learn import load_model_version

            scorer = load_model_version(proj, mv, encoder)
        verdicts = proj.verdicts()
        if proj is not project:
            proj.close()
    template = _as_template(template)
    transcripts = load_transcripts(paths, attributes=attributes, extra_attributes=extra_attributes)
    segmenter = segmenter or Segmenter()
    segs = segmenter.frame(transcripts)
    attr_names = sorted({k for t in transcripts for k in t.attributes})
    attrs = pd.DataFrame([{"transcript": t.name, **t.attributes} for t in transcripts], columns=["transcript", *attr_names])
    segs = segs.merge(attrs, on="transcript", how="left")
    encoder = encoder or load_encoder(model)
    out = score_frame(segs, template, encoder=encoder, scorer=scorer, threshold=threshold, top_k=top_k, progress=progress)
    # Batch pre-coding never passes a suggestion off as settled: each row says how far the
    # model can be trusted for its code.
    out["verdict"] = [verdicts.get(c, "cold start") for c in out["code_id"]]
    cols = OUTPUT_COLUMNS[:2] + attr_names + OUTPUT_COLUMNS[2:]
    result = out[cols].reset_index(drop=True)
    result.attrs["n_segments"] = len(segs)
    return result


# --------------------------------------------------------------------------- projects


def init_project(folder: str | Path, template: Template | str | Path | None = None, segmenter: Segmenter | None = None) -> Project:
    """Create a project folder with its database, template and segmentation settings."""
    project = Project.create(folder, _as_template(template))
    seg = segmenter or Segmenter()
    with project.transaction():
        project._set_meta(
            "segmenter",
            json.dumps({"unit": seg.unit, "window": seg.window, "coded_speakers": sorted(seg.coded_speakers) if seg.coded_speakers else None}),
        )
    return project


def project_segmenter(project: Project) -> Segmenter:
    raw = json.loads(project.meta("segmenter") or "{}")
    coded = raw.get("coded_speakers")
    return Segmenter(unit=raw.get("unit", "window"), window=int(raw.get("window", 3)), coded_speakers=frozenset(coded) if coded else None)


def import_files(
    project: Project,
    paths: Iterable[str | Path],
    *,
    attributes: str | Path | pd.DataFrame | None = None,
    extra_attributes: Mapping[str, str] | None = None,
) -> list[Transcript]:
    """Read and segment every file first, then store all of them in one transaction: a bad
    file raises before anything is written."""
    transcripts = load_transcripts(paths, attributes=attributes, extra_attributes=extra_attributes)
    seg = project_segmenter(project)
    project.add_transcripts(transcripts, {t.name: seg.segments(t) for t in transcripts})
    return transcripts


def suggest_project(
    project: Project,
    *,
    model: str | None = None,
    encoder: Encoder | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    top_k: int | None = DEFAULT_TOP_K,
    progress: bool | None = None,
) -> int:
    """Score every segment of the project and store the suggestions as a new model version.
    Returns the model version id. When the active model version is a trained one, it scores
    (new transcripts get learned suggestions; ``threshold`` None = its per-code thresholds);
    otherwise the template's example-similarity scorer does."""
    template = project.template()
    encoder = encoder or load_encoder(model or project.meta("model"))
    active = project.latest_model_version()
    if active is not None and (project.folder / "models" / f"v{active}" / "model.json").exists():
        from .learn import rescore_project

        return rescore_project(project, encoder, threshold=threshold, top_k=top_k)
    scorer = ExampleSimilarityScorer().fit(template, encoder)
    segs = project.segments()
    out = score_frame(segs, template, encoder=encoder, scorer=scorer, threshold=threshold, top_k=top_k, progress=progress)
    card = {
        "scorer": scorer.version,
        "encoder": encoder.model_id,
        "threshold": threshold if threshold is not None else auto_threshold(len(scorer.code_ids)),
        "top_k": top_k,
        "calibration": {"slope": scorer.calibration[0], "intercept": scorer.calibration[1], "positives": scorer.calibration_n[0], "negatives": scorer.calibration_n[1]},
        "segments": len(segs),
        "suggestions": len(out),
    }
    mv = project.add_model_version(scorer.version, encoder.model_id, card)
    project.add_suggestions(mv, out.rename(columns={"id": "segment_id"}))
    return mv


def build_demo_project(folder: str | Path, *, encoder: Encoder | None = None, progress: bool | None = None) -> Project:
    """The built-in demo: default template + the invented demo interviews, suggestions computed."""
    project = init_project(folder)
    import_files(project, [DEMO_DIR])
    suggest_project(project, encoder=encoder, progress=progress)
    return project
