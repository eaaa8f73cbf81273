"""The Windows 98 export list generator: parser on .def texts in mingw-w64's annotation style, generator on a
throw-away mingw-w64-shaped git repository, and (when LLAMA98_MINGW_W64_SRC names a real copy) no drift between
the checked-in fixtures/win98_exports.yaml and what that copy gives at the pinned commit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.audit.exports_source import (
    SOURCE_ENV,
    default_curated_path,
    evidence_keys,
    generate,
    load_curated,
    main,
    pinned_commit,
)
from harness.audit.mingw_defs import (
    ABSENT,
    EXPORTED,
    SKIP,
    DefFormatError,
    parse,
    verdicts,
)
from harness.audit.win98 import default_exports_path, load_exports

KERNEL32_DEF = """LIBRARY "KERNEL32.dll"
EXPORTS

; This file is a comprehensive documentation for 32-bit x86 kernel32.dll symbols.
; Symbols in this file are ordered by increasing Windows version in which they were introduced.

; This is list of symbols available in all Windows versions (Win32s since Win32s 1.1; Win9x since Windows 95; WinNT since Windows NT 3.1)
CreateFileA@28
CreateFileW@28
InterlockedIncrement@4 DATA ; FIXME: why is decorated stdcall function symbol disabled?
lstrlenW@4

; This is list of symbols available only in Win32s (not available in Win9x and WinNT)
; GetDOSFileHandle@4
; OpenThread@4 ; Win32s OpenThread takes one DWORD threadid argument

; This is list of symbols added in Win32s 1.20, available since Windows NT 3.1, but not available in Win9x
CloseConsoleHandle@4

; This is list of symbols added in Windows NT 4.0 and Windows 98, but not available in Win32s
CopyFileExA@24
SwitchToThread@0

; This is list of symbols added in Windows NT 4.0, but not available in Win9x and Win32s
SetConsoleIcon@4

;; This is end of Windows NT 4.0 symbols ;;

; This is list of ordinal-only symbols available in all Win9x versions, but not available in Win32s and WinNT
; Symbol names are taken from:
; https://www.geoffchappell.com/studies/windows/win32/kernel32/history/ords40.htm
; VxDCall0@4 @1 NONAME ; stdcall+regs

; This is list of symbols available in all Win9x versions, but not available in Win32s and WinNT
; MapSL@4
; QT_Thunk ; no stdcall decoration in msvc thunk32.lib

; This is list of symbols available in all Win9x versions and also since Windows Vista, but not available in Win32s
GetErrorMode@0

; This is list of symbols added in Windows ME and also since Windows 2000, but not available in Win32s
OpenThread@12 ; Win32s contains "OpenThread" symbol but ABI is "OpenThread@4"

; This is list of symbols added in Windows Vista
GetTickCount64@0
@InterlockedPushListSList@8 ; really fastcall calling convention
"""

MSVCRT_DEF_IN = """LIBRARY "msvcrt.dll"
EXPORTS

#include "func.def.in"

#ifdef __i386__
; List of I386 C++ mangled symbols which matches the first I386 version of msvcrt.dll (Microsoft Visual C++ 4.2)
; void *__cdecl operator new(unsigned int)
??2@YAPAXI@Z
#endif
#ifdef __x86_64__
; List of X64 C++ mangled symbols which matches the first X64 version of msvcrt.dll (Windows Server 2003 SP1)
??2@YAPEAX_K@Z
#endif

; This is list of symbols available in the original Microsoft Visual C++ 4.2 version of msvcrt.dll
; Same set of symbols are available in Windows NT 4.0 OS system version of msvcrt.dll
F_I386(_CxxThrowException@8)
F_NON_I386(_CxxThrowException)
F_I386(__msvcrt_getmainargs == __getmainargs) ; pre-XP i386 msvcrt.dll's __getmainargs is incompatible
F_NON_X64(__p__daylight F_NON_I386(== __daylight)) ; x64 __p__daylight provided by emu
_iob DATA
atan2 F_X86_NATIVE(DATA)
; _onexit replaced by emu, CRT _onexit does not work for DLL builds
; isprint ; replaced by emu, CRT version mishandles TAB character
_kbhit

