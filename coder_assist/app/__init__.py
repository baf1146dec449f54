"""The use cases the CLI and the app call: projects and import, suggestions, training, review,
template edits, agreement, exports."""
