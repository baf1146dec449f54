"""REFI-QDA 1.0 (QDA-XML) exchange: ``.qdc`` codebooks and ``.qdpx`` projects.

Export hands a project's template, transcripts and accepted codings to NVivo, ATLAS.ti, MAXQDA
or QualCoder; import brings a template (``.qdc``) or coding done in such a tool (``.qdpx``)
back, so that a team can train the suggester on coding it already did. See docs/refi-qda.md.

GUIDs are stable: codes get ``uuid5(template namespace, code id)`` (the same in a ``.qdc`` and
in a ``.qdpx``), everything else ``uuid5(project GUID, natural key)`` with the project GUID kept
in the project's meta table, so a re-export merges cleanly in the receiving tool.

Everything read is untrusted: XML is parsed without DTDs, entities or network (a document
with a DOCTYPE is refused outright: REFI files never need one), zip entry names must stay
inside the archive, and sizes are checked against caps before and while reading.

This module turns files into plain objects and back (:func:`read_qdpx`, :func:`write_qdpx`,
:func:`read_qdc`, :func:`write_qdc`); no database. The project side (segmenting the sources,
matching codes, writing everything in one transaction, gathering an export) is
:mod:`coder_assist.app.importing`.
"""

from __future__ import annotations

import copy
import io
import re
import stat
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lxml import etree

from ..core.template import Code, Example, Template, parse_template, slugify
from ..core.errors import CoderAssistError, InputError, TemplateError
from .transcripts import parse_speaker_text
from ..core.segment import document_turns

PROJECT_NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
ORIGIN = "coder-assist"

#: Codings by this user are our own unreviewed machine suggestions: exported only on request,
#: never imported as human coding.
MACHINE_USER = "coder-assist (machine suggestion, not reviewed)"

# Root namespace of every GUID we derive. Fixed forever: changing it changes every GUID.
_ROOT_NS = uuid.UUID("5d0c4a52-6f0e-5b8a-9c53-2f4d7a1e0c11")

# Limits for untrusted archives. Real projects are text: tens of MB at most.
MAX_ENTRIES = 20_000
MAX_ENTRY_BYTES = 200 * 1024 * 1024
MAX_TOTAL_BYTES = 500 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed; text deflates ~3-10x, a bomb ~1000x
_RATIO_FLOOR = 1024 * 1024  # small entries may compress extremely well; only big ones are suspicious


# ----------------------------------------------------------------------------- GUIDs


def code_guid(template: Template, code_id: str) -> str:
    """The code's GUID: the same in every export of this template, .qdc and .qdpx alike."""
    ns = uuid.uuid5(_ROOT_NS, "template\x1f" + template.name)
    return str(uuid.uuid5(ns, "code\x1f" + code_id))


def _guid(ns: uuid.UUID, *key: Any) -> str:
    return str(uuid.uuid5(ns, "\x1f".join(str(k) for k in key)))


def _norm_guid(g: str | None) -> str:
    return (g or "").strip().strip("{}").lower()


# ----------------------------------------------------------------------------- descriptions
# A REFI code has one Description. Ours carries the description, include/exclude notes and the
# example excerpts as labelled paragraphs, so a person in another tool sees all of it and our
# own reader gets the parts back.

_EX_RE = re.compile(r'^- "(?P<text>.*)"(?: \(source: (?P<source>.*)\))?$')


def _describe(code: Code) -> str:
    parts = [code.description] if code.description else []
    if code.include:
        parts.append(f"Include: {code.include}")
    if code.exclude:
        parts.append(f"Exclude: {code.exclude}")
    if code.exclusive:
        parts.append("Sub-codes are mutually exclusive.")

    def block(title: str, examples: list[Example]) -> None:
        if examples:
            lines = [f"{title}:"]
            for e in examples:
                text = " ".join(e.text.split())  # one line per excerpt (line breaks inside become spaces)
                lines.append(f'- "{text}"' + (f" (source: {' '.join(e.source.split())})" if e.source else ""))
            parts.append("\n".join(lines))

    block("Examples", code.examples)
    block("Counter-examples", code.counter_examples)
    return "\n\n".join(parts)


def parse_description(text: str) -> dict[str, Any]:
    """Split a Description back into description / include / exclude / examples. Text written
    by another tool has none of the labels and stays the description as a whole."""
    out: dict[str, Any] = {"description": [], "include": "", "exclude": "", "exclusive": False, "examples": [], "counter_examples": []}
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n").strip()):
        lines = para.strip().split("\n")
        head = lines[0].strip()
        if head in ("Examples:", "Counter-examples:") and all(_EX_RE.match(l.strip()) for l in lines[1:]) and len(lines) > 1:
            key = "examples" if head == "Examples:" else "counter_examples"
            for l in lines[1:]:
                m = _EX_RE.match(l.strip())
                item = {"text": m.group("text")}
                if m.group("source"):
                    item["source"] = m.group("source")
                out[key].append(item)
        elif len(lines) == 1 and head.startswith("Include: "):
            out["include"] = head[len("Include: "):]
        elif len(lines) == 1 and head.startswith("Exclude: "):
            out["exclude"] = head[len("Exclude: "):]
        elif head == "Sub-codes are mutually exclusive." and len(lines) == 1:
            out["exclusive"] = True
        else:
            out["description"].append(para.strip())
    out["description"] = "\n\n".join(out["description"])
    return out


def _color(value: str | None) -> str | None:
    if not value:
        return None
    v = value.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{6}", v):
        return v.lower()
    if re.fullmatch(r"#[0-9a-fA-F]{3}", v):
        return "#" + "".join(ch * 2 for ch in v[1:]).lower()
    return None


# ----------------------------------------------------------------------------- writing


# Characters XML 1.0 cannot carry (form feeds from PDF text, other C0 controls, lone surrogates).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: Any) -> str:
    # Only labels and descriptions pass through here; the transcript text itself goes to
    # sources/<guid>.txt untouched, so offsets never shift.
    return _NOT_XML.sub(" ", str(value))


def _E(ns: str, tag: str, parent=None, **attrs) -> etree._Element:
    attrs = {k: _xml_text(v) for k, v in attrs.items() if v is not None}
    el = etree.Element(f"{{{ns}}}{tag}", attrs, nsmap={None: ns}) if parent is None else etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)
    return el


