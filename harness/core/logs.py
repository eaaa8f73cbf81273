"""Progress and diagnostics go through `logging.getLogger(__name__)`; the CLI installs the one handler.

Why: the library layers (Session, Guest, bench) should say what they are doing without deciding where it goes.
The command line shows INFO lines on stderr with a wall-clock stamp (`[12:34:56] starting guest ...`), keeping
stdout for results; under pytest the records go to pytest's log capture; a caller that wants silence (a bisect
step, which prints its own line) raises the level of the `harness` logger for the duration.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ROOT_LOGGER = "harness"
FORMAT = "[%(asctime)s] %(message)s"
DATE_FORMAT = "%H:%M:%S"


class _FlushingHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed
    """A stderr handler that looks sys.stderr up at emit time (pytest's capsys swaps it) and flushes each line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def setup_cli_logging(level: int = logging.INFO) -> None:
    """Install the command line's handler on the `harness` logger once (repeated calls change only the level)."""
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level)
    if not any(isinstance(handler, _FlushingHandler) for handler in logger.handlers):
        handler = _FlushingHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        logger.addHandler(handler)


@contextmanager
def quiet(level: int = logging.WARNING) -> Iterator[None]:
    """Hide the harness's progress lines below `level` inside the block."""
    logger = logging.getLogger(ROOT_LOGGER)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
