"""REFI-QDA 1.0 (QDA-XML) exchange: ``.qdc`` codebooks and ``.qdpx`` projects.

Export hands a project's template, transcripts and accepted codings to NVivo, ATLAS.ti, MAXQDA
or QualCoder; import brings a template (``.qdc``) or coding done in such a tool (``.qdpx``)
back, so that a team can train the suggester on coding it already did. See docs/refi-qda.md.

GUIDs are stable: codes get ``uuid5(template namespace, code id)`` (the same in a ``.qdc`` and
in a ``.qdpx``), everything else ``uuid5(project GUID, natural key)`` with the project GUID kept
in the project's meta table, so a re-export merges cleanly in the receiving tool.

Everything read is untrusted: XML is parsed without DTDs, entities or network (a document
with a DOCTYPE is refused outright: REFI files never need one), zip entry names must stay
inside the archive, and sizes are checked against caps before and while reading. Import is all
or nothing: everything is read and checked first, then written in one transaction.
"""

from __future__ import annotations

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

from ..core.template import Code, Example, Template, parse_template
from ..core.errors import CoderAssistError, InputError, TemplateError
from .transcripts import Transcript, parse_speaker_text

PROJECT_NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
ORIGIN = "coder-assist"

#: Codings by this user are our own unreviewed machine suggestions: exported only on request,
#: never imported as human coding.
MACHINE_USER = "coder-assist (machine suggestion, not reviewed)"

# Root namespace of every GUID we derive. Fixed forever: changing it changes every GUID.
_ROOT_NS = uuid.UUID("5d0c4a52-6f0e-5b8a-9c53-2f4d7a1e0c11")
_META_GUID = "refi_project_guid"

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


def project_guid(project) -> uuid.UUID:
    """The project's own GUID, created on first use and kept in its meta table."""
    raw = project.meta(_META_GUID)
    if raw is None:
        with project.transaction():
            raw = project.meta(_META_GUID)
            if raw is None:
                raw = str(uuid.uuid4())
                project._set_meta(_META_GUID, raw)
    return uuid.UUID(raw)


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


def _parse_description(text: str) -> dict[str, Any]:
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


def _code_elements(ns: str, parent, template: Template) -> None:
    def add(el_parent, code: Code) -> None:
        # Themes organise codes; only leaves are coded here.
        el = _E(ns, "Code", el_parent, guid=code_guid(template, code.id), name=code.name,
                isCodable="true" if code.is_leaf else "false", color=code.color)
        desc = _describe(code)
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


