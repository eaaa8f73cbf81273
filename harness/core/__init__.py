"""Foundations every layer uses and none depends on: the exception tree, the run's artifact directory, the
start/stop protocol, cache paths, hashing, subprocess calls and progress logging."""
