"""One exception family for every failure a user can cause or meet.

The CLI and the pytest plugin turn a HarnessError into a single line (`llama98-harness: error: ...`) and a
non-zero exit code; anything else escaping is a bug in the harness, not bad input.
"""


class HarnessError(Exception):
    """A failure with a message fit to show the user as one line."""

    exit_code: int = 1


class UsageError(HarnessError):
    """The command line or configuration asks for something impossible."""

    exit_code = 2