def write_qdpx(project, path, *, suggestions_threshold: float | None = None) -> Path:
    """Write the project as a REFI-QDA project (.qdpx): users (one per coder), the template as
    codebook, participant attributes as variables and cases, every transcript as a text source
    (``sources/<guid>.txt``, UTF-8, the exact stored text) and every accepted coding as a
    selection over its segment's offsets, attributed to its coder and time.

    With ``suggestions_threshold``, pending suggestions (no accept or reject by anyone) at or
    above it are added under the separate user :data:`MACHINE_USER`, in selections whose
    description says they are unreviewed machine suggestions.
    """
    template = project.template()
    pns = project_guid(project)
    conn = project.conn
    created = _xsd_time(project.meta("created_at"))

    transcripts = conn.execute("SELECT id, name, text FROM transcripts ORDER BY name").fetchall()
    segs = {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute('SELECT id, transcript_id, start, "end", text FROM segments')}
    cur = project.current_decisions()
    accepted = cur[cur["action"] == "accept"] if not cur.empty else cur
    codings: list[tuple[int, str, str, str | None, str | None]] = []  # segment, code, user, time, note
    for r in accepted.itertuples(index=False):
        if r.code_id not in template.codes:
            continue  # a code retired from the template (kept with its decisions): not in the codebook, so not exported
        codings.append((int(r.segment_id), r.code_id, r.coder, r.created_at, None))
    if suggestions_threshold is not None:
        mv = project.latest_model_version()
        decided = set() if cur.empty else {
            (int(r.segment_id), r.code_id) for r in cur.itertuples(index=False) if r.action in ("accept", "reject")
        }
        if mv is not None:
            for sid, cid, conf, at in conn.execute(
                "SELECT segment_id, code_id, confidence, created_at FROM suggestions WHERE model_version_id = ? AND confidence >= ? "
                "ORDER BY segment_id, rank", (mv, float(suggestions_threshold))):
                if (sid, cid) not in decided and cid in template.codes:
                    codings.append((int(sid), cid, MACHINE_USER, at, f"{template.codes[cid].name}: {conf:.2f}"))

    users = sorted({c[2] for c in codings})
    user_guid = {u: _guid(pns, "user", u) for u in users}

    root = _E(PROJECT_NS, "Project", name=project.folder.name or template.name, origin=ORIGIN, creationDateTime=created)
    if users:
        el_users = _E(PROJECT_NS, "Users", root)
        for u in users:
            _E(PROJECT_NS, "User", el_users, guid=user_guid[u], name=u)
    _code_elements(PROJECT_NS, _E(PROJECT_NS, "CodeBook", root), template)

    attrs: dict[int, dict[str, str]] = {}
    for tid, key, value in conn.execute("SELECT transcript_id, key, value FROM attributes ORDER BY key"):
        attrs.setdefault(tid, {})[key] = value
    keys = sorted({k for a in attrs.values() for k in a})
    var_guid = {k: _guid(pns, "variable", k) for k in keys}
    src_guid = {tid: _guid(pns, "source", name) for tid, name, _ in transcripts}
    if keys:
        el_vars = _E(PROJECT_NS, "Variables", root)
        for k in keys:
            _E(PROJECT_NS, "Variable", el_vars, guid=var_guid[k], name=k, typeOfVariable="Text")
        el_cases = _E(PROJECT_NS, "Cases", root)
        # One case per transcript: an interview is one participant in this product's studies.
        for tid, name, _ in transcripts:
            if tid not in attrs:
                continue
            case = _E(PROJECT_NS, "Case", el_cases, guid=_guid(pns, "case", name), name=name)
            for k, v in sorted(attrs[tid].items()):
                vv = _E(PROJECT_NS, "VariableValue", case)
                _E(PROJECT_NS, "VariableRef", vv, targetGUID=var_guid[k])
                _E(PROJECT_NS, "TextValue", vv).text = _xml_text(v)
            _E(PROJECT_NS, "SourceRef", case, targetGUID=src_guid[tid])

    by_source: dict[int, dict[tuple[int, int, str], list]] = {}
    for sid, cid, user, at, note in codings:
        tid, start, end, _ = segs[sid]
        by_source.setdefault(tid, {}).setdefault((start, end, user), []).append((cid, at, note))
    order = {cid: i for i, cid in enumerate(template.codes)}
    cguid = {cid: code_guid(template, cid) for cid in template.codes}
    files: list[tuple[str, bytes]] = []
    if transcripts:
        el_sources = _E(PROJECT_NS, "Sources", root)
        for tid, name, text in transcripts:
            g = src_guid[tid]
            files.append((f"sources/{g}.txt", text.encode("utf-8")))
            src = _E(PROJECT_NS, "TextSource", el_sources, guid=g, name=name, plainTextPath=f"internal://{g}.txt", creationDateTime=created)
            for (start, end, user), items in sorted(by_source.get(tid, {}).items()):
                items.sort(key=lambda x: order.get(x[0], len(order)))
                times = sorted(t for _, t, _ in items if t)
                sel = _E(PROJECT_NS, "PlainTextSelection", src, guid=_guid(pns, "selection", name, start, end, user),
                         name=text[start:end], startPosition=start, endPosition=end,
                         creatingUser=user_guid[user], creationDateTime=_xsd_time(times[0]) if times else None)
                if user == MACHINE_USER:
                    _E(PROJECT_NS, "Description", sel).text = _xml_text(
                        "Machine suggestion by coder-assist, NOT reviewed by a person. Confidence: "
                        + "; ".join(n for _, _, n in items if n)
                    )
                for cid, at, _ in items:
                    coding = _E(PROJECT_NS, "Coding", sel, guid=_guid(pns, "coding", name, start, end, cid, user),
                                creatingUser=user_guid[user], creationDateTime=_xsd_time(at))
                    _E(PROJECT_NS, "CodeRef", coding, targetGUID=cguid[cid])

    qde = etree.tostring(root, xml_declaration=True, encoding="utf-8", pretty_print=True)
    # Fixed entry dates: the same project state gives the same archive bytes.
    stamp = (1980, 1, 1, 0, 0, 0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("project.qde", stamp), qde, compress_type=zipfile.ZIP_DEFLATED)
        for arc, data in files:
            z.writestr(zipfile.ZipInfo(arc, stamp), data, compress_type=zipfile.ZIP_DEFLATED)
    return _write_bytes(Path(path), buf.getvalue())


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
class _RefiCode:
    guid: str
    name: str
    codable: bool
    color: str | None
    description: str
    parent: str | None
    children: list[str] = field(default_factory=list)


