"""Template edits, with the project's decisions following them.

Two layers:

* Pure edits of a :class:`~coder_assist.core.template.Template`: the tree edits live in
  core/template_edits.py (``add_code``, ``add_example``, ``update_code`` are used from there);
  here, ``rename``, ``move``, ``merge`` and ``split`` (and their ``*_code`` forms returning the
  template alone) also carry the edit into other codes' notes (ml/references.py). Each returns
  a new, validated template and never touches its argument. Code ids are kept through renames
  and moves, so every decision, suggestion and example stays attached to its code.
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

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..ml import references as refs
from ..core.template import PATH_SEP, Code, Template, parse_template
from ..core.template_edits import (  # noqa: F401  (Part, add_code, add_example, update_code: the edit API)
    Part,
    add_code,
    add_example,
    check_merge,
    drop_counter_example,
    merge_tree,
    move_tree,
    rename_tree,
    set_texts,
    split_tree,
    update_code,
)
from ..core.errors import ProjectError
from ..ml.references import FIELD_LABELS, ReviewItem  # noqa: F401  (FIELD_LABELS re-exported: the Template page's field names)
from ..store.project import Project, now

#: meta key: the template history (JSON list).
HISTORY_KEY = "template_history"
#: meta key: the review list (JSON) of what template edits left that may contradict.
REVIEW_KEY = "template_review"
#: meta key: the edits that can be undone, newest last (JSON list of {"entry": index in the
#: history, "before": the template before it, "after": digest of the template it made}).
UNDO_KEY = "template_undo"
#: How many edits back "Undo last template edit" can go (each keeps a whole template).
UNDO_DEPTH = 20


@dataclass
class EditResult:
    """A pure edit's outcome: the new template; ``review``: what the edit left that may
    contradict it (for a person to fix or keep); ``updated``: references the edit changed
    itself because the change was certain (a quoted name after a rename), as
    ``{"code", "field", "from", "to"}``."""

    template: Template
    review: list[ReviewItem] = field(default_factory=list)
    updated: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- edits that reach the notes


def rename_code(template: Template, code_id: str, new_name: str) -> Template:
    """Rename a code. Its id stays, so its decisions, suggestions and examples stay with it.
    Quoted references to it in other codes' notes follow (see :func:`rename`)."""
    return rename(template, code_id, new_name).template


def _others(template: Template, *exclude: str) -> list[str]:
    return [c.name for c in template.codes.values() if c.id not in exclude]


def _q(name: str) -> str:
    return f"'{name}'"


def rename(template: Template, code_id: str, new_name: str) -> EditResult:
    """Rename a code, and the references to it in other codes' descriptions and notes:
    quoted ones (``'Old name'``, or its full path) are replaced; unquoted ones, and every one
    when another code has the same name (a reference cannot say which it means), are left
    and flagged with the replacement proposed."""
    new = rename_tree(template, code_id, new_name)
    old_code, new_code = template.codes[code_id], new.codes[code_id]
    if old_code.name == new_code.name:
        return EditResult(new)
    ambiguous = sum(c.name == old_code.name for c in template.codes.values()) > 1
    result = EditResult(new)
    fields: dict[tuple[str, str], str] = {}
    for cid, f, found in refs.code_refs(template, code_id):
        text = getattr(template.codes[cid], f)

        def swap(r: refs.Ref) -> str:
            return new_code.path_str if text[r.start:r.end] == old_code.path_str else new_code.name

        certain = [r for r in found if r.quoted and not (ambiguous and text[r.start:r.end] == old_code.name)]
        auto, full = text, text
        for r in sorted(found, key=lambda r: r.start, reverse=True):
            full = full[: r.start] + swap(r) + full[r.end :]
            if r in certain:
                auto = auto[: r.start] + swap(r) + auto[r.end :]
        if auto != text:
            fields[(cid, f)] = auto
            result.updated.append({"code": cid, "field": f, "from": text, "to": auto})
        if full != auto:
            why = (f"names {_q(old_code.name)}, which is now {_q(new_code.name)}"
                   + (" (another code has the old name too, so it may mean that one)" if ambiguous
                      else " (not in quotes, so it was not changed automatically)"))
            result.review.append(ReviewItem(cid, f, auto, why, full, f"Say {_q(new_code.name)}"))
    if fields:
        result.template = set_texts(new, fields)
    return result