def _code_elements(ns: str, parent, template: Template, kept: "Kept | None" = None) -> None:
    def add(el_parent, code: Code) -> None:
        k = kept.codes.get(code.id) if kept is not None else None
        desc = _describe(code)
        if k is None:
            # Themes organise codes; only leaves are coded here.
            el = _E(ns, "Code", el_parent, guid=code_guid(template, code.id), name=code.name,
                    isCodable="true" if code.is_leaf else "false", color=code.color)
        else:
            # A code that came from another tool goes back as it came, unless edited here since.
            name = k["name"] if code.name == k.get("name_here", k["name"]) else code.name
            color = k["color"] if k.get("color") and _color(k["color"]) == code.color else code.color
            el = _E(ns, "Code", el_parent, guid=k["guid"], name=name, isCodable=k["codable"], color=color)
            if desc == k.get("described"):
                desc = k.get("description")
        if desc:
            _E(ns, "Description", el).text = _xml_text(desc)
        for child in code.children:
            add(el, template.codes[child])

    codes = _E(ns, "Codes", parent)
    for root in template.roots():
        add(codes, root)


def _write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)  # a reader never sees half a file
    return path


def write_qdc(template: Template, path) -> Path:
    """Write the template as a REFI-QDA codebook (.qdc). Themes are non-codable codes; each
    code's Description holds its description, include/exclude notes and example excerpts."""
    root = _E(CODEBOOK_NS, "CodeBook", origin=f"{ORIGIN}: {template.name}")
    _code_elements(CODEBOOK_NS, root, template)
    return _write_bytes(Path(path), etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True))


def _xsd_time(iso: str | None) -> str | None:
    if not iso:
        return None
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# Top-level parts of a Project after Sources, in the schema's order: kept from imports as they
# came (their GUID references stay valid because the GUIDs of codes, sources, selections and
# users are kept too).
_AFTER_SOURCES = ("Notes", "Links", "Sets", "Graphs", "Description", "NoteRef")
_CONTAINERS = ("Variables", "Cases") + _AFTER_SOURCES


@dataclass
class Kept:
    """What imports kept of other tools' projects (the frame of :meth:`Project.exchange_items`), indexed."""

    project: dict = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)  # coder name -> {guid, attrs}
    codes: dict[str, dict] = field(default_factory=dict)  # code id -> {guid, codable, name, description, ...}
    sources: dict[int, dict] = field(default_factory=dict)  # transcript id -> {guid, attrs, extras}
    codings: dict[int, dict] = field(default_factory=dict)  # decision id -> {guid, selection, ...}
    selections: dict[int, list[str]] = field(default_factory=dict)  # transcript id -> XML of selections without codings
    containers: dict[str, list[str]] = field(default_factory=dict)  # Notes, Sets, ... -> XML of their children
    other_sources: list[str] = field(default_factory=list)  # XML of sources kept as they are
    files: dict[str, bytes] = field(default_factory=dict)  # archive entry -> bytes

    @classmethod
    def from_items(cls, items) -> "Kept":
        k = cls()
        for r in (items.itertuples(index=False) if items is not None else ()):
            d = r.data
            if r.kind == "project":
                k.project = d
            elif r.kind == "user":
                k.users.setdefault(r.ref, d | {"guid": r.guid})
            elif r.kind == "code":
                k.codes[r.ref] = d | {"guid": r.guid}
            elif r.kind == "source":
                k.sources[int(r.ref)] = d | {"guid": r.guid}
            elif r.kind == "coding":
                k.codings[int(r.ref)] = d | {"guid": r.guid}
            elif r.kind == "selection":
                k.selections.setdefault(int(r.ref), []).append(d["xml"])
            elif r.kind == "xml":
                k.containers.setdefault(r.ref, []).extend(d["xml"])
            elif r.kind == "other_source":
                k.other_sources.append(d["xml"])
            elif r.kind == "file":
                k.files[r.ref] = bytes(r.content)
        return k

    def code_guids(self) -> dict[str, str]:
        return {d["guid"]: cid for cid, d in self.codes.items()}


def _fragments(xmls: list[str]) -> list:
    """Parse kept XML, once per GUID (two imports of one file keep one note)."""
    out, seen = [], set()
    for x in xmls:
        el = etree.fromstring(x.encode("utf-8"))
        g = _norm_guid(el.get("guid") or el.get("targetGUID"))
        key = (el.tag, g) if g else (el.tag, x)
        if key in seen:
            continue
        seen.add(key)
        out.append(el)
    return out


def _file_entry(name: str) -> str:
    parts = name.split("/")
    if len(parts) > 1 and parts[0].lower() == "sources":
        parts[0] = "sources"
    return "/".join(parts)


@dataclass
class QdpxProject:
    """What a .qdpx export holds, as plain objects: gathered from a project by
    :func:`coder_assist.app.importing.qdpx_project`, written by :func:`write_qdpx`."""

    template: Template
    guid: uuid.UUID  # the project's GUID: every GUID except the codes' derives from it
    name: str  # the Project element's name, unless an import kept the other tool's
    created: str | None  # ISO time the project was created
    transcripts: list[tuple[int, str, str]]  # (id, name, text), by name
    attributes: dict[int, dict[str, str]]  # transcript id -> attribute -> value
    # (transcript id, start, end, code id, coder, ISO time, note, decision id or None)
    codings: list[tuple[int, int, int, str, str, str | None, str | None, int | None]]
    items: Any = None  # what imports kept of other tools' projects (Project.exchange_items frame)


