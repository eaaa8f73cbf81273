"""`llama98-harness prepare-image`: a copy of a Windows 98 image that starts agent98."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.guests.win98.prepare_image import OUTPUT_FORMATS, prepare_image


def _cmd_prepare(args: argparse.Namespace) -> int:
    result = prepare_image(Path(args.input), Path(args.output), args.format, args.force,
                           Path(args.agent) if args.agent else None)
    for change in result.changes or ["already prepared: nothing to change"]:
        print(change)
    print(f"wrote {result.output} ({result.output_format}, partition {result.partition.index}); test it with "
          f"`pytest --vm {result.output}`")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness prepare-image`."""
    parser = subparsers.add_parser(
        "prepare-image",
        help="copy a Windows 98 image and make it start AGENT98.EXE at logon",
        description="Write a copy of a Windows 98 disk image (raw or qcow2) with C:\\HARNESS\\AGENT98.EXE, "
                    "C:\\RUN and a WIN.INI run= entry, so the harness can drive it over COM1. The input is "
                    "never written.",
    )
    parser.add_argument("input", metavar="IN", help="the Windows 98 disk image (raw or qcow2; only read)")
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="the prepared copy to write")
    parser.add_argument("--format", choices=OUTPUT_FORMATS, default=None,
                        help="format of OUT (default: qcow2 if OUT ends in .qcow2, else raw)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--agent", metavar="EXE", default=None,
                        help="use this agent98.exe instead of building ports/agent98 with MinGW")
    parser.set_defaults(func=_cmd_prepare)