def move_code(template: Template, code_id: str, new_parent_id: str | None, position: int | None = None) -> Template:
    """Move a code (with its sub-codes) under another parent (``None``: to the top level), at
    ``position`` among its new siblings (default: last)."""
    return move(template, code_id, new_parent_id, position).template


def move(template: Template, code_id: str, new_parent_id: str | None, position: int | None = None) -> EditResult:
    """:func:`move_code`, and the references to the moved code in other codes' notes: quoted
    full paths are updated to the new path; notes that name it are flagged (a note written
    about a barrier may not hold for an enabler), with nothing proposed: the person checks."""
    new = move_tree(template, code_id, new_parent_id, position)
    old_code, new_code = template.codes[code_id], new.codes[code_id]
    result = EditResult(new)
    if old_code.path_str == new_code.path_str:
        return result
    fields: dict[tuple[str, str], str] = {}
    for cid, f, found in refs.code_refs(template, code_id):
        text = getattr(template.codes[cid], f)
        paths = [r for r in found if r.quoted and text[r.start:r.end] == old_code.path_str]
        auto = refs.replace_refs(text, paths, new_code.path_str)
        if auto != text:
            fields[(cid, f)] = auto
            result.updated.append({"code": cid, "field": f, "from": text, "to": auto})
        result.review.append(ReviewItem(
            cid, f, auto,
            f"names {_q(old_code.name)}, which moved from {_q(PATH_SEP.join(old_code.path[:-1]) or '(top level)')} "
            f"to {_q(PATH_SEP.join(new_code.path[:-1]) or '(top level)')}: check the note still holds there",
            None, ""))
    if fields:
        result.template = set_texts(new, fields)
    return result


def merge_codes(template: Template, source_id: str, target_id: str) -> Template:
    """Merge code ``source_id`` into ``target_id`` (see :func:`merge`); the new template."""
    return merge(template, source_id, target_id).template


