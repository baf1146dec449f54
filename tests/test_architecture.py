"""The package's layers (README, "What is where") as tests, so a wrong import fails CI.

The import contracts live in pyproject.toml ([tool.importlinter]) and are checked by
import-linter, whose graph (grimp) sees imports inside functions too. What import-linter cannot
see, direct use of the SQLite connection and of the store's private meta writer, is grepped here:
SQL lives in the store, so neither appears outside coder_assist/store.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "coder_assist"
LAYERS = {"core", "store", "ml", "formats", "app", "scale", "eval"}


def _sources() -> list[Path]:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "ui").rglob("*.py"), ROOT / "app.py"]
    return sorted(f for f in files if "__pycache__" not in f.parts)


def _uses(pattern: str) -> dict[str, int]:
    rx = re.compile(pattern)
    found = {}
    for f in _sources():
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith("coder_assist/store/"):
            continue
        n = sum(1 for line in f.read_text(encoding="utf-8").splitlines() if rx.search(line))
        if n:
            found[rel] = n
    return found


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), f"{lint} missing: pip install -e '.[test]' installs import-linter"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout, proc.stdout[-3000:]


def test_every_library_module_sits_in_a_layer():
    top = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    loose = [n for n in top if n not in {"__init__.py", "cli.py", "py.typed", *LAYERS}]
    assert not loose, f"coder_assist/{loose}: move into one of {sorted(LAYERS)} (README, 'What is where')"
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_sqlite_connection_used_only_in_the_store():
    found = _uses(r"\.conn\b")
    assert not found, f"`.conn` outside coder_assist/store (lines per file; add a store method): {found}"


def test_private_meta_writer_used_only_in_the_store():
    found = _uses(r"\._set_meta\(")
    assert not found, f"`._set_meta(` outside coder_assist/store (lines per file; use Project.set_meta): {found}"


def test_public_api_of_the_readme_imports():
    import coder_assist

    for name in ("precode", "load_template", "parse_template", "init_project", "import_files",
                 "suggest_project", "build_demo_project", "Project", "Template", "Segmenter",
                 "load_transcripts", "read_transcript", "CoderAssistError", "InputError"):
        assert hasattr(coder_assist, name), name
    assert set(coder_assist.__all__) <= set(dir(coder_assist))
