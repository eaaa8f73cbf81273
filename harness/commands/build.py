"""`llama98-harness build`: build the port (or agent98) for a target and print the binary's path."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.atomic import output_problem
from harness.core.errors import UsageError
from harness.port.build import PROGRAM_TARGETS, TARGETS, build_port


def _check_output(out: Path) -> Path:
    """`-o` names the file the binary is copied to, refused before building when it cannot be: a directory
    (the copy would land in DIR/llama98 while DIR was printed) or a path below a file."""
    problem = output_problem(out)
    if problem is not None:
        raise UsageError(f"-o {out}: {problem}")
    return out


def _cmd_build(args: argparse.Namespace) -> int:
    out = _check_output(Path(args.output)) if args.output else None
    path = build_port(args.target, Path(args.src) if args.src else None, out, program=args.program)
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness build`."""
    parser = subparsers.add_parser(
        "build",
        help="build the llama98 port for a target and print the binary's path",
        description="Build the llama98 C89 port (cached by source hash) and print the binary's path.",
    )
    parser.add_argument("--target", choices=sorted(TARGETS), default="native", help="what to build for")
    parser.add_argument("--program", choices=sorted(PROGRAM_TARGETS), default="llama98",
                        help="what to build: the llama98 port or agent98 (the Windows 98 serial agent, win32 only)")
    parser.add_argument("--src", metavar="DIR", help="sources (default: this checkout's ports/<program>)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="also copy the binary to this file (not a directory) and print this path")
    parser.set_defaults(func=_cmd_build)
