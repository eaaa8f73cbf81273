"""Reading mingw-w64's annotated .def files (harness.audit.mingw_defs) on small texts written here: the library
name, sections and their Windows 98 SE verdicts, symbol decorations, commented-out exports, the i386 expansion of
template macros and conditionals, and a one-line DefFormatError for anything it does not know.
(test_exports_source.py parses whole kernel32/msvcrt/advapi32-shaped files through the generator.)"""

from __future__ import annotations

import pytest

from harness.audit.mingw_defs import (
    ABSENT,
    EXPORTED,
    SKIP,
    DefFormatError,
    Section,
    classify,
    export_name,
    parse,
    verdicts,
)

SMALL_DEF = """LIBRARY "TEST32.dll"
EXPORTS

; This is list of symbols available in all Windows versions (Win32s since Win32s 1.1;
; Win9x since Windows 95; WinNT since Windows NT 3.1)
Beep@8
GetVersion@0
_acmdln DATA
NamedAlias@4 == RealTarget@4
Ordinal@12 @7

; This is list of symbols added in Windows NT 4.0 and Windows 98, but not available in Win32s
; Commented@8
Visible98@4

; This is list of symbols added in Windows 2000
Only2000@4
@FastCall@8
Beep@8

; This is list of ordinal-only symbols available in all Win9x versions, but not available in Win32s and WinNT
; Hidden@4 @1 NONAME

;; This is end of Windows 2000 symbols ;;
"""


def test_library_sections_and_names():
    definition = parse(SMALL_DEF, "test32.def")
    assert definition.library == "TEST32.dll"
    assert [(s.verdict, s.names) for s in definition.sections] == [
        (EXPORTED, ("Beep", "GetVersion", "_acmdln", "RealTarget", "Ordinal")),
        (EXPORTED, ("Commented", "Visible98")),
        (ABSENT, ("Only2000", "FastCall", "Beep")),
        (SKIP, ("Hidden",)),
    ]
    assert all(isinstance(s, Section) for s in definition.sections)
    assert definition.sections[0].header.endswith("(Win32s since Win32s 1.1; Win9x since Windows 95; WinNT since "
                                                  "Windows NT 3.1)")  # a header wrapped over two lines
    assert definition.sections[2].header == "This is list of symbols added in Windows 2000"


def test_verdicts_merge_sections_with_exported_winning():
    found = verdicts(parse(SMALL_DEF))
    assert set(found.exported) == {"Beep", "GetVersion", "_acmdln", "RealTarget", "Ordinal", "Commented",
                                   "Visible98"}
    assert set(found.absent) == {"Only2000", "FastCall"}  # Beep is in an exported section too
    assert "Hidden" not in found.exported and "Hidden" not in found.absent
    assert found.exported["Visible98"].startswith("This is list of symbols added in Windows NT 4.0 and Windows 98")


@pytest.mark.parametrize("symbol, name", [
    ("Sleep@4", "Sleep"), ("GetTickCount@0", "GetTickCount"),
    ("@InterlockedPushListSList@8", "InterlockedPushListSList"),
    ("printf", "printf"), ("??2@YAPAXI@Z", "??2@YAPAXI@Z"), ("_chkesp", "_chkesp"), ("Name@Part@12", "Name@Part"),
])
def test_export_name_strips_stdcall_and_fastcall_decoration(symbol, name):
    assert export_name(symbol) == name