def merge(template: Template, source_id: str, target_id: str) -> EditResult:
    """Merge code ``source_id`` into ``target_id``: the source leaves the template and its
    example excerpts join the target's (duplicates dropped). Both must be codes that get
    suggested (no sub-codes).

    Counter-examples: one written to tell the two apart (:func:`references.told_apart_from`)
    is now the merged code's own material, so it is not kept as a counter-example of the
    target, where it would push the target's own passages down; the review list offers to add
    it to the target's examples. The source's other counter-examples join the target's.

    Flagged for review, with a proposed text: the target's description (its clauses that
    contrast it with the source cut, the source's description added), its include and exclude
    notes (clauses sending the coder to the other code dropped, the source's other clauses
    added), and every other code's note that tells the coder to use the source (proposed: the
    target)."""
    check_merge(template, source_id, target_id)
    src, tgt = template.codes[source_id], template.codes[target_id]
    review: list[ReviewItem] = []
    have = {e.text for e in tgt.examples} | {e.text for e in src.examples}

    def offer(e, owner: Code, other: Code) -> None:
        review.append(ReviewItem(
            target_id, "examples", e.text,
            f"was a counter-example of {_q(owner.name)} telling it apart from {_q(other.name)}; the two are one code now, "
            f"so it is no longer a counter-example (it would push this code's own passages down)",
            e.text, "Add it to the example excerpts"))

    keep_ce = []
    for e in tgt.counter_examples:
        if refs.told_apart_from(template, target_id, e.text) == source_id:
            if e.text not in have:
                offer(e, tgt, src)
        else:
            keep_ce.append(e)
    ce_texts = {e.text for e in keep_ce}
    for e in src.counter_examples:
        if refs.told_apart_from(template, source_id, e.text) == target_id:
            if e.text not in have:
                offer(e, src, tgt)
        elif e.text not in ce_texts and e.text not in have:
            keep_ce.append(e)
            ce_texts.add(e.text)
    new = merge_tree(template, source_id, target_id, keep_ce)
    others = _others(template, source_id, target_id)

    # The kept code's own texts.
    d_tgt, cut_tgt = refs.contrast_cuts(tgt.description, src, tgt)
    d_src, cut_src = refs.contrast_cuts(src.description, tgt, src)
    proposed = " ".join(x for x in (d_tgt, d_src) if x)
    if src.description and proposed != tgt.description:
        why = f"{_q(src.name)} was merged into this code"
        if cut_tgt:
            why += ", but the description sets the two apart (" + "; ".join(f"'{c}'" for c in cut_tgt) + ")"
        why += ". Proposed: both descriptions, without the clauses that set one against the other"
        review.append(ReviewItem(target_id, "description", tgt.description, why, proposed, "Use the merged description"))
    for f in ("include", "exclude"):
        mine, gone_t = refs.drop_clauses_naming(getattr(tgt, f), refs.names_of(src), others)
        theirs, gone_s = refs.drop_clauses_naming(getattr(src, f), refs.names_of(tgt), others)
        merged = refs.join_clauses(refs.clauses(mine) + [c for c in refs.clauses(theirs) if c not in refs.clauses(mine)])
        if merged != getattr(tgt, f):
            why = f"{_q(src.name)} was merged into this code"
            if gone_t:
                why += f"; this note still sends the coder to it"
            if getattr(src, f):
                why += f"; it had its own {refs.FIELD_LABELS[f]}"
            why += ". Proposed: both notes, without the clauses that send the coder from one to the other"
            review.append(ReviewItem(target_id, f, getattr(tgt, f), why, merged, f"Use the merged {refs.FIELD_LABELS[f]}"))

    # Every other code that sends the coder to the removed code.
    for cid, f, found in refs.code_refs(template, source_id):
        if cid == target_id:
            continue
        text = getattr(template.codes[cid], f)
        fix = text
        for r in sorted(found, key=lambda r: r.start, reverse=True):
            fix = fix[: r.start] + (tgt.path_str if fix[r.start:r.end] == src.path_str else tgt.name) + fix[r.end :]
        review.append(ReviewItem(cid, f, text, f"names {_q(src.name)}, which was merged into {_q(tgt.name)}", fix,
                                 f"Say {_q(tgt.name)}"))
    return EditResult(new, review)


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
    result, ids = split(template, code_id, parts, examples=examples, taken=taken)
    return result.template, ids


def split(
    template: Template,
    code_id: str,
    parts: Sequence[Part | Mapping[str, str]],
    *,
    examples: Mapping[int, int] | None = None,
    taken: Iterable[str] = (),
) -> tuple[EditResult, list[str]]:
    """:func:`split_code`, flagging what names the split code: other codes' notes (proposed:
    name the new codes, "'A' or 'B'", for the person to narrow down) and the split code's own
    include and exclude notes, which no new code has yet (proposed: give each part the old
    note)."""
    new, ids = split_tree(template, code_id, parts, examples=examples, taken=taken)
    code = template.codes[code_id]
    names = [new.codes[cid].name for cid in ids]
    result = EditResult(new)
    quoted = ", ".join(_q(n) for n in names)
    for cid, f, found in refs.code_refs(template, code_id):
        text = getattr(template.codes[cid], f)
        result.review.append(ReviewItem(
            cid, f, text, f"names {_q(code.name)}, which was split into {quoted}: say which of them (or keep both)",
            refs.replace_quoted(text, found, names), "Name the new codes"))
    for f in ("include", "exclude"):
        if getattr(code, f):
            for cid in ids:
                result.review.append(ReviewItem(
                    cid, f, "", f"{_q(code.name)} had this {refs.FIELD_LABELS[f]}; the new codes start without one",
                    getattr(code, f), f"Give it the old {refs.FIELD_LABELS[f]}"))
    return result, ids


