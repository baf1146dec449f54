"""Arrays in, arrays out: encoders (torch, ONNX, the embedding cache), scoring, the learned
scorer, query strategies, fine-tuning. Never a project database."""
