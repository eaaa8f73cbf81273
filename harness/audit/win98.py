"""Windows 98 SE loader checks for a PE: imported DLLs and functions, subsystem/OS version, heap reserve.

The import facts live in fixtures/win98_exports.yaml (data with its sources, not code). The check fails closed:
an import that the file does not list as available is a finding, so adding a Win32 call means looking it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.audit.binary import Binary
from harness.core.errors import HarnessError, UsageError
from harness.core.paths import project_root

MAX_VERSION = (4, 0)


@dataclass(frozen=True)
class Win98Exports:
    """Per upper-case DLL name: available function names, and unusable ones with the reason."""

    available: dict[str, frozenset[str]]
    unusable: dict[str, dict[str, str]]


@dataclass(frozen=True)
class OsFinding:
    what: str    # "import", "dll", "header"
    item: str    # e.g. KERNEL32.dll!GetTickCount64
    reason: str


def default_exports_path() -> Path:
    return project_root() / "fixtures" / "win98_exports.yaml"


def load_exports(path: Path | None = None) -> Win98Exports:
    """Read the fixture; a missing or malformed file is a one-line HarnessError."""
    path = path or default_exports_path()
    try:
        data = yaml.safe_load(path.read_text())
        available: dict[str, frozenset[str]] = {}
        unusable: dict[str, dict[str, str]] = {}
        for dll, entry in data["dlls"].items():
            names: set[str] = set()
            for functions in entry["available"].values():
                names.update(functions)
            available[dll.upper()] = frozenset(names)
            unusable[dll.upper()] = dict(entry.get("unusable") or {})
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise HarnessError(f"cannot read the Windows 98 export list {path}: {error}") from None
    return Win98Exports(available, unusable)


def _version(pair: tuple[int, int]) -> str:
    return f"{pair[0]}.{pair[1]}"


def check(binary: Binary, exports: Win98Exports) -> list[OsFinding]:
    """Everything in the PE that keeps it from loading or working on Windows 98 SE."""
    if binary.pe is None:
        raise UsageError(f"--os win98 needs a PE executable; {binary.path} is {binary.kind}")
    findings: list[OsFinding] = []
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
        if dll not in exports.available:
            if dll not in reported_dlls:
                reported_dlls.add(dll)
                findings.append(OsFinding("dll", item.dll, "DLL not covered by the Windows 98 SE list "
                                          "(Windows 98 may not have it)"))
            continue
        label = f"{item.dll}!{item.name if item.name else f'#{item.ordinal}'}"
        if item.name is None:
            findings.append(OsFinding("import", label, "import by ordinal: ordinals differ between Windows "
                                      "versions and cannot be checked"))
        elif item.name in exports.unusable[dll]:
            findings.append(OsFinding("import", label, exports.unusable[dll][item.name]))
        elif item.name not in exports.available[dll]:
            findings.append(OsFinding("import", label, "not in the Windows 98 SE list "
                                      "(look it up and add it to fixtures/win98_exports.yaml with its source)"))
    return findings
