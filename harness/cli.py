"""The `llama98-harness` command: one sub-command per capability, each in its own module of harness.commands.

Every module in COMMAND_MODULES exposes `register(subparsers)`, which adds its sub-parser and sets `func`
(a callable taking the parsed namespace and returning an exit code). This file only dispatches and turns
errors into one line, so no traceback ever reaches a user for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from harness.core.errors import HarnessError
from harness.core.logs import cli_logging

COMMAND_MODULES: tuple[str, ...] = (
    "harness.commands.build",
    "harness.commands.export",
    "harness.commands.oracle",
    "harness.commands.run",
    "harness.commands.guest",
    "harness.commands.bench",
    "harness.commands.bisect",
    "harness.commands.plot",
    "harness.commands.audit",
    "harness.commands.prepare_image",
    "harness.commands.quantize",
    "harness.commands.toolchain",
)


def build_parser() -> argparse.ArgumentParser:
    """Assemble the top-level parser from every command module."""
    parser = argparse.ArgumentParser(
        prog="llama98-harness",
        description="Run the llama98 port in a pentium2 QEMU guest and check it against a numpy oracle.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    # SIGTERM (timeout(1), a cancelled CI job) unwinds like Ctrl-C, so every `finally` stops QEMU and servers
    # and removes their temp files.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with cli_logging():
            return int(args.func(args) or 0)
    except HarnessError as error:
        print(f"llama98-harness: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("llama98-harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
