"""The only code that touches a project's folder and its ``project.db``: schema, migrations,
decisions, model artefacts on disk."""
