"""The coding template: a hierarchy of codes with descriptions and example excerpts.

YAML format (see README, "Template format"): a top-level mapping with ``name``, optional
``description``/``source``/``version``, and ``codes``: a list of nodes. A node has ``name``
and ``description`` and optionally ``include``, ``exclude``, ``examples``,
``counter_examples``, ``color``, ``id``, ``exclusive`` (its children are mutually exclusive)
and ``children``. Nodes may instead be listed flat with ``parent: <name or id>``.
Codes with no children are the codes that get suggested.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from .errors import TemplateError

PATH_SEP = " > "


@dataclass(frozen=True)
class Example:
    text: str
    source: str = ""


@dataclass
class Code:
    id: str
    name: str
    path: tuple[str, ...]
    parent_id: str | None = None
    description: str = ""
    include: str = ""
    exclude: str = ""
    examples: list[Example] = field(default_factory=list)
    counter_examples: list[Example] = field(default_factory=list)
    color: str | None = None
    exclusive: bool = False  # children mutually exclusive
    children: list[str] = field(default_factory=list)  # child ids, in order

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def path_str(self) -> str:
        return PATH_SEP.join(self.path)

    @property
    def depth(self) -> int:
        return len(self.path) - 1


@dataclass
class Template:
    name: str
    codes: dict[str, Code]  # id -> code, in document (depth-first) order
    description: str = ""
    source: str = ""
    version: str = "1"
    path: str | None = None

    def roots(self) -> list[Code]:
        return [c for c in self.codes.values() if c.parent_id is None]

    def leaves(self) -> list[Code]:
        return [c for c in self.codes.values() if c.is_leaf]

    def get(self, key: str) -> Code:
        """Look a code up by id, full path (``A > B > C``) or unique name."""
        if key in self.codes:
            return self.codes[key]
        for c in self.codes.values():
            if c.path_str == key:
                return c
        named = [c for c in self.codes.values() if c.name == key]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise KeyError(f"code name {key!r} is ambiguous; use its path: " + "; ".join(c.path_str for c in named))
        raise KeyError(f"no code {key!r} in template {self.name!r}")

    def exclusive_siblings(self, code_id: str) -> list[str]:
        """Codes that cannot co-occur with ``code_id`` (siblings under an exclusive parent)."""
        code = self.codes[code_id]
        parent = self.codes.get(code.parent_id) if code.parent_id else None
        if parent is None or not parent.exclusive:
            return []
        return [c for c in parent.children if c != code_id]

    def frame(self) -> pd.DataFrame:
        """One row per code: id, path, name, depth, is_leaf, description, n_examples ..."""
        return pd.DataFrame(
            [
                {
                    "id": c.id,
                    "path": c.path_str,
                    "name": c.name,
                    "parent_id": c.parent_id,
                    "depth": c.depth,
                    "is_leaf": c.is_leaf,
                    "exclusive": c.exclusive,
                    "description": c.description,
                    "n_examples": len(c.examples),
                    "n_counter_examples": len(c.counter_examples),
                    "color": c.color,
                }
                for c in self.codes.values()
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        def node(c: Code) -> dict[str, Any]:
            d: dict[str, Any] = {"name": c.name, "id": c.id, "description": c.description}
            for key, val in (("include", c.include), ("exclude", c.exclude), ("color", c.color)):
                if val:
                    d[key] = val
            if c.exclusive:
                d["exclusive"] = True
            if c.examples:
                d["examples"] = [{"text": e.text, "source": e.source} if e.source else {"text": e.text} for e in c.examples]
            if c.counter_examples:
                d["counter_examples"] = [{"text": e.text, "source": e.source} if e.source else {"text": e.text} for e in c.counter_examples]
            if c.children:
                d["children"] = [node(self.codes[k]) for k in c.children]
            return d

        out: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            out["description"] = self.description
        if self.source:
            out["source"] = self.source
        out["codes"] = [node(c) for c in self.roots()]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)


def slugify(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "code"


_NODE_KEYS = {"name", "id", "description", "include", "exclude", "examples", "counter_examples", "color", "exclusive", "children", "parent"}


def _examples(raw: Any, where: str, src: str, code: str) -> list[Example]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TemplateError(src, f"'{where}' must be a list of excerpts", code)
    out = []
    for i, item in enumerate(raw, 1):
        if isinstance(item, str):
            text, source = item, ""
        elif isinstance(item, dict) and isinstance(item.get("text"), str):
            text, source = item["text"], str(item.get("source") or "")
        else:
            raise TemplateError(src, f"{where} #{i} must be a string or a mapping with 'text'", code)
        if not text.strip():
            raise TemplateError(src, f"{where} #{i} is empty", code)
        out.append(Example(text.strip(), source.strip()))
    return out


def parse_template(data: Any, source: str | Path | None = None) -> Template:
    """Build and validate a :class:`Template` from parsed YAML/JSON data."""
    src = str(source) if source else "<template>"
    if not isinstance(data, dict):
        raise TemplateError(src, "the template must be a mapping with a 'codes' list")
    codes_raw = data.get("codes")
    if not isinstance(codes_raw, list) or not codes_raw:
        raise TemplateError(src, "the template needs a non-empty 'codes' list")

    # Work on a copy: the markers _parse_nodes adds must not leak into the caller's data.
    flat = _parse_nodes(copy.deepcopy(codes_raw), src)
    by_marker = _check_nodes(flat, src)
    parent_of = _resolve_parents(flat, by_marker, src)
    _check_tree(by_marker, parent_of, src)

    # Order: depth-first in document order, so flat and nested files give the same tree.
    children_of: dict[str | None, list[str]] = {}
    for node, _, _ in flat:
        children_of.setdefault(parent_of[node["__marker__"]], []).append(node["__marker__"])
    ordered: list[str] = []

    def dfs(parent: str | None) -> None:
        for m in children_of.get(parent, []):
            ordered.append(m)
            dfs(m)

    dfs(None)

    codes: dict[str, Code] = {}
    marker_to_id: dict[str, str] = {}
    paths_seen: set[tuple[str, ...]] = set()
    for m in ordered:
        node = by_marker[m]
        path = _path_of(m, by_marker, parent_of)
        if path in paths_seen:
            raise TemplateError(src, f"duplicate code: {PATH_SEP.join(path)!r} appears twice under the same parent", node["name"].strip())
        paths_seen.add(path)
        cid = str(node.get("id") or "/".join(slugify(p) for p in path))
        if cid in codes:
            raise TemplateError(src, f"duplicate code id {cid!r}", node["name"].strip())
        marker_to_id[m] = cid
        parent_id = marker_to_id[parent_of[m]] if parent_of[m] else None
        codes[cid] = _code_from_node(node, cid, path, parent_id, is_leaf=not children_of.get(m), src=src)
    for cid, code in codes.items():
        if code.parent_id:
            codes[code.parent_id].children.append(cid)

    return Template(
        name=str(data.get("name") or Path(src).stem),
        codes=codes,
        description=" ".join(str(data.get("description") or "").split()),
        source=str(data.get("source") or ""),
        version=str(data.get("version") or "1"),
        path=str(source) if source else None,
    )


def _parse_nodes(codes_raw: Any, src: str) -> list[tuple[dict, str | None, bool]]:
    """Flatten the nested form into (node, parent reference, nested) triples, marking each node.

    A nested node's reference is its parent's marker; a flat node's is its own ``parent`` field
    (an id or a name, resolved later). Marks ``node["__marker__"]`` in place.
    """
    flat: list[tuple[dict, str | None, bool]] = []

    def walk(nodes: Any, parent_marker: str | None) -> None:
        if not isinstance(nodes, list):
            raise TemplateError(src, "'children' must be a list of codes", parent_marker)
        for node in nodes:
            if not isinstance(node, dict):
                raise TemplateError(src, f"each code must be a mapping with a name, got {node!r}", parent_marker)
            marker = f"#{len(flat)}"
            if parent_marker is not None and "parent" in node:
                raise TemplateError(src, "a nested code cannot also name a 'parent'", str(node.get("name")))
            flat.append((node, parent_marker, True) if parent_marker is not None else (node, node.get("parent"), False))
            node["__marker__"] = marker
            if "children" in node and node["children"] is not None:
                walk(node["children"], marker)

    walk(codes_raw, None)
    return flat


def _check_nodes(flat: list[tuple[dict, str | None, bool]], src: str) -> dict[str, dict]:
    """Every node has a name and only known fields; returns marker -> node."""
    by_marker: dict[str, dict] = {}
    for node, _, _ in flat:
        name = node.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TemplateError(src, "a code has an empty or missing name", node.get("id") and str(node.get("id")))
        unknown = set(node) - _NODE_KEYS - {"__marker__"}
        if unknown:
            raise TemplateError(src, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(_NODE_KEYS)}", name)
        by_marker[node["__marker__"]] = node
    return by_marker


def _resolve_parents(flat: list[tuple[dict, str | None, bool]], by_marker: dict[str, dict], src: str) -> dict[str, str | None]:
    """marker -> parent marker, with flat ``parent`` references resolved by id or name."""

    def resolve(ref: Any, child: str) -> str:
        matches = [m for m, n in by_marker.items() if n.get("id") == ref or n.get("name", "").strip() == str(ref).strip()]
        if not matches:
            raise TemplateError(src, f"unknown parent {ref!r}", child)
        if len(matches) > 1:
            raise TemplateError(src, f"parent {ref!r} is ambiguous (several codes have that name)", child)
        return matches[0]

    parent_of: dict[str, str | None] = {}
    for node, pref, nested in flat:
        m = node["__marker__"]
        if pref is None:
            parent_of[m] = None
        elif nested:
            parent_of[m] = pref
        else:
            parent_of[m] = resolve(pref, node["name"].strip())
    return parent_of


def _check_tree(by_marker: dict[str, dict], parent_of: dict[str, str | None], src: str) -> None:
    """The parent links form a tree: no cycle (checked before any path is computed)."""
    for m in by_marker:
        seen = [m]
        p = parent_of[m]
        while p is not None:
            if p in seen:
                cycle = " -> ".join(by_marker[x]["name"].strip() for x in seen[seen.index(p):] + [p])
                raise TemplateError(src, f"the parent links form a cycle: {cycle}", by_marker[m]["name"].strip())
            seen.append(p)
            p = parent_of[p]


def _path_of(m: str | None, by_marker: dict[str, dict], parent_of: dict[str, str | None]) -> tuple[str, ...]:
    names = []
    while m is not None:
        names.append(by_marker[m]["name"].strip())
        m = parent_of[m]
    return tuple(reversed(names))


def _code_from_node(node: dict, cid: str, path: tuple[str, ...], parent_id: str | None, *, is_leaf: bool, src: str) -> Code:
    """One validated :class:`Code` (children are linked by the caller)."""
    name = node["name"].strip()
    desc = node.get("description") or ""
    if not isinstance(desc, str):
        raise TemplateError(src, "'description' must be text", name)
    examples = _examples(node.get("examples"), "examples", src, name)
    counter = _examples(node.get("counter_examples"), "counter_examples", src, name)
    if is_leaf and not desc.strip() and not examples:
        raise TemplateError(src, "a code needs a description or at least one example excerpt", name)
    color = node.get("color")
    if color is not None and not (isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color)):
        raise TemplateError(src, f"color must look like '#1f77b4', got {color!r}", name)
    return Code(
        id=cid,
        name=name,
        path=path,
        parent_id=parent_id,
        description=" ".join(desc.split()),
        include=" ".join(str(node.get("include") or "").split()),
        exclude=" ".join(str(node.get("exclude") or "").split()),
        examples=examples,
        counter_examples=counter,
        color=color,
        exclusive=bool(node.get("exclusive", False)),
    )


def iter_code_texts(codes: Iterable[Code]) -> Iterable[tuple[str, str, str]]:
    """(code id, kind, text) for every description, example and counter-example.

    The texts a code is known by, in the order the template gives them: app/revise_project.py
    and bench/revise_holdout.py build their per-code reference frames from it.
    """
    for c in codes:
        if c.description:
            yield c.id, "description", c.description
        for e in c.examples:
            yield c.id, "example", e.text
        for e in c.counter_examples:
            yield c.id, "counter_example", e.text