def write_qdpx(qdpx: QdpxProject, path) -> Path:
    """Write a REFI-QDA project (.qdpx): users (one per coder), the template as codebook,
    participant attributes as variables and cases, every transcript as a text source
    (``sources/<guid>.txt``, UTF-8, the exact stored text) and every coding as a selection at
    its exact span, attributed to its coder and time.

    What an import kept of another tool's project goes back as it came: the GUIDs of users,
    codes, sources, selections and codings, each code's description, colour and codable flag,
    users without codings, notes, sets, links, graphs, cases and variables, the .docx of a
    source, and sources that cannot be coded here (PDF, audio, pictures) with their files.
    Codings by :data:`MACHINE_USER` go in selections whose description says they are
    unreviewed machine suggestions.
    """
    template, pns = qdpx.template, qdpx.guid
    kept = Kept.from_items(qdpx.items)
    created = _xsd_time(qdpx.created)
    users = list(kept.users) + sorted({c[4] for c in qdpx.codings} - set(kept.users))
    user_guid = {u: kept.users[u]["guid"] if u in kept.users else _guid(pns, "user", u) for u in users}

    root = _E(PROJECT_NS, "Project", name=kept.project.get("name") or qdpx.name or template.name, origin=ORIGIN,
              creationDateTime=created)
    if users:
        el_users = _E(PROJECT_NS, "Users", root)
        for u in users:
            _E(PROJECT_NS, "User", el_users, guid=user_guid[u], name=u, id=kept.users.get(u, {}).get("id"))
    _code_elements(PROJECT_NS, _E(PROJECT_NS, "CodeBook", root), template, kept)
    src_guid = {tid: kept.sources[tid]["guid"] if tid in kept.sources else _guid(pns, "source", name)
                for tid, name, _ in qdpx.transcripts}
    _cases_xml(root, qdpx, kept, src_guid)
    files: dict[str, bytes] = {_file_entry(n): b for n, b in kept.files.items()}
    _sources_xml(root, qdpx, kept, src_guid, user_guid, created, files)
    for part in _AFTER_SOURCES:
        items = _fragments(kept.containers.get(part, []))
        if not items:
            continue
        box = root if part in ("Description", "NoteRef") else _E(PROJECT_NS, part, root)
        for el in items:
            box.append(el)

    qde = etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
    # Fixed entry dates: the same project state gives the same archive bytes.
    stamp = (1980, 1, 1, 0, 0, 0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("project.qde", stamp), qde, compress_type=zipfile.ZIP_DEFLATED)
        for arc in sorted(files):
            z.writestr(zipfile.ZipInfo(arc, stamp), files[arc], compress_type=zipfile.ZIP_DEFLATED)
    return _write_bytes(Path(path), buf.getvalue())


def _cases_xml(root, qdpx: QdpxProject, kept: "Kept", src_guid: dict[int, str]) -> None:
    """Variables and Cases: the kept ones as they came, then one case per transcript with
    attributes that no kept case covers."""
    pns, attrs = qdpx.guid, qdpx.attributes
    kept_vars = _fragments(kept.containers.get("Variables", []))
    kept_cases = _fragments(kept.containers.get("Cases", []))
    var_guid = {(v.get("name") or "").strip(): _norm_guid(v.get("guid")) for v in kept_vars}
    in_kept_case = {_norm_guid(ref.get("targetGUID")) for c in kept_cases for ref in _kids(c, "SourceRef")}
    keys = sorted({k for a in attrs.values() for k in a} - set(var_guid))
    var_guid.update({k: _guid(pns, "variable", k) for k in keys})
    if kept_vars or keys:
        el_vars = _E(PROJECT_NS, "Variables", root)
        for v in kept_vars:
            el_vars.append(v)
        for k in keys:
            _E(PROJECT_NS, "Variable", el_vars, guid=var_guid[k], name=k, typeOfVariable="Text")
    new_cases = [(tid, name) for tid, name, _ in qdpx.transcripts if tid in attrs and src_guid[tid] not in in_kept_case]
    if kept_cases or new_cases:
        el_cases = _E(PROJECT_NS, "Cases", root)
        for c in kept_cases:
            el_cases.append(c)
        # One case per transcript: an interview is one participant in this product's studies.
        for tid, name in new_cases:
            case = _E(PROJECT_NS, "Case", el_cases, guid=_guid(pns, "case", name), name=name)
            for k, v in sorted(attrs[tid].items()):
                vv = _E(PROJECT_NS, "VariableValue", case)
                _E(PROJECT_NS, "VariableRef", vv, targetGUID=var_guid[k])
                _E(PROJECT_NS, "TextValue", vv).text = _xml_text(v)
            _E(PROJECT_NS, "SourceRef", case, targetGUID=src_guid[tid])


def _sources_xml(root, qdpx: QdpxProject, kept: "Kept", src_guid: dict[int, str], user_guid: dict[str, str],
                 created: str | None, files: dict[str, bytes]) -> None:
    """Sources: every transcript (its text into ``files``) with its selections, then the kept
    sources that cannot be coded here."""
    template = qdpx.template
    # Selections: an imported one keeps its GUID and holds its codings again; ours are one per
    # (span, coder), with a GUID derived from them.
    by_source: dict[int, dict[tuple, dict]] = {}
    for tid, start, end, cid, user, at, note, did in qdpx.codings:
        k = kept.codings.get(did) if did is not None else None
        key = ("kept", k["selection"]) if k else ("ours", start, end, user)
        sel = by_source.setdefault(tid, {}).setdefault(key, {"start": start, "end": end, "user": user, "kept": k, "items": []})
        sel["items"].append((cid, user, at, note, k))
    ctx = {
        "pns": qdpx.guid, "user_guid": user_guid, "order": {cid: i for i, cid in enumerate(template.codes)},
        "cguid": {cid: (kept.codes[cid]["guid"] if cid in kept.codes else code_guid(template, cid)) for cid in template.codes},
    }
    other_sources = _fragments(kept.other_sources)
    if not (qdpx.transcripts or other_sources):
        return
    el_sources = _E(PROJECT_NS, "Sources", root)
    for tid, name, text in qdpx.transcripts:
        g = src_guid[tid]
        ks = kept.sources.get(tid, {})
        files[f"sources/{g}.txt"] = text.encode("utf-8")
        sattrs = dict(ks.get("attrs", {}))
        sattrs.pop("plainTextPath", None)
        sattrs.update(guid=g, name=ks.get("name", name), plainTextPath=f"internal://{g}.txt")
        sattrs.setdefault("creationDateTime", created)
        src = _E(PROJECT_NS, "TextSource", el_sources, **sattrs)
        extras = _fragments(ks.get("extras", []))
        for el in extras:
            if _local(el) == "Description":
                src.append(el)
        for s in sorted(by_source.get(tid, {}).values(), key=lambda s: (s["start"], s["end"], s["user"])):
            _selection_xml(src, s, name, text, ctx)
        for x in _fragments(kept.selections.get(tid, [])):
            src.append(x)
        for part in ("Coding", "NoteRef", "VariableValue"):
            for el in extras:
                if _local(el) == part:
                    src.append(el)
    for el in other_sources:
        el_sources.append(el)