def _read_codes(codes_el, path) -> dict[str, _RefiCode]:
    out: dict[str, _RefiCode] = {}

    def walk(el, parent: str | None) -> None:
        for c in _kids(el, "Code"):
            g = _norm_guid(c.get("guid"))
            name = (c.get("name") or "").strip()
            if not g or not name:
                raise InputError(path, f"a Code without guid or name (line {c.sourceline})")
            if g in out:
                raise InputError(path, f"two codes share the GUID {g} (line {c.sourceline})")
            d = _kid(c, "Description")
            out[g] = _RefiCode(g, name, (c.get("isCodable") or "true").strip().lower() in ("true", "1"), _color(c.get("color")),
                               (d.text or "") if d is not None else "", parent)
            if parent:
                out[parent].children.append(g)
            walk(c, g)

    if codes_el is not None:
        walk(codes_el, None)
    return out


def _node(code: _RefiCode, codes: dict[str, _RefiCode]) -> dict[str, Any]:
    parsed = _parse_description(code.description)
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


@dataclass
class ImportReport:
    """What :func:`import_qdpx` did. Counts, so callers and tests can check every step."""

    file: str
    transcripts_added: int = 0
    transcripts_matched: int = 0  # already in the project with the same text: codings added to it
    sources_skipped: list[str] = field(default_factory=list)  # non-text or unreadable sources, with the reason
    codes_added: list[str] = field(default_factory=list)  # paths of codes added to the template
    users: list[str] = field(default_factory=list)
    codings_read: int = 0  # Coding elements on text selections
    decisions_added: int = 0  # accepts written (one per segment x code x coder)
    already_present: int = 0  # the coder had already accepted that code on that segment
    spans_exact: int = 0  # selections whose bounds are exactly segment bounds
    spans_inexact: int = 0  # mapped to segments, but the bounds differ
    spans_unmapped: int = 0  # covered no codable segment (e.g. interviewer turns): dropped
    codings_on_themes: int = 0  # on a code that is a theme here (not codable): dropped
    machine_codings_skipped: int = 0  # unreviewed coder-assist suggestions: not human coding
    offset_adjusted_sources: list[str] = field(default_factory=list)  # offsets counted over LF-normalised text or UTF-16 units

    def summary(self) -> str:
        if self.file.lower().endswith(".qdc"):
            return f"{self.file}: {len(self.codes_added)} code(s) added to the template" + (
                ": " + "; ".join(self.codes_added) if self.codes_added else " (it had them all)")
        lines = [
            (f"{self.file}: {self.transcripts_added} transcript(s) added, {self.transcripts_matched} already present; "
             f"{len(self.codes_added)} code(s) added to the template; {self.decisions_added} coding decision(s) by "
             f"{len(self.users)} coder(s) ({', '.join(self.users) or '-'}) from {self.codings_read} coding(s)"),
            (f"spans: {self.spans_exact} on segment bounds, {self.spans_inexact} not aligned exactly (mapped by the overlap rule), "
             f"{self.spans_unmapped} on no codable segment (dropped)"),
        ]
        if not self.codings_read:
            lines.pop()
        extra = []
        if self.already_present:
            extra.append(f"{self.already_present} already accepted")
        if self.codings_on_themes:
            extra.append(f"{self.codings_on_themes} on themes (dropped)")
        if self.machine_codings_skipped:
            extra.append(f"{self.machine_codings_skipped} unreviewed machine suggestions skipped")
        if self.offset_adjusted_sources:
            extra.append("offsets re-counted for " + ", ".join(self.offset_adjusted_sources))
        if extra:
            lines.append("; ".join(extra))
        for s in self.sources_skipped:
            lines.append(f"skipped source: {s}")
        return "\n".join(lines)


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


