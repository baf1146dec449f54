import pytest
import yaml

from coder_assist.core.template import PATH_SEP, parse_template
from coder_assist.formats.template import load_template
from coder_assist.core.errors import TemplateError


def test_default_template_matches_the_study(template):
    roots = [c.name for c in template.roots()]
    assert roots[:5] == ["Psychological capability", "Physical opportunity", "Social opportunity", "Automatic motivation", "Reflective motivation"]
    assert "Diversity" in roots and "Co-production as value and behaviour" in roots
    leaves = template.leaves()
    assert len(leaves) >= 40
    assert all(len(c.path) == 3 for c in leaves)  # theme > sub-theme > code
    assert template.get("Permission to innovate").path[0] == "Social opportunity"
    study_quotes = [e for c in leaves for e in c.examples if e.source.startswith("study quote")]
    assert len(study_quotes) >= 10
    assert all(c.description for c in template.codes.values())


def test_lookup_by_id_path_and_name(template):
    code = template.get("Permission to innovate")
    assert template.get(code.id) is code
    assert template.get(code.path_str) is code
    with pytest.raises(KeyError, match="ambiguous"):
        template.get("Barriers")


NESTED = {
    "name": "T",
    "codes": [
        {
            "name": "Theme",
            "description": "d",
            "exclusive": True,
            "children": [
                {"name": "A", "description": "a code", "examples": ["one", {"text": "two", "source": "pt1"}]},
                {"name": "B", "examples": ["b example"], "counter_examples": ["not b"]},
            ],
        }
    ],
}


def test_nested_and_flat_forms_agree():
    flat = {
        "name": "T",
        "codes": [
            {"name": "A", "parent": "Theme", "description": "a code", "examples": ["one", {"text": "two", "source": "pt1"}]},
            {"name": "Theme", "description": "d", "exclusive": True},
            {"name": "B", "parent": "Theme", "examples": ["b example"], "counter_examples": ["not b"]},
        ],
    }
    a, b = parse_template(NESTED), parse_template(flat)
    assert [c.path for c in a.codes.values()] == [c.path for c in b.codes.values()]
    assert [c.id for c in a.leaves()] == ["theme/a", "theme/b"]
    assert a.codes["theme/a"].examples[1].source == "pt1"
    assert a.exclusive_siblings("theme/a") == ["theme/b"]
    assert a.get("B").counter_examples[0].text == "not b"


def test_yaml_round_trip(tmp_path):
    t = parse_template(NESTED)
    p = tmp_path / "t.yaml"
    p.write_text(t.to_yaml(), encoding="utf-8")
    again = load_template(p)
    assert again.frame().equals(t.frame())


def test_default_template_round_trips(template, tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(template.to_yaml(), encoding="utf-8")
    assert load_template(p).frame().equals(template.frame())


@pytest.mark.parametrize(
    "codes, problem, code",
    [
        ([{"name": "A", "description": "x"}, {"name": "A", "description": "y"}], "duplicate code", "A"),
        ([{"name": "A", "description": "x", "parent": "Nope"}], "unknown parent 'Nope'", "A"),
        ([{"name": "A", "parent": "B", "description": "x"}, {"name": "B", "parent": "A", "description": "y"}], "cycle", None),
        ([{"name": "  ", "description": "x"}], "empty or missing name", None),
        ([{"name": "A"}], "needs a description or at least one example", "A"),
        ([{"name": "A", "description": "x", "colour": "red"}], "unknown field", "A"),
        ([{"name": "A", "description": "x", "examples": [""]}], "examples #1 is empty", "A"),
        ([{"name": "A", "description": "x", "color": "red"}], "color must look like", "A"),
    ],
)
def test_validation_names_file_code_and_problem(tmp_path, codes, problem, code):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"name": "T", "codes": codes}), encoding="utf-8")
    with pytest.raises(TemplateError) as err:
        load_template(p)
    msg = str(err.value)
    assert "bad.yaml" in msg and problem in msg
    if code:
        assert f"code {code!r}" in msg


def test_yaml_is_loaded_safely(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("name: !!python/object/apply:os.system ['echo pwned']\ncodes: []\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="not valid YAML"):
        load_template(p)


def test_not_yaml_and_missing(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("codes: [unclosed", encoding="utf-8")
    with pytest.raises(TemplateError, match="x.yaml: not valid YAML"):
        load_template(p)
    with pytest.raises(TemplateError, match="cannot read"):
        load_template(tmp_path / "missing.yaml")


def test_path_separator():
    t = parse_template(NESTED)
    assert t.get("A").path_str == f"Theme{PATH_SEP}A"