def _selection_xml(src, s: dict, name: str, text: str, ctx: dict) -> None:
    """One PlainTextSelection with its codings: a kept one as it came, ours with derived GUIDs."""
    pns, user_guid = ctx["pns"], ctx["user_guid"]
    start, end, user, k = s["start"], s["end"], s["user"], s["kept"]
    s["items"].sort(key=lambda x: ctx["order"].get(x[0], len(ctx["order"])))
    if k:
        a = dict(k["selection_attrs"])
        a.update(guid=k["selection"], startPosition=start, endPosition=end)
        sel = _E(PROJECT_NS, "PlainTextSelection", src, **a)
        for el in _fragments(k.get("selection_extras", [])):
            if _local(el) == "Description":
                sel.append(el)
    else:
        times = sorted(t for _, _, t, _, _ in s["items"] if t)
        sel = _E(PROJECT_NS, "PlainTextSelection", src, guid=_guid(pns, "selection", name, start, end, user),
                 name=text[start:end], startPosition=start, endPosition=end,
                 creatingUser=user_guid[user], creationDateTime=_xsd_time(times[0]) if times else None)
        if user == MACHINE_USER:
            _E(PROJECT_NS, "Description", sel).text = _xml_text(
                "Machine suggestion by coder-assist, NOT reviewed by a person. Confidence: "
                + "; ".join(n for _, _, _, n, _ in s["items"] if n)
            )
    for cid, cuser, at, _, kc in s["items"]:
        cg = kc["guid"] if kc else _guid(pns, "coding", name, start, end, cid, cuser)
        coding = _E(PROJECT_NS, "Coding", sel, guid=cg, creatingUser=user_guid[cuser], creationDateTime=_xsd_time(at))
        _E(PROJECT_NS, "CodeRef", coding, targetGUID=ctx["cguid"][cid])
    if k:
        for el in _fragments(k.get("selection_extras", [])):
            if _local(el) == "NoteRef":
                sel.append(el)



# ----------------------------------------------------------------------------- safe reading


def _parse_xml(data: bytes, path, entry: str | None = None) -> etree._Element:
    where = f"{entry}: " if entry else ""
    # REFI documents never need a DTD; refusing any DOCTYPE stops entity expansion bombs and
    # external entities before the parser sees them (also in UTF-16 encoded input).
    for enc in ("utf-8", "utf-16-le", "utf-16-be"):
        if "<!DOCTYPE".encode(enc) in data or "<!ENTITY".encode(enc) in data:
            raise InputError(path, f"{where}the XML declares a DTD or entities (DOCTYPE/ENTITY), which REFI-QDA files never need; "
                                   "refused as unsafe (possible XML bomb or external entity)")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False, dtd_validation=False,
                             remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(path, f"{where}not well-formed XML: {exc}") from exc
    if root is None:
        raise InputError(path, f"{where}empty XML document")
    if root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype:
        raise InputError(path, f"{where}the XML declares a DTD; refused as unsafe")
    return root


class _Archive:
    """A .qdpx opened defensively: names, counts and sizes checked before anything is read,
    and bytes actually read capped (a lying header cannot inflate past the cap)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(path, f"not a .qdpx (zip) archive: {exc}") from exc
        infos = self.zip.infolist()
        if len(infos) > MAX_ENTRIES:
            raise InputError(path, f"the archive has {len(infos)} entries (limit {MAX_ENTRIES})")
        total = 0
        self.entries: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename
            norm = name.replace("\\", "/")
            parts = norm.split("/")
            if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in parts or "\x00" in name:
                raise InputError(path, f"zip entry {name!r} has an unsafe path (absolute or with '..'); refused")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(path, f"zip entry {name!r} is a symbolic link; refused")
            if info.file_size > MAX_ENTRY_BYTES:
                raise InputError(path, f"zip entry {name!r} declares {info.file_size} bytes (limit {MAX_ENTRY_BYTES}); refused as a possible zip bomb")
            if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise InputError(path, f"zip entry {name!r} compresses {info.file_size / max(info.compress_size, 1):.0f}:1 "
                                       f"(limit {MAX_RATIO}:1); refused as a possible zip bomb")
            total += info.file_size
            if total > MAX_TOTAL_BYTES:
                raise InputError(path, f"the archive unpacks to more than {MAX_TOTAL_BYTES} bytes; refused as a possible zip bomb")
            if not info.is_dir():
                self.entries[norm.lower()] = info
        self.read_total = 0

    def find(self, name: str) -> zipfile.ZipInfo | None:
        return self.entries.get(name.replace("\\", "/").lower())

    def read(self, info: zipfile.ZipInfo) -> bytes:
        cap = min(info.file_size, MAX_ENTRY_BYTES)
        try:
            with self.zip.open(info) as fh:
                data = fh.read(cap + 1)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
            raise InputError(self.path, f"zip entry {info.filename!r} cannot be read: {exc}") from exc
        if len(data) > cap:
            raise InputError(self.path, f"zip entry {info.filename!r} unpacks to more than it declares; refused as a possible zip bomb")
        self.read_total += len(data)
        if self.read_total > MAX_TOTAL_BYTES:
            raise InputError(self.path, f"the archive unpacks to more than {MAX_TOTAL_BYTES} bytes; refused as a possible zip bomb")
        return data

    def close(self) -> None:
        self.zip.close()


def _local(el) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _kids(el, name: str) -> list:
    return [c for c in el if _local(c) == name]


def _grandkids(el, name: str, child: str) -> list:
    box = _kid(el, name)
    return _kids(box, child) if box is not None else []


def _kid(el, name: str):
    for c in el:
        if _local(c) == name:
            return c
    return None


# ----------------------------------------------------------------------------- reading codebooks


@dataclass
class RefiCode:
    """One code of a REFI-QDA codebook as read: its attributes, parent and children by GUID."""

    guid: str
    name: str
    codable: bool
    color: str | None
    description: str
    parent: str | None
    children: list[str] = field(default_factory=list)
    # As written in the file, for writing it back unchanged.
    raw_name: str = ""
    raw_codable: str = "true"
    raw_color: str | None = None
    raw_description: str | None = None


def _read_codes(codes_el, path) -> dict[str, RefiCode]:
    out: dict[str, RefiCode] = {}

    def walk(el, parent: str | None) -> None:
        for c in _kids(el, "Code"):
            g = _norm_guid(c.get("guid"))
            name = (c.get("name") or "").strip()
            if not g or not name:
                raise InputError(path, f"a Code without guid or name (line {c.sourceline})")
            if g in out:
                raise InputError(path, f"two codes share the GUID {g} (line {c.sourceline})")
            d = _kid(c, "Description")
            out[g] = RefiCode(g, name, (c.get("isCodable") or "true").strip().lower() in ("true", "1"), _color(c.get("color")),
                               (d.text or "") if d is not None else "", parent, raw_name=c.get("name") or name,
                               raw_codable=c.get("isCodable") or "true", raw_color=c.get("color"),
                               raw_description=(d.text or "") if d is not None else None)
            if parent:
                out[parent].children.append(g)
            walk(c, g)

    if codes_el is not None:
        walk(codes_el, None)
    return out


def _node(code: RefiCode, codes: dict[str, RefiCode]) -> dict[str, Any]:
    parsed = parse_description(code.description)
    node: dict[str, Any] = {"name": code.name, "description": parsed["description"]}
    for key in ("include", "exclude"):
        if parsed[key]:
            node[key] = parsed[key]
    if parsed["exclusive"]:
        node["exclusive"] = True
    if parsed["examples"]:
        node["examples"] = parsed["examples"]
    if parsed["counter_examples"]:
        node["counter_examples"] = parsed["counter_examples"]
    if code.color:
        node["color"] = code.color
    if code.children:
        node["children"] = [_node(codes[c], codes) for c in code.children]
    elif not node["description"].strip() and not parsed["examples"]:
        # Our template needs a description for every code; the name is the best stand-in.
        node["description"] = code.name
    return node


def read_qdc(path) -> Template:
    """Read a REFI-QDA codebook (.qdc) as a template. The hierarchy and descriptions are kept;
    codes with sub-codes become themes (whether or not the other tool marked them codable),
    codes without are the codes that get suggested."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the codebook: {exc.strerror or exc}") from exc
    if len(data) > MAX_ENTRY_BYTES:
        raise InputError(path, f"the codebook is larger than {MAX_ENTRY_BYTES} bytes")
    root = _parse_xml(data, path)
    if _local(root) != "CodeBook":
        raise InputError(path, f"not a REFI-QDA codebook: the root element is <{_local(root)}>, not <CodeBook>")
    codes = _read_codes(_kid(root, "Codes"), path)
    if not codes:
        raise InputError(path, "the codebook has no codes")
    origin = (root.get("origin") or "").strip()
    name = origin[len(ORIGIN) + 2:] if origin.startswith(ORIGIN + ": ") else path.stem
    data_t = {"name": name or path.stem, "source": f"REFI-QDA codebook {path.name}" + (f" ({origin})" if origin else ""),
              "codes": [_node(c, codes) for c in codes.values() if c.parent is None]}
    try:
        return parse_template(data_t, path)
    except TemplateError as exc:
        raise InputError(path, f"the codebook cannot be used as a template: {exc.problem}" + (f" (code {exc.code!r})" if exc.code else "")) from exc


