"""Blind double-coding in the Review page and the Agreement page (Streamlit AppTest, no
browser, no model), and the ``agreement`` / ``reliability-sample`` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from coder_assist.app import agreement as ag
from coder_assist.cli import main
from coder_assist.app.pipeline import import_files, init_project
from coder_assist.store.project import Project

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 30
MONEY, TIME, LISTEN = "barriers/money", "barriers/time", "enablers/listening"

TEMPLATE = (Path(__file__).resolve().parents[1] / "fixtures" / "tiny_template.yaml").read_text(encoding="utf-8")

T1 = """\
Interviewer: How did the project go?

P1: It was fine overall. The budget was tight all year. We had no time to plan.

Interviewer: Anything that helped?

P1: The council listened to us in the end. People felt heard.
"""

T2 = """\
Interviewer: What would you change?

Sam: More time for the groups. Less paperwork for everyone.

Interviewer: And money?

Sam: A small fund that we control would help.
"""

EVIDENCE = "UNIQUE-EVIDENCE-TEXT"


@pytest.fixture(scope="module")
def base_project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("agreement")
    (folder / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    (folder / "t1_alpha.txt").write_text(T1, encoding="utf-8")
    (folder / "t2_beta.txt").write_text(T2, encoding="utf-8")
    project = init_project(folder / "proj", folder / "template.yaml")
    import_files(project, [folder / "t1_alpha.txt", folder / "t2_beta.txt"])
    segs = [int(s) for s in project.segments()["id"]]
    mv = project.add_model_version("test", "none")
    project.add_suggestions(mv, pd.DataFrame([
        {"segment_id": s, "code_id": LISTEN, "rank": 1, "confidence": 0.9, "similarity": 0.9,
         "evidence": EVIDENCE, "evidence_source": "illustrative", "evidence_similarity": 0.9} for s in segs
    ]))
    # Ann, the first coder, coded every segment with Money (and rejected Listening).
    for s in segs:
        project.record_decision(s, MONEY, "accept", "Ann")
        project.record_decision(s, LISTEN, "reject", "Ann")
    ag.draw_sample(project, 1.0, seed=0, name="pilot")
    project.close()
    return folder / "proj"


@pytest.fixture
def project_dir(base_project, tmp_path, monkeypatch) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(base_project, dest)
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(dest))
    return dest


def start(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["review_mode_kept"] = "triage"  # the one-suggestion view (Passage is the default)
    at.run()
    assert not at.exception, at.exception
    at.sidebar.text_input(key="coder_input").input(name).run()
    assert not at.exception, at.exception
    return at


def blind(at: AppTest) -> AppTest:
    at.selectbox(key="review_blind_sample").select(1).run()
    assert not at.exception, at.exception
    return at


def page_text(at: AppTest) -> str:
    parts = [h.value for h in at.get("html")] + [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [b.label for b in at.button] + [c.label for c in at.checkbox]
    return "\n".join(parts)


def boxes(at: AppTest) -> dict[str, bool]:
    return {c.key.rsplit("::", 1)[-1]: c.value for c in at.checkbox if c.key.startswith("blind_box::")}


def submit(at: AppTest, label: str) -> AppTest:
    next(b for b in at.button if b.label == label).click().run()
    assert not at.exception, at.exception
    return at


def answers(project_dir: Path, coder: str) -> list[list[str]]:
    with Project.open(project_dir) as p:
        rows = p.conn.execute("SELECT codes FROM reliability_answers WHERE coder = ? ORDER BY id", (coder,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def test_normal_review_shows_suggestions_but_blind_mode_hides_them(project_dir):
    at = start("Sam")
    assert EVIDENCE in page_text(at)                  # the control: normal review shows the evidence
    assert [h.value for h in at.header] == ["Review suggestions"]
    blind(at)
    assert [h.value for h in at.header] == ["Blind double-coding"]
    text = page_text(at)
    assert EVIDENCE not in text and '<div class="ca-code">' not in text and "Confidence" not in text
    assert not [b for b in at.button if b.key in ("btn_accept", "btn_reject", "btn_skip")]
    # Ann's decisions (Money accepted everywhere) are not shown to Sam: nothing is pre-ticked.
    assert boxes(at) == {MONEY: False, TIME: False, LISTEN: False}
    assert "Your decisions" not in text and "Ann" not in text


def test_blind_answers_are_committed_before_moving_on(project_dir):
    at = blind(start("Sam"))
    with Project.open(project_dir) as p:
        order = [int(s) for s in ag.sample_segments(p, 1)["segment_id"]]
    first = next(c for c in at.checkbox if c.key.endswith("::" + TIME))
    assert f"::{order[0]}::" in first.key
    first.check()
    submit(at, "Save and next")
    assert answers(project_dir, "Sam") == [[TIME]]
    with Project.open(project_dir) as p:
        cur = p.current_decisions("Sam")
        assert cur[["segment_id", "code_id", "action"]].values.tolist() == [[order[0], TIME, "accept"]]
    # The next segment is shown, with fresh boxes.
    assert all(f"::{order[1]}::" in c.key for c in at.checkbox if c.key.startswith("blind_box::"))
    assert not any(boxes(at).values())
    submit(at, "No code applies")
    assert answers(project_dir, "Sam") == [[TIME], []]
    with Project.open(project_dir) as p:
        assert ag.completed(p, 1, "Sam") == {order[0], order[1]}
    assert at.get("progress")[0].text == f"Blind coding: 2 of {len(order)} segments answered"
    # Back to the first one: her own answer (and only hers) is pre-ticked.
    at.button(key="blind_prev").click().run()
    at.button(key="blind_prev").click().run()
    assert boxes(at) == {MONEY: False, TIME: True, LISTEN: False}


def test_first_coder_sees_own_coding_pre_ticked(project_dir):
    at = blind(start("Ann"))
    assert boxes(at) == {MONEY: True, TIME: False, LISTEN: False}
    submit(at, "Save and next")
    assert answers(project_dir, "Ann") == [[MONEY]]


def test_agreement_page_on_the_sample(project_dir):
    with Project.open(project_dir) as p:
        order = [int(s) for s in ag.sample_segments(p, 1)["segment_id"]]
        for i, s in enumerate(order):
            ag.record_answer(p, 1, s, "Ann", [MONEY])
            ag.record_answer(p, 1, s, "Sam", [MONEY] if i % 2 == 0 else [])
        expected = ag.agreement(p, "Ann", "Sam", sample_id=1)
    at = start("Ann")
    at.switch_page("ui/pages/agreement.py").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == ["Agreement"]
    at.selectbox(key="agreement_b").select("Sam").run()
    at.selectbox(key="agreement_sample").select(1).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items (segment × code)"] == str(expected.overall["items"]) == str(3 * len(order))
    assert metrics["Cohen's kappa (pooled)"] == f"{expected.overall['pooled_kappa']:.2f}"
    table = next(d.value for d in at.dataframe if "Ann says (and Sam not)" in d.value.columns)
    assert len(table) == len(order) // 2 and set(table["Ann says (and Sam not)"]) == {"Money"}
    # Excluding uncoded segments changes nothing here (Ann coded every one).
    at.toggle(key="agreement_exclude_uncoded").set_value(True).run()
    assert {m.label: m.value for m in at.metric}["Items (segment × code)"] == str(3 * len(order))


def test_agreement_page_draws_a_sample(project_dir):
    at = start("Ann")
    at.switch_page("ui/pages/agreement.py").run()
    at.number_input(key="agreement_share").set_value(50).run()
    at.text_input(key="agreement_sample_name").input("round 2").run()
    at.button(key="agreement_draw").click().run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        s = ag.samples(p)
        n = len(p.segments())
    assert s["name"].tolist() == ["pilot", "round 2"] and 0 < s["n_segments"].iloc[1] < n


def test_cli_agreement_and_reliability_sample(project_dir, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["reliability-sample", str(project_dir), "--share", "0.5", "--seed", "2", "--name", "cli"])
    assert r.exit_code == 0, r.output
    assert "drew reliability sample 2 'cli'" in r.output and "'pilot'" in r.output
    with Project.open(project_dir) as p:
        for s in ag.sample_segments(p, 2)["segment_id"]:
            ag.record_answer(p, 2, int(s), "Sam", [])
    out = tmp_path / "agreement.json"
    r = runner.invoke(main, ["agreement", str(project_dir), "--coders", "Ann,Sam", "--sample", "cli", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Agreement: Ann vs Sam" in r.output
    report = json.loads(out.read_text())
    # Ann did not complete the 'cli' sample in blind mode: no items, said plainly.
    assert report["overall"]["items"] == 0 and report["notes"]
    r = runner.invoke(main, ["agreement", str(project_dir), "--model", "Ann", "--exclude-uncoded"])
    assert r.exit_code == 0, r.output
    assert "Ann vs (model)" in r.output and "Money" in r.output
    r = runner.invoke(main, ["agreement", str(project_dir), "--coders", "Ann"])
    assert r.exit_code != 0 and "two names" in r.output
    r = runner.invoke(main, ["agreement", str(project_dir), "--coders", "Ann,Sam", "--sample", "nope"])
    assert r.exit_code == 2 and "no reliability sample 'nope'" in r.output
