"""``coder-assist`` command line: a thin layer over :mod:`coder_assist.app.pipeline`."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .core.defaults import DEFAULT_FEATURES, DEFAULT_MODEL, DEFAULT_THRESHOLD, DEFAULT_TOP_K, FEATURE_SETS, MINILM_MODEL
from .core.errors import CoderAssistError

if TYPE_CHECKING:
    from .core.template import Template


def load_template(path):
    # Imported on use: pandas and the rest load after the first progress line is shown.
    from .formats.template import load_template as load

    return load(path)


def _clean_errors(fn):
    """Show library errors as one clear line and exit non-zero (no traceback for user mistakes)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CoderAssistError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


def _segmenter(unit: str, window: int, speakers: tuple[str, ...]):
    from .core.segment import Segmenter

    return Segmenter(unit=unit, window=window, coded_speakers=frozenset(speakers) if speakers else None)


_segment_options = [
    click.option("--unit", type=click.Choice(["window", "sentence", "turn"]), default="window", show_default=True, help="What gets coded."),
    click.option("--window", type=int, default=3, show_default=True, help="Sentences per window (with --unit window)."),
    click.option("--speaker", "speakers", multiple=True, help="Code only these speakers (repeatable). Default: everyone but the interviewer."),
]


def _with(options):
    def deco(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


MODEL_HELP = (f"Encoder: {DEFAULT_MODEL} (the default, or with --project the project's own; multilingual, no torch), "
              f"{MINILM_MODEL}, or a sentence-transformers model folder.")
BACKEND_HELP = (f"Backend of {MINILM_MODEL} or a model folder (the default {DEFAULT_MODEL} is int8 ONNX only): onnx (default for "
                f"{MINILM_MODEL}: exported at set-up, same vectors as torch, no torch import), torch (sentence-transformers; the "
                "default for a model folder you name) or onnx-int8 (quantised, approximate). Or $CODER_ASSIST_BACKEND.")
PROJECT_MODEL_HELP = (f"Encoder (default: the project's own, recorded when it was made; a project made before "
                      f"{DEFAULT_MODEL} became the default keeps {MINILM_MODEL}): {DEFAULT_MODEL}, {MINILM_MODEL}, or a "
                      "sentence-transformers model folder.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coder-assist")
def main() -> None:
    """Offline code suggestions for qualitative template analysis. Nothing leaves this machine."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="CSV file to write (one row per suggestion).")
@click.option("--template", "-t", type=click.Path(path_type=Path), help="Template YAML (default: the built-in study template).")
@click.option("--attributes", "-a", type=click.Path(path_type=Path), help="Attribute CSV keyed by transcript (default: attributes.csv in the folder).")
@click.option("--attr", "attrs", multiple=True, help="Attribute for every file, key=value (repeatable).")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--project", "-p", type=click.Path(path_type=Path), help="Use this project's template and trained model (with per-code verdicts).")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, help="One minimum confidence for every code (default: each code's own threshold, from the template's "
                   "examples before any training, from your decisions after).")
@click.option("--top-k", type=int, default=DEFAULT_TOP_K, show_default=True, help="At most this many codes per segment (0: no limit).")
@click.option("--backend", type=click.Choice(["torch", "onnx", "onnx-int8"]), default=None, help=BACKEND_HELP)
@click.option("--ray", "ray_address", help="Score on Ray instead of this process: 'local' (a local cluster) or a cluster address (needs the [scale] extra; see docs/scale.md).")
@click.option("--workers", type=int, default=2, show_default=True, help="With --ray: scoring actors (each holds the model).")
@_with(_segment_options)
@_clean_errors
def precode(inputs, out, template, attributes, attrs, model, project, threshold, top_k, backend, ray_address, workers, unit, window, speakers):
    """Suggest codes for transcript files or folders and write them to a CSV.

    \b
    Example:  coder-assist precode data/demo --out suggestions.csv
    """
    from .app.progress import Progress

    if project is not None and template is not None:
        raise click.UsageError("--template and --project exclude each other: a project has its own template")
    t_start = time.perf_counter()
    prog = Progress()
    with prog.stage("Starting (loading libraries)"):
        from .app import pipeline
        from .ml.embed import load_encoder
        from .formats.transcripts import parse_attribute_options
    # Everything the run reads is read and checked first: a bad file, template or attribute
    # sheet fails within a second, before the model loads. The run's own output (and an
    # earlier run's output in the folder) is never read as a transcript.
    tpl = load_template(template) if project is None else None
    extra = parse_attribute_options(attrs)
    out_files = [out, out.with_name(out.name + ".partial"), pipeline.checkpoint_path(out)]
    transcripts = pipeline.read_inputs(inputs, attributes=attributes, extra_attributes=extra, exclude=out_files, progress=prog)
    if ray_address is not None:
        if project is not None:
            raise click.UsageError("--ray scores with the template; --project (a trained model) runs in this process")
        from .scale import distributed

        t0 = time.perf_counter()
        df = distributed.precode(
            inputs, tpl, attributes=attributes, extra_attributes=extra, segmenter=_segmenter(unit, window, speakers),
            model=model, threshold=threshold, top_k=top_k or None, workers=workers, address=None if ray_address == "local" else ray_address,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)  # only the driver writes
        click.echo(f"{len(df)} suggestions for {df.attrs['n_segments']} segments written to {out} ({time.perf_counter() - t0:.1f}s on Ray, {workers} workers)", err=True)
        return
    t0 = time.perf_counter()
    if project is None:
        with prog.stage("Loading the embedding model"):
            encoder = load_encoder(model, backend=backend)
    else:
        from .store.project import Project

        with Project.open(project) as p:
            proj_model = model or p.meta("model")
        with prog.stage("Loading the embedding model"):
            encoder = load_encoder(proj_model, backend=backend)
    t_load = time.perf_counter() - t0
    # Written chunk by chunk with a checkpoint beside --out: rerun the same command after a
    # crash or Ctrl-C and it continues where it stopped.
    run = pipeline.precode_to_csv(
        transcripts,
        out,
        tpl,
        segmenter=_segmenter(unit, window, speakers),
        encoder=encoder,
        threshold=threshold,
        top_k=top_k or None,
        project=project,
        progress=prog,
    )
    elapsed = time.perf_counter() - t0 - t_load
    stats = getattr(encoder, "stats", None)
    n_seg = run.segments
    if run.resumed:
        click.echo(f"resumed: {run.skipped} of {run.transcripts} transcripts were already done", err=True)
    click.echo(
        f"{run.rows} suggestions for {run.transcripts} transcripts written to {out} "
        f"({n_seg} segments in {elapsed:.1f}s, {n_seg / max(elapsed, 1e-9):.0f} segments/s, after {t_load:.1f}s model load"
        + (f"; embedding cache hits {stats.cache_hits}/{stats.unique}" if stats else "")
        + f"; {time.perf_counter() - t_start:.1f}s in all)",
        err=True,
    )


@main.command(name="setup-models")
@click.option("--int8", is_flag=True, help="Also export the int8 (quantised, approximate) model for --backend onnx-int8.")
@_clean_errors
def setup_models(int8):
    """Export the bundled all-MiniLM-L6-v2 to ONNX once (run by `make setup`), so no run has to.

    \b
    MiniLM (--model all-MiniLM-L6-v2, and every project made before the multilingual USE
    became the default) then loads in about a second without importing torch. The USE is an
    ONNX model already. Where the export goes: $CODER_ASSIST_MODELS_DIR, else the virtual
    environment's share/coder-assist.
    """
    from .ml.onnx_backend import ensure_exported, is_exported

    for precision in ("fp32", "int8") if int8 else ("fp32",):
        t0 = time.perf_counter()
        if is_exported(MINILM_MODEL, precision):
            path = ensure_exported(MINILM_MODEL, precision)  # checks its SHA-256 against the manifest
            click.echo(f"{precision}: already exported and checked: {path}")
            continue
        path = ensure_exported(MINILM_MODEL, precision, notice=lambda m: click.echo(f"{precision}: exporting (10-20 s, once)...", err=True))
        click.echo(f"{precision}: exported {path} in {time.perf_counter() - t0:.1f}s")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--template", "-t", type=click.Path(path_type=Path), help="Template YAML or REFI-QDA codebook .qdc (default: the built-in study template).")
@click.option("--from", "from_file", type=click.Path(path_type=Path), help="Start from a REFI-QDA project (.qdpx): its codebook is the template, and its sources, codings, users, notes, sets and cases come in.")
@click.option("--model", "-m", help=f"The project's encoder, kept for its life: {DEFAULT_MODEL} (default; multilingual, "
              f"10x faster on CPU), {MINILM_MODEL} (the encoder that can be fine-tuned), or a sentence-transformers model folder.")
@_with(_segment_options)
@_clean_errors
def init(project, template, from_file, model, unit, window, speakers):
    """Create a project (a folder holding project.db) with a template and an encoder."""
    from .app.pipeline import init_project

    if from_file is not None:
        if template is not None:
            raise click.UsageError("--template and --from exclude each other: --from takes the file's own codebook as the template")
        from .app.importing import init_from_qdpx

        p, report = init_from_qdpx(project, from_file, _segmenter(unit, window, speakers), model)
        with p:
            click.echo(f"created {p.folder / 'project.db'} with the codebook of {from_file.name} ({len(p.template().codes)} codes)")
            click.echo(report.summary())
        return
    with init_project(project, load_template(template), _segmenter(unit, window, speakers), model) as p:
        click.echo(f"created {p.folder / 'project.db'} with template {p.template().name!r} ({len(p.template().leaves())} codes), "
                   f"encoder {p.meta('model')}")


@main.command(name="import")
@click.argument("project", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--attributes", "-a", type=click.Path(path_type=Path), help="Attribute CSV keyed by transcript.")
@click.option("--attr", "attrs", multiple=True, help="Attribute for every file, key=value (repeatable).")
@_clean_errors
def import_(project, inputs, attributes, attrs):
    """Import transcripts into a project (all files or none).

    \b
    A REFI-QDA project (.qdpx from NVivo, ATLAS.ti, MAXQDA, QualCoder) brings its text sources
    and its coding (as accepted decisions by its users):  coder-assist import myproject study.qdpx
    A codebook (.qdc) adds the codes the template lacks:   coder-assist import myproject codes.qdc
    """
    from .formats.transcripts import parse_attribute_options
    from .app.pipeline import import_files
    from .store.project import Project

    refi_files = [i for i in inputs if i.suffix.lower() in (".qdpx", ".qdc")]
    if refi_files:
        if len(refi_files) != len(inputs) or attributes or attrs:
            raise click.UsageError("import .qdpx/.qdc files on their own: their attributes come from the file's cases and variables")
        from .app.importing import import_qdc, import_qdpx

        with Project.open(project) as p:
            for f in refi_files:
                click.echo((import_qdpx if f.suffix.lower() == ".qdpx" else import_qdc)(p, f).summary())
            c = p.counts()
            click.echo(f"project now has {c['transcripts']} transcripts, {c['segments']} segments to code")
        return
    from .app.pipeline import read_inputs
    from .app.progress import Progress

    prog = Progress()
    # Read and check every file before the project is opened: all files or none.
    ts = read_inputs(inputs, attributes=attributes, extra_attributes=parse_attribute_options(attrs), progress=prog)
    with Project.open(project) as p:
        with prog.stage(f"Segmenting and storing {len(ts)} transcripts"):
            ts = import_files(p, ts)
        for t in ts:
            attrs_s = ", ".join(f"{k}={v}" for k, v in t.attributes.items())
            click.echo(f"imported {t.name} ({t.format}, {len(t.turns)} turns, speakers: {', '.join(t.speakers())}){' [' + attrs_s + ']' if attrs_s else ''}")
        c = p.counts()
        click.echo(f"project now has {c['transcripts']} transcripts, {c['segments']} segments to code")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--model", "-m", help=PROJECT_MODEL_HELP)
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, help="One minimum confidence for every code (default: each code's own threshold).")
@click.option("--top-k", type=int, default=DEFAULT_TOP_K, show_default=True)
@click.option("--backend", type=click.Choice(["torch", "onnx", "onnx-int8"]), default=None, help=BACKEND_HELP)
@_clean_errors
def suggest(project, model, threshold, top_k, backend):
    """Score every segment of a project and store the suggestions."""
    from .ml.embed import load_encoder
    from .app.pipeline import suggest_project
    from .store.project import Project

    from .app.progress import Progress

    prog = Progress()
    with Project.open(project) as p:
        with prog.stage("Loading the embedding model"):
            encoder = load_encoder(model or p.meta("model"), backend=backend)
        mv = suggest_project(p, model=model, encoder=encoder, threshold=threshold, top_k=top_k or None, progress=prog)
        click.echo(f"stored {p.counts()['suggestions']} suggestions as model version {mv}")


@main.command()
@click.argument("project", required=False, type=click.Path(path_type=Path))
@click.option("--template", "-t", type=click.Path(path_type=Path), help="Show this template file instead of a project's.")
@click.option("--examples/--no-examples", default=False, help="Also list example excerpts.")
@_clean_errors
def codes(project, template, examples):
    """Show the code tree of a project, a template file, or the built-in template."""
    from .store.project import Project

    if project is not None and template is None:
        with Project.open(project) as p:
            tpl = p.template()
    else:
        tpl = load_template(template)
    _print_tree(tpl, examples)


def _print_tree(tpl: Template, examples: bool) -> None:
    click.echo(f"{tpl.name}  ({len(tpl.leaves())} codes)")
    for c in tpl.codes.values():
        pad = "  " * (c.depth + 1)
        marker = "-" if c.is_leaf else "+"
        extra = f"  [{len(c.examples)} examples]" if c.is_leaf else ("  (mutually exclusive)" if c.exclusive else "")
        click.echo(f"{pad}{marker} {c.name}{extra}")
        if examples:
            for e in c.examples:
                click.echo(f"{pad}    \u201c{e.text}\u201d" + (f" ({e.source})" if e.source else ""))


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--model", "-m", help=PROJECT_MODEL_HELP)
@click.option("--features", type=click.Choice(FEATURE_SETS), default=DEFAULT_FEATURES, show_default=True)
@click.option("--target", type=float, default=0.7, show_default=True, help="Precision and recall a code needs to be 'reliable'.")
@_clean_errors
def train(project, model, features, target):
    """Retrain from the project's decisions; saves a model version and new suggestions."""
    from .ml.embed import load_encoder
    from .app.training import train_project
    from .store.models import card_path, version_dir
    from .store.project import Project

    from .app.progress import Progress, counting

    prog = Progress()
    with Project.open(project) as p:
        t0 = time.perf_counter()
        with prog.stage("Loading the embedding model"):
            encoder = load_encoder(model or p.meta("model"))
        with counting(encoder, prog, "Training: encoding passages, then fitting and rescoring") as counted:
            mv = train_project(p, counted, features=features, target=target)
        card = card_path(p, mv, text=True).read_text(encoding="utf-8")
        click.echo(card)
        click.echo(f"model version {mv} saved in {version_dir(p, mv)} ({time.perf_counter() - t0:.1f}s); {p.counts()['suggestions']} suggestions")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--pairs-per-label", type=int, default=4, show_default=True, help="Training pairs per decided passage.")
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--time-budget", type=float, default=None, help="Stop training after this many seconds.")
@click.option("--use/--no-use", default=False, help="Switch the project to the fine-tuned encoder (then run `train`).")
@_clean_errors
def finetune(project, pairs_per_label, epochs, time_budget, use):
    """Contrastive (SetFit-style) fine-tune of the encoder on the project's decisions.

    Minutes on a laptop CPU; run it in the background (e.g. with nohup). See
    bench/results/finetune_probe.json for what it gained on AnnoMI before you switch."""
    from tqdm import tqdm

    from .app.training import finetune_project
    from .ml.finetune import FinetuneConfig
    from .store.project import Project

    with Project.open(project) as p:
        with tqdm(total=0, unit="pair", disable=not sys.stderr.isatty()) as bar:
            def tick(done, total):
                bar.total = total
                bar.n = done
                bar.refresh()

            res = finetune_project(p, config=FinetuneConfig(pairs_per_label=pairs_per_label, epochs=epochs, time_budget_s=time_budget), use=use, progress=tick)
        click.echo(f"fine-tuned on {res.pairs_trained} of {res.pairs} pairs in {res.seconds:.0f}s; saved {res.path}")
        click.echo("the project now uses it: run `coder-assist train` to re-embed and retrain" if use else f"to use it: coder-assist train {project} --model {res.path}")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--model", "-m", help=PROJECT_MODEL_HELP)
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Also write the list to this CSV.")
@_clean_errors
def check(project, model, out):
    """Consistency check: accepted codings far from their code or closer to another one."""
    from .ml.embed import load_encoder
    from .app.training import consistency_check
    from .store.project import Project

    from .app.progress import Progress, counting

    prog = Progress()
    with Project.open(project) as p:
        with prog.stage("Loading the embedding model"):
            encoder = load_encoder(model or p.meta("model"))
        with counting(encoder, prog, "Checking accepted codings") as counted:
            df = consistency_check(p, counted)
    if out:
        df.to_csv(out, index=False)
    if df.empty:
        click.echo("no accepted coding stands out")
    for r in df.itertuples():
        other = f"; nearer {r.nearest_other} ({r.similarity_other:.2f})" if r.flag == "closer to another code" else ""
        click.echo(f"[{r.flag}] {r.transcript} seg {r.segment_id} {r.code_path} ({r.similarity:.2f}{other}) by {r.coder}: {r.text[:100]}")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--rollback", "version", type=int, help="Make this earlier model version the active one.")
@_clean_errors
def models(project, version):
    """List a project's model versions (or roll back to one)."""
    import json

    from .store.project import Project

    with Project.open(project) as p:
        if version is not None:
            p.set_active_model_version(version)
            click.echo(f"model version {version} is active again")
        active = p.latest_model_version()
        for r in p.model_versions().itertuples():
            card = json.loads(r.card)
            mark = "*" if r.id == active else " "
            click.echo(f"{mark} v{r.id}  {r.created_at}  {r.kind:20s} decisions={card.get('n_decisions', 0)}")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@_clean_errors
def backup(project, dest):
    """Copy a project (database and saved models) to DEST, safely while others are coding.

    \b
    DEST is a new folder (default: PROJECT/backups/<UTC time>); open it like any project.
    Example:  coder-assist backup myproject /media/usb/myproject-2026-11-26
    """
    from .store.project import Project

    with Project.open(project) as p:
        out = p.backup(dest)
    with Project.open(out) as b:
        ok = b.integrity_check()
        n = b.decisions_mark()[1]
    click.echo(f"backup written to {out}: {n} decision log entries, integrity check {ok}")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True, help="RESULT.json (a PNG curve is written beside it).")