# ----------------------------------------------------------------------------- reading projects


def _collapse(s: str) -> str:
    return " ".join(s.split())


_NON_BMP = re.compile("[\U00010000-\U0010ffff]")


def _offset_maps(text: str) -> dict[str, list[int] | None]:
    """Ways another tool may have counted offsets into ``text``: as stored (None: identity),
    over the text with CRLF normalised to LF, or in UTF-16 code units. Each map turns such an
    offset into an index of ``text``."""
    maps: dict[str, list[int] | None] = {"exact": None}
    if "\r\n" in text:
        m = [i for i, ch in enumerate(text) if not (ch == "\r" and text[i + 1:i + 2] == "\n")]
        m.append(len(text))
        maps["LF-normalised"] = m
    if _NON_BMP.search(text):
        m = []
        for i, ch in enumerate(text):
            m.append(i)
            if ord(ch) > 0xFFFF:
                m.append(i)  # a low surrogate points at the same character
        m.append(len(text))
        maps["UTF-16 units"] = m
    return maps


def _apply(m: list[int] | None, pos: int, end: bool = False) -> int | None:
    if m is None:
        return pos
    if end and pos > 0:
        # An exclusive end maps from the character before it: after a removed CR the next
        # position would be the LF's, one too far.
        return m[pos - 1] + 1 if pos - 1 < len(m) - 1 else None
    return m[pos] if 0 <= pos < len(m) else None


def _names_match(got: str, name: str) -> bool:
    got, want = _collapse(got), _collapse(name)
    return bool(want) and (got == want or (len(want) >= 20 and got.startswith(want.rstrip(".… ")[:60])))


def _choose_map(text: str, sels: list[tuple[int, int, str]]) -> tuple[str, list[int] | None]:
    """Pick the offset map under which the most selections' names (the selected text, as most
    tools write it) match the text; then the one that keeps the most selections inside the text;
    ties go to the offsets as written."""
    if not ("\r\n" in text or _NON_BMP.search(text)):
        return "exact", None
    # The offsets as written, when every named selection matches and all lie inside the text:
    # the other readings (built character by character) are only needed when that fails.
    named = [(s, e, n) for s, e, n in sels if n]
    if all(0 <= s < e <= len(text) for s, e, _ in sels) and all(_names_match(text[s:e], n) for s, e, n in named):
        return "exact", None
    maps = _offset_maps(text)
    best, best_score = "exact", (-1, -1)
    for label, m in maps.items():
        matches = in_range = 0
        for s, e, name in sels:
            a, b = _apply(m, s), _apply(m, e, end=True)
            if a is None or b is None or b > len(text):
                continue
            in_range += 1  # without names, a reading that keeps every selection inside the text wins
            if name and _names_match(text[a:b], name):
                matches += 1
        if (matches, in_range) > best_score:
            best, best_score = label, (matches, in_range)
    return best, maps[best]


def _time(value: str | None) -> str:
    if value:
        try:
            dt = datetime.fromisoformat(value.strip())
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")
        except ValueError:
            pass
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _decode_source(data: bytes, path, entry: str) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # tools count offsets after the BOM
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        from .transcripts import decode_bytes

        return decode_bytes(data, f"{path}: {entry}")[0]


def _value(vv) -> tuple[str | None, str | None]:
    ref = _kid(vv, "VariableRef")
    target = _norm_guid(ref.get("targetGUID")) if ref is not None else None
    for c in vv:
        if _local(c) != "VariableRef":
            return target, (c.text or "").strip()
    return target, None


