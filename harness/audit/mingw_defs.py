"""Read mingw-w64's annotated import-library .def files: which exports Windows 98 SE has, and since when.

mingw-w64-crt/lib32/kernel32.def, advapi32.def (and lib-common/msvcrt.def.in) are ordered by the Windows
release that introduced each export, in sections that open with a comment such as
`; This is list of symbols added in Windows NT 4.0 and Windows 98, but not available in Win32s` or, for msvcrt,
`; These symbols were added in Microsoft Visual C++ 6.0 and Windows 98 Second Edition OS system versions of
msvcrt.dll`. Exports that mingw-w64 does not put into its import library are still listed, commented out
(`; RegRemapPreDefKey@8`, `; _onexit replaced by emu, ...`): they are real exports too. msvcrt.def.in is a C
preprocessor template (`F_I386(name)`, `#ifdef __i386__`, `importname == dllname`); it is expanded here for
i386 only, by the few rules below, rather than by running cpp, so reading it needs no compiler.

A section header is turned into a verdict by SECTION_RULES, in order; a header no rule recognises is an error,
so a new annotation style in a later mingw-w64 shows up as a failing generator, not as a silently wrong list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.core.errors import HarnessError

EXPORTED = "exported"
ABSENT = "absent"
SKIP = "skip"  # ordinal-only exports: not importable by name, and the audit reports ordinal imports anyway

# (pattern on the section header, verdict). First match wins; the order encodes the precedence below:
# 1. ordinal-only lists, 2. explicit "not in Win9x", 3. anything Win9x-wide or naming Windows 95 OSR2/98/98 SE
# or the VC++ 4.2-6.0 msvcrt that 98 SE ships, 4. everything else that names a platform (Win32s-only, NT-only,
# Windows ME and later).
SECTION_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"ordinal-only"), SKIP),
    (re.compile(r"not (?:available )?in (?:Win32s and )?Win9x|not available in Win9x"), ABSENT),
    (re.compile(r"available in all Windows versions"), EXPORTED),
    (re.compile(r"\ball\b[^,]*\bWin9x\b"), EXPORTED),
    (re.compile(r"Windows 95 OSR2|Windows 98\b"), EXPORTED),
    (re.compile(r"original Microsoft Visual C\+\+ 4\.2|first I386 version of msvcrt\.dll"), EXPORTED),
    (re.compile(r"only in Win32s|only in Windows NT|Windows ME\b"), ABSENT),
    (re.compile(r"added in (?:Windows|Microsoft Visual C\+\+)|added in arm64|There are no new symbols"), ABSENT),
)

_HEADER_START = re.compile(
    r"^(?:This is (?:the )?list of|These symbols were|List of \S+ C\+\+ mangled symbols|There are no new symbols)")
_END_OF_SECTION = re.compile(r"^;*\s*This is end of")
_END_OF_FILE = re.compile(r"end of the list of symbols available in the Windows OS system versions")
_MACRO = re.compile(r"\b(F\w*)\(([^()]*)\)")
# For i386: which F_* template macros keep their argument (mingw-w64-crt/def-include/func.def.in).
I386_MACROS: dict[str, bool] = {
    "F32": True, "F_I386": True, "F_X86_ANY": True, "F_X86_NATIVE": True, "F_NON_X64": True, "F_NON_ARM64": True,
    "F_LD80": True,
    "F64": False, "F_X64": False, "F_NON_I386": False, "F_ARM32": False, "F_ARM64": False, "F_ARM_ANY": False,
    "F_ARM_NATIVE": False, "F_LD64": False,
}
_SYMBOL = re.compile(r"^(?P<name>@?[A-Za-z_?$][\w@?$]*)(?:\s+DATA)?(?:\s*==\s*(?P<target>[A-Za-z_?$][\w@?$]*))?"
                     r"(?:\s+DATA)?(?:\s+@\d+)?(?:\s+NONAME)?(?:\s+DATA)?\s*$")
_ROUTED_AROUND = re.compile(r"\bi386 (?:and x64 )?([A-Za-z_]\w*) replaced by (?:emu|alias)\b")
_EMU_COMMENT = re.compile(r"^(?P<name>[A-Za-z_][\w]*)\s*;?\s*replaced by emu\b")


class DefFormatError(HarnessError):
    """The .def text does not follow the annotation style this parser knows (one line: file, line, why)."""


@dataclass(frozen=True)
class Section:
    """One annotated group of a .def file."""

    header: str  # the header comment, e.g. "This is list of symbols added in Windows 98, but not ..."
    verdict: str  # EXPORTED, ABSENT or SKIP
    names: tuple[str, ...]


@dataclass
class DefFile:
    """Every section of one .def file, in file order."""

    library: str
    sections: list[Section] = field(default_factory=list)


def classify(header: str) -> str:
    """The Windows 98 SE verdict for a section header; DefFormatError when no rule knows it."""
    for pattern, verdict in SECTION_RULES:
        if pattern.search(header):
            return verdict
    raise DefFormatError(f"unrecognised section header: {header!r}")


def export_name(symbol: str) -> str:
    """The DLL export an i386 .def symbol stands for: `Sleep@4` (stdcall) and `@Name@8` (fastcall) -> the bare
    name; C++ names are kept whole."""
    if symbol.startswith("?"):
        return symbol
    return re.sub(r"@\d+$", "", symbol.removeprefix("@"))


def _expand_macros(text: str, where: str) -> str:
    """Expand the F_* template macros for i386, innermost first."""
    while True:
        match = _MACRO.search(text)
        if match is None:
            return text
        macro = match.group(1)
        if macro not in I386_MACROS:
            raise DefFormatError(f"{where}: unknown template macro {macro}")
        replacement = match.group(2) if I386_MACROS[macro] else ""
        text = text[:match.start()] + replacement + text[match.end():]


def _symbol(text: str, where: str) -> str | None:
    """The DLL export named by a symbol line (without its comment), or None when the line holds none."""
    text = _expand_macros(text, where).strip()
    if not text:
        return None
    match = _SYMBOL.match(text)
    if match is None:
        return None
    return export_name(match.group("target") or match.group("name"))


def _commented_symbol(comment: str, where: str) -> str | None:
    """A commented-out export (`; Name@8`, `; Name@4 ; note`, `; _onexit replaced by emu, ...`), or None."""
    emu = _EMU_COMMENT.match(comment)
    if emu:
        return emu.group("name")
    return _symbol(comment.split(";", 1)[0], where)


class _Conditionals:
    """`#ifdef/#ifndef/#if defined()/#else/#endif` for an i386 target, nothing more."""

    def __init__(self) -> None:
        self.stack: list[tuple[bool, bool]] = []  # (this branch active, some branch already taken)

    @property
    def active(self) -> bool:
        return all(active for active, _ in self.stack)

    @staticmethod
    def _truth(expression: str, where: str) -> bool:
        """`defined(X)`, `!defined(X)` joined by `||` or `&&` (not both), for X == __i386__ only."""
        def atom(term: str) -> bool:
            match = re.fullmatch(r"\s*(!?)\s*defined\s*\(\s*(\w+)\s*\)\s*", term)
            if match is None:
                raise DefFormatError(f"{where}: unsupported #if expression {expression!r}")
            return (match.group(2) == "__i386__") != bool(match.group(1))
        if "||" in expression and "&&" in expression:
            raise DefFormatError(f"{where}: unsupported #if expression {expression!r}")
        if "&&" in expression:
            return all(atom(term) for term in expression.split("&&"))
        return any(atom(term) for term in expression.split("||"))

    def line(self, directive: str, where: str) -> None:
        word, _, rest = directive[1:].strip().partition(" ")
        rest = rest.strip()
        if word == "ifdef":
            value = rest == "__i386__"
            self.stack.append((value, value))
        elif word == "ifndef":
            value = rest != "__i386__"
            self.stack.append((value, value))
        elif word == "if":
            value = self._truth(rest, where)
            self.stack.append((value, value))
        elif word == "elif":
            if not self.stack:
                raise DefFormatError(f"{where}: #elif without #if")
            _, taken = self.stack.pop()
            value = not taken and self._truth(rest, where)
            self.stack.append((value, taken or value))
        elif word == "else":
            if not self.stack:
                raise DefFormatError(f"{where}: #else without #if")
            _, taken = self.stack.pop()
            self.stack.append((not taken, True))
        elif word == "endif":
            if not self.stack:
                raise DefFormatError(f"{where}: #endif without #if")
            self.stack.pop()
        elif word not in ("include", "define", "undef"):
            raise DefFormatError(f"{where}: unsupported directive {directive.strip()!r}")


def parse(text: str, filename: str = "<def>") -> DefFile:
    """Sections and their exports of one annotated .def (or .def.in) text, for an i386 target."""
    library = ""
    sections: list[Section] = []
    header: str | None = None
    names: list[str] = []
    in_header = False
    conditionals = _Conditionals()

    def close() -> None:
        if header is not None:
            verdict = classify(header)  # also for an empty section: an unknown header is an error anyway
            if names:
                sections.append(Section(header, verdict, tuple(names)))

    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{filename}:{number}"
        line = raw.strip()
        if line.startswith("#"):
            conditionals.line(line, where)
            in_header = False
            continue
        if not conditionals.active or not line or line.startswith("//"):
            in_header = False
            continue
        if line.startswith("LIBRARY"):
            library = line.split(None, 1)[1].strip().strip('"') if " " in line else ""
            continue
        if line == "EXPORTS":
            continue
        if line.startswith(";"):
            comment = line.lstrip(";").strip()
            if _END_OF_FILE.search(comment):
                close()
                header = None
                break
            if _END_OF_SECTION.match(line):
                close()
                header, names, in_header = None, [], False
                continue
            if _HEADER_START.match(comment):
                close()
                header, names, in_header = comment, [], True
                continue
            if in_header and header is not None and header.count("(") > header.count(")"):
                header = f"{header} {comment}"  # a header wrapped over two lines
                continue
            in_header = False
            name = _commented_symbol(comment, where) if header is not None else None
            if name is not None:
                names.append(name)
            continue
        in_header = False
        code_part, _, note = line.partition(";")
        code = _expand_macros(code_part, where).strip()
        if not code:
            # Another architecture's export, unless the note says mingw-w64 only routes i386 around it: then the
            # i386 DLL exports it too (`F_NON_I386(_time64) ; i386 _time64 replaced by emu`).
            routed = _ROUTED_AROUND.search(note)
            if routed is None or routed.group(1) not in code_part:
                continue
            code = routed.group(1)
        name = _symbol(code, where)
        if name is None:
            raise DefFormatError(f"{where}: cannot read export line {line!r}")
        if header is None:
            raise DefFormatError(f"{where}: export {name} outside any annotated section")
        names.append(name)
    else:
        close()
    if conditionals.stack:
        raise DefFormatError(f"{filename}: #if without #endif")
    return DefFile(library, sections)


@dataclass(frozen=True)
class Verdicts:
    """Per export name: the section (source) that says Windows 98 SE exports it, or the one that says it lacks it."""

    exported: dict[str, str]
    absent: dict[str, str]


def verdicts(definition: DefFile) -> Verdicts:
    """Merge the sections of one file: any section saying "exported" wins over one saying "absent" (a name that
    is in an ordinal-only or a removed-again list elsewhere is still exported by name where a section says so)."""
    exported: dict[str, str] = {}
    absent: dict[str, str] = {}
    for section in definition.sections:
        for name in section.names:
            if section.verdict == EXPORTED:
                exported.setdefault(name, section.header)
            elif section.verdict == ABSENT:
                absent.setdefault(name, section.header)
    return Verdicts(exported, {name: why for name, why in absent.items() if name not in exported})