def _choose_map(text: str, sels: list[tuple[int, int, str]]) -> tuple[str, list[int] | None]:
    """Pick the offset map under which the most selections' names (the selected text, as most
    tools write it) match the text; then the one that keeps the most selections inside the text;
    ties go to the offsets as written."""
    maps = _offset_maps(text)
    if len(maps) == 1:
        return "exact", None
    best, best_score = "exact", (-1, -1)
    for label, m in maps.items():
        matches = in_range = 0
        for s, e, name in sels:
            a, b = _apply(m, s), _apply(m, e, end=True)
            if a is None or b is None or b > len(text):
                continue
            in_range += 1  # without names, a reading that keeps every selection inside the text wins
            got, want = _collapse(text[a:b]), _collapse(name)
            if want and (got == want or (len(want) >= 20 and got.startswith(want.rstrip(".… ")[:60]))):
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


def _merge_codes(template: Template, rcodes: dict[str, _RefiCode], path) -> tuple[Template, dict[str, str], list[str]]:
    """Match REFI codes to the template's (ours by GUID, anyone's by path of names) and add
    the rest under their parent. Returns the template, REFI GUID -> code id, and the added paths."""
    by_guid = {code_guid(template, cid): cid for cid in template.codes}
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
            parsed = _parse_description(rc.description)
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