def _store_xml(el) -> str:
    """An element of the file as XML text to keep, in the REFI project namespace whatever the
    file used, so that it validates when written back inside our Project."""
    el = copy.deepcopy(el)
    for e in el.iter():
        if isinstance(e.tag, str):
            e.tag = f"{{{PROJECT_NS}}}{etree.QName(e).localname}"
            for k in list(e.attrib):
                if k.startswith("{"):
                    del e.attrib[k]  # xsi:... attributes name another schema; not ours to keep
    etree.cleanup_namespaces(el)
    el.tail = None
    return etree.tostring(el, encoding="unicode")


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_W_BLOCKS = {_W + t for t in ("tbl", "tr", "tc", "sdt", "sdtContent", "customXml", "smartTag", "ins")}


def _docx_paragraphs(body) -> list[tuple[Any, bool]]:
    out = []
    for el in body:
        if el.tag == _W + "p":
            out.append((el, False))
        elif el.tag in _W_BLOCKS:
            inner = _docx_paragraphs(el)
            out.extend((p, True) for p, _ in inner)
    return out


def _docx_text(data: bytes, path, entry: str, newline: str) -> str:
    """The plain text NVivo counts its selections in, for a source whose text is only in a
    .docx: every paragraph (body and table cells, in document order) followed by a line break,
    except the empty paragraph Word requires after a closing table. Checked on NVivo's own
    exports: the Windows file's .txt (15,272 table cells, CRLF) and the Mac file's (LF) equal
    this reading of their .docx exactly."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            info = z.getinfo("word/document.xml")
            if info.file_size > MAX_ENTRY_BYTES:
                raise InputError(path, f"{entry}: the document is larger than {MAX_ENTRY_BYTES} bytes")
            xml = z.read(info)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InputError(path, f"{entry}: not a readable .docx: {exc}") from exc
    root = _parse_xml(xml, path, entry)
    body = root.find(_W + "body")
    if body is None:
        return ""
    paras = _docx_paragraphs(body)
    out = []
    for i, (p, _) in enumerate(paras):
        parts = []
        for el in p.iter(_W + "t", _W + "tab", _W + "br", _W + "cr", _W + "noBreakHyphen"):
            if el.tag == _W + "t":
                parts.append(el.text or "")
            elif el.tag == _W + "tab":
                if el.getparent() is None or el.getparent().tag != _W + "tabs":  # tab stops are layout, not text
                    parts.append("\t")
            elif el.tag in (_W + "br", _W + "cr"):
                parts.append("\n")
            else:
                parts.append("-")
        text = "".join(parts)
        last = i == len(paras) - 1
        if last and not text and i > 0 and paras[i - 1][1]:
            continue
        out.append(text + newline)
    return "".join(out)


def source_turns(text: str, where: str) -> tuple[list, bool]:
    """Turns of an imported source, and whether it has speaker labels. Labels count only when
    they look like a transcript's: they open at least one paragraph in ten and the text before
    the first is a short header. A comment export whose video titles read "PSZ: ..." is not an
    interview: it is segmented in full, one paragraph per turn."""
    turns = parse_speaker_text(text, where)
    labelled = [t for t in turns if t.speaker]
    paragraphs = document_turns(text)
    # Paragraphs as document_turns finds them (blank-line ones in hard-wrapped text), so a
    # transcript wrapped at 80 columns still counts one paragraph per turn.
    if labelled and len(labelled) >= 0.1 * len(paragraphs) and labelled[0].start <= max(2000, 0.1 * len(text)):
        return turns, True
    return paragraphs, False


_TEXT_SOURCE_PARTS = ("Description", "PlainTextContent", "PlainTextSelection", "Coding", "NoteRef", "VariableValue")


@dataclass
class QdpxSource:
    """A text source of a .qdpx, read: its text, attributes and coded selections."""

    name: str  # unique within the file: a second source of one name is "name (2)"
    text: str
    attributes: dict[str, str]
    # (start, end) as written, the selection's name, its codings (code GUID, user, time, coding
    # GUID) and what to keep of the selection for writing it back
    selections: list[tuple[int, int, str, list[tuple[str, str, str, str]], dict]]
    guid: str
    keep: dict  # the source's attributes and extra elements, for writing it back
    orphans: list[str]  # XML of selections without codings (notes only), kept as they are
    offsets: str = "exact"  # how the other tool counted offsets (see _offset_maps)
    offset_map: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int | None, int | None]:
        """A selection's offsets as indexes of :attr:`text` (None where outside it)."""
        return _apply(self.offset_map, start), _apply(self.offset_map, end, end=True)


@dataclass
class QdpxContent:
    """Everything :func:`read_qdpx` read from a REFI-QDA project, checked, nothing written."""

    path: Path
    users: dict[str, str] = field(default_factory=dict)  # user GUID -> name
    codes: dict[str, RefiCode] = field(default_factory=dict)  # code GUID -> code, parents first
    sources: list[QdpxSource] = field(default_factory=list)
    items: list[tuple] = field(default_factory=list)  # (kind, guid, ref, data, content) to keep, see Kept
    kept: dict[str, int] = field(default_factory=dict)  # notes, sets, ..., files kept: how many
    sources_kept: list[str] = field(default_factory=list)  # not codable here (PDF, audio, ...), kept as they are
    codings_in_kept_sources: int = 0
    sources_from_docx: list[str] = field(default_factory=list)
    sources_empty: list[str] = field(default_factory=list)


def _project_root(arch: _Archive, path: Path) -> tuple[zipfile.ZipInfo, Any]:
    """The archive's .qde entry and its <Project> root element."""
    qde = [i for n, i in arch.entries.items() if n.endswith(".qde") and "/" not in n]
    if not qde:
        raise InputError(path, "no project.qde at the top of the archive: not a REFI-QDA project")
    # ATLAS.ti 26 names it <project>.qde; prefer the standard name where both exist.
    qde.sort(key=lambda i: i.filename.lower() != "project.qde")
    root = _parse_xml(arch.read(qde[0]), path, qde[0].filename)
    if _local(root) != "Project":
        raise InputError(path, f"{qde[0].filename}: the root element is <{_local(root)}>, not <Project>")
    return qde[0], root


