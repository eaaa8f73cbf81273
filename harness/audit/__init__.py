"""`llama98-harness audit BINARY`: prove a shipped binary runs on the target CPU and on Windows 98 SE.

A binary built for the wrong CPU fails in the guest with an invalid-opcode fault far from its cause (a Pentium II
has no SSE; the tiny686 guest's QEMU `-cpu pentium2` catches that, a real Pentium II does too, but only on the
code path that happens to run). Disassembling every instruction finds it before the guest does.

What is audited (`--scope`):
- `port`: only the port's own functions (see harness/audit/scope.py). This is the default for ELF. The tiny686
  build is `gcc -m32 -march=pentium2 -O2 -static`, so it also contains all of static glibc, whose memcpy, strlen,
  strchr & co. are ifuncs: glibc picks an SSE2/SSSE3/AVX2 variant at start-up with CPUID, so those variants are
  present but never run on a Pentium II. Measured on the tiny686 build (Debian 12 glibc 2.36): `--scope all`
  reports about 6,450 instructions, all inside the named *_sse2/_ssse3/_sse4_2/_avx2 variants except four, and
  those four are CPUID-guarded too (XBEGIN/XEND/XABORT in lock elision, used only when CPUID reports RTM;
  XGETBV in the CPU-feature set-up, run only when CPUID reports OSXSAVE); the rest of Debian's i386 glibc is
  built for i686 (P6). Auditing glibc's bytes therefore reports only code that does not execute on the target;
  auditing ours reports what our compiler flags really produced. Reachability from main was considered and rejected: ifunc resolvers take the
  address of every variant, so a sound reachability analysis would mark them all reachable anyway.
- `all`: every executable section, with names from the symbol table where there is one. The default for PE:
  MinGW's static CRT start-up and libgcc are small, have no CPUID dispatch, and belong to what ships, so all of
  it is checked; an OpenWatcom PE has no symbol table at all, so there is nothing to scope by.
- `auto` (default): `port` for an ELF with a symbol table, `all` otherwise.

With `--os win98` a PE is also checked for what Windows 98 SE offers (harness/audit/win98.py and
fixtures/win98_exports.yaml). Exit status: 0 and one summary line when clean, 1 and tables when anything is
found, 2 (one line) when the file cannot be read or parsed.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.audit import isa
from harness.audit.binary import AuditInputError, Binary, load
from harness.audit.scope import default_port_dirs, port_functions, port_sources
from harness.audit.win98 import OsFinding, check, load_exports
from harness.core.errors import UsageError

DEFAULT_ROW_LIMIT = 200


@dataclass
class AuditResult:
    """Everything one audit found, ready to print."""

    binary: Binary
    cpu: str
    scope: str
    units: int  # functions (port scope) or sections (all scope) disassembled
    decoded: int
    findings: list[isa.Instruction] = field(default_factory=list)
    os_findings: list[OsFinding] = field(default_factory=list)
    os_name: str | None = None

    @property
    def clean(self) -> bool:
        return not self.findings and not self.os_findings


def resolve_scope(binary: Binary, requested: str) -> str:
    if requested == "auto":
        return "port" if binary.kind == "ELF" and binary.functions else "all"
    if requested == "port" and not binary.functions:
        raise UsageError(f"{binary.path} has no symbol table, so its own functions cannot be told apart: "
                         "use --scope all")
    return requested


def audit(path: Path, cpu: str = "pentium2", os_name: str | None = None, scope: str = "auto",
          port_dirs: list[Path] | None = None) -> AuditResult:
    """Audit one binary; raises AuditInputError (exit 2) for unreadable input."""
    if cpu not in isa.CPU_FEATURES:
        raise UsageError(f"unknown CPU {cpu!r}: choose one of {', '.join(isa.CPU_FEATURES)}")
    binary = load(path)
    chosen = resolve_scope(binary, scope)
    decoder = isa.new_disassembler()
    findings: list[isa.Instruction] = []
    decoded = 0
    if chosen == "port":
        sources = port_sources(port_dirs if port_dirs is not None else default_port_dirs())
        ranges = sorted({(f.start, f.end) for f in port_functions(binary, sources)})
        if not ranges:
            raise UsageError(f"none of {binary.path}'s symbols belong to the port sources "
                             f"({', '.join(sorted(sources.files)) or 'no .c files'}): use --port-src or --scope all")
        for start, end in ranges:
            found, count = isa.scan(decoder, binary.slice(start, end), start, cpu)
            findings += found
            decoded += count
        units = len(ranges)
    else:
        for region in binary.regions:
            found, count = isa.scan(decoder, region.data, region.address, cpu)
            findings += found
            decoded += count
        units = len(binary.regions)
    result = AuditResult(binary, cpu, chosen, units, decoded, findings, os_name=os_name)
    if os_name == "win98":
        result.os_findings = check(binary, load_exports())
    return result


def _table(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(len(headers))]
    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
    return [line(headers), line(tuple("-" * w for w in widths)), *(line(row) for row in rows)]


def _scope_text(result: AuditResult) -> str:
    unit = "functions" if result.scope == "port" else "sections"
    return f"scope {result.scope}: {result.units} {unit}, {result.decoded} instructions"


def format_result(result: AuditResult, limit: int = DEFAULT_ROW_LIMIT) -> str:
    """One line when clean; otherwise the instruction table, counts per extension and function, and OS table."""
    name = result.binary.path.name
    target = result.cpu + (" and Windows 98 SE" if result.os_name == "win98" else "")
    if result.clean:
        extra = f", {len(result.binary.imports)} imports" if result.os_name else ""
        return f"audit: {name} ({result.binary.kind}, {_scope_text(result)}{extra}) is clean for {target}"
    total = len(result.findings) + len(result.os_findings)
    lines = [f"audit: {name} ({result.binary.kind}, {_scope_text(result)}) has {total} findings for {target}"]
    if result.findings:
        shown = result.findings if limit <= 0 else result.findings[:limit]
        rows = [(f"{f.address:#010x}", f.extension, f.text, result.binary.locate(f.address)) for f in shown]
        lines += ["", *_table(("ADDRESS", "NEEDS", "INSTRUCTION", "WHERE"), rows)]
        if len(shown) < len(result.findings):
            lines.append(f"... {len(result.findings) - len(shown)} more rows (--limit 0 shows all)")
        per_extension = Counter(f.extension for f in result.findings)
        ordered = sorted(per_extension.items(), key=lambda item: isa.EXTENSION_ORDER.index(item[0]))
        lines += ["", "per extension: " + ", ".join(f"{ext} {count}" for ext, count in ordered)]
        per_place = Counter(result.binary.locate(f.address).rsplit("+", 1)[0] for f in result.findings)
        top = ", ".join(f"{place} {count}" for place, count in per_place.most_common(20))
        lines.append(f"per function/section: {top}" + (" ..." if len(per_place) > 20 else ""))
    if result.os_findings:
        os_rows = [(f.what, f.item, f.reason) for f in result.os_findings]
        lines += ["", *_table(("KIND", "ITEM", "WHY IT FAILS ON WINDOWS 98 SE"), os_rows)]
    return "\n".join(lines)


def _cmd_audit(args: argparse.Namespace) -> int:
    path = Path(args.binary)
    if not path.is_file():
        raise AuditInputError(f"{path} does not exist or is not a file")
    port_dirs = [Path(d) for d in args.port_src] if args.port_src else None
    result = audit(path, args.cpu, args.os, args.scope, port_dirs)
    print(format_result(result, args.limit))
    sys.stdout.flush()
    return 0 if result.clean else 1


def register(subparsers: argparse._SubParsersAction) -> None:
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
