"""``coder-assist revise``: the template revision report of a project, and the edits it offers.

:func:`gather` reads what a project holds (segments and their embeddings through the project's
encoder and the embedding cache, the active model's suggestions, every coder's current
decisions, the template with its example vectors, the participant attributes);
:func:`revise_project` runs :mod:`coder_assist.ml.revision` on it; :func:`to_markdown` and
:func:`to_json` render the same report. The edits offered from the report (a cluster as a new
code, a merge, sharper include/exclude notes) go through :mod:`coder_assist.app.edit`, the same
template edits as the Template page, so decisions follow them and the template history records
them.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from . import edit
from ..core.template import Template, iter_code_texts
from ..ml.encoder import Encoder
from ..ml.revision import MissingCluster, Revision, RevisionInputs, coverage_table, revise
from ..store.project import Project


def _progress(total: int, enabled: bool | None):
    from tqdm.auto import tqdm

    # None: a bar on a terminal only (tqdm's own tty check), so pipes and logs stay clean.
    return tqdm(total=total, desc="Revising", unit="step", disable=None if enabled is None else not enabled, file=sys.stderr)


def project_encoder(project: Project) -> Encoder:
    """The encoder the project's suggestions use (its ``model`` setting; the bundled default
    otherwise), behind the on-disk embedding cache."""
    from ..ml.embed import load_encoder

    return load_encoder(project.meta("model"))


def gather(project: Project, encoder: Encoder, *, progress=None) -> RevisionInputs:
    """The inputs of :func:`coder_assist.ml.revision.revise` from a project."""
    template = project.template()
    segs = project.segments()
    segments = segs.rename(columns={"id": "segment_id"})[["segment_id", "transcript", "idx", "speaker", "text"]]
    X = encoder.encode(segments["text"].tolist())
    if progress:
        progress(1)
    codes = template.frame()[["id", "name", "path", "parent_id", "is_leaf"]]
    ex = pd.DataFrame(list(iter_code_texts(template.leaves())), columns=["code_id", "kind", "text"])
    E = encoder.encode(ex["text"].tolist()) if len(ex) else np.zeros((0, X.shape[1]), dtype=np.float32)
    if progress:
        progress(1)
    sugg = project.suggestions()
    sugg = sugg[["segment_id", "code_id", "rank", "confidence"]] if len(sugg) else pd.DataFrame(columns=["segment_id", "code_id", "rank", "confidence"])
    dec = project.current_decisions()
    dec = dec[dec["code_id"].isin(template.codes)][["id", "segment_id", "code_id", "action", "coder"]]
    return RevisionInputs(segments, X, codes, ex, E, sugg, dec, project.attributes())


@dataclass
class ProjectRevision:
    """A revision report with what it takes to show it: the template it was made against."""

    project: str
    revision: Revision
    template: Template
    #: What the report was made from, so a view can redo one part (the coverage table by other
    #: attributes) without reading the project again.
    inputs: RevisionInputs | None = None

    def path(self, code_id: str | None) -> str:
        if code_id is None:
            return "(top level)"
        code = self.template.codes.get(code_id)
        return code.path_str if code else code_id


def revise_project(
    project: Project,
    encoder: Encoder | None = None,
    *,
    by: Sequence[str] | None = None,
    method: str = "hdbscan",
    min_cluster_size: int | None = None,
    progress: bool | None = None,
) -> ProjectRevision:
    """The revision report of ``project`` (see :mod:`coder_assist.ml.revision`). ``by``: the
    attributes of the coverage table (default: the ones that describe the participant design)."""
    template = project.template()
    attrs = project.attributes()
    if by is not None:
        unknown = [b for b in by if b not in attrs.columns]
        if unknown:
            from ..core.errors import ProjectError

            raise ProjectError(f"{project.folder}: no participant attribute {unknown[0]!r}; the project has: {', '.join(map(str, attrs.columns)) or 'none'}")
    with _progress(3, progress) as bar:
        encoder = encoder or project_encoder(project)
        inputs = gather(project, encoder, progress=bar.update)
        rev = revise(inputs, by=by, method=method, min_cluster_size=min_cluster_size)
        bar.update(1)
    return ProjectRevision(str(project.folder), rev, template, inputs)


# --------------------------------------------------------------------------- edits from the report


@dataclass
class NewCodeProposal:
    """A cluster of passages no code fits, as a new code: name from its distinctive words,
    its representative quotes as examples, under the nearest theme."""

    name: str
    parent_id: str | None
    description: str
    examples: list[str]


def propose_code(cluster: MissingCluster, template: Template, *, n_examples: int = 3) -> NewCodeProposal:
    parent = cluster.parent_id if cluster.parent_id in template.codes and not template.codes[cluster.parent_id].is_leaf else None
    words = ", ".join(cluster.words[:6]) or "no distinctive words"
    desc = f"Passages about: {words}. Proposed by the revision report from {cluster.size} passages no code fitted; describe what it covers."
    names = {c.name.casefold() for c in template.codes.values() if c.parent_id == parent}
    name = cluster.suggested_name
    k = 2
    while name.casefold() in names:
        name, k = f"{cluster.suggested_name} ({k})", k + 1
    return NewCodeProposal(name, parent, desc, [q.text for q in cluster.quotes[:n_examples]])


def add_code(project: Project, proposal: NewCodeProposal, *, coder: str | None = None) -> str:
    """Add the proposed code through the template edits (:func:`coder_assist.app.edit.apply_add_code`).
    Returns the new code's id."""
    return edit.apply_add_code(project, proposal.name, parent_id=proposal.parent_id, description=proposal.description,
                               examples=proposal.examples, coder=coder)


