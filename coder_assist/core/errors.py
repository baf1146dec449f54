"""Error types. Every user-facing failure names the file (or code) and the problem."""

from __future__ import annotations

from pathlib import Path


class CoderAssistError(Exception):
    """Base class: anything the CLI and the app show to a user as a clean message."""


class InputError(CoderAssistError):
    """A transcript, attribute sheet or other input file cannot be used."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class TemplateError(CoderAssistError):
    """The coding template is invalid. Names the file and, where known, the code."""

    def __init__(self, path: str | Path | None, problem: str, code: str | None = None):
        self.path = str(path) if path is not None else "<template>"
        self.code = code
        self.problem = problem
        where = f"{self.path}: code {code!r}: " if code else f"{self.path}: "
        super().__init__(where + problem)


class ModelError(CoderAssistError):
    """The embedding model cannot be loaded (unknown name, missing files, bad checksum)."""


class ProjectError(CoderAssistError):
    """The project database is missing, of an unknown schema, or asked to do something invalid."""