@click.option("--folds", help="Comma-separated held-out folds (default: all).")
@click.option("--budget", type=int, default=1000, show_default=True, help="Decisions per curve.")
@click.option("--batch", type=int, default=50, show_default=True, help="Decisions between retrains.")
@click.option("--features", type=click.Choice(FEATURE_SETS), default=DEFAULT_FEATURES, show_default=True)
@click.option("--quick", is_flag=True, help="One fold, 100 decisions, at most 600 units: a smoke run for CI.")
@click.option("--model", "-m", help=MODEL_HELP)
@click.option("--protocol", type=click.Choice(["binary", "corrective", "passage"]), default="passage", show_default=True,
              help="How the simulated researcher answers a passage. binary: accept or reject its top code; corrective: a reject "
                   "names a gold code (Different code...); passage: confirm the passage's gold code set (a complete label), "
                   "as the Review page's passage mode does.")
@_clean_errors
def simulate(dataset, out, folds, budget, batch, features, quick, model, protocol):
    """Simulated researcher: learning curves on an expert-coded dataset against baselines."""
    from .ml.embed import load_encoder
    from .eval.simulate import plot_curve, simulate as run_simulation, write_result

    fold_list = [int(f) for f in folds.split(",")] if folds else None
    kwargs = {}
    if quick:
        fold_list = fold_list[:1] if fold_list else [0]
        budget, batch = min(budget, 100), min(batch, 25)
        kwargs["max_units"] = 600
    from .app.progress import Progress, counting

    prog = Progress()
    with prog.stage("Loading the embedding model"):
        encoder = load_encoder(model)
    with counting(encoder, prog, "Simulating: encoding units") as counted:
        result = run_simulation(dataset, counted, folds=fold_list, budget=budget, batch=batch, features=features, protocol=protocol,
                                log=lambda s: click.echo(s, err=True), **kwargs)
    write_result(result, out)
    plot_curve(result, Path(out).with_suffix(".png"))
    last = result["curve"][-1]
    click.echo(f"{result['dataset']} ({protocol}): {last['decisions']} decisions -> macro-F1 {last['macro_f1']}, kappa {last['kappa']}; "
               f"embedding+LR on all pool labels {result['baselines']['embedding_lr_all']['macro_f1']}; written {out}")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--coders", help="Two coders to compare, A,B.")
