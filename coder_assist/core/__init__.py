"""Domain types and pure functions: the template, transcripts, segments, errors. No SQL, no files
of a project, no model weights."""