; These symbols were added in Microsoft Visual C++ 6.0 and Windows 98 Second Edition OS system versions of msvcrt.dll
F_I386(_chkesp)

; These symbols were added in Windows ME and Windows 2000 OS system versions of msvcrt.dll
F_NON_I386(_time64) ; i386 _time64 replaced by emu
F_ARM64(_only_on_arm)

; These symbols were added in Windows Vista OS system version of msvcrt.dll
F_ARM_ANY(sprintf_s) ; i386 and x64 sprintf_s replaced by emu

;;;;;;;;
; This is end of the list of symbols available in the Windows OS system versions of msvcrt.dll ;
;;;;;;;;
#define WITH_ATOLL_ALIAS
strtoll
"""

ADVAPI32_DEF = """LIBRARY "ADVAPI32.dll"
EXPORTS

; This is list of symbols available in all Windows versions (Win32s since Win32s 1.1;
; Win9x since Windows 95; WinNT since Windows NT 3.1)
OpenProcessToken@12
RegOpenKeyExA@20
RegOpenKeyExW@20

; This is list of symbols added in Windows 95 OSR2 and also since Windows NT 4.0, but not available in Win32s
CryptHashData@16

; This is list of symbols added in Windows XP
SystemFunction036@8
"""

CURATED = """
sources: {msdn: MSDN, kb210341: KB, mslu: MSLU, issue15: old list}
w_stub_dlls: [KERNEL32.DLL, ADVAPI32.DLL]
implemented_w:
  KERNEL32.DLL: {lstrlenW: kb210341}
stubs:
  KERNEL32.DLL: {SwitchToThread: "msdn: Windows 95/98 unsupported"}
  ADVAPI32.DLL: {OpenProcessToken: "msdn: Windows 95/98 unsupported"}
USER32.DLL:
  exported: {issue15: [MessageBoxA], mslu: [CreateWindowExW]}
  stubs: {CreateWindowExW: "mslu: W function"}
  absent: {SetProcessDPIAware: "learn: Windows Vista and later"}
