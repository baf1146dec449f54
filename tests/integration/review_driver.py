"""Drive the review page as a coder would, and say what each action must write to the log.

Shared by the AppTest tests (``test_review_model_based.py``) and the browser tests
(``test_browser.py``): the project they run on, a :class:`Tab` that wraps AppTest with the one
thing a real browser does that AppTest does not, and the reference :class:`Model` of the
decision log.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from coder_assist.app import review
from coder_assist.app.pipeline import DEMO_DIR, import_files, init_project
from coder_assist.store.project import Project

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TIMEOUT = 30
CODER = "Model Tester"
TRANSCRIPTS = ["P1_LA_strategic.txt", "P4_NHS_strategic.txt", "P7_VCSE_strategic.vtt"]
REVIEW_PAGE = "ui/pages/review.py"
OTHER_PAGE = "ui/pages/transcripts.py"


def build_project(folder: Path, seed: int = 11) -> Path:
    """Three demo interviews under the default template (48 leaf codes, so the code search has
    work to do), with one or two made-up suggestions per passage: no model is loaded."""
    project = init_project(folder / "proj")
    import_files(project, [DEMO_DIR / t for t in TRANSCRIPTS], attributes=DEMO_DIR / "attributes.csv")
    rng = np.random.default_rng(seed)
    leaves = [c for c, _ in review.leaf_codes(project)]
    rows = []
    for seg in project.segments()["id"]:
        for rank, code in enumerate(rng.choice(leaves, size=int(rng.integers(1, 3)), replace=False), start=1):
            conf = float(rng.uniform(0.05, 0.95))
            rows.append({"segment_id": int(seg), "code_id": str(code), "rank": rank, "confidence": round(conf, 4),
                         "similarity": conf, "evidence": f"An example of {code}", "evidence_source": "illustrative",
                         "evidence_similarity": conf})
    mv = project.add_model_version("test", "none")
    project.add_suggestions(mv, pd.DataFrame(rows))
    project.close()
    return folder / "proj"


def copy_project(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest)
    return dest


# --------------------------------------------------------------------------- a tab


class Tab:
    """One browser tab on the app, through AppTest.

    A real browser keeps the last value the coder gave a widget and sends it again with every
    later rerun for as long as a widget of that id is on the page, even where the server reset
    the value meanwhile and the widget did not take the reset (the content of a closed popover
    is not mounted, so it never did). AppTest reads every value back from the server, so on its
    own it hides that class of bug; this class sends kept values again, as the browser does,
    for the widgets of "Different code..." (keys ``review_other*``).
    """

    STICKY = "review_other"

    def __init__(self, name: str | None = CODER):
        self.at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        self.at.session_state["review_mode_kept"] = "triage"  # the one-suggestion view (Passage is the default)
        self.kept: dict[str, object] = {}
        self.run()
        if name is not None:
            self.at.sidebar.text_input(key="coder_input").input(name)
            self.run()

    def _widgets(self) -> list:
        return [*self.at.get("text_input"), *self.at.get("selectbox")]

    def run(self) -> "Tab":
        present = {w.id: w for w in self._widgets()}
        self.kept = {i: v for i, v in self.kept.items() if i in present}
        for wid, value in self.kept.items():
            present[wid].set_value(value)
        self.at.run()
        assert not self.at.exception, [e.value for e in self.at.exception]
        return self

    def set(self, widget, value) -> "Tab":
        widget.set_value(value)
        if str(widget.key or "").startswith(self.STICKY):
            self.kept[widget.id] = value
        return self.run()

    def click(self, key: str) -> "Tab":
        self.at.button(key=key).click()
        return self.run()

    def has_button(self, key: str) -> bool:
        return any(b.key == key for b in self.at.button)

    # ----------------------------------------------------------------- what the page shows

    def shown(self) -> int | None:
        """The suggestion on the card (``None``: no card)."""
        for h in self.at.get("html"):
            m = re.search(r'class="ca-card" data-suggestion="(\d+)"', h.value)
            if m:
                return int(m.group(1))
        return None

    def shown_code(self) -> str | None:
        for h in self.at.get("html"):
            m = re.search(r'<div class="ca-code">(.*?)</div>', h.value)
            if m:
                return m.group(1)
        return None

    def progress_text(self) -> str:
        bars = self.at.get("progress")
        return bars[0].proto.text if bars else ""

    # ----------------------------------------------------------------- actions

    def other(self, code_path: str, query: str) -> "Tab":
        """"Different code...": open it, type ``query``, click the match named ``code_path``."""
        sid = self.shown()
        self.click("btn_other")
        box = self.at.text_input(key=f"{review_page().OTHER_SEARCH_PREFIX}{sid}")
        self.set(box, query)
        for b in self.at.button:
            if str(b.key or "").startswith(f"{review_page().OTHER_PICK_PREFIX}{sid}_") and b.help == code_path:
                return self.click(b.key)
        raise AssertionError(f"{code_path!r} is not among the matches for {query!r}")

    def first_match(self) -> str:
        """The code path of the first match listed (what Enter picks)."""
        sid = self.shown()
        return self.at.button(key=f"{review_page().OTHER_PICK_PREFIX}{sid}_0").help

    def switch(self, page: str) -> "Tab":
        self.at.switch_page(page)
        return self.run()


def review_page():
    from ui import review as page

    return page


# --------------------------------------------------------------------------- the reference model


@dataclass
class Row:
    """What one decision row must hold (the columns a step decides)."""

    segment_id: int
    code_id: str
    action: str
    suggestion_id: int | None = None
    undoes: int | None = None
    other: bool = False  # the accept of a "Different code..."

    @staticmethod
    def of(r: pd.Series) -> "Row":
        sid = None if pd.isna(r["suggestion_id"]) else int(r["suggestion_id"])
        undoes = None if pd.isna(r["undoes"]) else int(r["undoes"])
        return Row(int(r["segment_id"]), str(r["code_id"]), str(r["action"]), sid if r["action"] != "undo" else None, undoes,
                   "different code" in str(r["note"] or ""))


@dataclass
class Model:
    """What the review page must show and write, kept without the page: the queue order and
    filters the coder chose, the suggestion undo brought back, and the stack of this coder's
    actions not undone (each a list of decision ids: two for "Different code...").

    The queue itself comes from :func:`review.review_queue`, the slow reference the page's fast
    path (:func:`review.next_suggestion`) is tested against elsewhere."""

    project_dir: Path
    coder: str = CODER
    order: str = "likely"
    filters: dict = field(default_factory=dict)
    pin: int | None = None
    actions: list[tuple[list[int], int]] = field(default_factory=list)  # (decision ids, suggestion to bring back)
    seen: int = 0  # decision rows already checked

    def _project(self) -> Project:
        return Project.open(self.project_dir)

    def head(self) -> pd.Series | None:
        """The suggestion the page must show now (and forget the pin if it is not that)."""
        with self._project() as p:
            q = review.review_queue(p, self.coder, self.order, **self.filters)
        if self.pin is not None and (q["suggestion_id"] == self.pin).any():
            return q[q["suggestion_id"] == self.pin].iloc[0]
        if not len(q):
            return None
        self.pin = None
        return q.iloc[0]

    def expect(self, step: str, shown: pd.Series | None, **kw) -> list[Row]:
        """The rows this step must append to the log."""
        if step in ("accept", "reject", "skip"):
            assert shown is not None
            with self._project() as p:
                last = review.last_decision(p, self.coder)
            if step == "skip" and last is not None and last["suggestion_id"] == int(shown["suggestion_id"]) and last["action"] == "skip":
                return []  # a second skip of the only suggestion left is a double press
            return [Row(int(shown["segment_id"]), str(shown["code_id"]), step, int(shown["suggestion_id"]))]
        if step == "other":
            with self._project() as p:
                chosen_sid = review.suggestion_for_pair(p, int(shown["segment_id"]), kw["code_id"])
            return [Row(int(shown["segment_id"]), str(shown["code_id"]), "reject", int(shown["suggestion_id"])),
                    Row(int(shown["segment_id"]), kw["code_id"], "accept", chosen_sid, other=True)]
        if step == "undo":
            if not self.actions:
                return []
            ids, _ = self.actions[-1]
            with self._project() as p:
                log = p.decisions().set_index("id")
            return [Row(int(log.loc[i, "segment_id"]), str(log.loc[i, "code_id"]), "undo", None, int(i)) for i in reversed(ids)]
        return []  # reloads, order and filter changes, page switches write nothing

    def check(self, step: str, expected: list[Row], shown: pd.Series | None) -> None:
        """The log holds exactly ``expected`` as its new rows, under this coder; then the
        model moves on as the page must have."""
        with self._project() as p:
            log = p.decisions()
            current = p.current_decisions(self.coder)
        new = log.iloc[self.seen:]
        got = [Row.of(r) for _, r in new.iterrows()]
        assert got == expected, f"step {step!r} on suggestion {None if shown is None else int(shown['suggestion_id'])}: " \
                                f"expected {expected}, the log got {got}"
        assert set(new["coder"]) <= {self.coder}
        ids = [int(i) for i in new["id"]]
        self.seen = len(log)
        if step in ("accept", "reject", "skip", "other") and ids:
            self.actions.append((ids, int(shown["suggestion_id"])))
            self.pin = None
        elif step == "undo" and ids:
            _, back = self.actions.pop()
            self.pin = back
        # What stands: the model's own replay of the actions not undone, against the store's.
        want: dict[tuple[int, str], str] = {}
        by_id = log.set_index("id")
        for group, _ in self.actions:
            for i in group:
                want[(int(by_id.loc[i, "segment_id"]), str(by_id.loc[i, "code_id"]))] = str(by_id.loc[i, "action"])
        have = {(int(s), str(c)): str(a) for s, c, a in zip(current["segment_id"], current["code_id"], current["action"])}
        assert have == want, f"after {step!r}: current decisions differ from the model's"
