"""Where a template's codes talk about each other, and what an edit leaves contradicting.

A code's description and include/exclude notes often name other codes ("use 'Lack of
funding for co-production work'") or contrast with them ("as distinct from funding the
relationship-building"), and its counter-examples are usually written to tell it apart from
one particular neighbour. A rename, merge, split or move changes what those sentences should
say. This module finds them; :mod:`coder_assist.app.edit` turns them into updates (where the
change is certain) or :class:`ReviewItem` s (where a person should decide).

A reference to a code is its name or full path, matched exactly:

* **quoted** (``'Name'``, ``"Name"``, ``‘Name’``, ``“Name”``): the template's own convention
  for naming a code; certain enough to update automatically on a rename;
* **unquoted**: the name as whole words, outside any quotation and not part of a longer code
  name that also occurs there (so ``Diversity`` does not match inside ``Diversity across
  sectors...``). Case-sensitive, except for names of three or more words (a short name such as
  "Habits" is an ordinary word too often).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..core.template import Code, Template

TEXT_FIELDS = ("description", "include", "exclude")
LIST_FIELDS = ("examples", "counter_examples")
FIELD_LABELS = {"description": "description", "include": "include note", "exclude": "exclude note",
                "examples": "example excerpts", "counter_examples": "counter-examples"}

_OPEN = "'\"‘“"
_CLOSE = "'\"’”"
_QUOTE_PAIRS = (("'", "'"), ('"', '"'), ("‘", "’"), ("“", "”"))


@dataclass(frozen=True)
class ReviewItem:
    """Something an edit left that may contradict the template as it is now.

    ``field`` is one of :data:`TEXT_FIELDS` or :data:`LIST_FIELDS`. For a text field,
    ``text`` is what the field says now and ``fix`` the proposed new text ("" clears it). For
    ``examples``, ``text`` is an excerpt and ``fix`` that excerpt: the fix adds it to the
    code's examples (and takes it out of its counter-examples). For ``counter_examples``,
    ``text`` is an excerpt the code has and ``fix`` "": the fix removes it. ``fix`` is None
    where there is nothing certain to propose (the person edits the code, or keeps it as is).
    ``id`` is set when the item is stored in a project (0 before).
    """

    code_id: str
    field: str
    text: str
    why: str
    fix: str | None
    fix_label: str = "Apply the proposed text"
    id: int = 0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "code_id", "field", "text", "why", "fix", "fix_label")}

    @classmethod
    def from_dict(cls, d: dict) -> "ReviewItem":
        return cls(**{k: d.get(k) for k in ("code_id", "field", "text", "why", "fix")},
                   fix_label=d.get("fix_label", "Apply the proposed text"), id=int(d.get("id") or 0))


@dataclass(frozen=True)
class Ref:
    """One reference to a code in a text: ``text[start:end]`` is the name (or path) itself,
    without the quotes; ``quoted`` says whether quotes surround it."""

    start: int
    end: int
    quoted: bool


# --------------------------------------------------------------------------- finding names


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every quotation, quotes included. An apostrophe inside a word
    (people's) neither opens nor closes one."""
    spans = []
    for o, c in _QUOTE_PAIRS:
        for m in re.finditer(rf"(?<!\w){re.escape(o)}[^{re.escape(o + c)}\n]+?{re.escape(c)}(?!\w)", text):
            spans.append(m.span())
    return spans


def _pattern(name: str) -> re.Pattern:
    flags = re.IGNORECASE if len(name.split()) >= 3 else 0
    return re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flags)


def find_refs(text: str, names: Sequence[str], others: Iterable[str] = ()) -> list[Ref]:
    """References in ``text`` to any of ``names`` (a code's name and path). ``others``: the
    names of the template's other codes; an unquoted match inside one of them that is longer
    does not count."""
    if not text:
        return []
    quotes = _quoted_spans(text)
    longer = [o for o in others if o and any(n in o and len(o) > len(n) for n in names)]
    shadow = [m.span() for o in longer for m in _pattern(o).finditer(text)]
    refs: list[Ref] = []
    taken: list[tuple[int, int]] = []
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        for m in _pattern(name).finditer(text):
            a, b = m.span()
            if any(x <= a and b <= y for x, y in taken):
                continue
            quoted = a > 0 and b < len(text) and text[a - 1] in _OPEN and text[b] in _CLOSE \
                and _CLOSE[_OPEN.index(text[a - 1])] == text[b]
            if not quoted:
                if any(x <= a and b <= y for x, y in quotes) or any(x <= a and b <= y and (y - x) > (b - a) for x, y in shadow):
                    continue
            refs.append(Ref(a, b, quoted))
            taken.append((a, b))
    return sorted(refs, key=lambda r: r.start)


def names_of(code: Code) -> list[str]:
    return [code.path_str, code.name] if code.path_str != code.name else [code.name]


def code_refs(template: Template, code_id: str) -> list[tuple[str, str, list[Ref]]]:
    """(other code id, field, references) for every text field of another code that names
    ``code_id``."""
    code = template.codes[code_id]
    others = [c.name for c in template.codes.values() if c.id != code_id]
    out = []
    for c in template.codes.values():
        if c.id == code_id:
            continue
        for f in TEXT_FIELDS:
            refs = find_refs(getattr(c, f), names_of(code), others)
            if refs:
                out.append((c.id, f, refs))
    return out


def replace_refs(text: str, refs: Sequence[Ref], new: str, *, quoted_only: bool = False) -> str:
    """``text`` with each reference in ``refs`` replaced by ``new`` (the quotes stay)."""
    for r in sorted(refs, key=lambda r: r.start, reverse=True):
        if quoted_only and not r.quoted:
            continue
        text = text[: r.start] + new + text[r.end :]
    return text