@click.option("--model", "model_coder", metavar="CODER", help="Compare the active model version's suggestions with this coder.")
@click.option("--sample", "sample", help="Only this reliability sample (id or name): every segment both completed, every code.")
@click.option("--exclude-uncoded", is_flag=True, help="Leave out segments neither rater coded with anything.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Also write the full report to this JSON file.")
@_clean_errors
def agreement(project, coders, model_coder, sample, exclude_uncoded, out):
    """Inter-coder agreement per code and overall: percent, Cohen's kappa, Krippendorff's alpha.

    \b
    Items: per code, the segments both raters accepted or rejected that code on (a code nobody
    looked at is no answer); with --sample, every code on every sample segment both completed.
    Example:  coder-assist agreement myproject --coders Alex,Sam --sample 1 --out agreement.json
    """
    import json

    from .app import agreement as ag
    from .store.project import Project

    if bool(coders) == bool(model_coder):
        raise click.UsageError("give either --coders A,B or --model CODER")
    if coders:
        names = [c.strip() for c in coders.split(",") if c.strip()]
        if len(names) != 2:
            raise click.UsageError(f"--coders needs two names separated by a comma, not {coders!r}")
        a, b = names
    else:
        a, b = model_coder, ag.MODEL
    with Project.open(project) as p:
        sample_id = ag.find_sample(p, sample) if sample else None
        rep = ag.agreement(p, a, b, sample_id=sample_id, exclude_uncoded=exclude_uncoded)
    click.echo(ag.format_report(rep))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rep.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        click.echo(f"written {out}", err=True)


