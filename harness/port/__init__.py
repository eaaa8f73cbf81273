"""The llama98 port's host-side tools: building, model files, quantization."""
