"""The suggestion pipeline as plain functions over DataFrames: the API that the CLI and the app
call. Read files -> segments -> embeddings (cached) -> scores -> suggestions."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from ..core.template import Template
from ..formats.template import as_template
from ..ml.embed import load_encoder
from ..ml.encoder import Encoder, canonical_model
from ..core.transcript import Transcript
# The readers' limits and single-file readers, re-exported: the Import page checks uploads with
# the same rules import_files applies.
from ..formats.transcripts import (  # noqa: F401
    MAX_FILE_BYTES, SUPPORTED_SUFFIXES, load_transcripts, parse_attribute_options, read_attributes, read_transcript,
)
from .progress import Progress, as_progress
from ..core.segment import Segmenter
from ..store.models import has_model
from ..store.project import SUGGEST_RUN_KEY, Project  # noqa: F401  (SUGGEST_RUN_KEY re-exported)
from ..core.defaults import DEFAULT_THRESHOLD, DEFAULT_TOP_K  # noqa: F401  (re-exported: the pipeline's API)
from ..ml.scoring import OUTPUT_COLUMNS, score_frame  # noqa: F401  (re-exported: the pipeline's API)
from ..ml.suggest import ExampleSimilarityScorer, Scorer

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"

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
    prog = as_progress(progress)
    # Every input is read and checked before the model loads: a bad file fails in a second.
    transcripts = read_inputs(paths, attributes=attributes, extra_attributes=extra_attributes, progress=prog)
    template, scorer, verdicts, encoder = _precode_model(template, project, model, encoder, prog)
    segmenter = segmenter or Segmenter()
    attr_names = sorted({k for t in transcripts for k in t.attributes})
    return _precode_transcripts(transcripts, attr_names, template, scorer, verdicts, segmenter, encoder, threshold, top_k, prog)


def read_inputs(
    paths: Iterable[str | Path] | str | Path | Sequence[Transcript],
    *,
    attributes: str | Path | pd.DataFrame | None = None,
    extra_attributes: Mapping[str, str] | None = None,
    exclude: Iterable[str | Path] = (),
    progress: bool | None | Progress = None,
) -> list[Transcript]:
    """Read and check every transcript (folders expanded) with a progress line; transcripts
    already read are returned as they are. ``exclude``: the run's own output files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if paths and all(isinstance(p, Transcript) for p in paths):
        return paths
    prog = as_progress(progress)
    with prog.stage("Reading transcripts", total=0, unit="file") as st:
        return load_transcripts(paths, attributes=attributes, extra_attributes=extra_attributes, exclude=exclude,
                                on_files=st.add_total, on_file=lambda _f: st.update(1))


def _n_examples(template: Template) -> int:
    return sum(len(c.examples) for c in template.leaves())


def _load_model(model, prog: Progress) -> Encoder:
    with prog.stage("Loading the embedding model"):
        return load_encoder(model)


def _precode_model(template, project, model, encoder, prog: Progress | None = None) -> tuple[Template, Scorer | None, dict[str, str], Encoder]:
    """Template, scorer (None: the template's examples), per-code verdicts and encoder."""
    prog = prog or Progress(False)
    scorer: Scorer | None = None
    verdicts: dict[str, str] = {}
    if project is not None:
        proj = project if isinstance(project, Project) else Project.open(project)
        template = proj.template()
        encoder = encoder or _load_model(model or proj.meta("model"), prog)
        mv = proj.latest_model_version()
        if proj.model_version_kind(mv) == "learned":
            from .training import load_model_version

            with prog.stage(f"Loading trained model v{mv}"):
                scorer = load_model_version(proj, mv, encoder)
        verdicts = proj.verdicts()
        if proj is not project:
            proj.close()
    template = as_template(template)
    return template, scorer, verdicts, encoder or _load_model(model, prog)


def _precode_transcripts(transcripts, attr_names, template, scorer, verdicts, segmenter, encoder, threshold, top_k, progress) -> pd.DataFrame:
    segs = segmenter.frame(transcripts)
    attrs = pd.DataFrame([{"transcript": t.name, **t.attributes} for t in transcripts], columns=["transcript", *attr_names])
    segs = segs.merge(attrs, on="transcript", how="left")
    out = score_frame(segs, template, encoder=encoder, scorer=scorer, threshold=threshold, top_k=top_k, progress=progress)
    # Batch pre-coding never passes a suggestion off as settled: each row says how far the
    # model can be trusted for its code.
    out["verdict"] = [verdicts.get(c, "cold start") for c in out["code_id"]]
    cols = OUTPUT_COLUMNS[:2] + attr_names + OUTPUT_COLUMNS[2:]
    result = out[cols].reset_index(drop=True)
    result.attrs["n_segments"] = len(segs)
    return result


