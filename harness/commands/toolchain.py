"""`llama98-harness toolchain openwatcom [--source ARCHIVE_OR_DIR] [--force]`: build (or reuse) a toolchain and
print its path.

Why a command: CI and developers get the same cached OpenWatcom the tests use with
`export WATCOM=$(llama98-harness toolchain openwatcom --source ...)`; progress goes to stderr, the path alone to
stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.toolchains.openwatcom import SOURCE_ENV, WATCOM_ENV, find_openwatcom


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `toolchain openwatcom`."""
    parser = subparsers.add_parser("toolchain", help="build (or reuse the cached) toolchain and print its path",
                                   description="Build a toolchain from source into the harness cache (or reuse "
                                               "it, or an existing installation) and print its path.")
    toolchains = parser.add_subparsers(dest="toolchain", metavar="TOOLCHAIN")
    toolchains.required = True
    openwatcom = toolchains.add_parser(
        "openwatcom", help="OpenWatcom (wcc386, wcl386, owcc, wlink, wlib, wmake; Win32 and i386 Linux runtimes)",
        description=f"Print the WATCOM directory of an OpenWatcom toolchain: built from an open-watcom-v2 source "
                    f"archive or directory (--source, default ${SOURCE_ENV}) into the harness cache, keyed by "
                    f"the source's hash, or else the installation named by ${WATCOM_ENV}.")
    openwatcom.add_argument("--source", type=Path, default=None, metavar="ARCHIVE_OR_DIR",
                            help=f"open-watcom-v2 source: a .tar.xz/.tar.gz/.tar archive or an unpacked tree "
                                 f"(default: ${SOURCE_ENV}, else the installation in ${WATCOM_ENV})")
    openwatcom.add_argument("--force", action="store_true", help="rebuild even if the cache has this source's build")
    openwatcom.set_defaults(func=_openwatcom)


def _openwatcom(args: argparse.Namespace) -> int:
    toolchain = find_openwatcom(args.source, force=args.force)
    print(toolchain.root)
    return 0