# --------------------------------------------------------------------------- the project


def history(project: Project) -> list[dict]:
    """The project's template edits, oldest first."""
    return json.loads(project.meta(HISTORY_KEY) or "[]")


def _record(project: Project, entry: dict, moved: Mapping[str, list[int]] | None = None, *, before: Template | None = None) -> None:
    """Append ``entry`` to the history; ``before`` (the template the edit started from) makes
    the edit undoable (:func:`undo_last_edit`)."""
    entry = {"at": now(), **entry}
    if moved:
        entry["moved_decisions"] = {k: v for k, v in moved.items() if v}
    past = history(project)
    project.set_meta(HISTORY_KEY, json.dumps(past + [entry], ensure_ascii=False))
    if before is not None:
        stack = _undo_stack(project) + [{"entry": len(past), "before": before.to_dict(), "after": _digest(project.template())}]
        project.set_meta(UNDO_KEY, json.dumps(stack[-UNDO_DEPTH:], ensure_ascii=False))


def decision_count(project: Project, code_id: str) -> int:
    """Decisions (undo events included) that name this code."""
    return project.decision_count(code_id)


def _check_parent(project: Project, template: Template, parent_id: str | None) -> None:
    """A code that has decisions cannot get sub-codes: it would stop being a code that is
    applied to passages, and its decisions would hang on a theme."""
    if parent_id is not None and template.codes[parent_id].is_leaf and project.decision_count(parent_id):
        raise ProjectError(
            f"{template.codes[parent_id].path_str!r} has decisions, so it cannot get sub-codes; "
            "split it instead, or add the new code next to it"
        )


def _move_decisions(project: Project, source_id: str, target_id: str, segment_ids: Sequence[int] | None = None) -> list[int]:
    return project.repoint_decisions(source_id, target_id, segment_ids)


def apply_add_code(project: Project, name: str, *, parent_id: str | None = None, description: str = "",
                   examples: Sequence[str] = (), coder: str | None = None) -> str:
    with project.transaction():
        template = project.template()
        if parent_id is not None and parent_id not in template.codes:
            raise ProjectError(f"no code {parent_id!r} in the template")
        _check_parent(project, template, parent_id)
        new, cid = add_code(template, name, parent_id=parent_id, description=description, examples=examples, taken=set(project.code_paths()))
        project.set_template(new)
        _record(project, {"op": "add", "code": cid, "path": new.codes[cid].path_str, "coder": coder}, before=template)
    return cid


def _entry_refs(project: Project, result: EditResult) -> dict:
    """History fields for what an edit changed in other codes' texts and left for review."""
    stored = _store_review(project, result.review)
    out: dict[str, Any] = {}
    if result.updated:
        out["references_updated"] = result.updated
    if stored:
        out["review"] = [r.id for r in stored]
    return out


def apply_rename(project: Project, code_id: str, new_name: str, *, coder: str | None = None) -> list[ReviewItem]:
    """Rename a code (:func:`rename`). Returns the review items the rename left."""
    with project.transaction():
        template = project.template()
        result = rename(template, code_id, new_name)
        project.set_template(result.template)
        extra = _entry_refs(project, result)
        _record(project, {"op": "rename", "code": code_id, "from": template.codes[code_id].path_str,
                          "to": result.template.codes[code_id].path_str, "coder": coder, **extra}, before=template)
    return open_review(project, extra.get("review", []))


def apply_update(project: Project, code_id: str, *, coder: str | None = None, **fields: str) -> None:
    with project.transaction():
        template = project.template()
        if code_id not in template.codes:
            raise ProjectError(f"no code {code_id!r} in the template")
        project.set_template(update_code(template, code_id, **fields))
        _record(project, {"op": "update", "code": code_id, "fields": sorted(fields), "coder": coder}, before=template)


