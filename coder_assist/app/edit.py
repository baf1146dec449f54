"""Template edits, with the project's decisions following them.

Two layers:

* Pure edits of a :class:`~coder_assist.core.template.Template` (``add_code``, ``rename_code``,
  ``move_code``, ``merge_codes``, ``split_code``, ``add_example``, ``update_code``): each
  returns a new, validated template and never touches its argument. Code ids are kept through
  renames and moves, so every decision, suggestion and example stays attached to its code.
* Project edits (``apply_*`` and :func:`replace_template`): one transaction each, reading the
  template as it is in the database at that moment (two people editing at once queue, and
  neither edit is lost), writing it with :meth:`Project.set_template`, and re-pointing the
  decisions the edit concerns. Nothing is silently dropped:

  - **merge**: every decision on the merged code moves to the target code;
  - **split**: every segment with a decision on the split code must be assigned to one of the
    new codes (all coders' decisions on that segment go there); an unassigned segment refuses
    the split;
  - **replace** (a new template from YAML): every code that would disappear while it holds
    decisions must be mapped to a code of the new template, or explicitly kept as a retired
    code (inactive: its decisions stay in the log under it and count nowhere).

  A decision keeps who made it, when, what it was and which suggestion it answered; only its
  code is re-pointed. Each edit is appended to the project's template history
  (:func:`history`: what was done, by whom, when, and which decision ids moved where), so the
  original codes can always be recovered. Codes that leave the template stay in the ``codes``
  table, inactive, as the store keeps them.

New codes get ids that no code of the project has ever had (a retired code's id is never
reused, which would bring its old decisions back).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from ..core.template import PATH_SEP, Template, parse_template, slugify
from ..core.errors import ProjectError, TemplateError
from ..store.project import Project

#: meta keys: the template history (JSON list) and a counter bumped whenever decisions are
#: re-pointed, which tells readers caching the decision log (coder_assist.app.review) to re-read it.
HISTORY_KEY = "template_history"
EPOCH_KEY = "decisions_epoch"


# --------------------------------------------------------------------------- the nested form


def _tree(template: Template) -> dict[str, Any]:
    return copy.deepcopy(template.to_dict())


def _find(nodes: list[dict], code_id: str) -> tuple[list[dict], int] | None:
    """(the list holding the node, its index) for a code id, searching depth-first."""
    for i, node in enumerate(nodes):
        if node.get("id") == code_id:
            return nodes, i
        found = _find(node.get("children") or [], code_id)
        if found:
            return found
    return None


def _node(tree: dict, code_id: str) -> dict:
    found = _find(tree["codes"], code_id)
    if found is None:
        raise ProjectError(f"no code {code_id!r} in the template")
    siblings, i = found
    return siblings[i]


def _children_list(tree: dict, parent_id: str | None) -> list[dict]:
    if parent_id is None:
        return tree["codes"]
    parent = _node(tree, parent_id)
    return parent.setdefault("children", [])


def _parse(tree: dict, template: Template) -> Template:
    for node in _walk(tree["codes"]):
        if "children" in node and not node["children"]:
            del node["children"]
    try:
        out = parse_template(tree, source=template.path or "<template>")
    except TemplateError as exc:
        hint = ""
        if "needs a description" in exc.problem and exc.code in {c.name for c in template.codes.values() if not c.is_leaf}:
            hint = " (it would have no sub-codes left, which makes it a code of its own: give it a description first)"
        raise ProjectError(f"the edit would make an invalid template: code {exc.code!r}: {exc.problem}{hint}") from exc
    out.path = template.path
    return out


def _walk(nodes: list[dict]) -> Iterable[dict]:
    for node in nodes:
        yield node
        yield from _walk(node.get("children") or [])


def _examples(items: Iterable) -> list[dict]:
    out = []
    for e in items:
        text, source = (e.text, e.source) if hasattr(e, "text") else (e.get("text"), e.get("source", ""))
        out.append({"text": text, "source": source} if source else {"text": text})
    return out


def new_code_id(template: Template, path: Sequence[str], taken: Iterable[str] = ()) -> str:
    """A fresh id for a code at ``path``: the slugged path, with ``-2``, ``-3``... if that id
    is in the template or in ``taken`` (the project's retired codes)."""
    used = set(template.codes) | set(taken)
    base = "/".join(slugify(p) for p in path)
    cid, n = base, 1
    while cid in used:
        n += 1
        cid = f"{base}-{n}"
    return cid


def _clean_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise ProjectError("a code needs a name")
    if PATH_SEP.strip() in name:
        raise ProjectError(f"a code name cannot contain {PATH_SEP.strip()!r} (it separates levels of the path)")
    return name


# --------------------------------------------------------------------------- pure edits


def add_code(
    template: Template,
    name: str,
    *,
    parent_id: str | None = None,
    description: str = "",
    examples: Sequence[str] = (),
    taken: Iterable[str] = (),
) -> tuple[Template, str]:
    """Add a code under ``parent_id`` (``None``: a new theme at the top). Returns the new
    template and the new code's id."""
    name = _clean_name(name)
    if parent_id is not None and parent_id not in template.codes:
        raise ProjectError(f"no code {parent_id!r} in the template")
    parent_path = template.codes[parent_id].path if parent_id else ()
    cid = new_code_id(template, (*parent_path, name), taken)
    tree = _tree(template)
    node: dict[str, Any] = {"name": name, "id": cid, "description": " ".join(description.split())}
    ex = [" ".join(str(e).split()) for e in examples if str(e).strip()]
    if ex:
        node["examples"] = [{"text": e} for e in ex]
    _children_list(tree, parent_id).append(node)
    return _parse(tree, template), cid


def rename_code(template: Template, code_id: str, new_name: str) -> Template:
    """Rename a code. Its id stays, so its decisions, suggestions and examples stay with it."""
    tree = _tree(template)
    _node(tree, code_id)["name"] = _clean_name(new_name)
    return _parse(tree, template)


def update_code(template: Template, code_id: str, **fields: str) -> Template:
    """Change a code's ``description``, ``include`` or ``exclude`` note."""
    allowed = {"description", "include", "exclude"}
    if set(fields) - allowed:
        raise ProjectError(f"only {sorted(allowed)} can be changed here")
    tree = _tree(template)
    node = _node(tree, code_id)
    for key, value in fields.items():
        value = " ".join(str(value or "").split())
        if value:
            node[key] = value
        else:
            node.pop(key, None)
    return _parse(tree, template)


def move_code(template: Template, code_id: str, new_parent_id: str | None, position: int | None = None) -> Template:
    """Move a code (with its sub-codes) under another parent (``None``: to the top level), at
    ``position`` among its new siblings (default: last)."""
    if new_parent_id is not None:
        if new_parent_id not in template.codes:
            raise ProjectError(f"no code {new_parent_id!r} in the template")
        p: str | None = new_parent_id
        while p is not None:
            if p == code_id:
                raise ProjectError("a code cannot be moved under itself or one of its own sub-codes")
            p = template.codes[p].parent_id
    tree = _tree(template)
    siblings, i = _find(tree["codes"], code_id) or (None, None)
    if siblings is None:
        raise ProjectError(f"no code {code_id!r} in the template")
    node = siblings.pop(i)
    target = _children_list(tree, new_parent_id)
    target.insert(len(target) if position is None else max(0, min(position, len(target))), node)
    return _parse(tree, template)


def merge_codes(template: Template, source_id: str, target_id: str) -> Template:
    """Merge code ``source_id`` into ``target_id``: the source leaves the template and its
    example excerpts and counter-examples join the target's (duplicates dropped). Both must be
    codes that get suggested (no sub-codes)."""
    if source_id == target_id:
        raise ProjectError("choose two different codes to merge")
    for cid in (source_id, target_id):
        if cid not in template.codes:
            raise ProjectError(f"no code {cid!r} in the template")
        if not template.codes[cid].is_leaf:
            raise ProjectError(f"{template.codes[cid].path_str!r} has sub-codes; merge codes without sub-codes (move or merge its sub-codes first)")
    src = template.codes[source_id]
    tree = _tree(template)
    target = _node(tree, target_id)
    for key, items in (("examples", src.examples), ("counter_examples", src.counter_examples)):
        have = {e["text"] for e in target.get(key, [])}
        extra = [e for e in _examples(items) if e["text"] not in have]
        if extra:
            target[key] = target.get(key, []) + extra
    siblings, i = _find(tree["codes"], source_id)  # type: ignore[misc]
    siblings.pop(i)
    return _parse(tree, template)


@dataclass(frozen=True)
class Part:
    """One of the codes a split makes."""

    name: str
    description: str = ""


def split_code(
    template: Template,
    code_id: str,
    parts: Sequence[Part | Mapping[str, str]],
    *,
    examples: Mapping[int, int] | None = None,
    taken: Iterable[str] = (),
) -> tuple[Template, list[str]]:
    """Split a code into ``parts`` (at least two): new codes in its place, under its parent.
    ``examples`` maps each example excerpt of the code (by index) to a part (by index); an
    example not mapped goes to the first part. Counter-examples go to every part. Returns the
    new template and the parts' ids, in order."""
    if code_id not in template.codes:
        raise ProjectError(f"no code {code_id!r} in the template")
    code = template.codes[code_id]
    if not code.is_leaf:
        raise ProjectError(f"{code.path_str!r} has sub-codes; split a code without sub-codes")
    parts = [p if isinstance(p, Part) else Part(p.get("name", ""), p.get("description", "")) for p in parts]
    if len(parts) < 2:
        raise ProjectError("a split needs at least two new codes")
    names = [_clean_name(p.name) for p in parts]
    if len({n.casefold() for n in names}) < len(names):
        raise ProjectError("the new codes need different names")
    examples = dict(examples or {})
    bad = {i: j for i, j in examples.items() if not (0 <= i < len(code.examples)) or not (0 <= j < len(parts))}
    if bad:
        raise ProjectError(f"example assignment out of range: {bad}")
    parent_path = code.path[:-1]
    ids: list[str] = []
    taken = set(taken) | {code_id}
    nodes = []
    for k, (name, part) in enumerate(zip(names, parts)):
        cid = new_code_id(template, (*parent_path, name), taken | set(ids))
        ids.append(cid)
        node: dict[str, Any] = {"name": name, "id": cid, "description": " ".join(part.description.split())}
        mine = [e for i, e in enumerate(code.examples) if examples.get(i, 0) == k]
        if mine:
            node["examples"] = _examples(mine)
        if code.counter_examples:
            node["counter_examples"] = _examples(code.counter_examples)
        if code.color and k == 0:
            node["color"] = code.color
        nodes.append(node)
    tree = _tree(template)
    siblings, i = _find(tree["codes"], code_id)  # type: ignore[misc]
    siblings[i : i + 1] = nodes
    return _parse(tree, template), ids


def add_example(template: Template, code_id: str, text: str, source: str = "") -> Template:
    """Add an example excerpt to a code (a code without sub-codes)."""
    if code_id not in template.codes:
        raise ProjectError(f"no code {code_id!r} in the template")
    if not template.codes[code_id].is_leaf:
        raise ProjectError(f"{template.codes[code_id].path_str!r} has sub-codes; examples belong to the codes that get suggested")
    text = " ".join(str(text or "").split())
    if not text:
        raise ProjectError("the example is empty")
    if any(e.text == text for e in template.codes[code_id].examples):
        raise ProjectError("that excerpt is already an example of this code")
    tree = _tree(template)
    node = _node(tree, code_id)
    node["examples"] = node.get("examples", []) + [{"text": text, "source": source} if source else {"text": text}]
    return _parse(tree, template)


# --------------------------------------------------------------------------- the project


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _set_meta(project: Project, key: str, value: str) -> None:
    project.conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value)
    )


