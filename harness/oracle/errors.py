"""Errors the oracle raises for bad input files or arguments.

They are HarnessError subclasses so the CLI turns them into one line (`llama98-harness: error: ...`) instead of
a traceback; each message names the file it is about. A bad checkpoint is a CheckpointError, which lives with the
checkpoint format it describes, below the oracle, in harness/formats/checkpoint.py.
"""

from __future__ import annotations

from harness.core.errors import HarnessError


def describe_read_error(path: object, what: str, error: OSError) -> str:
    """The one-line message for a file the oracle could not read (`what` is "checkpoint" or "tokenizer")."""
    if isinstance(error, FileNotFoundError):
        return f"{path}: {what} file not found"
    if isinstance(error, IsADirectoryError):
        return f"{path}: {what} path is a directory"
    return f"{path}: cannot read {what}: {error.strerror}"


class OracleError(HarnessError):
    """Something the oracle was given cannot be used (bad file, impossible argument)."""


class TokenizerError(OracleError):
    """A tokenizer file is missing, truncated, or does not fit the model."""