@main.command(name="reliability-sample")
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--share", type=float, help="Share of each transcript's segments to draw, e.g. 0.1.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed draws the same sample.")
@click.option("--name", help="A name for the sample (default: 'sample N').")
@_clean_errors
def reliability_sample(project, share, seed, name):
    """Draw a reliability sample for blind double-coding (or, without --share, list samples).

    \b
    The second coder codes it in the app's Review page, blind mode; then:
      coder-assist agreement PROJECT --coders A,B --sample NAME
    """
    from .app import agreement as ag
    from .store.project import Project

    with Project.open(project) as p:
        if share is not None:
            sid = ag.draw_sample(p, share, seed=seed, name=name)
            row = ag.samples(p).set_index("id").loc[sid]
            click.echo(f"drew reliability sample {sid} {row['name']!r}: {row['n_segments']} segments ({share:.0%} of each transcript, seed {seed})")
        df = ag.samples(p)
        if df.empty:
            click.echo("no reliability samples yet (draw one with --share 0.1)")
        for r in df.itertuples():
            done = ", ".join(f"{c} {n}/{r.n_segments}" for c, n in ag.completion(p, r.id).items()) or "nobody has started"
            click.echo(f"{r.id}  {r.name!r}  {r.n_segments} segments, share {r.share:g}, seed {r.seed}: {done}")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", type=click.Choice(["qdpx", "qdc", "csv", "xlsx", "docx", "report"]), required=True,
              help="qdpx/qdc: REFI-QDA for NVivo, ATLAS.ti, MAXQDA; csv/xlsx: one row per coding; docx: Word with codings "
                   "as comments; report: frequencies, code x attribute matrix, heatmap, quotes.")
