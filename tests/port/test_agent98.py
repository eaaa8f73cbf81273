"""agent98.exe is built the way Windows 98 needs: strict C89, PE subsystem 4.0, only functions Windows 98 has.

Its behaviour (protocol, built-ins, timeouts, Ctrl-C, llama98 through it) is proven under Wine in
tests/unit/guests/win98/test_wine_lane.py; this module checks the binary itself and the build path.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.audit.win98 import load_exports
from harness.core.paths import project_root
from harness.port.build import PortBuildError, build_port

SOURCE = project_root() / "ports" / "agent98" / "agent98.c"
STRICT = ["-std=c89", "-pedantic-errors", "-Wall", "-Wextra", "-Wdeclaration-after-statement", "-Werror",
          "-march=pentium2", f"-I{project_root() / 'ports' / 'llama98'}"]  # u64.h and crc32.h are shared

# NT-only functions a serial agent is tempted to use: Windows 98 refuses to load a program importing them (or
# they fail with ERROR_CALL_NOT_IMPLEMENTED). The full curated list is fixtures/win98_exports.yaml.
NT_ONLY = {"GetTickCount64", "CancelIoEx", "CancelIo", "SetHandleInformation", "CreateProcessW", "GetFileSizeEx",
           "SetFilePointerEx", "CreateFileW", "ReadFileEx", "WriteFileEx", "GetConsoleWindow", "AttachConsole"}


def _objdump(exe: Path) -> str:
    if shutil.which("i686-w64-mingw32-objdump") is None:
        pytest.skip("i686-w64-mingw32-objdump not installed (apt-get install binutils-mingw-w64-i686)")
    return subprocess.run(["i686-w64-mingw32-objdump", "-p", str(exe)], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def _imports(dump: str) -> dict[str, set[str]]:
    """DLL name (lower case) -> imported function names, from `objdump -p`."""
    found: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in dump.splitlines():
        dll = re.match(r"\s*DLL Name: (\S+)", line)
        if dll:
            current = found.setdefault(dll.group(1).lower(), set())
            continue
        entry = re.match(r"\s+[0-9a-f]+\s+\d+\s+(\w+)$", line)
        if entry and current is not None:
            current.add(entry.group(1))
        elif line and not line[0].isspace():
            current = None  # a new section of the dump
    return found


def test_compiles_with_the_strict_c89_flags(tmp_path: Path) -> None:
    if shutil.which("i686-w64-mingw32-gcc") is None:
        pytest.skip("i686-w64-mingw32-gcc not installed (apt-get install gcc-mingw-w64-i686)")
    result = subprocess.run(["i686-w64-mingw32-gcc", *STRICT, "-c", str(SOURCE), "-o", str(tmp_path / "a.o")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_c89_violations_are_errors_under_those_flags(tmp_path: Path) -> None:
    """The flags really reject what Borland C++ 5.02 / OpenWatcom C89 would (so the test above means something)."""
    if shutil.which("i686-w64-mingw32-gcc") is None:
        pytest.skip("i686-w64-mingw32-gcc not installed")
    bad = tmp_path / "bad.c"
    bad.write_text(SOURCE.read_text().replace("int main(int argc, char **argv)\n{",
                                              "int main(int argc, char **argv)\n{\n    // c99 comment\n"))
    result = subprocess.run(["i686-w64-mingw32-gcc", *STRICT, "-c", str(bad), "-o", str(tmp_path / "b.o")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "C++ style comments are not allowed" in result.stderr


def test_imports_only_windows98_functions_of_kernel32_and_msvcrt(agent_exe: Path) -> None:
    imports = _imports(_objdump(agent_exe))
    assert set(imports) == {"kernel32.dll", "msvcrt.dll"}, sorted(imports)
    win98 = load_exports().available  # each entry with its source; the audit fails closed on anything else
    for dll, names in imports.items():
        assert names <= win98[dll.upper()], (dll, sorted(names - win98[dll.upper()]))
    assert not (imports["kernel32.dll"] & NT_ONLY)
    # the COM port and process functions the agent is built around are really there
    assert {"CreateFileA", "SetCommState", "CreatePipe", "PeekNamedPipe", "CreateProcessA",
            "TerminateProcess"} <= imports["kernel32.dll"]


def test_pe_header_says_windows_4_0_console(agent_exe: Path) -> None:
    dump = _objdump(agent_exe)
    assert re.search(r"MajorSubsystemVersion\s+4\b", dump) and re.search(r"MinorSubsystemVersion\s+0\b", dump)
    assert re.search(r"MajorOSystemVersion\s+4\b", dump)
    assert re.search(r"Subsystem\s+00000003\s+\(Windows CUI\)", dump)


def test_user32_is_loaded_at_run_time_not_imported(agent_exe: Path) -> None:
    data = agent_exe.read_bytes()
    assert b"USER32.DLL" in data and b"ExitWindowsEx" in data
    assert b"AGENT98 READY" in data


def test_build_helper_builds_agent98_only_for_win32_and_caches_it(agent_exe: Path, tmp_path: Path) -> None:
    again = build_port("win32", program="agent98", out=tmp_path / "agent98.exe")
    assert again.read_bytes() == agent_exe.read_bytes()
    with pytest.raises(PortBuildError, match="agent98 is built only for target win32"):
        build_port("native", program="agent98")
    with pytest.raises(PortBuildError, match="unknown program"):
        build_port("win32", program="nosuch")
    assert build_port("win32").name == "llama98.exe", "the default program is still llama98"


def test_watcom_makefile_targets_win32_console_4_0() -> None:
    makefile = (project_root() / "ports" / "agent98" / "watcom.mk").read_text()
    assert "-bt=nt" in makefile and "system nt runtime console=4.0" in makefile and "-6r" in makefile