"""


def _names(text: str) -> dict[str, list[str]]:
    """verdict -> names, over all sections."""
    grouped: dict[str, list[str]] = {}
    for section in parse(text, "test.def").sections:
        grouped.setdefault(section.verdict, []).extend(section.names)
    return grouped


# --- the parser ---------------------------------------------------------------------------------------------

def test_kernel32_style_sections_give_windows98_verdicts() -> None:
    found = verdicts(parse(KERNEL32_DEF, "kernel32.def"))
    assert {"CreateFileA", "CreateFileW", "InterlockedIncrement", "lstrlenW", "CopyFileExA", "SwitchToThread",
            "GetErrorMode", "MapSL", "QT_Thunk"} == set(found.exported)
    assert {"GetDOSFileHandle", "CloseConsoleHandle", "SetConsoleIcon", "OpenThread", "GetTickCount64",
            "InterlockedPushListSList"} == set(found.absent)
    assert "VxDCall0" not in found.exported and "VxDCall0" not in found.absent  # ordinal-only: skipped
    assert found.absent["GetTickCount64"] == "This is list of symbols added in Windows Vista"
    assert "Windows NT 4.0 and Windows 98" in found.exported["CopyFileExA"]
    assert _names(KERNEL32_DEF)[SKIP] == ["VxDCall0"]


def test_exported_anywhere_wins_over_absent_elsewhere() -> None:
    text = KERNEL32_DEF + "\n; This is list of symbols added in Windows 2000\nGetErrorMode@0\nCreateFileA@28\n"
    found = verdicts(parse(text))
    assert "GetErrorMode" in found.exported and "GetErrorMode" not in found.absent


def test_msvcrt_template_is_expanded_for_i386() -> None:
    grouped = _names(MSVCRT_DEF_IN)
    exported = set(grouped[EXPORTED])
    assert exported == {"??2@YAPAXI@Z", "_CxxThrowException", "__getmainargs", "__p__daylight", "_iob", "atan2",
                        "_onexit", "isprint", "_kbhit", "_chkesp"}
    assert set(grouped[ABSENT]) == {"_time64", "sprintf_s"}  # routed around on i386, exported by later DLLs
    assert "??2@YAPEAX_K@Z" not in exported and "_only_on_arm" not in grouped[ABSENT]
    assert "strtoll" not in exported | set(grouped[ABSENT])  # after the end marker: in no msvcrt.dll


def test_wrapped_header_is_joined() -> None:
    sections = parse(ADVAPI32_DEF).sections
    assert sections[0].header.endswith("WinNT since Windows NT 3.1)")
    assert sections[0].verdict == EXPORTED and sections[1].verdict == EXPORTED and sections[2].verdict == ABSENT


@pytest.mark.parametrize(("text", "message"), [
    ("; This is list of symbols added in ReactOS 0.4\nFoo@4\n", "unrecognised section header"),
    ("Foo@4\n", "outside any annotated section"),
    ("; This is list of symbols added in Windows Vista\nF_MIPS(Foo)\n", "unknown template macro F_MIPS"),
    ("#if __SIZEOF_LONG_DOUBLE__ == 8\n#endif\n", "unsupported #if expression"),
    ("#ifdef __i386__\n", "#if without #endif"),
    ("; This is list of symbols added in Windows Vista\nFoo Bar Baz\n", "cannot read export line"),
])
def test_unknown_annotation_style_is_an_error(text: str, message: str) -> None:
    with pytest.raises(DefFormatError, match=message):
        parse(text, "x.def")


# --- the generator on a mingw-w64-shaped repository ---------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60,
                            check=True)
    return result.stdout.strip()


@pytest.fixture
def fake_mingw(tmp_path: Path) -> tuple[Path, str, Path]:
    """A git work tree holding the three .def files above; returns (tree, commit, curated file)."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    tree = tmp_path / "mingw-w64"
    for relative, text in (("lib32/kernel32.def", KERNEL32_DEF), ("lib32/advapi32.def", ADVAPI32_DEF),
                           ("lib-common/msvcrt.def.in", MSVCRT_DEF_IN)):
        path = tree / "mingw-w64-crt" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(tree, "init", "-q")
    _git(tree, "add", "-A")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "defs")
    curated = tmp_path / "curated.yaml"
    curated.write_text(CURATED)
    return tree, _git(tree, "rev-parse", "HEAD"), curated


def test_generated_list_merges_defs_stubs_and_user32(fake_mingw: tuple[Path, str, Path], tmp_path: Path) -> None:
    tree, commit, curated = fake_mingw
    text = generate(tree, curated_path=curated)
    assert re.search(rf"^  commit: {commit}$", text, re.MULTILINE)
    out = tmp_path / "exports.yaml"
    out.write_text(text)
    exports = load_exports(out)
    kernel32 = exports.stubs["KERNEL32.DLL"]
    assert kernel32["CreateFileW"].startswith("mslu")  # W with an A sibling, not implemented natively
    assert "lstrlenW" not in kernel32  # implemented on Windows 95/98 (curated)
    assert kernel32["SwitchToThread"].startswith("msdn")
    assert "RegOpenKeyExW" in exports.stubs["ADVAPI32.DLL"] and "OpenProcessToken" in exports.stubs["ADVAPI32.DLL"]
    assert exports.exported["ADVAPI32.DLL"]["CryptHashData"].startswith("advapi32.def: added in Windows 95 OSR2")
    assert exports.absent["KERNEL32.DLL"]["GetTickCount64"] == "kernel32.def: added in Windows Vista"
    assert exports.available["USER32.DLL"] == {"MessageBoxA"}
    assert "SetProcessDPIAware" in exports.absent["USER32.DLL"]
    data = yaml.safe_load(text)
    assert data["size"]["KERNEL32.DLL"] == {"exported": 9, "stubs": 2, "absent": 6}
    assert generate(tree, curated_path=curated) == text  # deterministic


def test_bare_git_directory_is_read_at_a_commit(fake_mingw: tuple[Path, str, Path], tmp_path: Path) -> None:
    tree, commit, curated = fake_mingw
    (tree / "mingw-w64-crt" / "lib32" / "kernel32.def").write_text(KERNEL32_DEF + "NewInVista@0\n")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "more")
    bare = tree / ".git"
    old = generate(bare, commit, curated_path=curated)
    assert commit in old and "NewInVista" not in old
    assert "NewInVista" in generate(bare, None, curated_path=curated)