def read_qdpx(path) -> QdpxContent:
    """Read and check a REFI-QDA project (.qdpx) from NVivo, ATLAS.ti, MAXQDA, QualCoder or
    coder-assist: users, codebook, text sources (attributes from Cases/Variables; text only in
    a .docx read from it) with their coded selections (offsets mapped to the text however the
    tool counted them), and everything else (notes, sets, links, graphs, cases, variables,
    sources that cannot be coded here, files) as items to keep. Untrusted input: safe XML,
    archive caps; any problem is an :class:`InputError` naming the file."""
    path = Path(path)
    arch = _Archive(path)
    try:
        qde, root = _project_root(arch, path)
        out = QdpxContent(path=path)
        out.items.append(("project", None, None, {k: v for k, v in root.attrib.items() if not k.startswith("{")}, None))
        for u in _grandkids(root, "Users", "User"):
            name = (u.get("name") or u.get("id") or "").strip() or f"user {_norm_guid(u.get('guid'))[:8]}"
            out.users[_norm_guid(u.get("guid"))] = name
            out.items.append(("user", _norm_guid(u.get("guid")), name, {"id": u.get("id")}, None))
        cb = _kid(root, "CodeBook")
        out.codes = _read_codes(_kid(cb, "Codes") if cb is not None else None, path)
        variables = {_norm_guid(v.get("guid")): (v.get("name") or "").strip() for v in _grandkids(root, "Variables", "Variable")}
        _read_containers(root, out)
        ctx = {"arch": arch, "root": root, "variables": variables, "source_attrs": _case_attributes(root, variables),
               "default_user": out.users.get(_norm_guid(root.get("creatingUserGUID"))) or "imported (unknown user)",
               "text_entries": set()}
        sources_el = _kid(root, "Sources")
        for src in (list(sources_el) if sources_el is not None else []):
            if isinstance(src.tag, str):
                _read_source(src, out, ctx)
        for info in arch.entries.values():
            if info is qde or info.filename in ctx["text_entries"]:
                continue
            out.items.append(("file", None, info.filename, {}, arch.read(info)))
            out.kept["files"] = out.kept.get("files", 0) + 1
        seen_names: set[str] = set()
        for s in out.sources:
            base, k = s.name, 2
            while s.name in seen_names:
                s.name, k = f"{base} ({k})", k + 1
            seen_names.add(s.name)
            s.offsets, s.offset_map = _choose_map(s.text, [(a, b, n) for a, b, n, _, _ in s.selections])
        return out
    except CoderAssistError:
        raise
    except (etree.LxmlError, KeyError, ValueError) as exc:
        raise InputError(path, f"cannot read the REFI-QDA project: {type(exc).__name__}: {exc}") from exc
    finally:
        arch.close()


def _case_attributes(root, variables: dict[str, str]) -> dict[str, dict[str, str]]:
    """Source GUID -> attributes, from the Cases that refer to it."""
    out: dict[str, dict[str, str]] = {}
    for case in _grandkids(root, "Cases", "Case"):
        vals = {}
        for vv in _kids(case, "VariableValue"):
            target, value = _value(vv)
            if variables.get(target) and value is not None:
                vals[variables[target]] = value
        for ref in _kids(case, "SourceRef"):
            out.setdefault(_norm_guid(ref.get("targetGUID")), {}).update(vals)
    return out


def _read_containers(root, out: QdpxContent) -> None:
    for part in _CONTAINERS:
        box = _kids(root, part)
        if part in ("Description", "NoteRef"):
            children = box
        else:
            children = [c for b in box for c in b if isinstance(c.tag, str)]
        if children:
            out.items.append(("xml", None, part, {"xml": [_store_xml(c) for c in children]}, None))
            out.kept[part.lower() if part not in ("Description", "NoteRef") else f"project {part}"] = len(children)


def _read_source(src, out: QdpxContent, ctx: dict) -> None:
    """One source: a text source with its selections, or one kept as it is."""
    path = out.path
    kind = _local(src)
    label = (src.get("name") or src.get("guid") or "?").strip()
    g = _norm_guid(src.get("guid"))
    ptc = _kid(src, "PlainTextContent")
    ptp = (src.get("plainTextPath") or "").strip()
    rtp = (src.get("richTextPath") or "").strip()
    outside = [v for v in (ptp, rtp) if v and not v.lower().startswith("internal://")]
    if kind != "TextSource" or (ptc is None and outside and not ptp.lower().startswith("internal://")):
        n = sum(1 for e in src.iter() if _local(e) == "Coding")
        out.codings_in_kept_sources += n
        why = f"{kind}" if kind != "TextSource" else f"TextSource with its text at {ptp or rtp}, outside the archive (not read)"
        out.sources_kept.append(f"{label} ({why}; {n} coding(s) kept with it)")
        out.items.append(("other_source", g, None, {"xml": _store_xml(src), "name": label}, None))
        return
    text = _source_text(src, label, g, ptc, ptp, rtp, out, ctx)
    if not text.strip():
        out.sources_empty.append(label)
    attrs = dict(ctx["source_attrs"].get(g, {}))
    for vv in _kids(src, "VariableValue"):
        target, value = _value(vv)
        if ctx["variables"].get(target) and value is not None:
            attrs[ctx["variables"][target]] = value
    extras = [_store_xml(c) for c in src if _local(c) in ("Description", "Coding", "NoteRef", "VariableValue")]
    unknown = [_local(c) for c in src if isinstance(c.tag, str) and _local(c) not in _TEXT_SOURCE_PARTS]
    if unknown:
        raise InputError(path, f"source {label!r}: unexpected element(s) {', '.join(sorted(set(unknown)))} in a TextSource")
    sels, orphans = [], []
    for sel in _kids(src, "PlainTextSelection"):
        try:
            s, e = int(sel.get("startPosition")), int(sel.get("endPosition"))
        except (TypeError, ValueError):
            raise InputError(path, f"source {label!r}: selection {sel.get('guid')} has no valid start/end position") from None
        sel_user = out.users.get(_norm_guid(sel.get("creatingUser")))
        cods = []
        for c in _kids(sel, "Coding"):
            ref = _kid(c, "CodeRef")
            cods.append((_norm_guid(ref.get("targetGUID")) if ref is not None else "",
                         out.users.get(_norm_guid(c.get("creatingUser"))) or sel_user or ctx["default_user"],
                         _time(c.get("creationDateTime") or sel.get("creationDateTime")), _norm_guid(c.get("guid"))))
        if not cods:
            orphans.append(_store_xml(sel))  # a selection with notes only: kept as it is
            continue
        sel_keep = {
            "selection": _norm_guid(sel.get("guid")),
            "selection_attrs": {k: v for k, v in sel.attrib.items() if not k.startswith("{") and k not in ("guid", "startPosition", "endPosition")},
            "selection_extras": [_store_xml(c) for c in sel if _local(c) in ("Description", "NoteRef")],
        }
        sels.append((min(s, e), max(s, e), sel.get("name") or "", cods, sel_keep))
    src_keep = {"name": label, "attrs": {k: v for k, v in src.attrib.items() if not k.startswith("{") and k != "guid"}, "extras": extras}
    out.sources.append(QdpxSource(label, text, attrs, sels, g, src_keep, orphans))


