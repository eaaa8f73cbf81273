"""`audit --os win98` on real MinGW PE files: each kind of import finding, and the calls the old hand-written list
wrongly flagged now pass.

The kinds: "not exported by Windows 98 SE" (the loader refuses the program), "exported but a stub there" (it loads,
the call fails) and "no evidence either way" (a name no source mentions; the audit fails closed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.audit import audit
from harness.audit.binary import load
from harness.audit.win98 import NO_EVIDENCE, NOT_EXPORTED, STUB
from harness.cli import main

MINGW = "i686-w64-mingw32-gcc"
DLLTOOL = "i686-w64-mingw32-dlltool"
TIMEOUT_S = 180
WIN98_FLAGS = ["-march=pentium2", "-O2", "-D__USE_MINGW_ANSI_STDIO=0",
               "-Wl,--major-subsystem-version,4,--minor-subsystem-version,0",
               "-Wl,--major-os-version,4,--minor-os-version,0"]

WORKS_ON_98 = r"""
#define _WIN32_WINNT 0x0400
#include <windows.h>
#include <wincrypt.h>
#include <stdio.h>
#include <io.h>
#include <conio.h>
#include <fcntl.h>
#include <setjmp.h>
#include <time.h>
static jmp_buf jb;
int main(int argc, char **argv) {
    HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);
    COORD at = {0, 0}; DWORD n; BY_HANDLE_FILE_INFORMATION info; CRITICAL_SECTION cs;
    HCRYPTHASH hash = 0; int fds[2]; struct _finddatai64_t fd;
    (void)argv;
    SetConsoleTextAttribute(out, 7);
    FillConsoleOutputCharacterA(out, ' ', 1, at, &n);
    printf("%u\n", GetConsoleOutputCP());
    GetFileInformationByHandle(out, &info);
    FlushViewOfFile(0, 0);
    WaitForSingleObjectEx(out, 0, FALSE);
    InitializeCriticalSectionAndSpinCount(&cs, 100);
    CryptHashData(hash, (const BYTE *)"x", 1, 0);
    DeregisterEventSource(0);
    if (argc > 5) { _kbhit(); _getch(); _pipe(fds, 64, _O_BINARY); _popen("x", "r"); _chsize(1, 0); _commit(1); }
    _findfirsti64("*", &fd);
    _open_osfhandle(_get_osfhandle(1), 0);
    _tzset();
    if (setjmp(jb) == 0) longjmp(jb, 1);
    return 0;
}
"""


# Issue 18: calls Windows 98 SE exports (so the program loads) that the 1998-2000 MSDN Library calls unsupported
# there and that KernelEx re-implements for Windows 98; mingw-w64 lists them all for Windows 95/98.
KERNELEX_REIMPLEMENTS = r"""
#define _WIN32_WINNT 0x0400
#include <windows.h>
int main(int argc, char **argv) {
    CRITICAL_SECTION cs; FILETIME t[4]; DWORD level, flags, size = 0; PSID sid = 0; HANDLE token = 0;
    SID_IDENTIFIER_AUTHORITY world = {SECURITY_WORLD_SID_AUTHORITY};
    (void)argv;
    InitializeCriticalSection(&cs);
    if (TryEnterCriticalSection(&cs)) LeaveCriticalSection(&cs);
    GetThreadTimes(GetCurrentThread(), &t[0], &t[1], &t[2], &t[3]);
    GetProcessShutdownParameters(&level, &flags);
    if (argc > 5) DisconnectNamedPipe(0);
    AllocateAndInitializeSid(&world, 1, SECURITY_WORLD_RID, 0, 0, 0, 0, 0, 0, 0, &sid);
    GetTokenInformation(token, TokenUser, 0, 0, &size);
    return IsValidSid(sid) ? 0 : 1;
}
"""
KERNELEX_IMPORTS = {"KERNEL32.dll!TryEnterCriticalSection": "kernelex-kernel32",
                    "KERNEL32.dll!GetThreadTimes": "kernelex-metaxor",
                    "KERNEL32.dll!GetProcessShutdownParameters": "kernelex-metaxor",
                    "KERNEL32.dll!DisconnectNamedPipe": "kernelex-metaxor",
                    "ADVAPI32.dll!AllocateAndInitializeSid": "kernelex-advapi32",
                    "ADVAPI32.dll!GetTokenInformation": "kernelex-advapi32",
                    "ADVAPI32.dll!IsValidSid": "kernelex-advapi32"}


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install gcc-mingw-w64-i686)")


def _pe(tmp_path: Path, name: str, source: str, *extra: str) -> Path:
    _need(MINGW)
    c_file = tmp_path / f"{name}.c"
    c_file.write_text(source)
    exe = tmp_path / f"{name}.exe"
    result = subprocess.run([MINGW, *WIN98_FLAGS, "-o", str(exe), str(c_file), *extra], capture_output=True,
                            text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    return exe


def _import_findings(exe: Path) -> dict[str, str]:
    return {f.item: f.reason for f in audit(exe, "pentium2", "win98").os_findings if f.what == "import"}


def test_import_added_after_98_is_not_exported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exe = _pe(tmp_path, "tick64", "#define _WIN32_WINNT 0x0600\n#include <windows.h>\n#include <stdio.h>\n"
              "int main(void) { printf(\"%lu\\n\", (unsigned long)GetTickCount64()); return 0; }\n")
    findings = _import_findings(exe)
    assert list(findings) == ["KERNEL32.dll!GetTickCount64"]
    reason = findings["KERNEL32.dll!GetTickCount64"]
    assert reason.startswith(NOT_EXPORTED) and "added in Windows Vista" in reason
    assert main(["audit", str(exe), "--os", "win98"]) == 1
    assert "not exported by Windows 98 SE" in capsys.readouterr().out


def test_nt_only_call_is_exported_but_a_stub(tmp_path: Path) -> None:
    """SwitchToThread is in Windows 98's KERNEL32 (so the program loads) but MSDN calls it unsupported there."""
    exe = _pe(tmp_path, "yield", "#define _WIN32_WINNT 0x0400\n#include <windows.h>\n"
              "int main(void) { return SwitchToThread() ? 0 : 1; }\n")
    findings = _import_findings(exe)
    assert list(findings) == ["KERNEL32.dll!SwitchToThread"]
    assert findings["KERNEL32.dll!SwitchToThread"].startswith(STUB + ": msdn")