def test_curated_stub_must_be_an_export(fake_mingw: tuple[Path, str, Path], tmp_path: Path) -> None:
    tree, _, curated = fake_mingw
    curated.write_text(CURATED.replace("SwitchToThread", "GetTickCount64"))
    with pytest.raises(Exception, match="GetTickCount64 is not an export of Windows 98 SE"):
        generate(tree, curated_path=curated)


RUNTIME_GUARDED = """
runtime_guarded:
  ow:
    name: Some C runtime
    start_up: {opcode: e9, text_at: 9, text: "Some Run-Time system. ", evidence: "msdn (start.asm): the entry"}
    imports:
      KERNEL32.DLL:
        CreateFileW: {guard: getversion-nt, evidence: "msdn (file.c lines 1-9): only if GetVersion() says NT"}
"""


def test_runtime_guarded_section_is_carried_into_the_list(fake_mingw: tuple[Path, str, Path]) -> None:
    """The audit reads only the generated list, so the curated runtime guards are copied into it, unchanged."""
    tree, _, curated = fake_mingw
    curated.write_text(CURATED + RUNTIME_GUARDED)
    text = generate(tree, curated_path=curated)
    out = tree / "list.yaml"
    out.write_text(text)
    runtime = load_exports(out).runtimes["ow"]
    assert runtime.name == "Some C runtime" and runtime.start_up.text == b"Some Run-Time system. "
    assert runtime.start_up.opcode == 0xE9 and runtime.start_up.text_at == 9
    guarded = runtime.imports["KERNEL32.DLL"]["CreateFileW"]
    assert guarded.guard == "getversion-nt"
    assert guarded.evidence == "msdn (file.c lines 1-9): only if GetVersion() says NT"
    assert yaml.safe_load(text)["runtime_guarded"] == yaml.safe_load(RUNTIME_GUARDED)["runtime_guarded"]
    curated.write_text(CURATED)
    assert "runtime_guarded" not in yaml.safe_load(generate(tree, curated_path=curated))  # the section is optional


