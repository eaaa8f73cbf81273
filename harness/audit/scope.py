"""Which functions of a binary are the project's own code, read from the port sources.

A static glibc binary carries hand-written SSE2/SSSE3/AVX2 variants of memcpy, strlen & co. that glibc picks at
run time with CPUID (ifuncs): on a Pentium II they are never executed, yet a plain sweep of .text reports them.
So the default ELF scope is the port's own functions: a symbol belongs to the port when
- it is LOCAL and the STT_FILE (or COFF `.file`) record before it names one of the port's .c files (this also
  catches GCC's clones such as `matmul.part.0` or `main.cold`), or
- it is GLOBAL and its name (before any `.clone` suffix) is a function the port's .c files define.
The function names come from a small C89 scanner below (comments, strings and preprocessor lines removed; a name
followed by a parameter list and `{` at file level is a definition), so no compiler is needed to audit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.audit.binary import Binary, Function
from harness.core.paths import project_root

_COMMENT_OR_LITERAL = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'", re.DOTALL)
_PREPROCESSOR = re.compile(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", re.MULTILINE)
_DEFINITION = re.compile(r"([A-Za-z_]\w*)\s*\(([^;{}()]|\([^;{}]*?\))*\)\s*\{")
_KEYWORDS = frozenset({"if", "for", "while", "switch", "return", "sizeof", "do", "else"})


@dataclass(frozen=True)
class PortSources:
    """The names the project's own code defines: source file names and function names."""

    files: frozenset[str]
    functions: frozenset[str]

    def owns(self, function: Function) -> bool:
        base = function.name.split(".", 1)[0]
        if function.source_file is not None:
            return Path(function.source_file).name in self.files
        return base in self.functions


def default_port_dirs() -> list[Path]:
    """Every port directory of this checkout (ports/llama98, ports/agent98, ...)."""
    ports = project_root() / "ports"
    return sorted(p for p in ports.iterdir() if p.is_dir()) if ports.is_dir() else []


def defined_functions(source: str) -> set[str]:
    """Names of the functions a C89 file defines at file level."""
    text = _PREPROCESSOR.sub("", _COMMENT_OR_LITERAL.sub(" ", source))
    names: set[str] = set()
    depth = 0
    position = 0
    while position < len(text):
        char = text[position]
        if char == "{":
            if depth == 0:
                head = text[max(0, text.rfind(";", 0, position), text.rfind("}", 0, position)):position + 1]
                matches = list(_DEFINITION.finditer(head))
                match = matches[-1] if matches else None  # the definition nearest the brace
                if match is not None and match.end() == len(head) and match.group(1) not in _KEYWORDS:
                    names.add(match.group(1))
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        position += 1
    return names


def port_sources(directories: list[Path]) -> PortSources:
    """Scan every .c file under the given port directories."""
    files: set[str] = set()
    functions: set[str] = set()
    for directory in directories:
        for path in sorted(directory.glob("*.c")):
            files.add(path.name)
            functions |= defined_functions(path.read_text(encoding="latin-1"))
    return PortSources(frozenset(files), frozenset(functions))


def port_functions(binary: Binary, sources: PortSources) -> list[Function]:
    """The binary's functions that belong to the port."""
    return [function for function in binary.functions if sources.owns(function)]
