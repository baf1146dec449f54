"""app.py driven headless with Streamlit's AppTest on a tiny project (no browser, no model)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from coder_assist.app import review
from coder_assist.app.pipeline import import_files, init_project
from coder_assist.store.project import Project

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TIMEOUT = 20

TEMPLATE = (Path(__file__).resolve().parents[1] / "fixtures" / "tiny_template.yaml").read_text(encoding="utf-8")

T1 = """\
Interviewer: How did the project go?

P1: It was fine overall. The budget was tight all year. We had no time to plan.

Interviewer: Anything that helped?

P1: The council listened to us <b>in the end</b>. People felt heard.
"""

T2 = """\
Interviewer: What would you change?

Sam: More time for the groups. Less paperwork for everyone.

Interviewer: And money?

Sam: A small fund that we control would help.
"""

CONFIDENCES = [("barriers/money", 0.9), ("barriers/time", 0.7), ("enablers/listening", 0.5), ("barriers/time", 0.3)]


@pytest.fixture(scope="module")
def base_project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("app")
    (folder / "template.yaml").write_text(TEMPLATE, encoding="utf-8")
    (folder / "t1_alpha.txt").write_text(T1, encoding="utf-8")
    (folder / "t2_beta.txt").write_text(T2, encoding="utf-8")
    project = init_project(folder / "proj", folder / "template.yaml")
    import_files(project, [folder / "t1_alpha.txt", folder / "t2_beta.txt"])
    segs = project.segments()
    assert len(segs) >= len(CONFIDENCES)
    mv = project.add_model_version("test", "none")
    rows = [
        {"segment_id": int(segs.iloc[i]["id"]), "code_id": code, "rank": 1, "confidence": conf, "similarity": conf,
         "evidence": f"<i>evidence</i> for {code}", "evidence_source": "illustrative", "evidence_similarity": conf}
        for i, (code, conf) in enumerate(CONFIDENCES)
    ]
    project.add_suggestions(mv, pd.DataFrame(rows))
    project.close()
    return folder / "proj"


@pytest.fixture
def project_dir(base_project, tmp_path, monkeypatch) -> Path:
    dest = tmp_path / "proj"
    shutil.copytree(base_project, dest)
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(dest))
    return dest


def start(name: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["review_mode_kept"] = "triage"  # these tests drive the one-suggestion view; Passage is the default
    at.run()
    assert not at.exception, at.exception
    if name is not None:
        at.sidebar.text_input(key="coder_input").input(name).run()
        assert not at.exception, at.exception
    return at


def shown_code(at: AppTest) -> str:
    """The leaf name in the suggestion card."""
    for h in at.get("html"):
        m = re.search(r'<div class="ca-code">(.*?)</div>', h.value)
        if m:
            return m.group(1)
    raise AssertionError("no suggestion card on the page")


def log(project_dir: Path) -> pd.DataFrame:
    with Project.open(project_dir) as p:
        return p.decisions()


def head(project_dir: Path, coder: str | None) -> pd.Series:
    with Project.open(project_dir) as p:
        return review.review_queue(p, coder).iloc[0]


def leaf(path: str) -> str:
    return path.split(" > ")[-1]


def test_decisions_are_disabled_until_the_coder_is_named(project_dir):
    at = start()
    for key in ("btn_accept", "btn_reject", "btn_skip", "btn_undo"):
        assert at.button(key=key).disabled
    assert shown_code(at) == leaf(head(project_dir, None)["code_path"])
    at.sidebar.text_input(key="coder_input").input("  Alex  ").run()
    assert not at.button(key="btn_accept").disabled
    assert any("Alex" in m.value for m in at.sidebar.markdown)
    assert log(project_dir).empty


def test_accept_then_undo(project_dir):
    at = start("Alex")
    first = head(project_dir, "Alex")
    assert shown_code(at) == leaf(first["code_path"])

    at.button(key="btn_accept").click().run()
    assert not at.exception, at.exception
    decisions = log(project_dir)
    assert len(decisions) == 1
    row = decisions.iloc[0]
    assert (row["action"], row["coder"], int(row["suggestion_id"])) == ("accept", "Alex", int(first["suggestion_id"]))
    nxt = head(project_dir, "Alex")
    assert int(nxt["suggestion_id"]) != int(first["suggestion_id"])
    assert shown_code(at) == leaf(nxt["code_path"])
    assert "1 of 4 decided" in at.get("progress")[0].proto.text

    at.button(key="btn_undo").click().run()
    assert not at.exception, at.exception
    decisions = log(project_dir)
    assert list(decisions["action"]) == ["accept", "undo"]
    assert int(decisions.iloc[1]["undoes"]) == int(decisions.iloc[0]["id"])
    assert shown_code(at) == leaf(first["code_path"])  # the undone suggestion is back in front


def test_reject_skip_and_different_code(project_dir):
    at = start("Alex")
    first = head(project_dir, "Alex")
    at.button(key="btn_reject").click().run()
    second = head(project_dir, "Alex")
    at.button(key="btn_skip").click().run()
    third = head(project_dir, "Alex")
    assert shown_code(at) == leaf(third["code_path"])

    other = "enablers/listening" if third["code_id"] != "enablers/listening" else "barriers/money"
    at.button(key="btn_other").click().run()  # "Different code...": search, then a click on the match
    sid = int(third["suggestion_id"])
    at.text_input(key=f"review_other_search_{sid}").input("Listening" if other == "enablers/listening" else "Money").run()
    at.button(key=f"review_other_pick_{sid}_0").click().run()
    assert not at.exception, at.exception
    decisions = log(project_dir)
    assert list(decisions["action"]) == ["reject", "skip", "reject", "accept"]
    assert int(decisions.iloc[0]["suggestion_id"]) == int(first["suggestion_id"])
    assert int(decisions.iloc[1]["suggestion_id"]) == int(second["suggestion_id"])
    assert int(decisions.iloc[2]["suggestion_id"]) == int(third["suggestion_id"])
    assert decisions.iloc[3]["segment_id"] == decisions.iloc[2]["segment_id"]

    at.button(key="btn_undo").click().run()  # takes back both halves of "different code"
    assert list(log(project_dir)["action"]) == ["reject", "skip", "reject", "accept", "undo", "undo"]


def test_page_escapes_transcript_text(project_dir):
    at = start("Alex")
    page = " ".join(h.value for h in at.get("html"))
    assert "<b>in the end</b>" not in page and "<i>evidence</i>" not in page
    # Walk to the suggestion on the turn with markup and check it is shown escaped.
    for _ in range(len(CONFIDENCES)):
        page = " ".join(h.value for h in at.get("html"))
        if "&lt;b&gt;in the end&lt;/b&gt;" in page:
            break
        at.button(key="btn_skip").click().run()
    assert "&lt;b&gt;in the end&lt;/b&gt;" in page
    assert "&lt;i&gt;evidence&lt;/i&gt;" in page


def test_queue_order_and_filters(project_dir):
    at = start("Alex")
    at.radio(key="review_order").set_value("uncertain").run()
    with Project.open(project_dir) as p:
        expected = review.review_queue(p, "Alex", "uncertain").iloc[0]
    assert shown_code(at) == leaf(expected["code_path"])
    at.selectbox(key="review_filter_code").select("enablers/listening").run()
    assert shown_code(at) == "Listening"
    at.button(key="btn_accept").click().run()
    assert any("Nothing left to review under these filters" in s.value for s in at.success)


def test_all_done_message(project_dir):
    at = start("Alex")
    for _ in range(len(CONFIDENCES)):
        at.button(key="btn_accept").click().run()
    assert any("All 4 suggestions decided" in s.value for s in at.success)
    assert not at.button(key="btn_undo").disabled


def test_non_project_folder_is_not_filled_with_the_demo(tmp_path, monkeypatch):
    folder = tmp_path / "someones-data"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a project", encoding="utf-8")
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(folder))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert any("has no `project.db`" in e.value for e in at.error)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_first_start_builds_the_demo_into_an_empty_folder(tmp_path, monkeypatch, encoder):
    import ui.common

    folder = tmp_path / "new"
    monkeypatch.setenv("CODER_ASSIST_PROJECT", str(folder))
    monkeypatch.setattr(ui.common, "get_encoder", lambda *a, **k: encoder)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    # The build's status box is gone by now: the first run ends by switching to the Review page.
    assert [h.value for h in at.header] == ["Review passages"]  # passage review is the default mode
    with Project.open(folder) as p:
        counts, created = p.counts(), p.meta("created_at")
    assert counts["transcripts"] > 0 and counts["suggestions"] > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no build folder left beside it
    at.run()
    assert not at.exception, at.exception
    with Project.open(folder) as p:
        assert p.meta("created_at") == created  # built once


def test_project_path_from_arguments(monkeypatch):
    from ui.common import project_path

    monkeypatch.delenv("CODER_ASSIST_PROJECT", raising=False)
    assert project_path(["--project", "/tmp/x"]) == Path("/tmp/x")
    assert project_path(["--", "--project", "/tmp/y"]) == Path("/tmp/y")
    assert project_path(["-q", "tests"]).name == "demo-project"
    monkeypatch.setenv("CODER_ASSIST_PROJECT", "/tmp/z")
    assert project_path([]) == Path("/tmp/z")
    assert project_path(["--project", "/tmp/x"]) == Path("/tmp/x")  # the argument wins


def test_keyboard_shortcuts_are_wired(project_dir):
    at = start("Alex")
    shortcuts = {key: at.button(key=key).proto.shortcut for key in ("btn_accept", "btn_skip", "btn_undo")}
    assert shortcuts == {"btn_accept": "a", "btn_skip": "s", "btn_undo": "u"}
    # R is Streamlit's rerun key, so Reject gets it from the page script, which must find the button.
    script = next(h.value for h in at.get("html") if "keydown" in h.value)
    assert ".st-key-btn_reject button" in script and "isContentEditable" in script
    assert ".st-key-btn_other button" in script  # D: "Different code..."


def _passage_start(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.sidebar.text_input(key="coder_input").input(name).run()
    assert not at.exception, at.exception
    return at


def test_passage_boxes_start_as_their_default_and_the_search_ticks_a_listed_or_new_code(project_dir):
    """Passage mode draws each box with its initial tick as the widget's own value (no seeded
    session state that a cut-short run could leave the browser without), and the code search
    ticks a code whether its box is already listed (unticked) or new; the confirmed passage is
    what the boxes showed."""
    from ui.review import PASSAGE_PICK_PREFIX, PASSAGE_SEARCH_PREFIX, box_key

    with Project.open(project_dir) as p:
        view = review.next_passage(p, "Ana")
        leaves = dict(review.leaf_codes(p))
    seg = view.segment_id
    ticked = {c.code_id for c in view.candidates if c.ticked}
    listed_unticked = next(c.code_id for c in view.candidates if not c.ticked)
    new_code = next(c for c in leaves if c not in {x.code_id for x in view.candidates})
    at = _passage_start("Ana")
    for c in view.candidates:
        assert at.checkbox(key=box_key(seg, c.code_id)).value == c.ticked

    for code in (listed_unticked, new_code):
        at.button(key="passage_add").click().run()
        at.text_input(key=f"{PASSAGE_SEARCH_PREFIX}{seg}").input(leaf(leaves[code])).run()
        at.button(key=f"{PASSAGE_PICK_PREFIX}{seg}_0").click().run()
        assert not at.exception, at.exception
        assert at.checkbox(key=box_key(seg, code)).value is True
    assert log(project_dir).empty, "nothing is recorded before the passage is confirmed"

    at.button(key="passage_confirm").click().run()
    assert not at.exception, at.exception
    rows = log(project_dir)
    assert set(rows.loc[rows["action"] == "accept", "code_id"]) == ticked | {listed_unticked, new_code}
    assert set(rows.loc[rows["action"] == "reject", "code_id"]) == set(leaves) - ticked - {listed_unticked, new_code}