# --------------------------------------------------------------------------- resumable batch runs

#: Transcripts are scored in chunks of about this many segments; each chunk is committed (CSV
#: rows fsynced, then the checkpoint; or one SQLite transaction) before the next starts.
CHUNK_SEGMENTS = 1000


def _fingerprint(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _chunks(sizes: list[tuple[object, int]], chunk_segments: int) -> list[list[object]]:
    """Group keys (transcripts) in order into chunks of at least ``chunk_segments`` segments."""
    out: list[list[object]] = [[]]
    n = 0
    for key, size in sizes:
        if out[-1] and n >= chunk_segments:
            out.append([])
            n = 0
        out[-1].append(key)
        n += size
    return [c for c in out if c]


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class BatchRun:
    """What a resumable run did: transcripts in all, skipped as already done, scored now."""

    transcripts: int
    skipped: int
    scored: int
    segments: int  # segments scored in this run
    rows: int  # rows (suggestions) in the finished output
    resumed: bool


def checkpoint_path(out: str | Path) -> Path:
    """The checkpoint of ``precode_to_csv(..., out)``: beside the output, ``X.csv.checkpoint.json``."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint.json")


def precode_to_csv(
    paths: Iterable[str | Path] | str | Path,
    out: str | Path,
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
    chunk_segments: int = CHUNK_SEGMENTS,
    resume: bool = True,
    on_chunk: Callable[[list[str]], None] | None = None,
) -> BatchRun:
    """:func:`precode` written to a CSV chunk by chunk, resumable after a crash or a kill.

    Rows go to ``X.csv.partial``; after each chunk of transcripts the file is fsynced and the
    checkpoint (``X.csv.checkpoint.json``: which transcripts are done, how many bytes of the
    partial file are committed, a fingerprint of inputs and settings) is replaced atomically.
    A rerun with the same inputs and settings cuts the partial file back to the committed
    length (no half-written row survives), skips the finished transcripts (they are not
    encoded again) and carries on. Only a complete output is renamed to ``X.csv``; the
    checkpoint is then removed. Other inputs or settings start afresh.

    ``on_chunk(names)`` is called with each chunk's transcript names before it is scored; an
    exception raised there stops the run at that point (the chunks before it stay committed,
    and a rerun resumes after them), as a kill would.
    """
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    ckpt_path = checkpoint_path(out)
    prog = as_progress(progress)
    # Inputs first (a bad file fails before the model loads); this run's own files are never
    # read as transcripts, and neither is an earlier run's output left in the folder.
    transcripts = read_inputs(paths, attributes=attributes, extra_attributes=extra_attributes,
                              exclude=[out, partial, ckpt_path], progress=prog)
    template, scorer, verdicts, encoder = _precode_model(template, project, model, encoder, prog)
    segmenter = segmenter or Segmenter()
    attr_names = sorted({k for t in transcripts for k in t.attributes})
    columns = OUTPUT_COLUMNS[:2] + attr_names + OUTPUT_COLUMNS[2:]
    if scorer is None:
        with prog.stage(f"Encoding the template's {_n_examples(template)} examples"):
            scorer = ExampleSimilarityScorer().fit(template, encoder)  # fitted once, not per chunk
    fp = _fingerprint(
        [(t.name, t.attributes, hashlib.sha1(t.text.encode("utf-8")).hexdigest()) for t in transcripts],
        template.to_yaml(), encoder.model_id, scorer.version, getattr(scorer, "intercept", None), getattr(scorer, "platt", None),
        threshold, top_k, segmenter.unit, segmenter.window, sorted(segmenter.coded_speakers or []), verdicts, columns,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    state, resumed = _resume_state(partial, ckpt_path, fp, columns, resume)
    done = set(state["done"])
    todo = [t for t in transcripts if t.name not in done]
    segs_of = {t.name: segmenter.segments(t) for t in todo}
    n_scored = 0
    total = sum(len(v) for v in segs_of.values()) * (2 if scorer.needs_context else 1)
    if resumed:
        prog.echo(f"resuming: {len(transcripts) - len(todo)} of {len(transcripts)} transcripts were already done")
    with prog.stage("Coding segments", total=total, unit="seg") as bar:
        for chunk in _chunks([(t, len(segs_of[t.name])) for t in todo], chunk_segments):
            if on_chunk is not None:
                on_chunk([t.name for t in chunk])
            if any(segs_of[t.name] for t in chunk):
                df = _precode_transcripts(chunk, attr_names, template, scorer, verdicts, segmenter, encoder, threshold, top_k, bar)
            else:
                df = pd.DataFrame(columns=columns)
                df.attrs["n_segments"] = 0
            _commit_chunk(partial, ckpt_path, state, df[columns], [t.name for t in chunk])
            n_scored += df.attrs["n_segments"]
            stats = getattr(encoder, "stats", None)
            if stats is not None and stats.unique:
                bar.note(f"{stats.cache_hits} cached")
    os.replace(partial, out)
    ckpt_path.unlink(missing_ok=True)
    return BatchRun(len(transcripts), len(transcripts) - len(todo), len(todo), n_scored, int(state["rows"]), resumed)


def _resume_state(partial: Path, ckpt_path: Path, fp: str, columns: list[str], resume: bool) -> tuple[dict, bool]:
    """The checkpoint to carry on from (the partial file cut back to its committed length),
    or a fresh one (a partial file holding only the header). Returns (state, resumed)."""
    state = None
    if resume and ckpt_path.exists() and partial.exists():
        try:
            state = json.loads(ckpt_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None  # a torn checkpoint cannot happen (atomic replace); a foreign file: start over
        if state is not None and (state.get("fingerprint") != fp or partial.stat().st_size < int(state.get("bytes", 0))):
            state = None
    if state is None:
        with open(partial, "w", encoding="utf-8", newline="") as f:
            pd.DataFrame(columns=columns).to_csv(f, index=False)
            f.flush()
            os.fsync(f.fileno())
            state = {"fingerprint": fp, "bytes": f.tell(), "done": [], "rows": 0}
        _write_json_atomic(ckpt_path, state)
        return state, False
    with open(partial, "r+b") as f:
        f.truncate(int(state["bytes"]))  # drop a chunk that was written but never committed
    return state, True


def _commit_chunk(partial: Path, ckpt_path: Path, state: dict, rows: pd.DataFrame, names: list[str]) -> None:
    """Append a chunk's rows (fsynced), then replace the checkpoint: the chunk's commit point."""
    with open(partial, "a", encoding="utf-8", newline="") as f:
        rows.to_csv(f, index=False, header=False)
        f.flush()
        os.fsync(f.fileno())
        state["bytes"] = f.tell()
    state["done"] += names
    state["rows"] += len(rows)
    _write_json_atomic(ckpt_path, state)


# --------------------------------------------------------------------------- projects


def init_project(folder: str | Path, template: Template | str | Path | None = None, segmenter: Segmenter | None = None,
                 model: str | Path | None = None) -> Project:
    """Create a project folder with its database, template, segmentation settings and encoder
    (``model``: a built-in encoder's name or alias, or a sentence-transformers folder; None: the
    default encoder), which the project keeps when the default changes."""
    project = Project.create(folder, as_template(template), model=_model_setting(model))
    seg = segmenter or Segmenter()
    with project.transaction():
        project.set_segmenter_settings(
            {"unit": seg.unit, "window": seg.window, "coded_speakers": sorted(seg.coded_speakers) if seg.coded_speakers else None,
             "short_sentences": seg.short_sentences, "short_words": seg.short_words})
    return project


def _model_setting(model: str | Path | None) -> str:
    """What a project records as its encoder: a built-in one by its one name, a folder by its
    absolute path (the project is opened from other working directories)."""
    name = canonical_model(model)
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def project_segmenter(project: Project) -> Segmenter:
    raw = json.loads(project.meta("segmenter") or "{}")
    coded = raw.get("coded_speakers")
    # A project made before short answers became one passage keeps segmenting as it did
    # (no word rule), so its transcripts are all cut the same way.
    short_words = int(raw.get("short_words", 0 if "unit" in raw else Segmenter.short_words))
    return Segmenter(unit=raw.get("unit", "window"), window=int(raw.get("window", 3)), coded_speakers=frozenset(coded) if coded else None,
                     short_sentences=int(raw.get("short_sentences", Segmenter.short_sentences)), short_words=short_words)


def import_files(
    project: Project,
    paths: Iterable[str | Path],
    *,
    attributes: str | Path | pd.DataFrame | None = None,
    extra_attributes: Mapping[str, str] | None = None,
) -> list[Transcript]:
    """Read and segment every file first (or take transcripts already read), then store all of
    them in one transaction: a bad file raises before anything is written."""
    transcripts = read_inputs(paths, attributes=attributes, extra_attributes=extra_attributes, progress=False)
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
    chunk_segments: int = CHUNK_SEGMENTS,
) -> int:
    """Score every segment of the project and store the suggestions as a new model version.
    Returns the model version id. When the active model version is a trained one, it scores
    (new transcripts get learned suggestions; ``threshold`` None = its per-code thresholds);
    otherwise the template's example-similarity scorer does."""
    prog = as_progress(progress)
    template = project.template()
    encoder = encoder or _load_model(model or project.meta("model"), prog)
    active = project.latest_model_version()
    if has_model(project, active):
        from .training import rescore_project
        from .progress import counting

        with counting(encoder, prog, f"Rescoring with trained model v{active}") as counted:
            return rescore_project(project, counted, threshold=threshold, top_k=top_k)
    with prog.stage(f"Encoding the template's {_n_examples(template)} examples"):
        scorer = ExampleSimilarityScorer().fit(template, encoder)
    segs = project.segments()
    card = {
        "scorer": scorer.version,
        "encoder": encoder.model_id,
        # None: no single threshold, each code its own from the template (``thresholds``).
        "threshold": threshold,
        "thresholds": None if threshold is not None else {c: round(float(t), 4) for c, t in zip(scorer.code_ids, scorer.thresholds)},
        "calibrated": bool(scorer.calibrated),
        "top_k": top_k,
        "calibration": {"slope": scorer.calibration[0], "intercept": scorer.calibration[1], "positives": scorer.calibration_n[0], "negatives": scorer.calibration_n[1]},
        "segments": len(segs),
    }
    # Resumable: the version is recorded first (not active), each chunk of transcripts is
    # stored with the run's progress in one transaction, and the version becomes active only
    # when complete. A killed run is continued by the next call with the same settings.
    fp = _fingerprint(template.to_yaml(), scorer.version, encoder.model_id, card["threshold"], top_k)
    with project.transaction():
        state = project.suggest_run_state()
        if state is None or state.get("fingerprint") != fp:
            # Not active yet: the queue keeps the complete version meanwhile.
            mv = project.add_inactive_model_version(scorer.version, encoder.model_id, card | {"incomplete": True})
            state = {"model_version": mv, "fingerprint": fp, "done": []}
            project.set_suggest_run_state(state)
    mv = int(state["model_version"])
    todo = segs[~segs["transcript_id"].isin(state["done"])]
    sizes = todo.groupby("transcript_id", sort=False).size()
    with prog.stage("Scoring segments", total=len(todo) * (2 if scorer.needs_context else 1), unit="seg") as bar:
        for chunk in _chunks(list(sizes.items()), chunk_segments):
            part = todo[todo["transcript_id"].isin(chunk)]
            out = score_frame(part, template, encoder=encoder, scorer=scorer, threshold=threshold, top_k=top_k, progress=bar)
            with project.transaction():
                project.add_suggestions(mv, out.rename(columns={"id": "segment_id"}))
                state["done"] += [int(t) for t in chunk]
                project.set_suggest_run_state(state)
    project.complete_suggest_run(mv, card)
    return mv


def compute_suggestions(project: Project, encoder: Encoder) -> tuple[int, int]:
    """:func:`suggest_project` with a loaded encoder and no progress display (the app's "Compute
    suggestions"): the new model version, now the active one, and how many suggestions it made."""
    mv = suggest_project(project, encoder=encoder, progress=False)
    return mv, project.counts()["suggestions"]


def build_demo_project(folder: str | Path, *, encoder: Encoder | None = None, progress: bool | None = None) -> Project:
    """The built-in demo: default template + the invented demo interviews, suggestions computed."""
    project = init_project(folder)
    import_files(project, [DEMO_DIR])
    suggest_project(project, encoder=encoder, progress=progress)
    return project