@click.option("--out", "-o", type=click.Path(path_type=Path), required=True,
              help="File to write (docx: a folder, a .zip, or a .docx for one transcript; report: a folder).")
@click.option("--include", type=click.Choice(["accepted", "suggested", "all"]), default="accepted", show_default=True,
              help="accepted: coders' accepted codings; suggested: plus undecided machine suggestions (labelled); all: plus rejections.")
@click.option("--threshold", type=float, help="With --include suggested/all: only suggestions with at least this confidence.")
@click.option("--attribute", "attributes", multiple=True, help="Report: attribute(s) for the code x attribute matrix (repeatable; default: up to two with few values).")
@click.option("--transcript", "transcripts", multiple=True, help="Only these transcripts (repeatable; csv, xlsx, docx, report).")
@_clean_errors
def export(project, fmt, out, include, threshold, attributes, transcripts):
    """Export codings: REFI-QDA, CSV, XLSX, Word with comments, or a report.

    \b
    Example:  coder-assist export myproject --format report --out report/ --attribute sector --attribute level
    """
    from .app.export import export as run_export
    from .store.project import Project

    from .app.progress import Progress

    with Project.open(project) as p, Progress().stage(f"Exporting {fmt} to {out}"):
        res = run_export(p, fmt, out, include=include, threshold=threshold, attributes=list(attributes) or None,
                         transcripts=list(transcripts) or None)
    what = f"{res.rows} codings" if fmt not in ("qdc", "qdpx") else fmt
    where = ", ".join(str(x) for x in res.paths[:3]) + (f" and {len(res.paths) - 3} more" if len(res.paths) > 3 else "")
    click.echo(f"exported {what} to {where}")


