"""coder-assist: offline, NLP-assisted code suggestions for qualitative template analysis.

The library is usable on its own (no Streamlit): ``precode`` for files, ``Project`` with
``init_project`` / ``import_files`` / ``suggest_project`` for a project database.
"""

# Names are imported on first use (PEP 562), not here: `import coder_assist.cli` then costs
# click alone, so a command can show its first progress line before pandas and the rest load
# (2-3 s on a busy 2-core machine).
_EXPORTS = {
    "Code": "codebook", "Example": "codebook", "Template": "codebook", "load_template": "codebook", "parse_template": "codebook",
    "CoderAssistError": "errors", "InputError": "errors", "ModelError": "errors", "ProjectError": "errors", "TemplateError": "errors",
    "Transcript": "ingest", "Turn": "ingest", "load_transcripts": "ingest", "read_attributes": "ingest", "read_transcript": "ingest",
    "build_demo_project": "pipeline", "import_files": "pipeline", "init_project": "pipeline", "precode": "pipeline",
    "suggest_project": "pipeline",
    "Segment": "segment", "Segmenter": "segment",
    "Project": "store",
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
