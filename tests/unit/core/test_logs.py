"""Progress logging: the command line's handler exists only for the duration of one command, writes stamped lines
to whatever sys.stderr is at that moment, survives a broken or closed stderr, and `quiet` hides progress in a block
without leaving the level changed."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator

import pytest

from harness.core.logs import ROOT_LOGGER, cli_logging, quiet

STAMPED = re.compile(r"^\[\d\d:\d\d:\d\d\] (.*)$")


def _messages(text: str) -> list[str]:
    """The messages of stamped lines; every line must carry the `[HH:MM:SS] ` stamp."""
    matches = [STAMPED.match(line) for line in text.splitlines()]
    assert all(matches), text
    return [match.group(1) for match in matches if match]


@pytest.fixture()
def harness_logger() -> Iterator[logging.Logger]:
    """The `harness` logger, checked to be left as found (no handler, same level) by every test."""
    logger = logging.getLogger(ROOT_LOGGER)
    handlers, level = list(logger.handlers), logger.level
    yield logger
    assert logger.handlers == handlers and logger.level == level


def test_cli_logging_writes_stamped_info_lines_to_the_current_stderr(harness_logger: logging.Logger,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    with cli_logging():
        monkeypatch.setattr(sys, "stderr", first)
        logging.getLogger("harness.vm.machine").info("starting guest %s", "tiny686")
        logging.getLogger("harness.run").debug("not shown at INFO")
        monkeypatch.setattr(sys, "stderr", second)  # pytest swaps stderr per test: the handler follows it
        logging.getLogger("harness.run.session").warning("second stream")
        logging.getLogger("elsewhere").warning("not the harness's logger")
    assert _messages(first.getvalue()) == ["starting guest tiny686"]
    assert _messages(second.getvalue()) == ["second stream"]


def test_nothing_is_left_behind_after_the_command_even_when_it_fails(harness_logger: logging.Logger,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with pytest.raises(RuntimeError), cli_logging(logging.DEBUG):
        assert harness_logger.level == logging.DEBUG and len(harness_logger.handlers) == 1
        raise RuntimeError("the command failed")
    logging.getLogger("harness.after").warning("after the command")
    assert "after the command" not in stream.getvalue()


def test_a_broken_pipe_on_stderr_does_not_fail_the_caller(harness_logger: logging.Logger,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`llama98-harness run ... 2>&1 | head -1`: once the reader is gone, progress lines must not raise."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    broken = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", broken)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    try:
        with cli_logging():
            logging.getLogger("harness.x").info("nobody reads this")
    finally:
        monkeypatch.undo()
        try:
            broken.close()
        except OSError:
            pass


def test_a_closed_stderr_does_not_fail_the_caller(harness_logger: logging.Logger,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler's own promise: "a closed or broken stderr must not turn progress into a failure"."""
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(logging, "raiseExceptions", True)
    with cli_logging():
        monkeypatch.setattr(sys, "stderr", closed)
        try:
            logging.getLogger("harness.x").info("into a closed stream")
        finally:
            monkeypatch.undo()


def test_quiet_hides_progress_below_its_level_inside_the_block_only(harness_logger: logging.Logger,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with cli_logging():
        with quiet():
            logging.getLogger("harness.perf").info("hidden step")
            logging.getLogger("harness.perf").warning("a warning still shows")
            with quiet(logging.ERROR):
                logging.getLogger("harness.perf").warning("hidden warning")
            logging.getLogger("harness.perf").warning("shown again after the inner block")
        logging.getLogger("harness.perf").info("progress again")
    assert _messages(stream.getvalue()) == ["a warning still shows", "shown again after the inner block",
                                            "progress again"]


def test_quiet_restores_the_level_after_an_exception(harness_logger: logging.Logger) -> None:
    before = harness_logger.level
    with pytest.raises(KeyboardInterrupt), quiet():
        assert harness_logger.level == logging.WARNING
        raise KeyboardInterrupt
    assert harness_logger.level == before


def test_records_reach_pytests_capture_without_the_cli_handler(caplog: pytest.LogCaptureFixture) -> None:
    """Under pytest (no cli_logging) the library layers' records go to pytest's log capture."""
    with caplog.at_level(logging.INFO, logger=ROOT_LOGGER):
        logging.getLogger("harness.run.session").info("building llama98")
    assert [record.getMessage() for record in caplog.records] == ["building llama98"]