def apply_move(project: Project, code_id: str, new_parent_id: str | None, *, position: int | None = None, coder: str | None = None) -> None:
    with project.transaction():
        template = project.template()
        if new_parent_id is not None and new_parent_id in template.codes:
            _check_parent(project, template, new_parent_id)
        result = move(template, code_id, new_parent_id, position)
        project.set_template(result.template)
        extra = _entry_refs(project, result)
        _record(project, {"op": "move", "code": code_id, "from": template.codes[code_id].path_str,
                          "to": result.template.codes[code_id].path_str, "coder": coder, **extra}, before=template)


def apply_merge(project: Project, source_id: str, target_id: str, *, coder: str | None = None) -> int:
    """Merge ``source_id`` into ``target_id`` and move every decision on the source to the
    target. Returns the number of decisions moved. Where a coder had decided both codes on
    the same passage, that coder's latest decision on the passage is the one in force. What
    the merge left that may contradict is on the review list (:func:`open_review`)."""
    with project.transaction():
        template = project.template()
        result = merge(template, source_id, target_id)
        project.set_template(result.template)
        moved = _move_decisions(project, source_id, target_id)
        extra = _entry_refs(project, result)
        _record(project, {"op": "merge", "code": source_id, "into": target_id, "from": template.codes[source_id].path_str,
                          "to": template.codes[target_id].path_str, "coder": coder, **extra}, {target_id: moved}, before=template)
    return len(moved)


def split_segments(project: Project, code_id: str) -> list[int]:
    """Segments with at least one decision (any coder, any action) on this code: the ones a
    split must assign."""
    return project.decided_segments(code_id)


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
        result, ids = split(template, code_id, parts, examples=examples, taken=set(project.code_paths()))
        project.set_template(result.template)
        extra = _entry_refs(project, result)
        moved: dict[str, list[int]] = {}
        for k, cid in enumerate(ids):
            segs = [int(s) for s in needed if int(assignment[s]) == k]
            moved[cid] = _move_decisions(project, code_id, cid, segs)
        left = decision_count(project, code_id)
        if left:  # cannot happen (every segment was assigned), but never leave decisions behind
            raise ProjectError(f"{left} decision(s) would stay on the split code; nothing was changed")
        _record(project, {"op": "split", "code": code_id, "from": template.codes[code_id].path_str,
                          "into": ids, "coder": coder, **extra}, moved, before=template)
    return ids


def apply_add_example(project: Project, code_id: str, text: str, source: str = "", *, coder: str | None = None) -> None:
    with project.transaction():
        template = project.template()
        project.set_template(add_example(template, code_id, text, source))
        _record(project, {"op": "add_example", "code": code_id, "source": source, "coder": coder}, before=template)


# --------------------------------------------------------------------------- the review list
#
# Stored in the project (meta), not in the page: what an edit left to check survives a reload,
# another tab and another coder, until someone fixes it or keeps it as is.


def _review_state(project: Project) -> dict:
    return json.loads(project.meta(REVIEW_KEY) or '{"next_id": 1, "items": []}')


def _store_review(project: Project, items: Sequence[ReviewItem]) -> list[ReviewItem]:
    state = _review_state(project)
    stored = []
    for item in items:
        item = ReviewItem(**{**item.to_dict(), "id": state["next_id"]})
        state["next_id"] += 1
        state["items"].append(item.to_dict())
        stored.append(item)
    if stored:
        project.set_meta(REVIEW_KEY, json.dumps(state, ensure_ascii=False))
    return stored


def is_current(template: Template, item: ReviewItem) -> bool:
    """Whether the item still describes the template: its code is there and the text it is
    about is unchanged (an edit by hand since settles it)."""
    code = template.codes.get(item.code_id)
    if code is None:
        return False
    if item.field in refs.TEXT_FIELDS:
        return getattr(code, item.field) == item.text
    if item.field == "examples":
        return item.text not in {e.text for e in code.examples}
    return item.text in {e.text for e in code.counter_examples}


