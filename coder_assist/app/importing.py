"""REFI-QDA exchange with a project: importing a ``.qdpx`` (NVivo, ATLAS.ti, MAXQDA,
QualCoder, coder-assist) or a ``.qdc`` into it, starting a project from a ``.qdpx``, and
gathering a project for the ``.qdpx`` export.

:mod:`coder_assist.formats.refi` reads and writes the files as plain objects; here they meet
the project: sources are segmented with the project's settings, codes matched to its
template, codings attached to its segments, and everything is written in one transaction
(all or nothing). See docs/refi-qda.md.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.coding import ORIGIN_IMPORTED
from ..core.errors import CoderAssistError, InputError, TemplateError
from ..core.segment import Segmenter
from ..core.template import Template, parse_template
from ..core.transcript import Transcript
from ..formats import refi
from ..formats.refi import MACHINE_USER, Kept, QdpxContent, QdpxProject, RefiCode, code_guid, parse_description
from ..store.project import Project
from .pipeline import init_project, project_segmenter


@dataclass
class ImportReport:
    """What :func:`import_qdpx` did, per kind, so callers and tests can check every step."""

    file: str
    transcripts_added: int = 0
    transcripts_matched: int = 0  # already in the project with the same text: codings added to it
    sources_kept: list[str] = field(default_factory=list)  # sources not codable here (PDF, audio, ...), kept as they are
    sources_from_docx: list[str] = field(default_factory=list)  # text read from the source's .docx (richTextPath)
    sources_empty: list[str] = field(default_factory=list)  # text sources without any text: kept, nothing to code
    sources_in_full: list[str] = field(default_factory=list)  # no speaker labels: every paragraph is codable
    codes_added: list[str] = field(default_factory=list)  # paths of codes added to the template
    codes_matched: int = 0  # codes already in the project (by GUID, then by path)
    users: list[str] = field(default_factory=list)  # every user of the file (coders here)
    codings_read: int = 0  # Coding elements on text selections
    decisions_added: int = 0  # codings added, each an accept at its exact span
    already_present: int = 0  # the same coding (GUID, or span, code and coder) was already in the project
    spans_exact: int = 0  # codings whose span is exactly one segment's
    spans_inexact: int = 0  # attached to the segment they overlap most
    spans_unmapped: int = 0  # overlap no codable segment (e.g. an interviewer's turn): kept, attached to the nearest
    codings_on_themes: int = 0  # on a code that has sub-codes here: kept as codings, not used for learning
    codings_in_kept_sources: int = 0  # on sources kept as they are (PDF, audio, ...): written back unchanged
    machine_codings_skipped: int = 0  # unreviewed coder-assist suggestions: not human coding
    offset_adjusted_sources: list[str] = field(default_factory=list)  # offsets counted over LF-normalised text or UTF-16 units
    kept: dict[str, int] = field(default_factory=dict)  # notes, sets, cases, variables, links, graphs, files kept: how many

    def summary(self) -> str:
        if self.file.lower().endswith(".qdc"):
            return f"{self.file}: {len(self.codes_added)} code(s) added to the template" + (
                ": " + "; ".join(self.codes_added) if self.codes_added else " (it had them all)")
        lines = [
            (f"{self.file}: {self.transcripts_added} text source(s) added, {self.transcripts_matched} already present; "
             f"{self.codes_matched} code(s) matched, {len(self.codes_added)} added; {len(self.users)} user(s) "
             f"({', '.join(self.users) or '-'}); {self.decisions_added} of {self.codings_read} coding(s) imported at their exact spans"),
        ]
        if self.codings_read:
            lines.append(f"spans: {self.spans_exact} on a passage's bounds, {self.spans_inexact} inside or across passages, "
                         f"{self.spans_unmapped} outside every codable passage (kept, attached to the nearest)")
        extra = []
        if self.already_present:
            extra.append(f"{self.already_present} already in the project")
        if self.codings_on_themes:
            extra.append(f"{self.codings_on_themes} on codes with sub-codes (kept; not used for learning)")
        if self.machine_codings_skipped:
            extra.append(f"{self.machine_codings_skipped} unreviewed machine suggestions skipped")
        if self.offset_adjusted_sources:
            extra.append("offsets re-counted for " + ", ".join(self.offset_adjusted_sources))
        if extra:
            lines.append("; ".join(extra))
        kept = [f"{n} {k}" for k, n in self.kept.items() if n]
        if kept:
            lines.append("kept as they are, written back on export: " + ", ".join(kept))
        for label, items in (("read from its .docx", self.sources_from_docx), ("no text, kept", self.sources_empty),
                             ("no speaker labels, every paragraph codable", self.sources_in_full)):
            for s in items:
                lines.append(f"source {s}: {label}")
        for s in self.sources_kept:
            lines.append(f"kept as is (not codable here): {s}")
        return "\n".join(lines)


class _SpanIndex:
    """Segments of one transcript (sorted, not overlapping) for attaching spans quickly."""

    def __init__(self, spans: list[tuple[Any, int, int]]):
        self.spans = sorted(spans, key=lambda s: s[1])
        self.starts = [s[1] for s in self.spans]
        self.ends = [s[2] for s in self.spans]

    def attach(self, a: int, b: int) -> tuple[int, str]:
        """(index into spans, how): the most overlapped segment, else the nearest."""
        lo, hi = bisect.bisect_right(self.ends, a), bisect.bisect_left(self.starts, b)
        best, best_ov = None, 0
        for i in range(lo, hi):
            ov = min(b, self.ends[i]) - max(a, self.starts[i])
            if ov > best_ov:
                best, best_ov = i, ov
        if best is not None:
            s = self.spans[best]
            return best, "exact" if (s[1], s[2]) == (a, b) else "inexact"
        k = bisect.bisect_left(self.starts, a)
        cands = [i for i in (k - 1, k) if 0 <= i < len(self.spans)]
        return min(cands, key=lambda i: max(self.starts[i] - b, a - self.ends[i], 0)), "unmapped"


def _merge_codes(template: Template, rcodes: dict[str, RefiCode], path,
                 known: dict[str, str] | None = None) -> tuple[Template, dict[str, str], list[str]]:
    """Match REFI codes to the template's (by GUID: kept from an earlier import, or ours; then
    anyone's by path of names) and add the rest under their parent. Returns the template,
    REFI GUID -> code id, and the added paths."""
    by_guid = {code_guid(template, cid): cid for cid in template.codes}
    by_guid.update({g: cid for g, cid in (known or {}).items() if cid in template.codes})
    by_path = {c.path: cid for cid, c in template.codes.items()}
    tdict = template.to_dict()
    node_of: dict[str, dict] = {}

    def index(nodes):
        for n in nodes:
            node_of[n["id"]] = n
            index(n.get("children", []))

    index(tdict["codes"])
    code_map: dict[str, Any] = {}  # refi guid -> code id, or path of a code to add
    added: list[str] = []
    path_of: dict[str, tuple[str, ...]] = {}
    added_paths: dict[tuple[str, ...], dict] = {}
    for g, rc in rcodes.items():  # parents come before children (document order)
        p = (path_of[rc.parent] if rc.parent else ()) + (rc.name,)
        path_of[g] = p
        if g in by_guid:
            code_map[g] = by_guid[g]
            path_of[g] = template.codes[by_guid[g]].path
        elif p in by_path:
            code_map[g] = by_path[p]
        elif p in added_paths:
            code_map[g] = p
        else:
            parent_path = p[:-1]
            if parent_path and parent_path in by_path:
                parent_node = node_of[by_path[parent_path]]
                if template.codes[by_path[parent_path]].is_leaf:
                    raise InputError(path, f"code {' > '.join(p)!r} would make {' > '.join(parent_path)!r}, a code of the project's "
                                           "template, a theme; add the sub-code in the template first, or rename it in the other tool")
            elif parent_path:
                parent_node = added_paths[parent_path]
            else:
                parent_node = None
            parsed = parse_description(rc.description)
            node: dict[str, Any] = {"name": rc.name, "description": parsed["description"] or rc.name}
            for key in ("include", "exclude", "examples", "counter_examples"):
                if parsed[key]:
                    node[key] = parsed[key]
            if rc.color:
                node["color"] = rc.color
            (parent_node.setdefault("children", []) if parent_node is not None else tdict["codes"]).append(node)
            added_paths[p] = node
            code_map[g] = p
            added.append(" > ".join(p))
    if added_paths:
        try:
            template = parse_template(tdict, f"{path} (template with the imported codes)")
        except TemplateError as exc:
            raise InputError(path, f"the codes cannot be added to the template: {exc}") from exc
        new_by_path = {c.path: cid for cid, c in template.codes.items()}
        code_map = {g: (new_by_path[v] if isinstance(v, tuple) else v) for g, v in code_map.items()}

    return template, code_map, added


def import_qdpx(project: Project, path, *, dry_run: bool = False) -> ImportReport:
    """Import a REFI-QDA project (.qdpx) from NVivo, ATLAS.ti, MAXQDA, QualCoder or coder-assist,
    keeping everything in it.

    Text sources become transcripts (with attributes from Cases/Variables; text only in a
    .docx is read from it; a text without speaker labels is codable in full). Every coding is
    kept at its exact span (an accept attached to the segment it overlaps most), by its user;
    users without codings are kept too. Codes match the project's by GUID, then by path; the
    rest are added under their parent. Notes, sets, links, graphs, cases, variables, the
    GUIDs, and sources that cannot be coded here (PDF, audio, pictures) with their files are
    kept as they are and written back by :func:`export_qdpx`. A source already in the project
    under the same name and with the same text gets the codings; one with the same name and
    different text stops the import. All or nothing. With ``dry_run`` everything is done and
    reported, then rolled back (the app's check before importing).
    """
    path = Path(path)
    content = refi.read_qdpx(path)
    report = ImportReport(file=str(path), sources_kept=content.sources_kept, sources_from_docx=content.sources_from_docx,
                          sources_empty=content.sources_empty, codings_in_kept_sources=content.codings_in_kept_sources,
                          kept=content.kept)
    items = list(content.items)
    try:
        new_transcripts, new_segments, plan = _plan_sources(project, content, report)
        template, code_map = _plan_codes(project, content, report, items)
        todo = _plan_codings(content, plan, template, code_map, report)
        try:
            _write_import(project, path, report, template if report.codes_added else None, new_transcripts, new_segments, todo,
                          plan, items, content.users, f"{ORIGIN_IMPORTED}{path.name}", dry_run)
        except _DryRun:
            pass
        return report
    except CoderAssistError:
        raise
    except (KeyError, ValueError) as exc:
        raise InputError(path, f"cannot read the REFI-QDA project: {type(exc).__name__}: {exc}") from exc


def _plan_sources(project: Project, content: QdpxContent, report: ImportReport) -> tuple[list, dict, list]:
    """New transcripts (segmented with the project's settings) and their segments; sources
    already in the project must have the same text. Returns them and (source, spans) pairs."""
    path, seg = content.path, project_segmenter(project)
    existing = {name: (tid, text) for tid, name, text in project.transcript_texts()}
    new_transcripts, new_segments, plan = [], {}, []
    for src in content.sources:
        name, text = src.name, src.text
        if name in existing:
            if existing[name][1] != text:
                raise InputError(path, f"source {name!r}: the project already has a transcript of that name with different text "
                                       "(rename one of them)")
            report.transcripts_matched += 1
            spans = [(sid, s, e) for sid, _, s, e in project.segment_spans(existing[name][0])]
        else:
            turns, labelled = refi.source_turns(text, f"{path}: {name}")
            if not labelled and text.strip():
                report.sources_in_full.append(name)
            t = Transcript(name=name, text=text, turns=turns, source_path=f"{path}#{name}", format="qdpx", encoding="utf-8",
                           attributes=src.attributes)
            segs = seg.segments(t)
            if not segs and src.selections:
                # Coded in the other tool, but no turn here is one we code (say, all the
                # interviewer's): codable in full, so the codings have passages to sit on.
                segs = Segmenter(unit=seg.unit, window=seg.window, coded_speakers=frozenset(tr.speaker for tr in turns) or None).segments(t)
            new_transcripts.append(t)
            new_segments[name] = segs
            spans = [(None, s.start, s.end) for s in segs]
            report.transcripts_added += 1
        if src.offsets != "exact":
            report.offset_adjusted_sources.append(f"{name} ({src.offsets})")
        plan.append((src, spans))
    return new_transcripts, new_segments, plan


def _plan_codes(project: Project, content: QdpxContent, report: ImportReport, items: list) -> tuple[Template, dict[str, str]]:
    """Codes by GUID (kept from an earlier import, or ours), then by path; the rest are added.
    Returns the template and REFI GUID -> code id; the GUIDs not kept yet go to ``items``."""
    known = Kept.from_items(project.exchange_items()).code_guids()
    template, code_map, report.codes_added = _merge_codes(project.template(), content.codes, content.path, known)
    report.codes_matched = len(content.codes) - len(report.codes_added)
    added = set(report.codes_added)
    for g, rc in content.codes.items():
        cid = code_map[g]
        if known.get(g) == cid or cid in known.values():
            continue  # its GUID is kept already (an earlier import, or init --from)
        items.append(refi.code_item(g, rc, template.codes[cid], template.codes[cid].path_str in added))
    return template, code_map


def _plan_codings(content: QdpxContent, plan: list, template: Template, code_map: dict[str, str], report: ImportReport) -> list[tuple]:
    """Codings -> (transcript, exact span, segment to attach to, code, coder, time, what to keep)."""
    path = content.path
    todo = []
    for src, spans in plan:
        name, text = src.name, src.text
        index = _SpanIndex(spans) if spans else None
        for s, e, _, cods, sel_keep in src.selections:
            a, b = src.span(s, e)
            human = [c for c in cods if c[1] != MACHINE_USER]
            report.codings_read += len(cods)
            report.machine_codings_skipped += len(cods) - len(human)
            if not human:
                continue
            if a is None or b is None or b > len(text) or a >= b:
                raise InputError(path, f"source {name!r}: a selection ({s}-{e}) lies outside its text ({len(text)} characters)")
            if index is None:
                raise InputError(path, f"source {name!r} has codings but no text to attach them to")
            i, how = index.attach(a, b)
            for code_g, coder, at, cg in human:
                cid = code_map.get(code_g)
                if cid is None:
                    raise InputError(path, f"source {name!r}: a coding refers to code {code_g}, which is not in the codebook")
                if not template.codes[cid].is_leaf:
                    report.codings_on_themes += 1
                setattr(report, f"spans_{how}", getattr(report, f"spans_{how}") + 1)
                todo.append((name, a, b, index.spans[i], cid, coder, at, cg, sel_keep))
    return todo


class _DryRun(Exception):
    """Raised inside the import transaction to roll a dry run back."""


def _write_import(project: Project, path: Path, report: ImportReport, template: Template | None, new_transcripts, new_segments,
                  todo, plan, items, users, origin: str, dry_run: bool) -> None:
    import pandas as pd

    with project.transaction():
        if template is not None:
            project.set_template(template)
        if new_transcripts:
            project.add_transcripts(new_transcripts, new_segments)
        names = project.transcripts()
        tid_of = {name: int(tid) for tid, name in zip(names["id"], names["name"])}
        seg_id = {(tid, s, e): sid for sid, tid, s, e in project.segment_spans()}
        kept = Kept.from_items(project.exchange_items())
        have_guid = {d["guid"] for d in kept.codings.values()}
        cur = project.codings()
        have = set() if cur.empty else {
            (int(r.transcript_id), int(r.start), int(r.end), r.code_id, r.coder) for r in cur.itertuples(index=False)}
        rows, keep = [], []
        for name, a, b, span, cid, coder, at, cg, sel_keep in sorted(todo, key=lambda x: x[6]):
            tid = tid_of[name]
            # Already here: the same coding (GUID) or, from a file without our GUIDs, the same
            # span, code and coder. Two alike in one file both stay: the file had both.
            if (cg and cg in have_guid) or (tid, a, b, cid, coder) in have:
                report.already_present += 1
                continue
            sid = span[0] if span[0] is not None else seg_id[(tid, span[1], span[2])]
            rows.append({"segment_id": sid, "start": a, "end": b, "code_id": cid, "coder": coder, "time": at, "origin": origin,
                         "note": f"imported from REFI-QDA {path.name}"})
            keep.append((cg, sel_keep))
        ids = project.add_codings(pd.DataFrame(rows, columns=["segment_id", "start", "end", "code_id", "coder", "time", "origin", "note"]))
        report.decisions_added = len(ids)
        for did, (cg, sel_keep) in zip(ids, keep):
            if cg:
                items.append(("coding", cg, did, sel_keep, None))
        for src, _ in plan:
            tid = tid_of[src.name]
            if tid not in kept.sources and src.guid:
                items.append(("source", src.guid, tid, src.keep, None))
            for x in src.orphans:
                items.append(("selection", None, tid, {"xml": x}, None))
        # Once each: importing the same file twice keeps one copy of each thing (by GUID, or
        # for what has none, such as a file or the project's description, by its content).
        seen = project.exchange_item_keys()
        items = [it for it in items if (it[0], it[1]) not in seen if it[1] is not None
                 or (it[0], None if it[2] is None else str(it[2]), json.dumps(it[3], ensure_ascii=False), it[4]) not in seen]
        if kept.project:
            items = [it for it in items if it[0] != "project"]
        project.add_exchange_items(items, path.name)
        report.users = sorted(set(users.values()) | {r["coder"] for r in rows})
        if dry_run:
            raise _DryRun


def init_from_qdpx(folder, path, segmenter: Segmenter | None = None, model: str | Path | None = None) -> tuple[Project, ImportReport]:
    """``coder-assist init PROJECT --from study.qdpx``: a new project whose template is the
    file's codebook (no default template merged), then everything else in the file imported;
    ``model``: its encoder, as in :func:`~coder_assist.app.pipeline.init_project`.
    All or nothing: when the import fails, the new project folder is removed again.
    Returns (project, ImportReport)."""
    import shutil

    folder, path = Path(folder), Path(path)
    template, code_items = refi.qdpx_template(path)  # checked before the folder is made
    made = not folder.exists()
    project = init_project(folder, template, segmenter, model)
    try:
        with project.transaction():
            project.set_template_from(path.name)
            project.add_exchange_items(code_items, path.name)
            report = import_qdpx(project, path)
    except BaseException:
        project.close()
        if made:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for suffix in ("", "-wal", "-shm"):
                (folder / f"project.db{suffix}").unlink(missing_ok=True)
        raise
    return project, report


def import_qdc(project: Project, path, *, dry_run: bool = False) -> ImportReport:
    """Add the codes of a REFI-QDA codebook (.qdc) that the project's template lacks (matched
    as in :func:`import_qdpx`). Adds only: nothing is renamed or removed. To start a project
    from a codebook instead: ``coder-assist init PROJECT --template codebook.qdc``."""
    path = Path(path)
    template, _, added = _merge_codes(project.template(), refi.read_qdc_codes(path), path)
    report = ImportReport(file=str(path), codes_added=added)
    if added and not dry_run:
        project.set_template(template)
    return report


# ----------------------------------------------------------------------------- export


def qdpx_project(project: Project, *, suggestions_threshold: float | None = None) -> QdpxProject:
    """What the .qdpx export of ``project`` holds: template, transcripts, attributes, every
    coding in force at its exact span (:meth:`Project.codings`; codes retired from the template
    are not in the codebook, so not exported) and what imports kept. With
    ``suggestions_threshold``, pending suggestions (no accept or reject by anyone) of the active
    model version at or above it are added under :data:`~coder_assist.formats.refi.MACHINE_USER`."""
    template = project.template()
    codings: list[tuple] = []
    for r in project.codings().itertuples(index=False):
        if r.code_id in template.codes:
            codings.append((int(r.transcript_id), int(r.start), int(r.end), r.code_id, r.coder, r.time, None, int(r.decision_id)))
    if suggestions_threshold is not None:
        mv = project.latest_model_version()
        cur = project.current_decisions()
        decided = set() if cur.empty else {
            (int(r.segment_id), r.code_id) for r in cur.itertuples(index=False) if r.action in ("accept", "reject")
        }
        if mv is not None:
            for sid, tid, ss, se, cid, conf, at in project.suggestion_spans(mv, suggestions_threshold):
                if (sid, cid) not in decided and cid in template.codes:
                    codings.append((int(tid), int(ss), int(se), cid, MACHINE_USER, at, f"{template.codes[cid].name}: {conf:.2f}", None))
    transcripts = project.transcript_texts()
    tid_of = {name: tid for tid, name, _ in transcripts}
    wide = project.attributes()
    attributes: dict[int, dict[str, str]] = {}
    for name, row in wide.iterrows():
        values = {k: v for k, v in row.items() if isinstance(v, str)}
        if values and name in tid_of:
            attributes[tid_of[name]] = values
    return QdpxProject(template=template, guid=project.guid(), name=project.folder.name, created=project.meta("created_at"),
                       transcripts=transcripts, attributes=attributes, codings=codings, items=project.exchange_items())


def export_qdpx(project: Project, path, *, suggestions_threshold: float | None = None) -> Path:
    """Write ``project`` as a REFI-QDA project (.qdpx): :func:`qdpx_project`, then
    :func:`coder_assist.formats.refi.write_qdpx` (what goes in, and how, is said there)."""
    return refi.write_qdpx(qdpx_project(project, suggestions_threshold=suggestions_threshold), path)


__all__ = ["ImportReport", "export_qdpx", "import_qdc", "import_qdpx", "init_from_qdpx", "qdpx_project"]
