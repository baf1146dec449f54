"""Pure edits of a :class:`~coder_assist.core.template.Template`: each returns a new, validated
template and never touches its argument.

Code ids are kept through renames and moves, so every decision, suggestion and example stays
attached to its code. New codes get ids no code of the project has had (``taken``: the
project's retired codes, whose ids are never reused, which would bring their old decisions
back). Edits work on the nested dict form (:meth:`Template.to_dict`) and re-validate it with
:func:`~coder_assist.core.template.parse_template`, so an edit can never produce a template a
file could not hold.

What an edit means for the notes of other codes (quoted references, contrasts) is
app/edit.py's part (it uses ml/references.py); this module changes only the tree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .errors import ProjectError, TemplateError
from .template import PATH_SEP, Example, Template, parse_template, slugify

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


def clean_name(name: str) -> str:
    """A code name as stored: whitespace collapsed; refused when empty or holding the path separator."""
    name = " ".join(str(name or "").split())
    if not name:
        raise ProjectError("a code needs a name")
    if PATH_SEP.strip() in name:
        raise ProjectError(f"a code name cannot contain {PATH_SEP.strip()!r} (it separates levels of the path)")
    return name


def _check_code(template: Template, code_id: str) -> None:
    if code_id not in template.codes:
        raise ProjectError(f"no code {code_id!r} in the template")


# --------------------------------------------------------------------------- edits


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
    name = clean_name(name)
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


def rename_tree(template: Template, code_id: str, new_name: str) -> Template:
    """The code renamed, nothing else changed (app/edit.py's ``rename`` also updates the notes
    that quote the old name)."""
    _check_code(template, code_id)
    tree = _tree(template)
    _node(tree, code_id)["name"] = clean_name(new_name)
    return _parse(tree, template)


def set_texts(template: Template, texts: Mapping[tuple[str, str], str]) -> Template:
    """Set text fields as given, ``{(code id, "description" | "include" | "exclude"): text}``,
    in one validation (the reference updates a rename or a move makes)."""
    tree = _tree(template)
    for (cid, f), text in texts.items():
        _node(tree, cid)[f] = text
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


def move_tree(template: Template, code_id: str, new_parent_id: str | None, position: int | None = None) -> Template:
    """The code (with its sub-codes) under another parent (``None``: the top level), at
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


def check_merge(template: Template, source_id: str, target_id: str) -> None:
    """Refuse a merge of a code into itself, of unknown codes, or of codes with sub-codes."""
    if source_id == target_id:
        raise ProjectError("choose two different codes to merge")
    for cid in (source_id, target_id):
        _check_code(template, cid)
        if not template.codes[cid].is_leaf:
            raise ProjectError(f"{template.codes[cid].path_str!r} has sub-codes; merge codes without sub-codes (move or merge its sub-codes first)")


def merge_tree(template: Template, source_id: str, target_id: str, counter_examples: Sequence[Example]) -> Template:
    """The source leaves the template; its example excerpts join the target's (duplicates
    dropped) and the target's counter-examples become ``counter_examples`` (which ones to keep
    is a judgement app/edit.py's ``merge`` makes)."""
    check_merge(template, source_id, target_id)
    tree = _tree(template)
    target = _node(tree, target_id)
    have = {e["text"] for e in target.get("examples", [])}
    extra = [e for e in _examples(template.codes[source_id].examples) if e["text"] not in have]
    if extra:
        target["examples"] = target.get("examples", []) + extra
    if counter_examples:
        target["counter_examples"] = _examples(counter_examples)
    else:
        target.pop("counter_examples", None)
    siblings, i = _find(tree["codes"], source_id)  # type: ignore[misc]
    siblings.pop(i)
    return _parse(tree, template)


@dataclass(frozen=True)
class Part:
    """One of the codes a split makes."""

    name: str
    description: str = ""


def split_tree(
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
    _check_code(template, code_id)
    code = template.codes[code_id]
    if not code.is_leaf:
        raise ProjectError(f"{code.path_str!r} has sub-codes; split a code without sub-codes")
    parts = [p if isinstance(p, Part) else Part(p.get("name", ""), p.get("description", "")) for p in parts]
    if len(parts) < 2:
        raise ProjectError("a split needs at least two new codes")
    names = [clean_name(p.name) for p in parts]
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
    _check_code(template, code_id)
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


def drop_counter_example(template: Template, code_id: str, text: str, *, add_example: str | None = None) -> Template:
    """The code without the counter-example ``text``, and with ``add_example`` appended to its
    example excerpts when given (a counter-example a merge made the code's own material)."""
    tree = _tree(template)
    node = _node(tree, code_id)
    if add_example is not None:
        node["examples"] = node.get("examples", []) + [{"text": add_example}]
    node["counter_examples"] = [e for e in node.get("counter_examples", []) if e["text"] != text]
    if not node["counter_examples"]:
        del node["counter_examples"]
    return _parse(tree, template)
