"""Generate fixtures/win98_exports.yaml from mingw-w64's annotated .def files plus fixtures/win98_curated.yaml.

The audit's verdict on an import must rest on evidence, not on memory. mingw-w64 keeps, for KERNEL32, ADVAPI32
and MSVCRT, a per-export record of the Windows release that introduced it (harness/audit/mingw_defs.py reads it);
this module reads those files from a mingw-w64 checkout or a bare git directory at a pinned commit, merges the
curated facts the .def files cannot carry (stubs; USER32, whose .def has no versions; the stubs a C runtime calls
only where they work, `runtime_guarded`), and writes one YAML file with the commit in it: the one file the audit
reads. The mingw-w64 source is never committed here:
tests/unit/audit/test_exports_source.py regenerates the
list when LLAMA98_MINGW_W64_SRC points at a copy and fails on any difference.

    python -m harness.audit.exports_source --src PATH [--commit SHA] [--out FILE | --check]

PATH is a mingw-w64 work tree (its HEAD commit is recorded) or a bare git directory (read at --commit, default
the commit the checked-in list is pinned to, else HEAD). Exit 0 written/unchanged, 1 drift (--check), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.audit.mingw_defs import DefFormatError, parse, verdicts
from harness.audit.runtime import Runtime, parse_runtimes, runtimes_document
from harness.core.errors import HarnessError, UsageError
from harness.core.paths import project_root
from harness.core.proc import run

SOURCE_ENV = "LLAMA98_MINGW_W64_SRC"
REPOSITORY = "https://github.com/mingw-w64/mingw-w64"
DEF_FILES: dict[str, str] = {
    "KERNEL32.DLL": "mingw-w64-crt/lib32/kernel32.def",
    "ADVAPI32.DLL": "mingw-w64-crt/lib32/advapi32.def",
    "MSVCRT.DLL": "mingw-w64-crt/lib-common/msvcrt.def.in",
}
CURATED_DLL = "USER32.DLL"
GIT_TIMEOUT_S = 60
_HEADER_PREFIX = re.compile(r"^(?:This is (?:the )?list of (?:symbols )?|These symbols were )")
_DETAIL = re.compile(r"\([^()]*\)")


def default_curated_path() -> Path:
    return project_root() / "fixtures" / "win98_curated.yaml"


def default_output_path() -> Path:
    return project_root() / "fixtures" / "win98_exports.yaml"


class MingwSource:
    """Files of mingw-w64 at one commit, from a work tree or a bare git directory."""

    def __init__(self, path: Path, commit: str | None = None) -> None:
        if not path.is_dir():
            raise UsageError(f"mingw-w64 source {path} is not a directory")
        self.path = path
        self.bare = not (path / "mingw-w64-crt").is_dir()
        if self.bare and not (path / "HEAD").is_file():
            raise UsageError(f"{path} is neither a mingw-w64 checkout (no mingw-w64-crt/) nor a bare git directory")
        if not self.bare and commit is not None and commit != self._git("rev-parse", "HEAD"):
            raise UsageError(f"{path} is checked out at {self._git('rev-parse', 'HEAD')}, not {commit}: check out "
                             "that commit or pass the bare git directory")
        self.commit = self._git("rev-parse", "--verify", f"{commit or 'HEAD'}^{{commit}}")

    def _git(self, *args: str) -> str:
        where = ["--git-dir", str(self.path)] if self.bare else ["-C", str(self.path)]
        result = run(["git", *where, *args], what=f"git {' '.join(args)} in {self.path}", timeout=GIT_TIMEOUT_S,
                     error=UsageError)
        return result.stdout.strip() if args[0] == "rev-parse" else result.stdout

    def read(self, relative: str) -> str:
        if self.bare:
            return self._git("show", f"{self.commit}:{relative}")
        try:
            return (self.path / relative).read_text(encoding="utf-8")
        except OSError as error:
            raise UsageError(f"cannot read {self.path / relative}: {error.strerror or error}") from None


@dataclass
class DllList:
    """What the generated file says about one DLL."""

    source: str
    exported: dict[str, list[str]]  # source/section -> names
    stubs: dict[str, str]  # name -> reason with its source
    absent: dict[str, list[str]]  # source/section -> names


def _short(header: str) -> str:
    """`added in Windows NT 4.0 and Windows 98, but not available in Win32s` (the DLL's `source` names the file)."""
    return _HEADER_PREFIX.sub("", header)


def _group(by_name: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, source in by_name.items():
        grouped.setdefault(source, []).append(name)
    return {source: sorted(names) for source, names in grouped.items()}


@dataclass(frozen=True)
class Curated:
    """fixtures/win98_curated.yaml, checked for shape."""

    sources: dict[str, str]
    w_stub_dlls: frozenset[str]
    implemented_w: dict[str, dict[str, str]]  # DLL -> W name -> source
    stubs: dict[str, dict[str, str]]  # DLL -> name -> reason
    user32_exported: dict[str, list[str]]  # source -> names
    user32_stubs: dict[str, str]
    user32_absent: dict[str, str]  # name -> reason
    runtimes: dict[str, Runtime]  # runtime -> its start-up and the stubs it calls only where they work


def _mapping(value: object, what: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"the curated list's {what} is not a mapping")
    return {str(key): item for key, item in value.items()}


def _strings(value: object, what: str) -> dict[str, str]:
    return {key: str(item) for key, item in _mapping(value, what).items()}


def _names(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"the curated list's {what} is not a list of names")
    return sorted(value)


def load_curated(path: Path) -> Curated:
    """Read and shape-check the curated facts; anything wrong is a one-line UsageError."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"cannot read the curated list {path}: {' '.join(str(error).split())}") from None
    top = _mapping(data, "top level")
    user32 = _mapping(top.get(CURATED_DLL), CURATED_DLL)
    if not user32:
        raise UsageError(f"the curated list {path} has no {CURATED_DLL} section")
    dlls = top.get("w_stub_dlls") or []
    if not isinstance(dlls, list):
        raise UsageError("the curated list's w_stub_dlls is not a list")
    try:
        runtimes = parse_runtimes(top.get("runtime_guarded"))
    except ValueError as error:
        raise UsageError(f"the curated list's {error}") from None
    return Curated(
        sources=_strings(top.get("sources"), "sources"),
        w_stub_dlls=frozenset(str(dll) for dll in dlls),
        implemented_w={dll: _strings(v, f"implemented_w.{dll}")
                       for dll, v in _mapping(top.get("implemented_w"), "implemented_w").items()},
        stubs={dll: _strings(v, f"stubs.{dll}") for dll, v in _mapping(top.get("stubs"), "stubs").items()},
        user32_exported={source: _names(v, f"{CURATED_DLL}.exported.{source}")
                         for source, v in _mapping(user32.get("exported"), f"{CURATED_DLL}.exported").items()},
        user32_stubs=_strings(user32.get("stubs"), f"{CURATED_DLL}.stubs"),
        user32_absent=_strings(user32.get("absent"), f"{CURATED_DLL}.absent"),
        runtimes=runtimes,
    )


def evidence_keys(reason: str) -> list[str]:
    """The `sources` keys a curated reason cites: "msdn (June 1998: ...), kernelex-kernel32 (x.c); text" gives
    ["msdn", "kernelex-kernel32"]: the comma-separated words before the first ":" or ";", details in parentheses
    dropped."""
    head = re.split(r"[:;]", _DETAIL.sub("", reason), maxsplit=1)[0]
    return [key.strip() for key in head.split(",") if key.strip()]


def _check_evidence(curated: Curated) -> None:
    """Every curated stub, natively implemented W function and USER32 group names its evidence by `sources` key."""
    cited = [(f"stub {dll}!{name}", reason) for dll, stubs in curated.stubs.items() for name, reason in stubs.items()]
    cited += [(f"stub {CURATED_DLL}!{name}", reason) for name, reason in curated.user32_stubs.items()]
    cited += [(f"implemented_w {dll}!{name}", key) for dll, names in curated.implemented_w.items()
              for name, key in names.items()]
    cited += [(f"{CURATED_DLL}.exported group", key) for key in curated.user32_exported]
    for runtime in curated.runtimes.values():
        cited.append((f"runtime_guarded {runtime.key} start_up", runtime.start_up.evidence))
        cited += [(f"runtime_guarded {runtime.key} {dll}!{name}", item.evidence)
                  for dll, names in runtime.imports.items() for name, item in names.items()]
    for what, reason in cited:
        keys = evidence_keys(reason)
        unknown = [key for key in keys if key not in curated.sources]
        if not keys or unknown:
            raise UsageError(f"curated {what} cites {', '.join(unknown) or 'no source'} ({reason!r}): its reason "
                             "must start with keys of `sources`")


def _w_stubs(exported: set[str], implemented: dict[str, str]) -> dict[str, str]:
    """Every xxxW export with an xxxA sibling that Windows 98 does not implement natively."""
    return {name: "mslu: W function, a stub on Windows 95/98 without unicows.dll"
            for name in sorted(exported)
            if name.endswith("W") and f"{name[:-1]}A" in exported and name not in implemented}


def build_lists(source: MingwSource, curated: Curated) -> dict[str, DllList]:
    """Per DLL: exported (by section), stubs (curated + W rule), absent (by section). Curated facts must cite
    keys of `sources` (evidence_keys)."""
    lists: dict[str, DllList] = {}
    for dll, relative in DEF_FILES.items():
        try:
            found = verdicts(parse(source.read(relative), relative))
        except DefFormatError as error:
            raise UsageError(f"{error} (mingw-w64 {source.commit[:12]})") from None
        exported = {name: _short(header) for name, header in found.exported.items()}
        absent = {name: _short(header) for name, header in found.absent.items()}
        stubs: dict[str, str] = {}
        if dll in curated.w_stub_dlls:
            stubs.update(_w_stubs(set(exported), curated.implemented_w.get(dll, {})))
        for name, reason in curated.stubs.get(dll, {}).items():
            if name not in exported:
                raise UsageError(f"curated stub {dll}!{name} is not an export of Windows 98 SE per {relative}")
            stubs[name] = reason
        lists[dll] = DllList(relative, _group(exported), dict(sorted(stubs.items())), _group(absent))
    lists[CURATED_DLL] = _user32(curated)
    _check_evidence(curated)
    for runtime in curated.runtimes.values():
        for dll, names in runtime.imports.items():
            for name in names:
                if dll not in lists or name not in lists[dll].stubs:
                    raise UsageError(f"runtime_guarded {runtime.key} {dll}!{name} is not a stub on Windows 98 SE in "
                                     "the list: a guard only excuses a stub (a name Windows 98 does not export keeps "
                                     "the program from loading; an implemented one needs no guard)")
    return lists


def _user32(curated: Curated) -> DllList:
    names = {name for group in curated.user32_exported.values() for name in group}
    for name in curated.user32_stubs:
        if name not in names:
            raise UsageError(f"curated stub {CURATED_DLL}!{name} is not listed as exported")
    absent: dict[str, list[str]] = {}
    for name, reason in curated.user32_absent.items():
        absent.setdefault(reason, []).append(name)
    return DllList("fixtures/win98_curated.yaml", dict(curated.user32_exported),
                   dict(sorted(curated.user32_stubs.items())), {key: sorted(value) for key, value in absent.items()})


def render(lists: dict[str, DllList], commit: str, curated: Curated) -> str:
    """The YAML text, deterministic for a given commit and curated file."""
    header = (
        "# GENERATED by `python -m harness.audit.exports_source` from mingw-w64 (commit below) and\n"
        "# fixtures/win98_curated.yaml. Do not edit: change the curated file or the generator and regenerate.\n"
        "# exported: Windows 98 SE exports the name (key = the section of `source` or the curated source saying so).\n"
        "# stubs: exported, but a stub there (fails, typically with ERROR_CALL_NOT_IMPLEMENTED).\n"
        "# absent: Windows 98 SE does not export it (key = the section naming the release that added it).\n"
        "# Any other import is \"no evidence either way\": the audit reports it too (fail closed).\n"
        "# runtime_guarded: stubs a C runtime calls only where they work; accepted only in that runtime's binaries,\n"
        "# when the machine code shows the guard around every reference (harness/audit/runtime.py).\n"
    )
    document = {
        "target": "Windows 98 Second Edition (4.10.2222 A)",
        "mingw_w64": {"repository": REPOSITORY, "commit": commit},
        "sources": curated.sources,
        "size": {dll: {"exported": sum(len(v) for v in entry.exported.values()), "stubs": len(entry.stubs),
                       "absent": sum(len(v) for v in entry.absent.values())} for dll, entry in lists.items()},
        "dlls": {dll: {"source": entry.source, "exported": entry.exported, "stubs": entry.stubs,
                       "absent": entry.absent} for dll, entry in lists.items()},
    }
    if curated.runtimes:
        document["runtime_guarded"] = runtimes_document(curated.runtimes)
    return header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=False)


def pinned_commit(path: Path) -> str | None:
    """The mingw-w64 commit the checked-in list was generated from, if it has one."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        commit = data["mingw_w64"]["commit"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return commit if isinstance(commit, str) else None


def generate(src: Path, commit: str | None = None, curated_path: Path | None = None) -> str:
    """Generate the list's text from a mingw-w64 copy (at `commit` for a bare git directory)."""
    source = MingwSource(src, commit)
    curated = load_curated(curated_path or default_curated_path())
    return render(build_lists(source, curated), source.commit, curated)


def _first_difference(old: str, new: str) -> str:
    for number, (a, b) in enumerate(zip(old.splitlines(), new.splitlines()), 1):
        if a != b:
            return f"line {number}: {a.strip()!r} -> {b.strip()!r}"
    return f"length {len(old.splitlines())} -> {len(new.splitlines())} lines"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.audit.exports_source", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", default=os.environ.get(SOURCE_ENV),
                        help=f"mingw-w64 work tree or bare git directory (default ${SOURCE_ENV})")
    parser.add_argument("--commit", default=None, help="commit to read (bare git directory; default: the pinned one)")
    parser.add_argument("--out", default=None, help="file to write (default fixtures/win98_exports.yaml)")
    parser.add_argument("--curated", default=None, help="curated facts (default fixtures/win98_curated.yaml)")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file would change")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else default_output_path()
    try:
        if not args.src:
            raise UsageError(f"no mingw-w64 source: pass --src PATH or set {SOURCE_ENV}")
        src = Path(args.src)
        commit = args.commit
        if commit is None and not (src / "mingw-w64-crt").is_dir():
            commit = pinned_commit(out)
        text = generate(src, commit, Path(args.curated) if args.curated else None)
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if args.check:
            if current != text:
                print(f"exports_source: {out} differs from what mingw-w64 and the curated list give "
                      f"({_first_difference(current, text)}); regenerate it", file=sys.stderr)
                return 1
            print(f"exports_source: {out} is up to date")
            return 0
        out.write_text(text, encoding="utf-8")
        print(f"exports_source: wrote {out}")
        return 0
    except HarnessError as error:
        print(f"exports_source: error: {' '.join(str(error).split())}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
