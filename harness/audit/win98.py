"""Windows 98 SE loader checks for a PE: imported DLLs and functions, subsystem/OS version, heap reserve.

The import facts live in fixtures/win98_exports.yaml, generated from mingw-w64's per-release export annotations
and a small curated file (harness/audit/exports_source.py). Each import gets one of three verdicts besides "fine":
- "not exported by Windows 98 SE": the source lists the name as added in a later release (the loader refuses to
  start the program);
- "exported but a stub there": it loads, but the call fails (NT-only functions, W functions without unicows);
- "no evidence either way": the name is in no list. The check fails closed, so this is a finding too.
A stub that a known C runtime imports but calls only where it works (the list's `runtime_guarded`) is no finding
in that runtime's binaries when the machine code shows the guard around every reference (harness/audit/runtime.py);
it is reported as guarded, with its evidence, not silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.audit.binary import Binary
from harness.audit.runtime import Runtime, guard_verdict, parse_runtimes
from harness.core.errors import HarnessError, UsageError
from harness.core.paths import project_root

MAX_VERSION = (4, 0)
NOT_EXPORTED = "not exported by Windows 98 SE"
STUB = "exported but a stub there"
NO_EVIDENCE = "no evidence either way"


@dataclass(frozen=True)
class Win98Exports:
    """Per upper-case DLL name and function name: the source that says it is exported, a stub, or absent."""

    exported: dict[str, dict[str, str]]
    stubs: dict[str, dict[str, str]]
    absent: dict[str, dict[str, str]]
    runtimes: dict[str, Runtime] = field(default_factory=dict)  # stubs C runtimes call only where they work

    @property
    def available(self) -> dict[str, frozenset[str]]:
        """Names a program can import and call: exported and not a stub."""
        return {dll: frozenset(set(names) - set(self.stubs.get(dll, {}))) for dll, names in self.exported.items()}


@dataclass(frozen=True)
class OsFinding:
    what: str    # "import", "dll", "header"
    item: str    # e.g. KERNEL32.dll!GetTickCount64
    reason: str


@dataclass(frozen=True)
class OsCheck:
    """The findings, and the stubs accepted because the binary's C runtime guards every call of them."""

    findings: list[OsFinding]
    guarded: list[OsFinding]


def default_exports_path() -> Path:
    return project_root() / "fixtures" / "win98_exports.yaml"


def _by_name(groups: dict[str, list[str]] | None, filename: str) -> dict[str, str]:
    """{section: [names]} -> {name: "file: section"}."""
    return {str(name): f"{filename}: {section}" for section, names in (groups or {}).items() for name in names}


def load_exports(path: Path | None = None) -> Win98Exports:
    """Read the generated list; a missing or malformed file is a one-line HarnessError."""
    path = path or default_exports_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        exported: dict[str, dict[str, str]] = {}
        stubs: dict[str, dict[str, str]] = {}
        absent: dict[str, dict[str, str]] = {}
        for dll, entry in data["dlls"].items():
            filename = Path(str(entry["source"])).name
            exported[dll.upper()] = _by_name(entry["exported"], filename)
            stubs[dll.upper()] = {str(k): str(v) for k, v in (entry.get("stubs") or {}).items()}
            absent[dll.upper()] = _by_name(entry.get("absent"), filename)
        runtimes = parse_runtimes(data.get("runtime_guarded"))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as error:
        raise HarnessError(f"cannot read the Windows 98 export list {path}: {' '.join(str(error).split())}") from None
    return Win98Exports(exported, stubs, absent, runtimes)


def import_verdict(exports: Win98Exports, dll: str, name: str) -> str | None:
    """None when `dll!name` is fine on Windows 98 SE, else the finding's text (it starts with its kind)."""
    dll = dll.upper()
    if name in exports.stubs.get(dll, {}):
        return f"{STUB}: {exports.stubs[dll][name]}"
    if name in exports.exported.get(dll, {}):
        return None
    if name in exports.absent.get(dll, {}):
        return f"{NOT_EXPORTED} ({exports.absent[dll][name]})"
    return (f"{NO_EVIDENCE}: in none of the list's sources (mingw-w64 .def annotations, "
            "fixtures/win98_curated.yaml); look it up and add it with its source")


def _version(pair: tuple[int, int]) -> str:
    return f"{pair[0]}.{pair[1]}"


def check(binary: Binary, exports: Win98Exports) -> OsCheck:
    """Everything in the PE that keeps it from loading or working on Windows 98 SE, and the runtime-guarded stubs."""
    if binary.pe is None:
        raise UsageError(f"--os win98 needs a PE executable; {binary.path} is {binary.kind}")
    findings: list[OsFinding] = []
    guarded: list[OsFinding] = []
    header = binary.pe
    if header.subsystem_version > MAX_VERSION:
        findings.append(OsFinding("header", f"subsystem version {_version(header.subsystem_version)}",
                                  "Windows 98 loads PE files with subsystem version 4.0 or lower"))
    if header.os_version > MAX_VERSION:
        findings.append(OsFinding("header", f"OS version {_version(header.os_version)}",
                                  "must be 4.0 or lower for Windows 95/98/NT 4.0"))
    if header.heap_reserve == 0:
        findings.append(OsFinding("header", "SizeOfHeapReserve 0",
                                  "LocalAlloc crashes on Windows 9x (open-watcom-v2 issue #852; fixed in wlink "
                                  "early 2024)"))
    reported_dlls: set[str] = set()
    for item in binary.imports:
        dll = item.dll.upper()
        if dll not in exports.exported:
            if dll not in reported_dlls:
                reported_dlls.add(dll)
                findings.append(OsFinding("dll", item.dll, "DLL not covered by the Windows 98 SE list "
                                          "(Windows 98 may not have it)"))
            continue
        label = f"{item.dll}!{item.name if item.name else f'#{item.ordinal}'}"
        if item.name is None:
            findings.append(OsFinding("import", label, "import by ordinal: ordinals differ between Windows "
                                      "versions and cannot be checked"))
            continue
        verdict = import_verdict(exports, dll, item.name)
        if verdict is None:
            continue
        guard = guard_verdict(binary, exports.runtimes, dll, item.name) if verdict.startswith(STUB) else None
        if guard is not None and guard.accepted:
            guarded.append(OsFinding("import", label, f"{guard.text}; on Windows 98 SE it is {verdict}"))
        else:
            findings.append(OsFinding("import", label, verdict if guard is None else f"{verdict}; {guard.text}"))
    return OsCheck(findings, guarded)
