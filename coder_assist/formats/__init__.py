"""Files to plain objects and back: transcripts, templates, REFI-QDA (.qdc / .qdpx)."""
