"""Stubs a C runtime calls only on NT (harness/audit/runtime.py): accepted only in that runtime's binaries, only
when every use of the import is the runtime's guarded call, and reported as guarded.

Synthetic PE images pin each rule (the start-up at the entry point, both branch polarities of the guard, the
unused import thunk, and each way a use escapes the guard); real binaries prove it end to end: the OpenWatcom
llama98.exe (MMX and C dot products) and agent98.exe pass `--os win98`, while an OpenWatcom program that calls
GetModuleFileNameW itself and a MinGW program that calls it (even behind the same GetVersion test) fail.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.audit import audit
from harness.audit.binary import Binary, CodeRegion, Import, PeHeader
from harness.audit.runtime import GUARDS, guard_verdict, parse_runtimes, runtime_of, runtimes_document
from harness.audit.win98 import STUB, check, default_exports_path, load_exports
from harness.cli import main
from harness.toolchains.openwatcom import ToolchainMissing, find_openwatcom
from tests.support.port_helpers import built

BASE = 0x401000
IDATA = 0x403000
DATA = 0x404000
NAMES = ("GetVersion", "GetModuleFileNameA", "GetModuleFileNameW")
SLOTS = {name: IDATA + 4 * index for index, name in enumerate(NAMES)}
OW_TEXT = b"Open Watcom C/C++32 Run-Time system. "
ITEM = "KERNEL32.DLL!GetModuleFileNameW"
TIMEOUT_S = 180


def _call(name: str) -> bytes:
    """call dword ptr [slot of name]"""
    return b"\xff\x15" + struct.pack("<I", SLOTS[name])


VERSION_TEST = _call("GetVersion") + b"\xc1\xe8\x10" + b"\x66\x3d\x00\x80"  # shr eax, 0x10; cmp ax, 0x8000
WIN9X_SIDE = _call("GetModuleFileNameA") + b"\xc3"
NT_SIDE = b"\x53\x56\x55" + _call("GetModuleFileNameW") + b"\xc3"  # push ebx; push esi; push ebp; call; ret
# getmodfn.c as OpenWatcom compiles it: jb to the NT side; and the other polarity: jae to the Windows 9x side.
GUARD_JB = VERSION_TEST + b"\x72" + bytes([len(WIN9X_SIDE)]) + WIN9X_SIDE + NT_SIDE
GUARD_JAE = VERSION_TEST + b"\x73" + bytes([len(NT_SIDE)]) + NT_SIDE + WIN9X_SIDE
BODY_AT = BASE + 0x40


def _image(body: bytes, *, start_up: bytes | None = None, thunks: tuple[str, ...] = NAMES, data: bytes = b"",
           version_import: bool = True) -> Binary:
    """A PE as the audit reads it: OpenWatcom's start-up at the entry point (jmp rel32, dd ___begtext, the copyright
    message), `body` at BODY_AT, then wlink's import thunk table; the import slots in .idata, `data` in DGROUP."""
    if start_up is None:
        start_up = b"\xe9" + struct.pack("<i", BODY_AT - (BASE + 5)) + b"\0\0\0\0" + OW_TEXT + b"\0"
    code = start_up.ljust(BODY_AT - BASE, b"\0") + body
    code += b"".join(b"\xff\x25" + struct.pack("<I", SLOTS[name]) for name in thunks)
    text = CodeRegion("AUTO", BASE, code)
    sections = [text, CodeRegion(".idata", IDATA, bytes(4 * len(NAMES))), CodeRegion("DGROUP", DATA, data)]
    imports = [Import("KERNEL32.DLL", name, None, slot) for name, slot in SLOTS.items()
               if version_import or name != "GetVersion"]
    return Binary(Path("synthetic.exe"), "PE", [text], [], imports, PeHeader(0x14C, (4, 0), (4, 0), 0x100000, 3),
                  BASE, sections)


def _thunk(body: bytes, name: str = "GetModuleFileNameW") -> int:
    return BODY_AT + len(body) + 6 * NAMES.index(name)


def _verdict(binary: Binary) -> tuple[list[str], list[str]]:
    """(findings, guarded) of the Windows 98 check, as `KIND ITEM: reason` texts."""
    result = check(binary, load_exports())
    return ([f"{f.what} {f.item}: {f.reason}" for f in result.findings],
            [f"{f.what} {f.item}: {f.reason}" for f in result.guarded])


# --- the rules, on synthetic images -------------------------------------------------------------------------

