"""coder-assist: offline, NLP-assisted code suggestions for qualitative template analysis.

The library is usable on its own (no Streamlit): ``precode`` for files, ``Project`` with
``init_project`` / ``import_files`` / ``suggest_project`` for a project database.
"""

from .core.template import Code, Example, Template, load_template, parse_template
from .core.errors import CoderAssistError, InputError, ModelError, ProjectError, TemplateError
from .formats.transcripts import Transcript, Turn, load_transcripts, read_attributes, read_transcript
from .app.pipeline import build_demo_project, import_files, init_project, precode, suggest_project
from .core.segment import Segment, Segmenter
from .store.project import Project

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
