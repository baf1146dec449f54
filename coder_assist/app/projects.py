"""The project as ui/ holds it: the store's :class:`Project` (``Project.open(folder)``, used as a
context manager or kept per browser session) and :data:`DB_NAME`, the database file that makes
a folder a project.

ui/ imports the library's app layer and core only (pyproject.toml, the ui contract), so the
store's names the pages need are re-exported here rather than imported from the store.
"""

from __future__ import annotations

from ..store.project import DB_NAME, Project

__all__ = ["DB_NAME", "Project"]