def test_unsupported_call_kernelex_reimplements_is_a_stub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 18: UnlockFileEx is in every Windows 98 KERNEL32 (mingw-w64 lists it for all versions, so the program
    loads), but the June 1998 MSDN Library says "Windows: Unsupported" and KernelEx ships its own for Windows 98."""
    exe = _pe(tmp_path, "unlock", "#include <windows.h>\nint main(void) {\n"
              "  OVERLAPPED at; HANDLE f = CreateFileA(\"x\", GENERIC_READ, 0, 0, OPEN_EXISTING, 0, 0);\n"
              "  ZeroMemory(&at, sizeof at);\n"
              "  return UnlockFileEx(f, 0, 1, 0, &at) ? 0 : 1; }\n")
    findings = _import_findings(exe)
    assert list(findings) == ["KERNEL32.dll!UnlockFileEx"]  # CreateFileA works on Windows 98
    reason = findings["KERNEL32.dll!UnlockFileEx"]
    assert reason.startswith(STUB + ": msdn") and "kernelex-kernel32" in reason, reason
    assert main(["audit", str(exe), "--os", "win98"]) == 1
    assert "exported but a stub there" in capsys.readouterr().out


def test_other_unsupported_calls_kernelex_reimplements_are_stubs(tmp_path: Path) -> None:
    """The rest of the cross-check, one of each kind: KERNEL32 names and the ADVAPI32 security functions."""
    exe = _pe(tmp_path, "kernelex", KERNELEX_REIMPLEMENTS, "-ladvapi32")
    findings = _import_findings(exe)
    assert set(findings) == set(KERNELEX_IMPORTS), sorted(findings)
    for item, source in KERNELEX_IMPORTS.items():
        assert findings[item].startswith(STUB + ": ") and source in findings[item], (item, findings[item])


def test_w_function_is_exported_but_a_stub(tmp_path: Path) -> None:
    exe = _pe(tmp_path, "wide", "#include <windows.h>\nint main(void) {\n"
              "  HANDLE h = CreateFileW(L\"x\", GENERIC_READ, 0, 0, OPEN_EXISTING, 0, 0);\n"
              "  return h == INVALID_HANDLE_VALUE; }\n")
    findings = _import_findings(exe)
    assert list(findings) == ["KERNEL32.dll!CreateFileW"]
    assert findings["KERNEL32.dll!CreateFileW"].startswith(STUB + ": mslu")


def test_name_no_source_mentions_is_no_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An import library for a KERNEL32 export nobody lists (built with dlltool) gives a real PE importing it."""
    _need(MINGW, DLLTOOL)
    (tmp_path / "fake.def").write_text("LIBRARY KERNEL32.dll\nEXPORTS\nLlama98NoSuchExport@0\n")
    subprocess.run([DLLTOOL, "-k", "-d", str(tmp_path / "fake.def"), "-l", str(tmp_path / "libfake.a")],
                   check=True, capture_output=True, timeout=TIMEOUT_S)
    exe = _pe(tmp_path, "unknown", "__declspec(dllimport) int __stdcall Llama98NoSuchExport(void);\n"
              "int main(void) { return Llama98NoSuchExport(); }\n", f"-L{tmp_path}", "-lfake")
    findings = _import_findings(exe)
    assert list(findings) == ["KERNEL32.dll!Llama98NoSuchExport"]
    assert findings["KERNEL32.dll!Llama98NoSuchExport"].startswith(NO_EVIDENCE)
    assert main(["audit", str(exe), "--os", "win98"]) == 1
    out = capsys.readouterr().out
    assert "no evidence either way" in out and "VERDICT ON WINDOWS 98 SE" in out


def test_calls_windows98_exports_are_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Console, file, critical-section, CryptoAPI and msvcrt calls the hand-written list lacked: all pass now."""
    exe = _pe(tmp_path, "works", WORKS_ON_98, "-ladvapi32")
    imported = {(item.dll.upper(), item.name) for item in load(exe).imports}
    expected = {("KERNEL32.DLL", "SetConsoleTextAttribute"), ("KERNEL32.DLL", "GetFileInformationByHandle"),
                ("KERNEL32.DLL", "InitializeCriticalSectionAndSpinCount"), ("ADVAPI32.DLL", "CryptHashData"),
                ("ADVAPI32.DLL", "DeregisterEventSource"), ("MSVCRT.DLL", "_get_osfhandle"),
                ("MSVCRT.DLL", "_open_osfhandle"), ("MSVCRT.DLL", "_kbhit"), ("MSVCRT.DLL", "_popen"),
                ("MSVCRT.DLL", "_tzset"), ("MSVCRT.DLL", "longjmp")}
    assert expected <= imported, sorted(expected - imported)
    assert main(["audit", str(exe), "--os", "win98"]) == 0, capsys.readouterr().out
    assert "is clean for pentium2 and Windows 98 SE" in capsys.readouterr().out