def history(project: Project) -> list[dict]:
    """The project's template edits, oldest first."""
    return json.loads(project.meta(HISTORY_KEY) or "[]")


def _record(project: Project, entry: dict, moved: Mapping[str, list[int]] | None = None) -> None:
    entry = {"at": _now(), **entry}
    if moved:
        entry["moved_decisions"] = {k: v for k, v in moved.items() if v}
        _set_meta(project, EPOCH_KEY, str(int(project.meta(EPOCH_KEY) or 0) + 1))
    _set_meta(project, HISTORY_KEY, json.dumps(history(project) + [entry], ensure_ascii=False))


def _retired_ids(project: Project) -> set[str]:
    return {r[0] for r in project.conn.execute("SELECT id FROM codes")}


def decision_count(project: Project, code_id: str) -> int:
    """Decisions (undo events included) that name this code."""
    return project.conn.execute("SELECT COUNT(*) FROM decisions WHERE code_id = ?", (code_id,)).fetchone()[0]


def _has_decisions(project: Project, code_id: str) -> bool:
    return project.conn.execute("SELECT 1 FROM decisions WHERE code_id = ? LIMIT 1", (code_id,)).fetchone() is not None


def _check_parent(project: Project, template: Template, parent_id: str | None) -> None:
    """A code that has decisions cannot get sub-codes: it would stop being a code that is
    applied to passages, and its decisions would hang on a theme."""
    if parent_id is not None and template.codes[parent_id].is_leaf and _has_decisions(project, parent_id):
        raise ProjectError(
            f"{template.codes[parent_id].path_str!r} has decisions, so it cannot get sub-codes; "
            "split it instead, or add the new code next to it"
        )


