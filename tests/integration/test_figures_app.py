"""Issue 11, item 2 and 4: every screen shows the same numbers as coder_assist.app.figures and as
a direct count of the database, on one hand-built log (accepts, a reject, an undo, a skip, a
"Different code..." pair, a coding by hand, a second coder), before and after a template
merge; and a retrain with too few decisions is not presented as learning.

Driven with AppTest on the tiny project of tests/unit/app/test_modelview.py; the encoder is the
test session's one."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from coder_assist.app import agreement as ag
from coder_assist.app import figures
from coder_assist.store.project import Project
from tests.unit.app.test_figures import _in_force_sql, build_log
from tests.unit.app.test_modelview import MONEY, TIME, make_project

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 30
TRAIN_TIMEOUT = 120


@pytest.fixture(scope="module")
def base_project(tmp_path_factory) -> Path:
    project = make_project(tmp_path_factory.mktemp("figures-app"))
    build_log(project)
    folder = project.folder
    project.close()
    return folder


@pytest.fixture
def project_dir(base_project, tmp_path, monkeypatch, encoder) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(base_project, dest)
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(dest))
    import ui.common

    monkeypatch.setattr(ui.common, "get_encoder", lambda *a, **k: encoder)
    return dest


def start(name: str = "Ann") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    at.sidebar.text_input(key="coder_input").input(name).run()
    assert not at.exception, at.exception
    return at


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"ui/pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def sidebar_text(at: AppTest) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def you(at: AppTest) -> tuple[int, int]:
    m = re.search(r"You: (\d+) decisions? in force · (\d+) suggestions? to go", sidebar_text(at))
    assert m, sidebar_text(at)
    return int(m.group(1)), int(m.group(2))


def metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def tree_text(at: AppTest) -> str:
    """The code tree as shown: HTML and, where the tree is clickable, its buttons' labels."""
    return " ".join([h.value for h in at.get("html")] + [b.label for b in at.button])


def fmt_kappa(k) -> str:
    return "–" if k is None else f"{k:.2f}"


def test_every_screen_counts_the_same(project_dir):
    with Project.open(project_dir) as p:
        mine, q = figures.tally(p, "Ann"), figures.queue_progress(p, "Ann")
        all_in_force = figures.decisions_in_force(p)
        agr = figures.model_agreement(p, "Ann")
        rep = ag.agreement(p, "Ann", ag.MODEL)
        coded = figures.passages_coded(p)
        fx = figures.merge_effect(p, TIME, MONEY)
        assert all_in_force == _in_force_sql(p) == 10 and mine.in_force == _in_force_sql(p, "Ann") == 8

    at = start()
    # Sidebar: Ann's decisions in force, and the suggestions she has left.
    assert you(at) == (mine.in_force, q["to_go"]) == (8, 4)

    # Model page: the all-coders count a retrain would read, and the model-vs-coder figure.
    page(at, "model")
    note = " ".join(m.value for m in at.markdown)
    assert f"**{all_in_force} decisions in force** (all coders); no retrain yet." in note
    assert metric(at, "Cohen's kappa") == fmt_kappa(agr["kappa"]) == fmt_kappa(rep.overall["pooled_kappa"])
    assert metric(at, "Agreement") == f"{agr['percent_agreement']:.0%}"
    assert metric(at, "Your accept rate") == f"{q['accept_rate']:.0%}" == "67%"  # the Review page's accept rate

    # Agreement page, Ann against the model: the same kappa and agreement.
    page(at, "agreement")
    at.selectbox(key="agreement_a").set_value("Ann").run()
    at.selectbox(key="agreement_b").set_value(ag.MODEL).run()
    assert not at.exception, at.exception
    assert metric(at, "Cohen's kappa (pooled)") == fmt_kappa(agr["kappa"])
    assert metric(at, "Agreement") == f"{agr['percent_agreement']:.0%}"
    assert metric(at, "Items (segment × code)") == str(agr["items"])

    # Template page: the tree badge and the code's caption are passages coded; the merge
    # dialog says what moves and what the merge does to decisions in force.
    page(at, "template")
    at.selectbox(key="tpl_code").set_value(MONEY).run()
    assert f"{coded[MONEY]} coded" in tree_text(at) and coded[MONEY] == 4
    caption = " ".join(c.value for c in at.caption)
    assert "4 passages coded · 6 decisions in force · 9 log entries" in caption
    at.selectbox(key="tpl_code").set_value(TIME).run()
    assert "1 passage coded · 3 decisions in force · 3 log entries" in " ".join(c.value for c in at.caption)
    at.selectbox(key="tpl_merge_into").set_value(MONEY).run()
    warning = " ".join(w.value for w in at.warning)
    assert f"its {fx.source_in_force} decisions in force ({fx.log_entries} log entries" in warning
    assert "On 1 passage a coder has decisions on both codes" in warning and "go from 9 to 8 (1 decision fewer)" in warning
    at.button(key="tpl_merge").click().run()
    assert not at.exception, at.exception
    assert any(f"{fx.log_entries} log entries moved" in s.value for s in at.success)

    # After the merge: "decided" fell by exactly the one collapsed pair, on every screen and in the database.
    with Project.open(project_dir) as p:
        assert _in_force_sql(p, "Ann") == mine.in_force - fx.lost == 7
        assert _in_force_sql(p) == figures.decisions_in_force(p) == all_in_force - fx.lost
        agr2 = figures.model_agreement(p, "Ann")
        coded2 = figures.passages_coded(p)
    assert you(at)[0] == 7
    assert f"{coded2[MONEY]} coded" in tree_text(at)
    page(at, "model")
    assert f"**{all_in_force - fx.lost} decisions in force** (all coders)" in " ".join(m.value for m in at.markdown)
    assert metric(at, "Cohen's kappa") == fmt_kappa(agr2["kappa"])
    page(at, "agreement")
    at.selectbox(key="agreement_b").set_value(ag.MODEL).run()
    assert metric(at, "Cohen's kappa (pooled)") == fmt_kappa(agr2["kappa"])


