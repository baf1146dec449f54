"""coder_assist.ml.references: finding the places a template's texts name a code."""

from __future__ import annotations

from coder_assist.ml import references as refs
from coder_assist.core.template import Code


def spans(text, names, others=()):
    return [(text[r.start:r.end], r.quoted) for r in refs.find_refs(text, names, others)]


def test_quoted_and_unquoted_references():
    assert spans("use 'Time'; or “Time”, or \"Time\".", ["Time"]) == [("Time", True)] * 3
    assert spans("no Time here, nor Timetable, nor time-keeping, nor time", ["Time"]) == [("Time", False)]
    # A longer code name that contains the name: not a reference to the shorter one.
    assert spans("use 'Time to reflect' or Time to reflect, or Time.", ["Time"], ["Time to reflect"]) == [("Time", False)]
    # Inside somebody's quotation: not a reference either.
    assert spans("she said 'we had no Time at all'", ["Time"]) == []
    # Apostrophes in words neither open nor close a quotation.
    assert spans("people's Time isn't 'Money'", ["Time", "Money"]) == [("Time", False), ("Money", True)]
    # Long names match whatever their case; the full path counts as a reference too.
    long = "Lack of funding for co-production work"
    assert spans(f"when lack of funding for co-production work, or 'A > {long}'", [f"A > {long}", long]) == [
        ("lack of funding for co-production work", False), (f"A > {long}", True)]


def test_replace_and_drop_clauses():
    text = "If deadlines, use 'Time'; for being heard, use 'Listening'."
    found = refs.find_refs(text, ["Time"])
    assert refs.replace_refs(text, found, "Deadlines") == "If deadlines, use 'Deadlines'; for being heard, use 'Listening'."
    assert refs.replace_quoted(text, found, ["A", "B"]) == "If deadlines, use 'A' or 'B'; for being heard, use 'Listening'."
    assert refs.drop_clauses_naming(text, ["Time"]) == ("For being heard, use 'Listening'.", ["If deadlines, use 'Time'"])
    assert refs.drop_clauses_naming("Use 'Time'.", ["Time"])[0] == ""
    assert refs.drop_clauses_naming("Nothing here.", ["Time"]) == ("Nothing here.", [])


def test_contrast_cuts_only_contrasts_with_the_other_code():
    own = Code("m", "Money", ("Money",), description="Funding does not cover sessions, as distinct from time to plan them.")
    other = Code("t", "Time", ("Time",), description="Deadlines.")
    assert refs.contrast_cuts(own.description, other, own) == ("Funding does not cover sessions.", ["as distinct from time to plan them"])
    # "does not cover" states what the code is; it contrasts with nothing.
    assert refs.contrast_cuts("Funding does not cover sessions.", other, own) == ("Funding does not cover sessions.", [])
    unrelated = Code("l", "Listening", ("Listening",), description="People feel heard.")
    assert refs.contrast_cuts(own.description, unrelated, own)[1] == []