@pytest.mark.parametrize("header, verdict", [
    ("This is list of ordinal-only symbols available in all Win9x versions", SKIP),
    ("This is list of symbols added in Win32s 1.20, available since Windows NT 3.1, but not available in Win9x",
     ABSENT),
    ("This is list of symbols available in all Windows versions (Win32s since Win32s 1.1)", EXPORTED),
    ("This is list of symbols available in all Win9x versions and also since Windows Vista", EXPORTED),
    ("This is list of symbols added in Windows 95 OSR2 and also since Windows NT 4.0", EXPORTED),
    ("This is list of symbols added in Windows NT 4.0 and Windows 98, but not available in Win32s", EXPORTED),
    ("These symbols were added in Microsoft Visual C++ 6.0 and Windows 98 Second Edition OS system versions", EXPORTED),
    ("This is list of symbols available in the original Microsoft Visual C++ 4.2 version of msvcrt.dll", EXPORTED),
    ("This is list of symbols available only in Win32s (not available in Win9x and WinNT)", ABSENT),
    ("This is list of symbols added in Windows ME and also since Windows 2000", ABSENT),
    ("This is list of symbols added in Windows XP", ABSENT),
    ("There are no new symbols in Windows 7", ABSENT),
])
def test_classify_section_headers(header, verdict):
    assert classify(header) == verdict


def test_an_unknown_header_is_an_error():
    with pytest.raises(DefFormatError, match="unrecognised section header: 'This is list of symbols added in OS/2'"):
        classify("This is list of symbols added in OS/2")


def test_i386_template_macros_and_conditionals():
    text = """LIBRARY "msvcrt.dll"
EXPORTS
; This is list of symbols available in the original Microsoft Visual C++ 4.2 version of msvcrt.dll
F_I386(_i386_only)
F_X64(_x64_only)
F_NON_ARM64(F_I386(_nested))
F32(_thirty_two)
F64(_sixty_four)
#ifdef __i386__
_in_ifdef
#else
_in_else
#endif
#ifndef __i386__
_not_i386
#elif defined(__i386__)
_in_elif
#endif
#if defined(__x86_64__) || defined(__i386__)
_in_or
#endif
#if defined(__i386__) && !defined(__x86_64__)
_in_and
#endif
#ifdef __arm__
#ifdef __i386__
_nested_inactive
#endif
#endif
"""
    (section,) = parse(text, "msvcrt.def.in").sections
    assert section.names == ("_i386_only", "_nested", "_thirty_two", "_in_ifdef", "_in_elif", "_in_or", "_in_and")


def test_routed_around_exports_count_for_i386():
    text = """; This is list of symbols added in Windows ME and also since Windows 2000
F_NON_I386(_time64) ; i386 _time64 replaced by emu
F_NON_I386(_other) ; nothing to do with i386
"""
    (section,) = parse(text).sections
    assert section.names == ("_time64",)


def test_the_end_marker_ends_the_list():
    text = """; This is list of symbols added in Windows XP
InXp@4
; This is end of the list of symbols available in the Windows OS system versions of test.dll
AfterEnd@4
"""
    assert [s.names for s in parse(text).sections] == [("InXp",)]


def test_an_empty_section_is_not_kept_but_its_header_is_checked():
    assert parse("; This is list of symbols added in Windows XP\n\n").sections == []
    with pytest.raises(DefFormatError, match="unrecognised section header"):
        parse("; This is list of symbols added in BeOS\n")


@pytest.mark.parametrize("text, message", [
    ("#else\n", "x.def:1: #else without #if"),
    ("#endif\n", "x.def:1: #endif without #if"),
    ("#elif defined(__i386__)\n", "x.def:1: #elif without #if"),
    ("#pragma once\n", "x.def:1: unsupported directive '#pragma once'"),
    ("#if defined(A) || defined(B) && defined(C)\n#endif\n", "unsupported #if expression"),
    ("; This is list of symbols added in Windows XP\nF_WEIRD(x)\n", "x.def:2: unknown template macro F_WEIRD"),
    ("\n\nLoose@4\n", "x.def:3: export Loose outside any annotated section"),
    ("#ifndef __i386__\n", "x.def: #if without #endif"),
])
def test_format_errors_are_one_line_naming_file_and_line(text, message):
    with pytest.raises(DefFormatError, match=message) as error:
        parse(text, "x.def")
    assert "\n" not in str(error.value)