@pytest.mark.parametrize("guard", [GUARD_JB, GUARD_JAE], ids=["jb-to-nt", "jae-to-9x"])
def test_the_runtimes_guarded_call_is_accepted_and_reported(guard: bytes) -> None:
    findings, guarded = _verdict(_image(guard))
    assert findings == []
    assert len(guarded) == 1 and guarded[0].startswith(f"import {ITEM}: guarded by the OpenWatcom C runtime (")
    call = BODY_AT + guard.index(_call("GetModuleFileNameW"))
    assert f"its call at {call:#x} runs only when GetVersion() (called at {BODY_AT:#x}) reports NT" in guarded[0]
    assert "getmodfn.c" in guarded[0] and guarded[0].endswith(f"it is {STUB}: mslu: W function, a stub on Windows "
                                                             "95/98 without unicows.dll")


@pytest.mark.parametrize("start_up", [
    b"\x55\x89\xe5" + b"\0" * 6 + OW_TEXT,  # MinGW-like code at the entry, the string where OpenWatcom puts it
    b"\xe9\0\0\0\0\0\0\0\0" + b"Some Other C/C++32 Run-Time system. ",
    b"\xe9\0\0\0\0\0\0\0" + OW_TEXT,  # one byte early
], ids=["other-entry-code", "other-text", "other-offset"])
def test_the_guard_counts_only_in_the_runtimes_binaries(start_up: bytes) -> None:
    """The same guarded call in a binary whose entry point is not OpenWatcom's start-up stays a plain stub."""
    binary = _image(GUARD_JB, start_up=start_up)
    assert runtime_of(binary, load_exports().runtimes) is None
    findings, guarded = _verdict(binary)
    assert guarded == [] and findings == [f"import {ITEM}: {STUB}: mslu: W function, a stub on Windows 95/98 "
                                          "without unicows.dll"]


def test_a_second_unguarded_call_keeps_the_finding() -> None:
    """The program's own call beside the runtime's: the finding stays and names where."""
    own = b"\x6a\x00" + _call("GetModuleFileNameW") + b"\xc3"
    findings, guarded = _verdict(_image(GUARD_JB + own))
    assert guarded == [] and len(findings) == 1
    where = BODY_AT + len(GUARD_JB) + 4
    assert findings[0].startswith(f"import {ITEM}: {STUB}: mslu")
    assert f"its slot is referenced at {where:#x} outside the guard" in findings[0]


def test_a_call_of_the_import_thunk_keeps_the_finding() -> None:
    """A call without dllimport goes through wlink's thunk (call rel32): the thunk is used."""
    body_length = len(GUARD_JB) + 5
    call_at = BODY_AT + len(GUARD_JB)
    thunk = BODY_AT + body_length + 12
    body = GUARD_JB + b"\xe8" + struct.pack("<i", thunk - (call_at + 5))
    assert _thunk(body) == thunk
    findings, _ = _verdict(_image(body))
    assert len(findings) == 1 and f"its import thunk at {thunk:#x} is used at {call_at:#x}" in findings[0]


def test_the_thunks_address_as_data_keeps_the_finding() -> None:
    """A function pointer table holding the thunk's address."""
    thunk = _thunk(GUARD_JB)
    findings, _ = _verdict(_image(GUARD_JB, data=b"\0" * 8 + struct.pack("<I", thunk)))
    assert len(findings) == 1 and f"its import thunk at {thunk:#x} is used at {DATA + 8:#x}" in findings[0]


def test_a_tail_jump_through_the_slot_is_no_thunk() -> None:
    """`jmp dword ptr [slot]` in the program's code (not in a table of one thunk per import) is a plain use."""
    tail = b"\xff\x25" + struct.pack("<I", SLOTS["GetModuleFileNameW"])
    findings, _ = _verdict(_image(GUARD_JB + tail))
    assert len(findings) == 1 and f"referenced at {BODY_AT + len(GUARD_JB) + 2:#x} outside the guard" in findings[0]
    # A thunk table that lacks an import is not wlink's table either: its jump counts as a use.
    findings, _ = _verdict(_image(GUARD_JB, thunks=("GetModuleFileNameW",)))
    assert len(findings) == 1 and "outside the guard" in findings[0]


