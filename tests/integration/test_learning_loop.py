"""The learning loop from the command line: train on a project's decisions, and the
simulated researcher on a miniature dataset (so CI notices if the loop breaks)."""

import json
import re

import numpy as np
from click.testing import CliRunner

from coder_assist.cli import main
from tests.conftest import DEMO_DIR, FIXTURES


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_simulate_quick_on_miniature_dataset(tmp_path):
    out = tmp_path / "result.json"
    r = run("simulate", FIXTURES / "eval-mini", "--out", out, "--quick")
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["dataset"] == "eval-mini" and res["folds"] == [0]
    assert [row["decisions"] for row in res["curve"]] == [0, 50, 100]
    for row in res["curve"] + res["baselines"]["random_order"]:
        assert 0 <= row["macro_f1"] <= 1 and -1 <= row["kappa"] <= 1
    assert set(res["baselines"]) == {"random_order", "zero_shot", "tfidf_lr_all", "embedding_lr_all"}
    assert res["curve"][1]["accept_rate"] is not None
    assert (tmp_path / "result.png").stat().st_size > 1000
    # Learning happens: after 100 decisions the loop beats its own zero-decision start.
    assert res["curve"][-1]["kappa"] > res["curve"][0]["kappa"]


def test_train_and_models_commands(tmp_path):
    proj = tmp_path / "p"
    assert run("init", proj).exit_code == 0
    assert run("import", proj, DEMO_DIR / "P1_LA_strategic.txt", DEMO_DIR / "P4_NHS_strategic.txt").exit_code == 0
    assert run("suggest", proj).exit_code == 0
    from coder_assist.store.project import Project

    rng = np.random.default_rng(0)
    with Project.open(proj) as p:
        for s in p.suggestions().itertuples():
            p.record_decision(int(s.segment_id), s.code_id, "accept" if rng.random() < 0.5 else "reject", "ann", suggestion_id=int(s.suggestion_id))
    r = run("train", proj)
    assert r.exit_code == 0, r.output
    assert "model card" in r.output and "verdict" in r.output
    v = int(re.search(r"model version (\d+) saved", r.output).group(1))
    # Batch pre-coding new interviews with the trained model says how far each code is trusted.
    out = tmp_path / "new.csv"
    r = run("precode", DEMO_DIR / "P2_LA_operational.txt", "--project", proj, "--out", out)
    assert r.exit_code == 0, r.output
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) > 0 and set(df.verdict) <= {"reliable", "needs more decisions", "not automatable", "cold start"}
    card = json.loads((proj / "models" / f"v{v}" / "card.json").read_text())
    trained = {c["code_id"] for c in card["codes"] if c["f1"] is not None}
    assert trained, "some code should have a classifier after the decisions above"
    assert set(df.loc[df.code_id.isin(trained), "verdict"]) <= {"reliable", "needs more decisions", "not automatable"}
    r = run("precode", DEMO_DIR / "P2_LA_operational.txt", "--project", proj, "--template", "x.yaml", "--out", out)
    assert r.exit_code != 0 and "exclude each other" in r.output
    r = run("models", proj)
    assert f"* v{v}" in r.output
    r = run("models", proj, "--rollback", 1)
    assert "* v1" in r.output
    r = run("models", proj, "--rollback", 99)
    assert r.exit_code != 0 and "no model version 99" in r.output
