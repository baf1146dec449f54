"""coder_assist.core.template_edits: the tree edits, pure (no project, no model)."""

from __future__ import annotations

import pytest

from coder_assist.core import template_edits as te
from coder_assist.core.errors import ProjectError
from coder_assist.core.template import Example
from coder_assist.formats.template import load_template
from tests.conftest import FIXTURES

TINY = FIXTURES / "tiny_template.yaml"
MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"


@pytest.fixture
def t():
    return load_template(TINY)


def test_edits_never_touch_their_argument(t):
    before = t.to_dict()
    te.add_code(t, "Staff", parent_id="barriers", description="People leave.")
    te.rename_tree(t, MONEY, "Funding")
    te.move_tree(t, MONEY, "enablers")
    te.merge_tree(t, TIME, MONEY, [])
    te.split_tree(t, MONEY, [te.Part("A", "a"), te.Part("B", "b")])
    te.add_example(t, LISTEN, "They called back.")
    te.set_texts(t, {(MONEY, "include"): "Budgets."})
    assert t.to_dict() == before


def test_rename_tree_keeps_the_id_and_cleans_the_name(t):
    new = te.rename_tree(t, MONEY, "  Funding \n gaps ")
    assert new.codes[MONEY].name == "Funding gaps" and new.codes[MONEY].path == ("Barriers", "Funding gaps")
    with pytest.raises(ProjectError, match="cannot contain"):
        te.rename_tree(t, MONEY, "A > B")
    with pytest.raises(ProjectError, match="no code"):
        te.rename_tree(t, "nope", "X")


def test_merge_tree_joins_examples_once_and_sets_the_counter_examples_given(t):
    shared = t.codes[TIME].examples[0].text
    t = te.add_example(t, MONEY, shared)  # the same excerpt on both codes
    new = te.merge_tree(t, TIME, MONEY, [Example("Not about money at all.")])
    texts = [e.text for e in new.codes[MONEY].examples]
    assert TIME not in new.codes and texts.count(shared) == 1
    assert set(texts) == {e.text for e in t.codes[MONEY].examples} | {e.text for e in t.codes[TIME].examples}
    assert [e.text for e in new.codes[MONEY].counter_examples] == ["Not about money at all."]
    assert te.merge_tree(t, TIME, MONEY, []).codes[MONEY].counter_examples == []


@pytest.mark.parametrize("src, dst, problem", [(MONEY, MONEY, "two different"), ("barriers", MONEY, "has sub-codes"),
                                               (MONEY, "nope", "no code")])
def test_check_merge_refuses(t, src, dst, problem):
    with pytest.raises(ProjectError, match=problem):
        te.check_merge(t, src, dst)


def test_split_tree_takes_fresh_ids_and_places_the_parts(t):
    new, ids = te.split_tree(t, MONEY, [te.Part("Cuts", "c"), {"name": "Grants", "description": "g"}],
                             taken={"barriers/cuts"})
    assert ids == ["barriers/cuts-2", "barriers/grants"] and MONEY not in new.codes
    assert new.codes["barriers"].children[:2] == ids  # where Money was
    assert all(new.codes[c].counter_examples == t.codes[MONEY].counter_examples for c in ids)


def test_drop_counter_example_can_make_it_an_example(t):
    ce = "Nobody told us why."
    t2 = te.merge_tree(t, TIME, MONEY, [Example(ce)])
    out = te.drop_counter_example(t2, MONEY, ce, add_example=ce)
    assert out.codes[MONEY].counter_examples == [] and [e.text for e in out.codes[MONEY].examples][-1] == ce
    dropped = te.drop_counter_example(t2, MONEY, ce)
    assert dropped.codes[MONEY].counter_examples == [] and ce not in [e.text for e in dropped.codes[MONEY].examples]


def test_a_theme_left_without_sub_codes_needs_a_description(t):
    with pytest.raises(ProjectError, match="give it a description first"):
        te.move_tree(t, LISTEN, "barriers")
    new = te.move_tree(te.update_code(t, "enablers", description="What helps."), LISTEN, "barriers")
    assert new.codes["enablers"].is_leaf and new.codes[LISTEN].path == ("Barriers", "Listening")