def import_qdpx(project, path, *, dry_run: bool = False) -> ImportReport:
    """Import a REFI-QDA project (.qdpx) from NVivo, ATLAS.ti, MAXQDA, QualCoder or coder-assist.

    Text sources become transcripts (with attributes from Cases/Variables), codings become
    accepted decisions by their users, mapped to the segments they cover: a segment is coded
    when the selection covers at least half of it, or when the whole selection lies inside it.
    Codes not in the template are added to it (under their parent, matched by path). A source
    already in the project under the same name and with the same text gets the codings; one
    with the same name and different text stops the import. All or nothing. With ``dry_run``
    everything is done and reported, then rolled back (the app's check before importing).
    """
    from ..app.pipeline import project_segmenter

    path = Path(path)
    report = ImportReport(file=str(path))
    arch = _Archive(path)
    try:
        qde = [i for n, i in arch.entries.items() if n.endswith(".qde") and "/" not in n]
        if not qde:
            raise InputError(path, "no project.qde at the top of the archive: not a REFI-QDA project")
        root = _parse_xml(arch.read(qde[0]), path, qde[0].filename)
        if _local(root) != "Project":
            raise InputError(path, f"{qde[0].filename}: the root element is <{_local(root)}>, not <Project>")

        users = {_norm_guid(u.get("guid")): (u.get("name") or u.get("id") or "").strip() for u in _grandkids(root, "Users", "User")}
        default_user = users.get(_norm_guid(root.get("creatingUserGUID"))) or "imported (unknown user)"
        cb = _kid(root, "CodeBook")
        rcodes = _read_codes(_kid(cb, "Codes") if cb is not None else None, path)
        variables = {_norm_guid(v.get("guid")): (v.get("name") or "").strip() for v in _grandkids(root, "Variables", "Variable")}
        source_attrs: dict[str, dict[str, str]] = {}
        for case in _grandkids(root, "Cases", "Case"):
            vals = {}
            for vv in _kids(case, "VariableValue"):
                target, value = _value(vv)
                if variables.get(target) and value is not None:
                    vals[variables[target]] = value
            for ref in _kids(case, "SourceRef"):
                source_attrs.setdefault(_norm_guid(ref.get("targetGUID")), {}).update(vals)

        # Sources: text, name, attributes, and the codings on them (offsets still as written).
        sources = []
        sources_el = _kid(root, "Sources")
        for src in (list(sources_el) if sources_el is not None else []):
            kind = _local(src)
            label = src.get("name") or src.get("guid") or "?"
            if kind != "TextSource":
                n = sum(1 for _ in src.iter(f"{{{PROJECT_NS}}}Coding"))
                report.sources_skipped.append(f"{label} ({kind}: only text sources are imported; {n} coding(s) not imported)")
                continue
            g = _norm_guid(src.get("guid"))
            ptc = _kid(src, "PlainTextContent")
            ptp = (src.get("plainTextPath") or "").strip()
            text = None
            if ptc is not None and ptc.text:
                text = ptc.text
            elif ptp.lower().startswith("internal://"):
                entry = ptp[len("internal://"):]
                info = arch.find("sources/" + entry) or arch.find(entry)
                if info is None:
                    raise InputError(path, f"source {label!r}: {ptp} is not in the archive")
                text = _decode_source(arch.read(info), path, info.filename)
            elif not ptp and arch.find(f"sources/{g}.txt") is not None:
                # Neither content nor path: the layout's conventional file name, where present.
                info = arch.find(f"sources/{g}.txt")
                text = _decode_source(arch.read(info), path, info.filename)
            elif ptp:
                # relative:// and absolute:// point outside the archive: never read files that an
                # untrusted project names on this machine.
                report.sources_skipped.append(f"{label} (text at {ptp}, outside the archive: not read)")
                continue
            if not text or not text.strip():
                report.sources_skipped.append(f"{label} (no plain text)")
                continue
            attrs = dict(source_attrs.get(g, {}))
            for vv in _kids(src, "VariableValue"):
                target, value = _value(vv)
                if variables.get(target) and value is not None:
                    attrs[variables[target]] = value
            sels = []
            for sel in _kids(src, "PlainTextSelection"):
                try:
                    s, e = int(sel.get("startPosition")), int(sel.get("endPosition"))
                except (TypeError, ValueError):
                    raise InputError(path, f"source {label!r}: selection {sel.get('guid')} has no valid start/end position") from None
                sel_user = users.get(_norm_guid(sel.get("creatingUser")))
                cods = []
                for c in _kids(sel, "Coding"):
                    ref = _kid(c, "CodeRef")
                    cods.append((_norm_guid(ref.get("targetGUID")) if ref is not None else "",
                                 users.get(_norm_guid(c.get("creatingUser"))) or sel_user or default_user,
                                 c.get("creationDateTime") or sel.get("creationDateTime")))
                sels.append((min(s, e), max(s, e), sel.get("name") or "", cods))
            sources.append((label.strip(), text, attrs, sels))

        # Transcripts: new ones are segmented with the project's settings; known ones must match.
        seg = project_segmenter(project)
        existing = {r[0]: (r[1], r[2]) for r in project.conn.execute("SELECT name, id, text FROM transcripts")}
        new_transcripts, new_segments, plan = [], {}, []
        seen_names: set[str] = set()
        for name, text, attrs, sels in sources:
            base, k = name, 2
            while name in seen_names:
                name, k = f"{base} ({k})", k + 1
            seen_names.add(name)
            if name in existing:
                if existing[name][1] != text:
                    raise InputError(path, f"source {name!r}: the project already has a transcript of that name with different text "
                                           "(rename one of them)")
                report.transcripts_matched += 1
                spans = [(r[0], r[1], r[2]) for r in project.conn.execute(
                    'SELECT id, start, "end" FROM segments WHERE transcript_id = ? ORDER BY start', (existing[name][0],))]
            else:
                turns = parse_speaker_text(text, f"{path}: {name}")
                t = Transcript(name=name, text=text, turns=turns, source_path=f"{path}#{name}", format="qdpx", encoding="utf-8",
                               attributes=attrs)
                new_transcripts.append(t)
                new_segments[name] = seg.segments(t)
                spans = [(None, s.start, s.end) for s in new_segments[name]]
                report.transcripts_added += 1
            label, m = _choose_map(text, [(s, e, n) for s, e, n, _ in sels])
            if label != "exact":
                report.offset_adjusted_sources.append(f"{name} ({label})")
            plan.append((name, text, spans, sels, m))

        # Codes: ours by GUID, anyone's by path; the rest are added to the template.
        template, code_map, report.codes_added = _merge_codes(project.template(), rcodes, path)
        added_paths = bool(report.codes_added)

        # Codings -> (transcript, segment span, code, coder, time).
        todo: list[tuple[str, int, int, str, str, str]] = []
        for name, text, spans, sels, m in plan:
            for s, e, _, cods in sels:
                a, b = _apply(m, s), _apply(m, e, end=True)
                human = [c for c in cods if c[1] != MACHINE_USER]
                report.codings_read += len(cods)
                report.machine_codings_skipped += len(cods) - len(human)
                if not human:
                    continue
                if a is None or b is None or b > len(text) or a >= b:
                    raise InputError(path, f"source {name!r}: a selection ({s}-{e}) lies outside its text ({len(text)} characters)")
                covered = [(sid, ss, se) for sid, ss, se in spans
                           if min(b, se) - max(a, ss) > 0 and (min(b, se) - max(a, ss) >= 0.5 * (se - ss) or (ss <= a and b <= se))]
                if not covered:
                    report.spans_unmapped += 1
                    continue
                if covered[0][1] == a and covered[-1][2] == b:
                    report.spans_exact += 1
                else:
                    report.spans_inexact += 1
                for code_g, coder, at in human:
                    cid = code_map.get(code_g)
                    if cid is None:
                        raise InputError(path, f"source {name!r}: a coding refers to code {code_g}, which is not in the codebook")
                    if not template.codes[cid].is_leaf:
                        report.codings_on_themes += 1
                        continue
                    for _, ss, se in covered:
                        todo.append((name, ss, se, cid, coder, _time(at)))

        # Write: all in one transaction.
        try:
            _write_import(project, path, report, template if added_paths else None, new_transcripts, new_segments, todo, dry_run)
        except _DryRun:
            pass
        return report
    except CoderAssistError:
        raise
    except (etree.LxmlError, KeyError, ValueError) as exc:
        raise InputError(path, f"cannot read the REFI-QDA project: {type(exc).__name__}: {exc}") from exc
    finally:
        arch.close()