@pytest.mark.parametrize(("body", "version_import"), [
    (VERSION_TEST[:6] + b"\x31\xdb" + VERSION_TEST[6:] + b"\x72\x07" + WIN9X_SIDE + NT_SIDE, True),  # xor between
    (VERSION_TEST + b"\x74\x07" + WIN9X_SIDE + NT_SIDE, True),  # je: no NT test
    (VERSION_TEST + b"\x72\x07" + WIN9X_SIDE + b"\x53\xeb\x00" + NT_SIDE[1:], True),  # a jump before the call
    (VERSION_TEST[:6] + b"\xc1\xe8\x0f" + VERSION_TEST[9:] + b"\x72\x07" + WIN9X_SIDE + NT_SIDE, True),  # shr 15
    (GUARD_JB, False),  # no GetVersion import: the slot the test calls is not GetVersion's
    # Ways the Windows 9x side reaches the call after all:
    (VERSION_TEST + b"\x72\x07" + WIN9X_SIDE[:-1] + b"\x90" + NT_SIDE, True),  # it falls through into the NT side
    (VERSION_TEST + b"\x72\x09" + WIN9X_SIDE[:-1] + b"\x75\x01\xc3" + NT_SIDE, True),  # jne into the NT side
    (VERSION_TEST + b"\x73\x00" + NT_SIDE + WIN9X_SIDE, True),  # jae whose Windows 9x target is the NT side
    (VERSION_TEST + b"\x72\x00" + NT_SIDE + WIN9X_SIDE, True),  # jb +0: both sides are the NT side
], ids=["instruction-between", "wrong-branch", "branch-on-the-nt-side", "wrong-shift", "no-getversion",
        "9x-falls-through", "9x-branches-in", "jae-to-the-call", "jb-to-the-next-instruction"])
def test_anything_but_the_known_guard_keeps_the_finding(body: bytes, version_import: bool) -> None:
    findings, guarded = _verdict(_image(body, version_import=version_import))
    assert guarded == [] and len(findings) == 1
    assert "no call guarded by HIWORD(GetVersion()) < 0x8000, i.e. Windows NT was found" in findings[0]


def test_an_import_the_runtime_does_not_guard_is_untouched() -> None:
    binary = _image(GUARD_JB)
    assert guard_verdict(binary, load_exports().runtimes, "KERNEL32.DLL", "GetModuleFileNameA") is None
    assert guard_verdict(binary, load_exports().runtimes, "USER32.DLL", "GetModuleFileNameW") is None
    assert guard_verdict(binary, {}, "KERNEL32.DLL", "GetModuleFileNameW") is None


# --- the list's section -------------------------------------------------------------------------------------

def test_the_checked_in_list_guards_only_getmodulefilenamew_in_openwatcom() -> None:
    exports = load_exports()
    assert set(exports.runtimes) == {"openwatcom"}
    runtime = exports.runtimes["openwatcom"]
    assert {dll: set(names) for dll, names in runtime.imports.items()} == {"KERNEL32.DLL": {"GetModuleFileNameW"}}
    assert "GetModuleFileNameW" in exports.stubs["KERNEL32.DLL"]  # a guard excuses only a stub
    guarded = runtime.imports["KERNEL32.DLL"]["GetModuleFileNameW"]
    assert guarded.guard in GUARDS and guarded.evidence.startswith("openwatcom-clib (libwin32/c/getmodfn.c")
    section = yaml.safe_load(default_exports_path().read_text())["runtime_guarded"]
    assert runtimes_document(parse_runtimes(section)) == section


@pytest.mark.parametrize(("change", "message"), [
    ({"guard": "trust-me"}, "guard 'trust-me' is none of the guards"),
    ({"evidence": ""}, "evidence is not a non-empty text"),
    ({"start_up": {"opcode": "e", "text_at": 9, "text": "x", "evidence": "y"}}, "opcode is not one byte"),
    ({"start_up": {"opcode": "e9", "text_at": 0, "text": "x", "evidence": "y"}}, "text_at is not a positive"),
], ids=["unknown-guard", "no-evidence", "bad-opcode", "bad-offset"])
def test_a_malformed_section_is_refused(change: dict[str, object], message: str) -> None:
    section = yaml.safe_load(default_exports_path().read_text())["runtime_guarded"]
    entry = section["openwatcom"]
    if "start_up" in change:
        entry["start_up"] = change["start_up"]
    else:
        entry["imports"]["KERNEL32.DLL"]["GetModuleFileNameW"].update(change)
    with pytest.raises(ValueError, match=message):
        parse_runtimes(section)


