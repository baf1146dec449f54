"""The command line as a user runs it: init, import, codes, suggest, precode; bad input leaves
the project database exactly as it was."""

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import docx
import pandas as pd
import pytest
from click.testing import CliRunner

from coder_assist.cli import main
from tests.conftest import DEMO_DIR, ROOT


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def db_dump(project: Path) -> list[str]:
    con = sqlite3.connect(project / "project.db")
    try:
        return list(con.iterdump())
    finally:
        con.close()


@pytest.fixture
def project(tmp_path):
    r = run("init", tmp_path / "p")
    assert r.exit_code == 0, r.output
    assert "49 codes" in r.output or "codes" in r.output
    return tmp_path / "p"


def test_init_import_codes_suggest(project, tmp_path):
    r = run("import", project, DEMO_DIR / "P1_LA_strategic.txt", DEMO_DIR / "P7_VCSE_strategic.vtt", "--attributes", DEMO_DIR / "attributes.csv")
    assert r.exit_code == 0, r.output
    assert "imported P1_LA_strategic (txt" in r.output and "sector=Local Authority" in r.output
    assert "imported P7_VCSE_strategic (vtt" in r.output
    r = run("codes", project)
    assert r.exit_code == 0 and "Permission to innovate" in r.output
    r = run("suggest", project)
    assert r.exit_code == 0, r.output
    n = int(re.search(r"stored (\d+) suggestions", r.output).group(1))
    assert n > 0
    con = sqlite3.connect(project / "project.db")
    assert con.execute("SELECT COUNT(*) FROM suggestions").fetchone()[0] == n
    assert con.execute("SELECT COUNT(DISTINCT transcript_id) FROM segments").fetchone()[0] == 2


def test_codes_of_builtin_and_file_template():
    r = run("codes", "--examples")
    assert r.exit_code == 0
    assert "Psychological capability" in r.output and "\u201cA lot of people don't even know" in r.output


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    files = {
        "empty": d / "empty.txt",
        "binary": d / "photo.txt",
        "docx": d / "cut.docx",
        "vtt": d / "broken.vtt",
        "csv": d / "nocols.csv",
    }
    files["empty"].write_bytes(b"")
    files["binary"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    doc = docx.Document()
    doc.add_paragraph("P1: hello")
    doc.save(d / "full.docx")
    files["docx"].write_bytes((d / "full.docx").read_bytes()[:900])
    files["vtt"].write_text("WEBVTT\n\n00:00:01.000 --> 00:00:0x.000\n<v P1>Hello\n", encoding="utf-8")
    files["csv"].write_text("who,said\nP1,hello\n", encoding="utf-8")
    return files


@pytest.mark.parametrize("kind, problem", [
    ("empty", "empty"), ("binary", "binary"), ("docx", "docx"), ("vtt", "VTT"), ("csv", "'speaker' and 'text'"),
])
def test_bad_input_is_refused_and_database_unchanged(project, tmp_path, kind, problem):
    run("import", project, DEMO_DIR / "P1_LA_strategic.txt")
    before = db_dump(project)
    bad = _bad_files(tmp_path)[kind]
    # The bad file comes after a good one: nothing of the batch may be imported.
    r = run("import", project, DEMO_DIR / "P2_LA_operational.txt", bad)
    assert r.exit_code != 0
    assert bad.name in r.output and problem in r.output
    assert db_dump(project) == before


def test_bad_template_is_refused(tmp_path):
    tpl = tmp_path / "cycle.yaml"
    tpl.write_text("name: t\ncodes:\n- {name: A, parent: B, description: x}\n- {name: B, parent: A, description: y}\n", encoding="utf-8")
    r = run("init", tmp_path / "p", "--template", tpl)
    assert r.exit_code != 0 and "cycle.yaml" in r.output and "cycle" in r.output
    assert not (tmp_path / "p" / "project.db").exists()
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: t\ncodes:\n- {name: A, description: x}\n- {name: A, description: y}\n", encoding="utf-8")
    r = run("precode", DEMO_DIR / "P1_LA_strategic.txt", "--out", tmp_path / "o.csv", "--template", dup)
    assert r.exit_code != 0 and "dup.yaml" in r.output and "duplicate code" in r.output
    assert not (tmp_path / "o.csv").exists()


def test_unknown_model_is_refused_with_offline_hint(project, tmp_path):
    run("import", project, DEMO_DIR / "P1_LA_strategic.txt")
    before = db_dump(project)
    r = run("suggest", project, "--model", "acme/unknown-encoder")
    assert r.exit_code != 0
    assert "acme/unknown-encoder" in r.output and "never downloads" in r.output
    assert db_dump(project) == before


def test_import_into_missing_project(tmp_path):
    r = run("import", tmp_path / "nope", DEMO_DIR / "P1_LA_strategic.txt")
    assert r.exit_code != 0 and "coder-assist init" in r.output


def test_precode_console_script_on_demo_set(tmp_path):
    """The installed console script, in a fresh process, twice: the rerun encodes nothing."""
    exe = Path(sys.executable).with_name("coder-assist")
    env = {**os.environ, "CODER_ASSIST_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "suggestions.csv"
    runs = []
    for _ in range(2):
        p = subprocess.run([str(exe), "precode", str(DEMO_DIR), "--out", str(out)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert p.returncode == 0, p.stderr
        runs.append(p.stderr)
    hits = [re.search(r"embedding cache hits (\d+)/(\d+)", s).groups() for s in runs]
    assert int(hits[0][0]) == 0
    assert hits[1][0] == hits[1][1]  # every text of the rerun came from the cache
    df = pd.read_csv(out)
    assert {"transcript", "speaker", "sector", "level", "start", "end", "text", "code_path", "confidence", "evidence", "evidence_similarity"} <= set(df.columns)
    assert df.transcript.nunique() == 9
