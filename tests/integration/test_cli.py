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


def _encoder_of_last_version(project: Path) -> str:
    con = sqlite3.connect(project / "project.db")
    try:
        return con.execute("SELECT encoder FROM model_versions ORDER BY id DESC LIMIT 1").fetchone()[0]
    finally:
        con.close()


def test_init_records_the_encoder_and_suggest_uses_it(tmp_path):
    """init records the default encoder (USE) or the one named; suggest then embeds with the
    project's own, and --model overrides it for one run."""
    ts = [DEMO_DIR / "P1_LA_strategic.txt"]
    r = run("init", tmp_path / "use")
    assert r.exit_code == 0 and "encoder use-multilingual-v3" in r.output, r.output
    r = run("init", tmp_path / "mini", "--model", "all-MiniLM-L6-v2")
    assert r.exit_code == 0 and "encoder all-MiniLM-L6-v2" in r.output, r.output
    for name, encoder in (("use", "use-multilingual-v3@"), ("mini", "all-MiniLM-L6-v2@")):
        assert run("import", tmp_path / name, *ts).exit_code == 0
        r = run("suggest", tmp_path / name)
        assert r.exit_code == 0, r.output
        assert _encoder_of_last_version(tmp_path / name).startswith(encoder)
    r = run("suggest", tmp_path / "use", "--model", "all-MiniLM-L6-v2")
    assert r.exit_code == 0, r.output
    assert _encoder_of_last_version(tmp_path / "use").startswith("all-MiniLM-L6-v2@")


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


# ------------------------------------------------------------------ inputs first, output never read


def _two_transcripts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("P1_LA_strategic.txt", "P2_LA_operational.txt"):
        (folder / name).write_bytes((DEMO_DIR / name).read_bytes())
    return folder


def test_precode_into_the_input_folder_never_reads_its_own_output(tmp_path):
    d = _two_transcripts(tmp_path / "in")
    out = d / "x.csv"
    first = run("precode", d, "--out", out)
    assert first.exit_code == 0, first.output
    rows = pd.read_csv(out)
    # The second run finds x.csv in the folder; it is this run's output, not an interview.
    again = run("precode", d, "--out", out)
    assert again.exit_code == 0, again.output
    assert "for 2 transcripts" in first.output and "for 2 transcripts" in again.output
    assert pd.read_csv(out).equals(rows)
    # An earlier run's output under another name is not an interview either.
    other = run("precode", d, "--out", d / "y.csv")
    assert other.exit_code == 0 and "for 2 transcripts" in other.output, other.output
    assert set(pd.read_csv(d / "y.csv")["transcript"]) == {"P1_LA_strategic", "P2_LA_operational"}
    # Named explicitly, it is refused with the reason.
    named = run("precode", out, "--out", tmp_path / "z.csv")
    assert named.exit_code != 0 and "x.csv" in named.output and "not a transcript" in named.output


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if any encoder is constructed (the process-wide cache emptied first)."""
    from coder_assist.ml import embed, onnx_backend

    built = []

    def refuse(self, *a, **k):
        built.append(type(self).__name__)
        raise AssertionError("an embedding model was loaded before the inputs were checked")

    monkeypatch.setattr(embed, "_loaded", {})
    monkeypatch.setattr(embed.SentenceTransformerEncoder, "__init__", refuse)
    monkeypatch.setattr(onnx_backend.OnnxEncoder, "__init__", refuse)
    return built


@pytest.mark.parametrize("name, content, problem", [
    ("empty.txt", b"", "the file is empty"),
    ("notes.docx", b"Interviewer: this was saved as text\n\nP1: and renamed\n", "not a Word .docx document"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "binary"),
])
@pytest.mark.parametrize("as_folder", [False, True])
def test_bad_input_is_reported_before_any_model_loads(tmp_path, no_model, name, content, problem, as_folder):
    d = _two_transcripts(tmp_path / "in")
    bad = d / name
    bad.write_bytes(content)
    inputs = [d] if as_folder else [d / "P1_LA_strategic.txt", bad]
    r = run("precode", *inputs, "--out", tmp_path / "o.csv")
    assert r.exit_code != 0
    assert str(bad) in r.output and problem in r.output, r.output
    assert no_model == []  # refused on the file alone, the encoder never constructed
    assert not (tmp_path / "o.csv").exists()


def test_bad_attribute_sheet_is_reported_before_any_model_loads(tmp_path, no_model):
    d = _two_transcripts(tmp_path / "in")
    sheet = tmp_path / "attrs.csv"
    sheet.write_text("who,sector\nP1_LA_strategic,LA\n", encoding="utf-8")
    r = run("precode", d, "--out", tmp_path / "o.csv", "--attributes", sheet)
    assert r.exit_code != 0 and "attrs.csv" in r.output and "'transcript' column" in r.output
    assert no_model == []


@pytest.mark.parametrize("model", [None, "all-MiniLM-L6-v2"])
def test_default_precode_never_imports_torch(tmp_path, model):
    """A pre-coding run in a fresh process, with the default encoder (USE) and with MiniLM:
    onnxruntime only, no torch, no sentence-transformers; and nothing but the summary on a
    non-terminal stderr."""
    from coder_assist.ml.onnx_backend import ensure_exported

    ensure_exported("all-MiniLM-L6-v2")  # `make setup` does this; here in case the test runs on a bare install
    d = _two_transcripts(tmp_path / "in")
    extra = ["--model", model] if model else []
    code = (
        "import sys\n"
        "from coder_assist.cli import main\n"
        f"try:\n    main(['precode', {str(d)!r}, '--out', {str(tmp_path / 'o.csv')!r}] + {extra!r})\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "CODER_ASSIST_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("CODER_ASSIST_BACKEND", None)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout
    assert len(pd.read_csv(tmp_path / "o.csv")) > 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "suggestions for 2 transcripts" in lines[0], p.stderr  # no progress bars in a pipe