class _DryRun(Exception):
    """Raised inside the import transaction to roll a dry run back."""


def _write_import(project, path: Path, report: ImportReport, template: Template | None, new_transcripts, new_segments, todo, dry_run: bool) -> None:
    with project.transaction():
        if template is not None:
            project.set_template(template)
        if new_transcripts:
            project.add_transcripts(new_transcripts, new_segments)
        seg_id = {(r[0], r[1], r[2]): r[3] for r in project.conn.execute(
            'SELECT t.name, s.start, s."end", s.id FROM segments s JOIN transcripts t ON t.id = s.transcript_id')}
        cur = project.current_decisions()
        have = set() if cur.empty else {
            (int(r.segment_id), r.code_id, r.coder) for r in cur.itertuples(index=False) if r.action == "accept"}
        note = f"imported from REFI-QDA {path.name}"
        rows, users_used = [], set()
        for name, ss, se, cid, coder, at in sorted(todo, key=lambda x: x[5]):
            key = (seg_id[(name, ss, se)], cid, coder)
            if key in have:
                report.already_present += 1
                continue
            have.add(key)
            users_used.add(coder)
            rows.append((key[0], cid, coder, at, note))
        project.conn.executemany(
            "INSERT INTO decisions(segment_id, code_id, action, coder, created_at, note) VALUES (?, ?, 'accept', ?, ?, ?)", rows)
        report.decisions_added = len(rows)
        report.users = sorted(users_used)
        if dry_run:
            raise _DryRun


def import_qdc(project, path, *, dry_run: bool = False) -> ImportReport:
    """Add the codes of a REFI-QDA codebook (.qdc) that the project's template lacks (matched
    as in :func:`import_qdpx`). Adds only: nothing is renamed or removed. To start a project
    from a codebook instead: ``coder-assist init PROJECT --template codebook.qdc``."""
    path = Path(path)
    read_qdc(path)  # the same checks as a template of its own (safe XML, a usable tree)
    root = _parse_xml(path.read_bytes(), path)
    template, _, added = _merge_codes(project.template(), _read_codes(_kid(root, "Codes"), path), path)
    report = ImportReport(file=str(path), codes_added=added)
    if added and not dry_run:
        project.set_template(template)
    return report


__all__ = ["MACHINE_USER", "ImportReport", "code_guid", "import_qdc", "import_qdpx", "read_qdc", "write_qdc", "write_qdpx"]