@pytest.mark.parametrize(("change", "message"), [
    (("CreateFileW:", "CreateFileA:"), "KERNEL32.DLL!CreateFileA is not a stub on Windows 98 SE"),  # works there
    (("CreateFileW:", "GetTickCount64:"), "KERNEL32.DLL!GetTickCount64 is not a stub"),  # absent: cannot load
    (('evidence: "msdn (file.c', 'evidence: "clib (file.c'), "cites clib"),
    (('evidence: "msdn (start', 'evidence: "(start'), "cites no source"),
    (("guard: getversion-nt", "guard: trust-me"), "guard 'trust-me' is none of the guards"),
], ids=["implemented", "absent", "unknown-source", "no-source", "unknown-guard"])
def test_runtime_guarded_entries_are_checked(change: tuple[str, str], message: str,
                                             fake_mingw: tuple[Path, str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    tree, _, curated = fake_mingw
    curated.write_text(CURATED + RUNTIME_GUARDED.replace(*change))
    assert main(["--src", str(tree), "--out", str(tree / "list.yaml"), "--curated", str(curated)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("stub", "message"), [
    ('"kernelex: own implementation"', "cites kernelex"),
    ('"msdn (June 1998), kernelex-kernel32 (x.c); use Y"', "cites kernelex-kernel32"),
    ('"(no key at all)"', "cites no source"),
])
def test_curated_stub_must_cite_known_sources(stub: str, message: str, fake_mingw: tuple[Path, str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tree, _, curated = fake_mingw
    curated.write_text(CURATED.replace('"msdn: Windows 95/98 unsupported"}\n  ADVAPI32', f"{stub}}}\n  ADVAPI32"))
    assert stub in curated.read_text()
    assert main(["--src", str(tree), "--out", str(tree / "list.yaml"), "--curated", str(curated)]) == 2
    err = capsys.readouterr().err
    assert message in err and "SwitchToThread" in err and err.count("\n") == 1


def test_cli_check_reports_drift_and_bad_source(fake_mingw: tuple[Path, str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    tree, _, curated = fake_mingw
    out = tmp_path / "list.yaml"
    out.write_text("stale\n")
    common = ["--src", str(tree), "--out", str(out), "--curated", str(curated)]
    assert main([*common, "--check"]) == 1
    assert "differs" in capsys.readouterr().err
    assert main(common) == 0 and main([*common, "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["--src", str(tree), "--out", str(out)]) == 2  # the real curated stubs are not in the fake defs
    assert "is not an export of Windows 98 SE" in capsys.readouterr().err
    assert main(["--src", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exports_source: error: ") and err.count("\n") == 1


# --- the checked-in list ------------------------------------------------------------------------------------

def test_checked_in_list_is_pinned_and_covers_what_windows98_exports() -> None:
    commit = pinned_commit(default_exports_path())
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
    exports = load_exports()
    available = exports.available
    for name in ("SetConsoleTextAttribute", "GetConsoleOutputCP", "FillConsoleOutputCharacterA", "FlushViewOfFile",
                 "GetFileInformationByHandle", "WaitForSingleObjectEx", "InitializeCriticalSectionAndSpinCount",
                 "GetErrorMode", "CancelIo"):
        assert name in available["KERNEL32.DLL"], name
    assert {"CryptHashData", "DeregisterEventSource"} <= available["ADVAPI32.DLL"]
    assert {"_get_osfhandle", "_open_osfhandle", "_kbhit", "_getch", "_pipe", "_popen", "_findfirsti64",
            "_setjmp3", "longjmp", "_purecall", "_chsize", "_commit", "_tzset"} <= available["MSVCRT.DLL"]
    for stub in ("CopyFileExA", "SwitchToThread", "ReadDirectoryChangesW", "CreateFileW", "GetModuleHandleW"):
        assert stub in exports.stubs["KERNEL32.DLL"] and stub in exports.exported["KERNEL32.DLL"], stub
    assert "Windows Vista" in exports.absent["KERNEL32.DLL"]["GetTickCount64"]
    assert "Windows XP" in exports.absent["MSVCRT.DLL"]["__iob_func"]
    data = yaml.safe_load(default_exports_path().read_text())
    for dll, size in data["size"].items():
        assert size["exported"] == len(exports.exported[dll]) and size["absent"] == len(exports.absent[dll])
        assert not set(exports.exported[dll]) & set(exports.absent[dll]), dll


@pytest.mark.parametrize(("reason", "keys"), [
    ("msdn: Windows 95/98 unsupported (exported since Windows 98); use Sleep(0)", ["msdn"]),
    ("msdn (June 1998 x: 'Windows: Unsupported'; April 2000), kernelex-kernel32 (a.c:4, over B); use B",
     ["msdn", "kernelex-kernel32"]),
    ("pcmag-petzold, kernelex: convert it yourself", ["pcmag-petzold", "kernelex"]),
    ("mslu", ["mslu"]),
])
def test_evidence_keys_are_the_words_before_the_text(reason: str, keys: list[str]) -> None:
    assert evidence_keys(reason) == keys


def test_every_curated_stub_cites_keys_of_sources() -> None:
    """Each stub in fixtures/win98_curated.yaml (and each stub of the generated list) names where it comes from."""
    curated = load_curated(default_curated_path())
    reasons = {f"{dll}!{name}": reason for dll, stubs in curated.stubs.items() for name, reason in stubs.items()}
    reasons.update({f"USER32.DLL!{name}": reason for name, reason in curated.user32_stubs.items()})
    assert len(reasons) > 60
    for item, reason in reasons.items():
        keys = evidence_keys(reason)
        assert keys and set(keys) <= set(curated.sources), (item, reason)
    data = yaml.safe_load(default_exports_path().read_text())
    for dll, entry in data["dlls"].items():
        for name, reason in (entry["stubs"] or {}).items():
            assert evidence_keys(reason) and set(evidence_keys(reason)) <= set(data["sources"]), (dll, name, reason)


# Issue 18: Windows 98 SE exports these (mingw-w64 lists them for Windows 95/98), KernelEx implements them itself
# for Windows 98 (or replaces them with code that fails too), and MSDN calls them unsupported there.
KERNELEX_CROSS_CHECK = {
    "KERNEL32.DLL": ["UnlockFileEx", "TryEnterCriticalSection", "GetThreadTimes", "GetProcessShutdownParameters",
                     "SetProcessShutdownParameters", "ConnectNamedPipe", "CreateNamedPipeA", "DisconnectNamedPipe",
                     "HeapWalk", "HeapValidate"],
    "ADVAPI32.DLL": ["AccessCheck", "AddAccessAllowedAce", "AllocateAndInitializeSid", "CopySid", "DeleteAce",
                     "DuplicateToken", "DuplicateTokenEx", "EqualPrefixSid", "EqualSid", "FreeSid", "GetAce",
                     "GetFileSecurityA", "GetLengthSid", "GetNamedSecurityInfoA", "GetSecurityDescriptorControl",
                     "GetSecurityDescriptorDacl", "GetSecurityDescriptorGroup", "GetSecurityDescriptorLength",
                     "GetSecurityDescriptorOwner", "GetSecurityDescriptorSacl", "GetSidIdentifierAuthority",
                     "GetSidLengthRequired", "GetSidSubAuthority", "GetSidSubAuthorityCount", "GetTokenInformation",
                     "ImpersonateSelf", "InitializeAcl", "InitializeSid", "IsValidSecurityDescriptor", "IsValidSid",
                     "LogonUserA", "LookupAccountSidA", "MakeSelfRelativeSD", "NotifyBootConfigStatus",
                     "OpenThreadToken", "PrivilegeCheck", "RegGetKeySecurity", "RevertToSelf", "SetFileSecurityA",
                     "SetKernelObjectSecurity", "SetSecurityDescriptorGroup", "SetSecurityDescriptorOwner",
                     "SetSecurityDescriptorSacl", "SetThreadToken"],
}


@pytest.mark.parametrize("dll", sorted(KERNELEX_CROSS_CHECK))
def test_names_kernelex_reimplements_and_msdn_calls_unsupported_are_stubs(dll: str) -> None:
    exports = load_exports()
    for name in KERNELEX_CROSS_CHECK[dll]:
        assert name in exports.exported[dll] and name not in exports.available[dll], name
        assert "kernelex" in exports.stubs[dll][name], (name, exports.stubs[dll][name])


def test_checked_in_list_has_not_drifted_from_mingw_w64() -> None:
    """Regenerates the list from a real mingw-w64 copy at the pinned commit; CI has none, so it skips there."""
    src = os.environ.get(SOURCE_ENV)
    if not src:
        pytest.skip(f"set {SOURCE_ENV} to a mingw-w64 checkout or bare git directory to check the list for drift")
    path = default_exports_path()
    commit = pinned_commit(path)
    tree = Path(src)
    if (tree / "mingw-w64-crt").is_dir() and commit is not None:
        head = _git(tree, "rev-parse", "HEAD")
        if head != commit:
            pytest.skip(f"{src} is at {head}, the list is pinned to {commit}: pass the bare git directory")
    assert generate(tree, commit) == path.read_text(), (
        "fixtures/win98_exports.yaml differs from what mingw-w64 and fixtures/win98_curated.yaml give: run "
        f"python -m harness.audit.exports_source --src {src}")


@pytest.mark.parametrize(("text", "message"), [
    ("- just\n- a list\n", "top level is not a mapping"),
    ("stubs: [1, 2]\nUSER32.DLL: {exported: {}}\n", "stubs is not a mapping"),
    ("sources: {}\n", "has no USER32.DLL section"),
    ("USER32.DLL: {exported: {issue15: MessageBoxA}}\n", "is not a list of names"),
    ("USER32.DLL: {exported: {issue15: [MessageBoxA]}, stubs: {MessageBoxW: mslu}}\n", "is not listed as exported"),
    ("key: [unclosed\n", "cannot read the curated list"),
])
def test_bad_curated_file_is_one_line_exit_2(text: str, message: str, fake_mingw: tuple[Path, str, Path],
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree, _, curated = fake_mingw
    curated.write_text(text)
    out = tmp_path / "list.yaml"
    assert main(["--src", str(tree), "--out", str(out), "--curated", str(curated)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
