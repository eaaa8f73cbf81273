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


class _StderrHandler(logging.Handler):
    """Writes each record to whatever sys.stderr is at that moment (pytest swaps it per test) and flushes.

    A closed or broken stderr must not turn progress into a failure, and is not reported: logging's handleError
    would report it on that same stderr, and a closed one raises ValueError out of the report. A record that
    cannot be formatted (a bad log call) still goes to handleError, which is what it is for."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record is reported, never raised
            self.handleError(record)
            return
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):  # closed (ValueError) or broken (OSError): nowhere left to say so
            pass


@contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[None]:
    """The command line's handler on the `harness` logger for the duration of one command, then removed, so an
    in-process call (tests, bisect steps) leaves no handler behind for whatever runs next."""
    logger = logging.getLogger(ROOT_LOGGER)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


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