def open_review(project: Project, ids: Iterable[int] | None = None) -> list[ReviewItem]:
    """The review items not yet fixed or kept that still describe the template, oldest first
    (only those with ``ids``, when given)."""
    template = project.template()
    want = None if ids is None else set(ids)
    items = [ReviewItem.from_dict(d) for d in _review_state(project)["items"]]
    return [i for i in items if (want is None or i.id in want) and is_current(template, i)]


def fix_item(template: Template, item: ReviewItem) -> Template:
    """The template with ``item``'s proposed fix applied (pure)."""
    if item.fix is None:
        raise ProjectError("this item has no proposed fix: edit the code, or keep it as is")
    if not is_current(template, item):
        raise ProjectError(f"the {refs.FIELD_LABELS.get(item.field, item.field)} of {item.code_id!r} changed since; nothing was changed")
    if item.field in refs.TEXT_FIELDS:
        return update_code(template, item.code_id, **{item.field: item.fix})
    return drop_counter_example(template, item.code_id, item.text, add_example=item.fix if item.field == "examples" else None)


def _take_item(project: Project, item_id: int) -> ReviewItem:
    state = _review_state(project)
    for d in state["items"]:
        if int(d["id"]) == int(item_id):
            state["items"].remove(d)
            project.set_meta(REVIEW_KEY, json.dumps(state, ensure_ascii=False))
            return ReviewItem.from_dict(d)
    raise ProjectError(f"review item {item_id} is not open (already fixed or kept?)")


def apply_review_fix(project: Project, item_id: int, *, coder: str | None = None) -> ReviewItem:
    """Apply a review item's proposed fix and take it off the list, in one transaction."""
    with project.transaction():
        item = _take_item(project, item_id)
        template = project.template()
        project.set_template(fix_item(template, item))
        _record(project, {"op": "review_fix", "code": item.code_id, "field": item.field, "review": [item.id], "coder": coder},
                before=template)
    return item


def keep_review_item(project: Project, item_id: int, *, coder: str | None = None) -> ReviewItem:
    """Take a review item off the list, the template left as it is."""
    with project.transaction():
        item = _take_item(project, item_id)
        _record(project, {"op": "review_keep", "code": item.code_id, "field": item.field, "review": [item.id], "coder": coder})
    return item


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
    for cid, n in project.decision_counts().items():
        gone = cid not in new.codes or not new.codes[cid].is_leaf
        if gone and n:
            plan.needs_mapping[cid] = n
            name = old.codes[cid].name if cid in old.codes else project.code_name(cid)
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
        before = project.template()
        project.set_template(new)
        moved: dict[str, list[int]] = {}
        moved_from: dict[str, list[int]] = {}  # several codes may go to one: the undo needs each one's
        for src, dst in mapping.items():
            if dst is not None and src != dst:
                ids = _move_decisions(project, src, dst)
                moved.setdefault(dst, []).extend(ids)
                if ids:
                    moved_from[src] = ids
        _record(project, {"op": "replace", "template": new.name, "added": plan.added, "removed": plan.removed,
                          "retired_with_decisions": sorted(c for c, d in mapping.items() if d is None), "coder": coder,
                          **({"moved_from": moved_from} if moved_from else {})}, moved, before=before)
    return {k: len(v) for k, v in moved.items()}


# --------------------------------------------------------------------------- undo
#
# An edit made here (Template page, Revise tab) keeps the template it started from; undoing it
# writes that template back and returns the decisions it moved. The undo is itself a history
# event: the log of what happened to the template only grows.


def _digest(template: Template) -> str:
    # Key order kept: the order of codes is part of the template.
    return hashlib.sha256(json.dumps(template.to_dict(), ensure_ascii=False).encode("utf-8")).hexdigest()


