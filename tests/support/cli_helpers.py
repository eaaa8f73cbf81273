"""Call `llama98-harness` in-process (harness.cli.main) and check what a user sees: help, one-line errors, output."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

import harness.cli

ERROR_PREFIX = "llama98-harness: error: "


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """main(argv) with its exit code (SystemExit from argparse included) and the captured stdout and stderr.

    main() (and bisect-step) install SIGTERM and SIGINT handlers for the process; they are put back, so the test
    process is left as it was."""
    capsys.readouterr()  # what earlier fixtures printed is not this command's output
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = harness.cli.main(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def subcommand_parser(name: str) -> argparse.ArgumentParser:
    """The sub-parser of one command, as the CLI assembles it."""
    parser = harness.cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise AssertionError("the CLI has no sub-commands")


def option_strings(name: str) -> list[str]:
    """Every option string (`-o`, `--output`, ...) and positional name the command declares."""
    names: list[str] = []
    for action in subcommand_parser(name)._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        names += action.option_strings or [action.metavar or action.dest]
    return names


def assert_help(name: str, capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """`NAME --help` exits 0, prints its usage on stdout (nothing on stderr) and lists every option it declares
    plus the `expected` words; returns the help text."""
    result = run_cli([name, "--help"], capsys)
    assert result.code == 0, result.err
    assert result.err == ""
    assert result.out.startswith(f"usage: llama98-harness {name}")
    for option in [*option_strings(name), *expected]:
        assert str(option) in result.out, f"{option} missing from `{name} --help`"
    return result.out


def assert_one_line_error(result: CliResult, *fragments: str, code: int | None = None) -> str:
    """A non-zero exit (or exactly `code`) with exactly one stderr line, the CLI's error line naming every
    fragment, and no traceback; returns the message after the prefix."""
    assert result.code != 0, f"expected a failure, got exit 0: {result.out!r}"
    if code is not None:
        assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {result.err!r}"
    assert result.err.endswith("\n")
    assert lines[0].startswith(ERROR_PREFIX), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0][len(ERROR_PREFIX):]
