"""`llama98-harness build-guest`: build (or reuse) the tiny686 stand-in guest and print its path."""

from __future__ import annotations

import argparse
import sys

from harness.guests.tiny686.image import GUEST_NAMES, build_guest


def _command(args: argparse.Namespace) -> int:
    image = build_guest(args.guest, force=args.force, log=lambda message: print(message, file=sys.stderr))
    print(image)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `build-guest NAME [--force]`, which prints the path of the (cached) image."""
    parser = subparsers.add_parser("build-guest", help="build (or reuse the cached) stand-in guest disk image",
                                   description="Build the tiny686 guest image from Debian i386 packages and "
                                               "print its path.")
    parser.add_argument("guest", choices=GUEST_NAMES, help="guest to build")
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached image exists")
    parser.set_defaults(func=_command)