def replace_quoted(text: str, refs: Sequence[Ref], new_quoted: Sequence[str]) -> str:
    """Each reference replaced by ``'A' or 'B'`` (quoted references keep their quote mark;
    unquoted ones become ``A or B``)."""
    for r in sorted(refs, key=lambda r: r.start, reverse=True):
        if r.quoted:
            o, c = text[r.start - 1], text[r.end]
            joined = f"{c} or {o}".join(new_quoted)
            text = text[: r.start] + joined + text[r.end :]
        else:
            text = text[: r.start] + " or ".join(new_quoted) + text[r.end :]
    return text


# --------------------------------------------------------------------------- clauses


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def clauses(note: str) -> list[str]:
    """A note's clauses: its sentences, each split at semicolons (the template's notes list
    cases as "if X, use 'A'; for Y, use 'B'.")."""
    out = []
    for s in _sentences(note):
        out += [c.strip() for c in s.split(";") if c.strip()]
    return out


def _tidy_clause(c: str) -> str:
    c = c.strip().rstrip(".;, ")
    return (c[:1].upper() + c[1:] + ".") if c else ""


def join_clauses(clauses: Iterable[str]) -> str:
    """Clauses back into a note: "A; b; c." (one sentence, as the template writes them)."""
    parts = [c.strip().rstrip(".;, ") for c in clauses if c.strip().rstrip(".;, ")]
    if not parts:
        return ""
    parts = [parts[0][:1].upper() + parts[0][1:]] + [p[:1].lower() + p[1:] if p[:2] != p[:2].upper() else p for p in parts[1:]]
    return "; ".join(parts) + "."


def drop_clauses_naming(note: str, names: Sequence[str], others: Iterable[str] = ()) -> tuple[str, list[str]]:
    """``note`` without the clauses that name any of ``names``; and the clauses dropped."""
    keep, gone = [], []
    for c in clauses(note):
        (gone if find_refs(c, names, others) else keep).append(c)
    return (join_clauses(keep) if gone else note), gone


_STOP = set(
    "a an and are as at be been but by can co do does for from has have he her his how i if in into is it its itself just "
    "may more most much no nor not of off on only or other our out over own per s same she should so some such than that the "
    "their them then there these they this those through to too under up very was we were what when where which while who "
    "why will with would you your e g use used apply speaker speakers code codes captures describes".split()
)


def _stem(w: str) -> str:
    for suf in ("ings", "ing", "ied", "ies", "ed", "s"):
        if len(w) > len(suf) + 3 and w.endswith(suf) and not w.endswith("ss"):
            return w[: -len(suf)] + ("y" if suf in ("ied", "ies") else "")
    return w


def words(text: str) -> set[str]:
    """Content-word stems (lower case, stop words out, crude suffix stripping)."""
    return {_stem(w) for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2}


_CONTRAST = re.compile(
    r"(?:,\s*|;\s*|\s+[—–-]\s+|\s+|^)(as distinct from|as opposed to|rather than|distinct from|unlike|instead of|but not|not)\b",
    re.IGNORECASE,
)


def contrast_cuts(text: str, other: Code, own: Code) -> tuple[str, list[str]]:
    """Sentences of ``text`` (``own``'s description) that contrast ``own`` with ``other``:
    a contrast marker (as distinct from, rather than, not ...) followed by words of ``other``'s
    name or description that are not words of ``own``'s name. Returns the text with those
    contrasting clauses cut, and the clauses cut."""
    theirs = words(f"{other.name} {other.description}") - words(own.name)
    out, cut = [], []
    for s in _sentences(text):
        for m in _CONTRAST.finditer(s):
            marker = m.group(1).lower()
            if marker == "not" and not (m.start() == 0 or s[m.start()] in ",;—–-"):
                continue  # "does not cover" is a statement, not a contrast
            clause = s[m.start(1):]
            if words(clause) & theirs:
                cut.append(clause.rstrip("."))
                head = s[: m.start()].rstrip(" ,;—–-")
                s = (head + ".") if head else ""
                break
        if s:
            out.append(s)
    return " ".join(out), cut


# --------------------------------------------------------------------------- counter-examples


def profile(code: Code) -> str:
    return " ".join([code.name, code.description, code.include, *[e.text for e in code.examples]])


def told_apart_from(template: Template, code_id: str, excerpt: str) -> str | None:
    """The code a counter-example of ``code_id`` was most likely written to tell it apart
    from: among the codes ``code_id``'s notes name (all other codes without sub-codes when they
    name none), the one whose name, description, include note and examples share the most
    (idf-weighted) content words with the excerpt. None when it shares none with any."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    code = template.codes[code_id]
    named = [c.id for c in template.leaves() if c.id != code_id
             and any(find_refs(getattr(code, f), names_of(c)) for f in TEXT_FIELDS)]
    candidates = named or [c.id for c in template.leaves() if c.id != code_id]
    if not candidates:
        return None
    leaves = [c.id for c in template.leaves()]
    vec = TfidfVectorizer(analyzer=lambda t: sorted(words(t)), sublinear_tf=True)
    vec.fit([profile(template.codes[c]) for c in leaves])
    cand = vec.transform([profile(template.codes[c]) for c in candidates])
    x = vec.transform([excerpt])
    sims = (cand @ x.T).toarray().ravel()
    best = int(sims.argmax())
    return candidates[best] if sims[best] > 0 else None
