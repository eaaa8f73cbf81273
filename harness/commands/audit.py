"""`llama98-harness audit`: ISA scan and Windows 98 import check of a binary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.audit import DEFAULT_ROW_LIMIT, audit, format_result, isa
from harness.audit.binary import AuditInputError


def _cmd_audit(args: argparse.Namespace) -> int:
    path = Path(args.binary)
    if not path.is_file():
        raise AuditInputError(f"{path} does not exist or is not a file")
    port_dirs = [Path(d) for d in args.port_src] if args.port_src else None
    result = audit(path, args.cpu, args.os, args.scope, port_dirs)
    print(format_result(result, args.limit))
    sys.stdout.flush()
    return 0 if result.clean else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness audit`."""
    parser = subparsers.add_parser(
        "audit",
        help="list instructions the target CPU lacks and imports Windows 98 lacks",
        description="Disassemble an ELF or PE and report every instruction the target CPU lacks; with --os win98 "
                    "also imports and PE header fields Windows 98 SE cannot satisfy. Exit 0 clean, 1 findings, "
                    "2 unreadable file.",
    )
    parser.add_argument("binary", metavar="BINARY", help="ELF or PE executable (i386)")
    parser.add_argument("--cpu", choices=sorted(isa.CPU_FEATURES), default="pentium2",
                        help="target CPU (default pentium2, the guest's QEMU model)")
    parser.add_argument("--os", choices=["win98"], default=None, help="also check a PE against Windows 98 SE")
    parser.add_argument("--scope", choices=["auto", "port", "all"], default="auto",
                        help="port: only the port's own functions; all: every executable section; "
                             "auto (default): port for ELF, all for PE")
    parser.add_argument("--port-src", metavar="DIR", action="append",
                        help="C source directory whose functions count as the port's (repeatable; "
                             "default: every ports/* directory of this checkout)")
    parser.add_argument("--limit", type=int, default=DEFAULT_ROW_LIMIT,
                        help=f"most instruction rows to print (default {DEFAULT_ROW_LIMIT}; 0 = all)")
    parser.set_defaults(func=_cmd_audit)
