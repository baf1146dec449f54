"""The package's layers (README, "What is where") as tests, so a wrong import fails CI.

The import contracts live in pyproject.toml ([tool.importlinter]) and are checked by
import-linter, whose graph (grimp) sees imports inside functions too. What import-linter cannot
see, direct use of the SQLite connection and of the store's private meta writer, is grepped here:
SQL lives in the store, so neither appears outside coder_assist/store. And a name starting with
``_`` stays inside its module: neither another module of the package nor a bench/ script uses one.
"""
from __future__ import annotations

import ast
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


def _private_uses(path: Path) -> list[str]:
    """Private names of another coder_assist/ui module that ``path`` uses: ``from m import _x``,
    ``alias._x`` on a name it imported from the package, and ``"coder_assist...._x"`` strings
    (monkeypatch targets: a dotted name, not prose). Dunders are not private."""
    private = lambda name: name.startswith("_") and not name.startswith("__")  # noqa: E731
    ours = lambda module: module.split(".")[0] in {"coder_assist", "ui"}  # noqa: E731
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(ROOT).as_posix()
    bound: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or ours(node.module or "")):
            for a in node.names:
                bound.add(a.asname or a.name)
                if private(a.name):
                    found.append(f"{where}:{node.lineno}: from {'.' * node.level}{node.module or ''} import {a.name}")
        elif isinstance(node, ast.Import):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names if ours(a.name))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(r"coder_assist(\.\w+)*\._(?!_)\w*(\.\w+)*", node.value.strip()):
                found.append(f"{where}:{node.lineno}: {node.value!r}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in bound:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
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


def test_no_module_uses_another_modules_private_names():
    found = [hit for f in _sources() for hit in _private_uses(f)]
    assert not found, "private names used across modules (make them public where they are defined):\n" + "\n".join(found)


def test_bench_uses_no_private_names_of_the_package():
    scripts = sorted((ROOT / "bench").glob("*.py"))
    assert scripts, "bench/ has no scripts"
    found = [hit for f in scripts for hit in _private_uses(f)]
    assert not found, "bench/ uses private coder_assist names (give the package a public one):\n" + "\n".join(found)


def test_public_api_of_the_readme_imports():
    import coder_assist

    for name in ("precode", "load_template", "parse_template", "init_project", "import_files",
                 "suggest_project", "build_demo_project", "Project", "Template", "Segmenter",
                 "load_transcripts", "read_transcript", "CoderAssistError", "InputError"):
        assert hasattr(coder_assist, name), name
    assert set(coder_assist.__all__) <= set(dir(coder_assist))
