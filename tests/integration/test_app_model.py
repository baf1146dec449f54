"""The Model page driven headless with Streamlit's AppTest on a tiny project: retrain from the
decisions, per-code figures, rollback, automatic retraining. The app's embedding model is the
test session's one (``ui.common.get_encoder`` is patched), so nothing is loaded twice."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from coder_assist.store.project import Project
from tests.unit.app.test_modelview import MONEY, MONEY_TEXT, TIME, add_suggestions, make_project

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 30
TRAIN_TIMEOUT = 120


@pytest.fixture(scope="module")
def base_project(tmp_path_factory) -> Path:
    """Every passage suggested for Money and Time; Ann accepted the right one and rejected the
    other on each."""
    project = make_project(tmp_path_factory.mktemp("model-app"))
    segs = project.segments()
    n = len(segs)
    rows = [(i, MONEY, 0.6 if i % 3 else 0.3) for i in range(n)] + [(i, TIME, 0.4) for i in range(n)]
    _, sids = add_suggestions(project, rows)
    for (i, code, _), sid in zip(rows, sids):
        is_money = i < len(MONEY_TEXT)
        action = "accept" if (code == MONEY) == is_money else "reject"
        project.record_decision(int(segs.iloc[i]["id"]), code, action, "Ann", suggestion_id=sid)
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


def open_model_page(name: str | None = "Ann") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    if name is not None:
        at.sidebar.text_input(key="coder_input").input(name).run()
    at.switch_page("ui/pages/model.py").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header] == ["Model"]
    return at


def active_version(project_dir: Path) -> int:
    with Project.open(project_dir) as p:
        return p.latest_model_version()


def codes_table(at: AppTest):
    return next(d.value for d in at.dataframe if "verdict" in d.value.columns)


def test_retrain_shows_the_new_model_then_roll_back(project_dir):
    at = open_model_page()
    assert active_version(project_dir) == 1
    assert set(codes_table(at)["verdict"]) == {"cold start"}
    kappa = next(m for m in at.metric if m.label == "Cohen's kappa")
    assert kappa.value not in ("", "–")
    assert any("the model says yes where it suggested the code" in c.value for c in at.caption)  # the Agreement page's items

    at.button(key="model_retrain").click().run(timeout=TRAIN_TIMEOUT)
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        versions = p.model_versions()
        assert len(versions) == 2 and list(versions["kind"]) == ["example-similarity", "learned"]
        new = int(versions["id"].iloc[-1])
        assert p.latest_model_version() == new
        assert set(p.suggestions()["model_version_id"]) == {new}  # what the review queue now reads
    done = [s for s in at.status if "Retrained in" in s.label]
    assert done and f"model version v{new}" in done[0].label
    table = codes_table(at)
    money = table[table["code_id"] == MONEY].iloc[0]
    assert money["n_pos"] == len(MONEY_TEXT) and money["f1"] >= 0 and money["verdict"] != "cold start"
    assert any("The model used 24 decisions" in c.value.replace("\n", " ") for c in at.code)  # the model card
    assert any(d.proto.label.startswith("Download model card") for d in at.get("download_button"))
    assert next(m for m in at.metric if m.label == "Active model").value == f"v{new}"

    # Roll back to the template-only version: the queue reads its suggestions again.
    assert at.selectbox(key="model_rollback_version").value == 1
    at.button(key="model_rollback").click().run()
    assert not at.exception, at.exception
    assert active_version(project_dir) == 1
    assert any("v1 is active again" in s.value for s in at.success)
    assert set(codes_table(at)["verdict"]) == {"cold start"}
    # The choice moves on to another version than the active one.
    assert at.selectbox(key="model_rollback_version").value == new
    assert not at.button(key="model_rollback").disabled and at.button(key="model_rollback").label == "Switch to it"
    at.button(key="model_rollback").click().run()
    assert active_version(project_dir) == new


def _auto_retrain_script():
    """A stand-in for the review page: a decision button whose callback calls the hook."""
    import os
    from pathlib import Path

    import streamlit as st

    from coder_assist.store.project import Project
    from ui import common

    folder = Path(os.environ["CODER_ASSIST_PROJECT"])

    def decide():
        with Project.open(folder) as p:
            st.session_state["started"] = common.after_decision(p, "Ann")

    st.button("Accept", key="decide", on_click=decide)
    st.write(f"started: {st.session_state.get('started')}")


def test_auto_retrain_setting_and_hook(project_dir):
    at = open_model_page()
    at.number_input(key="model_auto_every").set_value(20).run()
    assert not at.exception, at.exception
    with Project.open(project_dir) as p:
        assert p.meta("auto_retrain_every") == "20"
    assert any("Next automatic retrain" in m.value or "automatic retrain is due" in m.value for m in at.markdown)

    hook = AppTest.from_function(_auto_retrain_script, default_timeout=TIMEOUT).run()
    hook.button(key="decide").click().run()
    assert not hook.exception, hook.exception
    assert any("started: True" in m.value for m in hook.markdown)  # 24 decisions >= 20
    assert any("retraining the model in the background" in t.value for t in hook.toast)
    deadline = time.time() + TRAIN_TIMEOUT
    while active_version(project_dir) == 1 and time.time() < deadline:
        time.sleep(0.2)
    assert active_version(project_dir) == 2
    from coder_assist.app import jobs

    job = jobs.current_job(project_dir)
    if job is not None and job.thread is not None:
        job.thread.join(TRAIN_TIMEOUT)
        assert job.error is None and job.version == 2
    # Counted from the new version: nothing is due, the hook does nothing.
    hook.button(key="decide").click().run()
    assert any("started: False" in m.value for m in hook.markdown)

    at.run()  # the Model page reports the automatic retrain
    assert any("automatic" in s.label and "v2" in s.label for s in at.status)


def test_finetune_needs_enough_decisions(project_dir):
    """The fine-tune button is there, and disabled (with the count in its help) until the
    project has the minimum number of accept/reject decisions. On a project with the default
    encoder (USE, which cannot be fine-tuned) it is disabled and names the encoder that can be."""
    from coder_assist.app import modelview
    from coder_assist.ml.finetune import MIN_DECISIONS

    at = open_model_page()
    button = next(b for b in at.button if b.key == "model_finetune")
    assert button.disabled and "--model all-MiniLM-L6-v2" in button.help
    with Project.open(project_dir) as p:
        assert p.meta("model") == "use-multilingual-v3"
        p.set_meta("model", "all-MiniLM-L6-v2")
        n = modelview.n_decisions(p)
    at = open_model_page()
    button = next(b for b in at.button if b.key == "model_finetune")
    assert n < MIN_DECISIONS
    assert button.disabled and f"{n} so far" in button.help