def _undo_stack(project: Project) -> list[dict]:
    return json.loads(project.meta(UNDO_KEY) or "[]")


def undoable_edit(project: Project) -> dict | None:
    """The history entry :func:`undo_last_edit` would undo, with its ``"index"`` in the
    history; ``None`` when there is none."""
    stack = _undo_stack(project)
    if not stack:
        return None
    i = stack[-1]["entry"]
    return {**history(project)[i], "index": i}


def _moves_back(entry: dict) -> list[tuple[int, str, str]]:
    """(decision id, code the edit put it on, code it came from) for each decision the edit moved."""
    moved = entry.get("moved_decisions") or {}
    if not moved:
        return []
    if entry["op"] == "replace":
        came_from = {int(d): src for src, ids in (entry.get("moved_from") or {}).items() for d in ids}
    else:  # a merge or a split takes decisions from one code, the entry's
        came_from = {int(d): entry["code"] for ids in moved.values() for d in ids}
    out = []
    for dst, ids in moved.items():
        for d in ids:
            if int(d) not in came_from:
                raise ProjectError(f"the {entry['op']} did not record where decision {d} came from; nothing was changed")
            out.append((int(d), dst, came_from[int(d)]))
    return out


def _drop_review(project: Project, ids: Iterable[int]) -> None:
    ids = {int(i) for i in ids}
    if not ids:
        return
    state = _review_state(project)
    kept = [d for d in state["items"] if int(d["id"]) not in ids]
    if len(kept) != len(state["items"]):
        state["items"] = kept
        project.set_meta(REVIEW_KEY, json.dumps(state, ensure_ascii=False))


def undo_last_edit(project: Project, *, coder: str | None = None) -> dict:
    """Undo the newest template edit not yet undone: the template is written back as it was
    before the edit, exactly the decisions the edit moved go back to the codes they came from
    (decisions made since stay where they are), and the review items the edit left leave the
    list. Recorded in the history as an ``undo`` event naming the entry it undoes (``undoes``,
    its index), with the decisions it moved back; the undone entry stays. Undoing again goes
    one edit further back (up to :data:`UNDO_DEPTH` edits).

    Refused, with nothing changed, when there is no edit to undo, when the template was changed
    since by something that is not an edit (an import), or when a code the undo would take
    away holds decisions made since the edit (they would be left on a code that is gone).
    Returns the undone history entry, with its ``"index"``."""
    with project.transaction():
        stack = _undo_stack(project)
        if not stack:
            raise ProjectError("there is no template edit to undo")
        top = stack[-1]
        done = history(project)[top["entry"]]
        current = project.template()
        if _digest(current) != top["after"]:
            raise ProjectError("the template was changed since that edit by something other than a template edit "
                               "(an import?), so it cannot be undone; nothing was changed")
        before = parse_template(top["before"], source=current.path or "<template>")
        before.path = current.path
        moves = _moves_back(done)
        project.set_template(before)
        back = set(project.restore_decision_codes(moves))
        leaving = [c for c in current.codes if c not in before.codes or (current.codes[c].is_leaf and not before.codes[c].is_leaf)]
        stranded = {c: n for c in leaving if (n := decision_count(project, c))}
        if stranded:
            raise ProjectError(
                "undoing would leave decisions made since the edit on codes that would be gone ("
                + "; ".join(f"{current.codes[c].path_str}: {n}" for c, n in stranded.items())
                + "); merge or split them first. Nothing was changed")
        came: dict[str, list[int]] = {}
        for d, _, src in moves:
            if d in back:
                came.setdefault(src, []).append(d)
        _drop_review(project, done.get("review", []) if done["op"] != "review_fix" else [])
        project.set_meta(UNDO_KEY, json.dumps(stack[:-1], ensure_ascii=False))
        _record(project, {"op": "undo", "undoes": top["entry"], "undone_op": done["op"], "code": done.get("code"),
                          "coder": coder}, came)
    return {**done, "index": top["entry"]}