@main.command()
@click.argument("project", type=click.Path(path_type=Path), default="demo-project")
@click.option("--force", is_flag=True, help="Rebuild even if the project exists (it is replaced once the new one is complete).")
@_clean_errors
def demo(project, force):
    """Build the demo project (default template + invented demo interviews + suggestions)."""
    from .app.demo import ensure_demo_project
    from .app.progress import Progress
    from .store.project import Project

    if not ensure_demo_project(project, progress=Progress(), force=force):
        click.echo(f"demo project already at {project}")
        return
    with Project.open(project) as p:
        c = p.counts()
        click.echo(f"demo project at {project}: {c['transcripts']} transcripts, {c['segments']} segments, {c['suggestions']} suggestions")


@main.command()
@click.argument("project", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Markdown report to write (default: print it).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="The same report as JSON.")
@click.option("--by", "by", multiple=True, help="Participant attribute for the coverage table (repeatable; default: the design attributes, e.g. sector and level).")
@click.option("--method", type=click.Choice(["hdbscan", "agglomerative"]), default="hdbscan", show_default=True, help="How passages no code fits are clustered.")
@_clean_errors
def revise(project, out, json_out, by, method):
    """Template revision report: what the template misses, codes coders confuse, codes that do not apply, coverage."""
    from .app.revise_project import revise_project, to_markdown, write_report
    from .store.project import Project

    with Project.open(project) as p:  # a missing project fails here, before the model loads
        report = revise_project(p, by=list(by) or None, method=method)
    if out is None and json_out is None:
        click.echo(to_markdown(report))
        return
    for path in write_report(report, markdown=out, json_path=json_out):
        click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