def _move_decisions(project: Project, source_id: str, target_id: str, segment_ids: Sequence[int] | None = None) -> list[int]:
    where, args = "code_id = ?", [source_id]
    if segment_ids is not None:
        if not segment_ids:
            return []
        where += f" AND segment_id IN ({', '.join('?' * len(segment_ids))})"
        args += [int(s) for s in segment_ids]
    ids = [r[0] for r in project.conn.execute(f"SELECT id FROM decisions WHERE {where} ORDER BY id", args)]
    if ids:
        project.conn.execute(f"UPDATE decisions SET code_id = ? WHERE {where}", [target_id, *args])
    return ids


def apply_add_code(project: Project, name: str, *, parent_id: str | None = None, description: str = "",
                   examples: Sequence[str] = (), coder: str | None = None) -> str:
    with project.transaction():
        template = project.template()
        if parent_id is not None and parent_id not in template.codes:
            raise ProjectError(f"no code {parent_id!r} in the template")
        _check_parent(project, template, parent_id)
        new, cid = add_code(template, name, parent_id=parent_id, description=description, examples=examples, taken=_retired_ids(project))
        project.set_template(new)
        _record(project, {"op": "add", "code": cid, "path": new.codes[cid].path_str, "coder": coder})
    return cid


def apply_rename(project: Project, code_id: str, new_name: str, *, coder: str | None = None) -> None:
    with project.transaction():
        template = project.template()
        new = rename_code(template, code_id, new_name)
        project.set_template(new)
        _record(project, {"op": "rename", "code": code_id, "from": template.codes[code_id].path_str, "to": new.codes[code_id].path_str, "coder": coder})