def merge(project: Project, source_id: str, target_id: str, *, coder: str | None = None) -> int:
    """Merge two confused codes (:func:`coder_assist.app.edit.apply_merge`): the decisions on
    ``source_id`` move to ``target_id``. Returns how many moved."""
    return edit.apply_merge(project, source_id, target_id, coder=coder)


def sharpen(project: Project, notes: dict[str, dict[str, str]], *, coder: str | None = None) -> list[str]:
    """Save new include/exclude notes: ``{code_id: {"include": ..., "exclude": ...}}``, each
    through :func:`coder_assist.app.edit.apply_update`, only where they changed. Returns the codes changed."""
    changed = []
    template = project.template()
    for cid, fields in notes.items():
        code = template.codes[cid]
        new = {k: " ".join(str(v or "").split()) for k, v in fields.items() if k in ("include", "exclude")}
        if any(getattr(code, k) != v for k, v in new.items()):
            edit.apply_update(project, cid, coder=coder, **new)
            changed.append(cid)
    return changed


# --------------------------------------------------------------------------- rendering


def to_json(report: ProjectRevision) -> dict:
    """The report as plain data (code paths beside ids)."""
    rev, p = report.revision, report.path
    clusters = []
    for c in rev.missing:
        d = asdict(c)
        d.pop("centroid")
        d["size"] = c.size
        d["parent_path"] = p(c.parent_id) if c.parent_id else None
        d["nearest_code_path"] = p(c.nearest_code) if c.nearest_code else None
        clusters.append(d)
    pairs = []
    for c in rev.confusions:
        d = asdict(c)
        d["path_a"], d["path_b"] = p(c.code_a), p(c.code_b)
        pairs.append(d)
    cov = rev.coverage
    return {
        "project": report.project,
        "template": report.template.name,
        "segments": rev.n_segments,
        "missing": {"passages_no_code_fits": rev.n_missed, "clusters": clusters},
        "confusions": pairs,
        "unused": [asdict(u) | {"path": p(u.code_id)} for u in rev.unused],
        "coverage": {
            "by": cov.by,
            "columns": list(map(str, cov.table.columns)),
            "transcripts_per_column": {str(k): int(v) for k, v in cov.transcripts.items()},
            "rows": [{"code_id": cid, "path": p(cid), "counts": {str(k): int(v) for k, v in row.items()}} for cid, row in cov.table.iterrows()],
            "gaps": [{"code_id": c, "path": p(c), "column": col} for c, col in cov.gaps],
        },
        "integrative": [asdict(i) | {"path": p(i.code_id), "themes_reached_paths": [p(t) for t in i.themes_reached]} for i in rev.integrative],
    }


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _short(text: str, n: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def to_markdown(report: ProjectRevision) -> str:
    rev, p = report.revision, report.path
    out = [f"# Template revision: {report.template.name}", "",
           f"Project `{report.project}`: {rev.n_segments} passages. Made from the decisions, suggestions and embeddings the project holds.", ""]

    out += ["## 1. What the template misses", ""]
    out.append(f"{rev.n_missed} passage(s) no code fits (nobody accepted a code, and nothing was suggested or every suggestion was rejected); "
               f"{len(rev.missing)} cluster(s) among them, largest and most coherent first.")
    out.append("")
    for c in rev.missing:
        out.append(f"### {c.rank}. {_md(c.suggested_name)} ({c.size} passages, cohesion {c.cohesion:.2f})")
        out.append("")
        out.append(f"- Distinctive words: {', '.join(c.words) or '(none)'}")
        if c.parent_id:
            out.append(f"- Nearest theme (parent for a new code): {_md(p(c.parent_id))} ({c.parent_similarity:.2f})")
        if c.nearest_code:
            out.append(f"- Nearest existing code: {_md(p(c.nearest_code))} ({c.nearest_code_similarity:.2f})")
        out.append("- From: " + ", ".join(f"{t} ({n})" for t, n in list(c.transcripts.items())[:8]) + (" ..." if len(c.transcripts) > 8 else ""))
        for attr, counts in c.attributes.items():
            out.append(f"- {attr}: " + ", ".join(f"{v} ({n})" for v, n in counts.items()))
        out.append("")
        for q in c.quotes:
            out.append(f"> {_short(q.text, 300)} ({q.transcript})")
            out.append(">")
        if c.quotes:
            out.pop()
        out.append("")

    out += ["## 2. Codes that coders confuse", ""]
    if not rev.confusions:
        out += ["No pair of codes is confused in the decisions or the template.", ""]
    else:
        out.append("| # | code A | code B | rejected A, chose B | rejected B, chose A | model A, coder B | model B, coder A | coded with both | template examples | score |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for c in rev.confusions:
            out.append(f"| {c.rank} | {_md(p(c.code_a))} | {_md(p(c.code_b))} | {c.rejected_a_chose_b} | {c.rejected_b_chose_a} | {c.model_a_coder_b} | "
                       f"{c.model_b_coder_a} | {c.coded_both} | {c.template} | {c.score:g} |")
        out.append("")
        for c in rev.confusions[:10]:
            out.append(f"**{c.rank}. {_md(p(c.code_a))} / {_md(p(c.code_b))}**")
            out.append("")
            for e in c.examples:
                out.append(f"- *{e.kind}* ({_md(e.detail)}): {_md(_short(e.text))}")
            out.append("")

    out += ["## 3. Codes that do not apply", ""]
    if not rev.unused:
        out += ["Every code has accepted passages from more than one participant.", ""]
    else:
        out.append("| code | why | accepted | suggested | rejected | participants |")
        out.append("|---|---|---|---|---|---|")
        for u in rev.unused:
            out.append(f"| {_md(p(u.code_id))} | {u.reason} | {u.accepted} | {u.suggested} | {u.rejected} | {', '.join(u.participants)} |")
        out.append("")

    cov = rev.coverage
    out += ["## 4. Coverage", ""]
    by = " x ".join(cov.by) if cov.by else "all transcripts"
    out.append(f"Accepted passages per code and {by} (a passage counts once per code, however many coders accepted it); "
               "**0** marks a gap: a code found in at least half of the cells, with no passage in this one.")
    out.append("")
    cols = list(map(str, cov.table.columns))
    out.append("| code | " + " | ".join(f"{_md(c)} ({cov.transcripts[c]})" for c in cols) + " | total |")
    out.append("|---|" + "---|" * (len(cols) + 1))
    gaps = set(cov.gaps)
    for cid, row in cov.table.iterrows():
        cells = [f"**0**" if (cid, c) in gaps else str(int(row[c])) for c in cov.table.columns]
        out.append(f"| {_md(p(cid))} | " + " | ".join(cells) + f" | {int(row.sum())} |")
    out.append("")
    out += ["### Integrative candidates", ""]
    if not rev.integrative:
        out += ["No code co-occurs with codes of most other themes (or fewer than three themes are in use).", ""]
    else:
        for i in rev.integrative:
            out.append(f"- {_md(p(i.code_id))}: next to codes of {len(i.themes_reached)} other theme(s) ({i.share:.0%} of those in use; "
                       f"{i.passages} passages, {i.co_occurrences} co-occurrences): {', '.join(_md(p(t)) for t in i.themes_reached)}")
        out.append("")
    return "\n".join(out)


def write_report(report: ProjectRevision, *, markdown: str | Path | None = None, json_path: str | Path | None = None) -> list[Path]:
    written = []
    for path, text in ((markdown, lambda: to_markdown(report)), (json_path, lambda: json.dumps(to_json(report), indent=1, ensure_ascii=False))):
        if path is not None:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text(), encoding="utf-8")
            except OSError as exc:
                from ..core.errors import InputError

                raise InputError(path, f"cannot write the report: {exc.strerror or exc}") from exc
            written.append(path)
    return written


__all__ = ["ProjectRevision", "NewCodeProposal", "gather", "revise_project", "propose_code", "add_code", "merge", "sharpen",
           "to_json", "to_markdown", "write_report", "project_encoder", "coverage_table"]
