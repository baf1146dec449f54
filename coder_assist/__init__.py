"""coder-assist: offline, NLP-assisted code suggestions for qualitative template analysis.

The library is usable on its own (no Streamlit): ``precode`` for files, ``Project`` with
``init_project`` / ``import_files`` / ``suggest_project`` for a project database.
"""

# Names are imported on first use (PEP 562), not here: `import coder_assist.cli` then costs
# click alone, so a command can show its first progress line before pandas and the rest load
# (2-3 s on a busy 2-core machine).
_EXPORTS = {
    "Code": "core.template", "Example": "core.template", "Template": "core.template", "load_template": "formats.template", "parse_template": "core.template",
    "CoderAssistError": "core.errors", "InputError": "core.errors", "ModelError": "core.errors", "ProjectError": "core.errors", "TemplateError": "core.errors",
    "Transcript": "core.transcript", "Turn": "core.transcript", "load_transcripts": "formats.transcripts", "read_attributes": "formats.transcripts", "read_transcript": "formats.transcripts",
    "build_demo_project": "app.pipeline", "import_files": "app.pipeline", "init_project": "app.pipeline", "precode": "app.pipeline",
    "suggest_project": "app.pipeline",
    "Segment": "core.segment", "Segmenter": "core.segment",
    "Project": "store.project",
}


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__version__ = "0.1.0"

__all__ = [
    "Code",
    "CoderAssistError",
    "Example",
    "InputError",
    "ModelError",
    "Project",
    "ProjectError",
    "Segment",
    "Segmenter",
    "Template",
    "TemplateError",
    "Transcript",
    "Turn",
    "build_demo_project",
    "import_files",
    "init_project",
    "load_template",
    "load_transcripts",
    "parse_template",
    "precode",
    "read_attributes",
    "read_transcript",
    "suggest_project",
]