def apply_update(project: Project, code_id: str, *, coder: str | None = None, **fields: str) -> None:
    with project.transaction():
        template = project.template()
        if code_id not in template.codes:
            raise ProjectError(f"no code {code_id!r} in the template")
        project.set_template(update_code(template, code_id, **fields))
        _record(project, {"op": "update", "code": code_id, "fields": sorted(fields), "coder": coder})


def apply_move(project: Project, code_id: str, new_parent_id: str | None, *, position: int | None = None, coder: str | None = None) -> None:
    with project.transaction():
        template = project.template()
        if new_parent_id is not None and new_parent_id in template.codes:
            _check_parent(project, template, new_parent_id)
        new = move_code(template, code_id, new_parent_id, position)
        project.set_template(new)
        _record(project, {"op": "move", "code": code_id, "from": template.codes[code_id].path_str, "to": new.codes[code_id].path_str, "coder": coder})


def apply_merge(project: Project, source_id: str, target_id: str, *, coder: str | None = None) -> int:
    """Merge ``source_id`` into ``target_id`` and move every decision on the source to the
    target. Returns the number of decisions moved. Where a coder had decided both codes on
    the same passage, that coder's latest decision on the passage is the one in force."""
    with project.transaction():
        template = project.template()
        new = merge_codes(template, source_id, target_id)
        project.set_template(new)
        moved = _move_decisions(project, source_id, target_id)
        _record(project, {"op": "merge", "code": source_id, "into": target_id, "from": template.codes[source_id].path_str,
                          "to": template.codes[target_id].path_str, "coder": coder}, {target_id: moved})
    return len(moved)


def split_segments(project: Project, code_id: str) -> list[int]:
    """Segments with at least one decision (any coder, any action) on this code: the ones a
    split must assign."""
    return [r[0] for r in project.conn.execute("SELECT DISTINCT segment_id FROM decisions WHERE code_id = ? ORDER BY segment_id", (code_id,))]