def _source_text(src, label: str, g: str, ptc, ptp: str, rtp: str, out: QdpxContent, ctx: dict) -> str:
    """A text source's text: inline, its .txt in the archive, or read from its .docx."""
    path, arch = out.path, ctx["arch"]
    text = None
    if ptc is not None and ptc.text:
        text = ptc.text
    elif ptp.lower().startswith("internal://"):
        entry = ptp[len("internal://"):]
        info = arch.find("sources/" + entry) or arch.find(entry)
        if info is None:
            raise InputError(path, f"source {label!r}: {ptp} is not in the archive")
        ctx["text_entries"].add(info.filename)
        text = _decode_source(arch.read(info), path, info.filename)
    elif not ptp and arch.find(f"sources/{g}.txt") is not None:
        # Neither content nor path: the layout's conventional file name, where present.
        info = arch.find(f"sources/{g}.txt")
        ctx["text_entries"].add(info.filename)
        text = _decode_source(arch.read(info), path, info.filename)
    if (text is None or not text.strip()) and rtp.lower().startswith("internal://"):
        entry = rtp[len("internal://"):]
        info = arch.find("sources/" + entry) or arch.find(entry)
        if info is None:
            raise InputError(path, f"source {label!r}: {rtp} is not in the archive")
        newline = "\r\n" if (text or "").startswith("\r\n") or "Windows" in (ctx["root"].get("origin") or "") else "\n"
        from_docx = _docx_text(arch.read(info), path, info.filename, newline)
        if from_docx.strip():
            text = from_docx
            out.sources_from_docx.append(label)
        elif text is None:
            text = from_docx
    return text if text is not None else ""


def code_item(g: str, rc: RefiCode, code: Code, own: bool) -> tuple:
    """The exchange item that keeps a REFI code's GUID (and, when ``own``, its name, flag,
    colour and description as the file had them) for writing it back."""
    # own: the code came from this file (its description, colour, name and flag are the
    # file's); otherwise only its GUID is kept, and the export describes it as our template does.
    return ("code", g, code.id, {"name": rc.raw_name, "name_here": code.name, "codable": rc.raw_codable, "color": rc.raw_color,
                                 "description": rc.raw_description, "described": _describe(code), "from_file": own}, None)


def _read_codebook(path: Path) -> tuple[Template, dict[str, str], dict[str, RefiCode]]:
    arch = _Archive(path)
    try:
        _, root = _project_root(arch, path)
    finally:
        arch.close()
    cb = _kid(root, "CodeBook")
    rcodes = _read_codes(_kid(cb, "Codes") if cb is not None else None, path)
    if not rcodes:
        raise InputError(path, "the project has no codes to start a template from (use --template, then import it)")
    ids: set[str] = set()
    id_of: dict[str, str] = {}

    def node(g: str) -> dict[str, Any]:
        rc = rcodes[g]
        d = _node(rc, rcodes)
        d.pop("children", None)
        base = "/".join(slugify(p) for p in path_of[g])
        cid, k = base, 2
        while cid in ids:
            cid, k = f"{base}-{k}", k + 1
        ids.add(cid)
        id_of[g] = cid
        d["id"] = cid
        d["name"] = names[g]
        if rc.children:
            d["children"] = [node(c) for c in rc.children]
        return d

    names, path_of = {}, {}
    for g, rc in rcodes.items():  # document order: parents first
        siblings = rcodes[rc.parent].children if rc.parent else [x for x, r in rcodes.items() if r.parent is None]
        same = [x for x in siblings if rcodes[x].name == rc.name]
        names[g] = rc.name if same.index(g) == 0 else f"{rc.name} ({same.index(g) + 1})"
        path_of[g] = (path_of[rc.parent] if rc.parent else ()) + (names[g],)
    data = {"name": (root.get("name") or "").strip() or path.stem,
            "source": f"REFI-QDA project {path.name}" + (f" ({root.get('origin')})" if root.get("origin") else ""),
            "codes": [node(g) for g, rc in rcodes.items() if rc.parent is None]}
    try:
        template = parse_template(data, path)
    except TemplateError as exc:
        raise InputError(path, f"the codebook cannot be used as a template: {exc.problem}" + (f" (code {exc.code!r})" if exc.code else "")) from exc
    return template, id_of, rcodes


def read_qdpx_codebook(path) -> tuple[Template, dict[str, str]]:
    """The codebook of a REFI-QDA project (.qdpx) as a template, and REFI GUID -> code id.
    The tree, descriptions and colours are kept; two sibling codes of one name (which other
    tools allow) get " (2)" here, and the export writes the original name back."""
    template, id_of, _ = _read_codebook(Path(path))
    return template, id_of


def qdpx_template(path) -> tuple[Template, list[tuple]]:
    """For ``init --from study.qdpx``: the file's codebook as a template, and the exchange
    items that keep each code's GUID, name, flag, colour and description as the file had them."""
    template, id_of, rcodes = _read_codebook(Path(path))
    return template, [code_item(g, rcodes[g], template.codes[cid], True) for g, cid in id_of.items()]


def read_qdc_codes(path) -> dict[str, RefiCode]:
    """The codes of a REFI-QDA codebook (.qdc), checked as :func:`read_qdc` checks them."""
    path = Path(path)
    read_qdc(path)  # the same checks as a template of its own (safe XML, a usable tree)
    return _read_codes(_kid(_parse_xml(path.read_bytes(), path), "Codes"), path)


__all__ = ["MACHINE_USER", "Kept", "QdpxContent", "QdpxProject", "QdpxSource", "RefiCode", "code_guid", "code_item",
           "parse_description", "qdpx_template", "read_qdc", "read_qdc_codes", "read_qdpx", "read_qdpx_codebook",
           "source_turns", "write_qdc", "write_qdpx"]