# --- real binaries ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["watcom-win32", "watcom-win32-c", "agent98"])
def test_openwatcom_builds_pass_windows98_with_the_guard_reported(target: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    exe = built("watcom-win32", program="agent98") if target == "agent98" else built(target)
    result = audit(exe, "pentium2", "win98")
    assert result.clean, (result.findings[:5], result.os_findings)
    assert [item.item for item in result.os_guarded] == [ITEM]
    assert main(["audit", str(exe), "--cpu", "pentium2", "--os", "win98"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("is clean for pentium2 and Windows 98 SE") and len(out) == 2
    assert out[1].startswith(f"  guarded: {ITEM}: guarded by the OpenWatcom C runtime (openwatcom-clib")


OWN_CALL = r"""
#include <windows.h>
#include <stdio.h>
int main(void) {
    wchar_t name[MAX_PATH];
    printf("%lu\n", (unsigned long)GetModuleFileNameW(NULL, name, MAX_PATH));
    return 0;
}
"""
# The other ways a program reaches the import: a tail call (`jmp dword ptr [slot]`), a pointer to it (wlink's
# thunk as data), and a call without dllimport (`call` rel32 to the thunk).
TAIL_CALL = r"""
#include <windows.h>
#include <stdio.h>
DWORD name_of(HMODULE h, LPWSTR b, DWORD n) { return GetModuleFileNameW(h, b, n); }
int main(void) { wchar_t name[MAX_PATH]; printf("%lu\n", (unsigned long)name_of(NULL, name, MAX_PATH)); return 0; }
"""
POINTER = r"""
#include <windows.h>
#include <stdio.h>
typedef DWORD (WINAPI *GMF)(HMODULE, LPWSTR, DWORD);
GMF volatile table[1] = { GetModuleFileNameW };
int main(void) { wchar_t name[MAX_PATH]; printf("%lu\n", (unsigned long)table[0](NULL, name, MAX_PATH)); return 0; }
"""
NO_DLLIMPORT = r"""
#include <stdio.h>
unsigned long __stdcall GetModuleFileNameW(void *, unsigned short *, unsigned long);
int main(void) { unsigned short name[260]; printf("%lu\n", GetModuleFileNameW(0, name, 260)); return 0; }
"""
PLAIN = "#include <stdio.h>\nint main(void) { printf(\"hi\\n\"); return 0; }\n"


def _openwatcom_exe(tmp_path: Path, name: str, source: str) -> Path:
    try:
        watcom = find_openwatcom()
    except ToolchainMissing as error:
        pytest.skip(str(error))
    (tmp_path / f"{name}.c").write_text(source)
    result = subprocess.run([str(watcom.tool("wcl386")), "-q", "-bt=nt", "-l=nt", "-6r", "-fp6", "-ox",
                             f"-fe={name}.exe", f"{name}.c"], cwd=tmp_path, env=watcom.env("nt"),
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path / f"{name}.exe"


def test_a_tiny_openwatcom_program_passes(tmp_path: Path) -> None:
    plain = audit(_openwatcom_exe(tmp_path, "plain", PLAIN), "pentium2", "win98")
    assert plain.clean and [item.item for item in plain.os_guarded] == [ITEM]


@pytest.mark.parametrize(("source", "how"), [
    (OWN_CALL, "outside the guard"), (TAIL_CALL, "outside the guard"), (POINTER, "import thunk at"),
    (NO_DLLIMPORT, "import thunk at"),
], ids=["call", "tail-call", "pointer", "no-dllimport"])
def test_an_openwatcom_program_calling_it_itself_fails(source: str, how: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The runtime's guarded call is there too, but the program's own use is not behind it."""
    exe = _openwatcom_exe(tmp_path, "own", source)
    result = audit(exe, "pentium2", "win98")
    assert result.os_guarded == [] and [f.item for f in result.os_findings] == [ITEM]
    reason = result.os_findings[0].reason
    assert reason.startswith(STUB) and "not every use is that call" in reason and how in reason, reason
    assert main(["audit", str(exe), "--os", "win98"]) == 1
    assert "exported but a stub there" in capsys.readouterr().out


MINGW_GUARDED = r"""
#include <windows.h>
#include <stdio.h>
int main(void) {
    wchar_t name[MAX_PATH]; DWORD n = 0;
    if (HIWORD(GetVersion()) < 0x8000) n = GetModuleFileNameW(NULL, name, MAX_PATH);
    printf("%lu\n", (unsigned long)n);
    return 0;
}
"""


@pytest.mark.parametrize("source", [OWN_CALL, MINGW_GUARDED], ids=["plain-call", "behind-getversion"])
def test_a_mingw_program_calling_it_fails(source: str, tmp_path: Path) -> None:
    """Not OpenWatcom's start-up, so OpenWatcom's guard never applies, whatever the program's own code does."""
    compiler = "i686-w64-mingw32-gcc"
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed (apt-get install gcc-mingw-w64-i686)")
    (tmp_path / "mingw.c").write_text(source)
    exe = tmp_path / "mingw.exe"
    result = subprocess.run([compiler, "-O2", "-D__USE_MINGW_ANSI_STDIO=0", "-o", str(exe), str(tmp_path / "mingw.c")],
                            capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr
    found = audit(exe, "pentium2", "win98")
    assert found.os_guarded == []
    assert {f.item: f.reason for f in found.os_findings} == {
        "KERNEL32.dll!GetModuleFileNameW": f"{STUB}: mslu: W function, a stub on Windows 95/98 without unicows.dll"}