def apply_split(
    project: Project,
    code_id: str,
    parts: Sequence[Part | Mapping[str, str]],
    assignment: Mapping[int, int],
    *,
    examples: Mapping[int, int] | None = None,
    coder: str | None = None,
) -> list[str]:
    """Split a code into ``parts`` and move its decisions: ``assignment`` maps every segment
    with a decision on the code (:func:`split_segments`) to a part index; all decisions on that
    segment and code, every coder's, go to that part. Refused, with nothing changed, if any
    such segment is unassigned. Returns the new codes' ids."""
    with project.transaction():
        template = project.template()
        needed = split_segments(project, code_id)
        missing = [s for s in needed if s not in assignment]
        if missing:
            raise ProjectError(
                f"{len(missing)} passage(s) with decisions on this code are not assigned to a new code "
                f"(segment ids {', '.join(map(str, missing[:10]))}{'…' if len(missing) > 10 else ''}); nothing was changed"
            )
        bad = {s: k for s, k in assignment.items() if not (0 <= int(k) < len(parts))}
        if bad:
            raise ProjectError(f"assignment to a part that does not exist: {bad}")
        new, ids = split_code(template, code_id, parts, examples=examples, taken=_retired_ids(project))
        project.set_template(new)
        moved: dict[str, list[int]] = {}
        for k, cid in enumerate(ids):
            segs = [int(s) for s in needed if int(assignment[s]) == k]
            moved[cid] = _move_decisions(project, code_id, cid, segs)
        left = decision_count(project, code_id)
        if left:  # cannot happen (every segment was assigned), but never leave decisions behind
            raise ProjectError(f"{left} decision(s) would stay on the split code; nothing was changed")
        _record(project, {"op": "split", "code": code_id, "from": template.codes[code_id].path_str,
                          "into": ids, "coder": coder}, moved)
    return ids


def apply_add_example(project: Project, code_id: str, text: str, source: str = "", *, coder: str | None = None) -> None:
    with project.transaction():
        project.set_template(add_example(project.template(), code_id, text, source))
        _record(project, {"op": "add_example", "code": code_id, "source": source, "coder": coder})


# --------------------------------------------------------------------------- replace from YAML


@dataclass
class ReplacePlan:
    """What replacing the template would do. ``needs_mapping``: codes that would leave (or
    stop being codes that are applied, by getting sub-codes) while decisions name them, with
    their decision counts; each must be mapped or explicitly retired. ``suggested_mapping``:
    for those, a code of the new template with the same name, where there is exactly one."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed_path: list[tuple[str, str, str]] = field(default_factory=list)  # (id, old path, new path)
    needs_mapping: dict[str, int] = field(default_factory=dict)
    suggested_mapping: dict[str, str] = field(default_factory=dict)


def plan_replace(project: Project, new: Template) -> ReplacePlan:
    old = project.template()
    plan = ReplacePlan()
    plan.added = [c for c in new.codes if c not in old.codes]
    plan.removed = [c for c in old.codes if c not in new.codes]
    plan.changed_path = [(c, old.codes[c].path_str, new.codes[c].path_str) for c in old.codes
                         if c in new.codes and old.codes[c].path_str != new.codes[c].path_str]
    for cid, n in project.conn.execute("SELECT code_id, COUNT(*) FROM decisions GROUP BY code_id"):
        gone = cid not in new.codes or not new.codes[cid].is_leaf
        if gone and n:
            plan.needs_mapping[cid] = n
            name = old.codes[cid].name if cid in old.codes else project.conn.execute("SELECT name FROM codes WHERE id = ?", (cid,)).fetchone()[0]
            same = [c.id for c in new.leaves() if c.name.casefold() == name.casefold()]
            if len(same) == 1:
                plan.suggested_mapping[cid] = same[0]
    return plan


def replace_template(project: Project, new: Template, mapping: Mapping[str, str | None], *, coder: str | None = None) -> dict[str, int]:
    """Replace the project's template with ``new``. ``mapping`` must name every code of
    :attr:`ReplacePlan.needs_mapping`: a leaf code id of ``new`` to move its decisions to, or
    ``None`` to retire it with its decisions kept under it (inactive). Returns decisions moved
    per target. Refused, with nothing changed, if a code with decisions is left unmapped."""
    with project.transaction():
        plan = plan_replace(project, new)
        missing = [c for c in plan.needs_mapping if c not in mapping]
        if missing:
            raise ProjectError(
                "these codes have decisions and are not in the new template (or now have sub-codes); map each to a code "
                "of the new template or choose to keep it retired: " + ", ".join(missing)
            )
        for src, dst in mapping.items():
            if dst is not None and (dst not in new.codes or not new.codes[dst].is_leaf):
                raise ProjectError(f"{src!r} is mapped to {dst!r}, which is not a code without sub-codes in the new template")
        project.set_template(new)
        moved: dict[str, list[int]] = {}
        for src, dst in mapping.items():
            if dst is not None and src != dst:
                moved.setdefault(dst, []).extend(_move_decisions(project, src, dst))
        _record(project, {"op": "replace", "template": new.name, "added": plan.added, "removed": plan.removed,
                          "retired_with_decisions": sorted(c for c, d in mapping.items() if d is None), "coder": coder}, moved)
    return {k: len(v) for k, v in moved.items()}