def test_a_retrain_with_too_few_decisions_says_so(project_dir):
    with Project.open(project_dir) as p:
        learn = figures.learnability(p).table.set_index("code_id")
        n = figures.decisions_in_force(p)
        before = p.conn.execute("SELECT COUNT(*) FROM suggestions WHERE model_version_id = 1").fetchone()[0]
    assert not learn["learnable"].any()
    at = page(start(), "model")
    assert any("cannot learn any code yet" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "verdict" in d.value.columns).set_index("code_id")
    assert table.loc[MONEY, "needs"] == figures.needs_text(learn.loc[MONEY, "accepts_needed"], learn.loc[MONEY, "rejects_needed"])
    assert table.loc[MONEY, "needs"] == "needs 2 more rejects"

    at.button(key="model_retrain").click().run(timeout=TRAIN_TIMEOUT)
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        versions = p.model_versions()
        assert list(versions["kind"]) == ["example-similarity", "learned"]  # a version was saved ...
        after = p.conn.execute("SELECT COUNT(*) FROM suggestions WHERE model_version_id = 2").fetchone()[0]
    # ... but it is not called learned anywhere on the page.
    done = [s for s in at.status if "Retrained in" in s.label]
    assert done and "no code could be learned yet" in done[0].label and "template only (not enough decisions yet)" in done[0].label
    assert metric(at, "Learned from") == "template only"
    versions_table = next(d.value for d in at.dataframe if "codes_learned" in d.value.columns).sort_values("id")
    assert list(versions_table["kind_label"]) == ["example-similarity (template only)", "template only (not enough decisions yet)"]
    assert list(versions_table["codes_learned"].fillna(-1)) == [-1, 0]
    assert any("none of which could learn a code" in i.value for i in at.info)  # why the curve is empty
    assert not any("Trained on" in m.label for m in at.metric)
    assert f"**0 more decisions** in force than the last retrain learned from ({n} now, {n} then)." in " ".join(m.value for m in at.markdown)
    if after != before:  # the queue changed size: the page says why
        caption = " ".join(c.value for c in at.caption)
        assert f"{after} suggestions from v2, against {before} from v1" in caption
        assert ("It grew because" in caption) == (after > before)
