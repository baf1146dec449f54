"""Read a coding template from a file: YAML (README, "Template format") or a REFI-QDA ``.qdc``.

The template itself and its validation (``parse_template``) are pure and live in
core/template.py; this module is the file side, so that core reads no files.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..core.errors import TemplateError
from ..core.template import Template, parse_template

#: The study's template, used when no template is given (``coder-assist precode`` without -t).
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "data" / "templates" / "coproduction.yaml"


def load_template(path: str | Path | None = None) -> Template:
    """Load a YAML template, or a REFI-QDA ``.qdc`` codebook (the default study template when ``path`` is None)."""
    path = Path(path) if path else DEFAULT_TEMPLATE
    if path.suffix.lower() == ".qdc":  # a REFI-QDA codebook from NVivo, ATLAS.ti, MAXQDA, QualCoder
        from .refi import read_qdc

        return read_qdc(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise TemplateError(path, f"cannot read the template: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TemplateError(path, "the template is not UTF-8 text") from exc
    try:
        # safe_load: a template is data, never objects to construct.
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise TemplateError(path, f"not valid YAML: {exc}") from exc
    return parse_template(data, path)


def as_template(template: Template | str | Path | None) -> Template:
    """A template as given, or loaded from a path (None: the built-in study template)."""
    return template if isinstance(template, Template) else load_template(template)
