"""Build the llama98 C89 port for one target and cache the binary.

Every consumer (tests, the guest runs, bisection over other commits) needs the same few binaries, built from
whatever `ports/llama98` checkout it points at. Building copies the sources into a temporary directory and runs
the port's own makefile there, so a checkout is never written to; the result is cached under a key made of
everything that reaches the compiler (every file copied, the whole make command line, the versions of make and
the compiler), so an unchanged port is built once.

Only the harness decides what is built: make and the compiler run with core.proc.tool_env() (PATH, HOME, TMPDIR
and the C locale, nothing else of the user's environment) and every variable the makefiles take (SRC, OUT, CC,
TARGET, QDOT, DEFINES; SHARED for agent98) is set on the command line. Otherwise an exported OUT, QDOT, CC,
CFLAGS, DEFINES or MAKEFLAGS (read by make as defaults, and by the makefiles of older commits with `?=`) broke
the build or, worse, silently built another binary, which the cache then served to every later run.

Two toolchains: GNU make with gcc or MinGW (gcc.mk, mingw.mk), and OpenWatcom's wmake with wcl386 (watcom.mk),
the compiler of the nightly Windows 98 binary. OpenWatcom comes from harness.toolchains.openwatcom (built from
$LLAMA98_OPENWATCOM_SOURCE and cached, or $WATCOM) and runs with its own complete environment (OpenWatcom.env),
never the user's; its identity (the source key of a cached build and the banners of wcc386, wlink and wmake) is
part of the cache key, as the make and gcc versions are for the GNU builds. The watcom-tiny686 targets build the
same sources with the same flags for i386 Linux (-bt=linux, `system linux`), so the code OpenWatcom generates
for Windows 98 also runs, and is judged, natively on the host and in the tiny686 guest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.core.errors import HarnessError
from harness.core.paths import cache_dir, project_root
from harness.core.proc import first_line, require, run, tool_env
from harness.toolchains import openwatcom

BUILD_TIMEOUT_S = 300
MAKE_INSTALL_HINT = "apt-get install make"
ERROR_LINES_SHOWN = 6


class PortBuildError(HarnessError):
    """The compiler or make failed, or the toolchain for a target is missing."""


class ToolchainMissing(PortBuildError, openwatcom.ToolchainMissing):
    """make, the target's compiler or OpenWatcom is not installed. Its own type because it is the one build
    failure a test may skip on: anything else (a deleted makefile, a compile error) is a defect the test must
    report. Both a PortBuildError (what a build raises) and harness.toolchains.ToolchainMissing, so that one
    `except harness.toolchains.ToolchainMissing` catches every missing toolchain, wherever it was found missing."""


Toolchain = Literal["make", "openwatcom"]


@dataclass(frozen=True)
class TargetSpec:
    """How one target is built: which makefile, which make variables, which compiler it needs. `make_vars` names
    every choice the makefile would otherwise default (TARGET, QDOT; OS, QDOT for watcom.mk), so no environment
    can make it. `toolchain` says who runs the makefile: GNU make with tool_env() and `compiler` from PATH, or
    OpenWatcom's wmake with OpenWatcom.env(`watcom_os`)."""

    makefile: str
    make_vars: tuple[str, ...]
    compiler: str
    binary: str
    install_hint: str
    toolchain: Toolchain = "make"
    watcom_os: openwatcom.Target = "nt"


OPENWATCOM_HINT = (f"set ${openwatcom.SOURCE_ENV} to an open-watcom-v2 source archive (built once and cached) or "
                   f"${openwatcom.WATCOM_ENV} to an installation")


def _watcom(os_name: openwatcom.Target, qdot: str) -> TargetSpec:
    return TargetSpec("watcom.mk", (f"OS={os_name}", f"QDOT={qdot}"), "wcl386",
                      "llama98.exe" if os_name == "nt" else "llama98", OPENWATCOM_HINT, "openwatcom", os_name)


TARGETS: dict[str, TargetSpec] = {
    "native": TargetSpec("gcc.mk", ("TARGET=native", "QDOT=c"), "gcc", "llama98", "apt-get install gcc"),
    "native-asan": TargetSpec("gcc.mk", ("TARGET=native-asan", "QDOT=c"), "gcc", "llama98",
                              "apt-get install gcc"),
    "tiny686": TargetSpec("gcc.mk", ("TARGET=tiny686", "QDOT=mmx"), "gcc", "llama98",
                          "apt-get install gcc-multilib"),
    # the guest build with the portable C dot products instead of MMX (tests equal output; what a P5 would run)
    "tiny686-c": TargetSpec("gcc.mk", ("TARGET=tiny686", "QDOT=c"), "gcc", "llama98",
                            "apt-get install gcc-multilib"),
    "win32": TargetSpec(
        "mingw.mk", ("QDOT=mmx",), "i686-w64-mingw32-gcc", "llama98.exe", "apt-get install gcc-mingw-w64-i686"
    ),
    # OpenWatcom (watcom.mk): the nightly's Win32 binary, and the same compiler and flags for i386 Linux (a
    # static ELF that runs on the host and in the tiny686 guest); -c: the portable C dot products (QDOT=c)
    # instead of the MMX _asm kernels.
    "watcom-win32": _watcom("nt", "mmx"),
    "watcom-win32-c": _watcom("nt", "c"),
    "watcom-tiny686": _watcom("linux", "mmx"),
    "watcom-tiny686-c": _watcom("linux", "c"),
}


# Which build of the port each kind of guest console runs (a profile's console kind names its guest OS family).
CONSOLE_TARGETS: dict[str, str] = {"posix-shell": "tiny686", "agent98": "win32"}


def target_for_console(kind: str) -> str:
    """The build target of the port for a guest whose console is of `kind`."""
    try:
        return CONSOLE_TARGETS[kind]
    except KeyError:
        raise PortBuildError(f"no llama98 build target for console kind {kind!r}") from None


def compile_flags(target: str) -> str:
    """The compiler command and flags `target` builds with, as its makefile says (the one source of them), read
    with the command line and environment of a build."""
    spec = _spec(target)
    src = default_src_dir()
    command = _make_command(spec, "llama98", str(src.parent.parent), goal="print-cflags")
    result = run(command, what=f"reading the {target} build flags", timeout=60, env=_build_env(spec),
                 error=PortBuildError)
    return result.stdout.strip()


# Programs under ports/: the llama98 port itself and agent98, the Windows 98 serial agent (Win32 only).
PROGRAM_TARGETS: dict[str, tuple[str, ...]] = {
    "llama98": tuple(TARGETS),
    "agent98": ("win32", "watcom-win32"),
}


# Sources a program compiles from a sibling program's directory (its makefile's SHARED, default SRC/../<dir>):
# agent98 uses the llama98 port's 64-bit helpers and CRC-32 instead of a copy of them.
SHARED_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "agent98": ("llama98", ("u64.c", "u64.h", "crc32.c", "crc32.h")),
}


def default_src_dir(program: str = "llama98") -> Path:
    """The sources of `program` in this checkout (ports/<program>)."""
    return project_root() / "ports" / program


def _check_program(program: str, target: str) -> None:
    if program not in PROGRAM_TARGETS:
        raise PortBuildError(f"unknown program {program!r}: choose one of {', '.join(PROGRAM_TARGETS)}")
    if target not in PROGRAM_TARGETS[program]:
        raise PortBuildError(f"{program} is built only for target {', '.join(PROGRAM_TARGETS[program])}, "
                             f"not {target!r}")


def _binary_name(spec: TargetSpec, program: str) -> str:
    """The file the makefile produces: the target's binary name with the program's name."""
    return spec.binary.replace("llama98", program)


def _source_files(src_dir: Path) -> list[Path]:
    """The files a build reads: every C source and header and every makefile (the target's and what it includes,
    such as sources.mk)."""
    files = sorted(p for p in src_dir.iterdir() if p.is_file() and p.suffix in (".c", ".h", ".mk"))
    if not any(p.suffix == ".c" for p in files):
        raise PortBuildError(f"no C sources in {src_dir}: --src must point at a ports/llama98 directory")
    return files


def _shared_files(src_dir: Path, program: str) -> tuple[str, list[Path]]:
    """The sibling directory's name and the files `program` compiles from it (none for llama98)."""
    if program not in SHARED_SOURCES:
        return "", []
    sibling, names = SHARED_SOURCES[program]
    files = [src_dir.parent / sibling / name for name in names]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise PortBuildError(f"{program} needs {', '.join(missing)} (shared with ports/{sibling})")
    return sibling, files


def _tool_version(tool: str, install_hint: str) -> str:
    """First line of `TOOL --version` as a build sees it (tool_env's PATH); a missing tool is ToolchainMissing,
    a one-line error with the package to install."""
    require(tool, install_hint, ToolchainMissing)
    return first_line([tool, "--version"], timeout=60) or tool


@functools.lru_cache(maxsize=4)
def _openwatcom_for(source: str, watcom: str) -> openwatcom.OpenWatcom:
    """find_openwatcom() for one setting of $LLAMA98_OPENWATCOM_SOURCE and $WATCOM, once per process (it hashes
    the source archive). Its ToolchainErrors become PortBuildErrors (a build's failures, which bisection skips):
    a toolchain that is nowhere is this module's ToolchainMissing, still a toolchains.ToolchainMissing; a source
    that is given but broken is a plain PortBuildError."""
    del source, watcom  # the cache key only: find_openwatcom reads them from the environment
    try:
        return openwatcom.find_openwatcom()
    except openwatcom.ToolchainMissing as error:
        raise ToolchainMissing(str(error)) from None
    except openwatcom.ToolchainError as error:
        raise PortBuildError(str(error)) from None


def find_watcom() -> openwatcom.OpenWatcom:
    """The OpenWatcom the watcom-* targets build with (see harness.toolchains.openwatcom.find_openwatcom)."""
    return _openwatcom_for(os.environ.get(openwatcom.SOURCE_ENV, "").strip(),
                           os.environ.get(openwatcom.WATCOM_ENV, "").strip())


@functools.lru_cache(maxsize=4)
def _openwatcom_identity(toolchain: openwatcom.OpenWatcom) -> str:
    """What names an OpenWatcom build: the source key and recipe of a cached build, and the banners (version and
    build date) of the compiler, linker and make, which differ between any two builds or installations."""
    parts = []
    if toolchain.stamp is not None:
        stamp = json.loads(toolchain.stamp.read_text(encoding="utf-8"))
        parts.append(f"source_key={stamp.get('source_key')} recipe={stamp.get('recipe')}")
    for tool in ("wcc386", "wlink", "wmake"):
        result = run([toolchain.tool(tool), "-?"], what=f"{tool} -?", timeout=60, env=toolchain.env("nt"),
                     check=False, error=PortBuildError)
        banner = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()][:2]
        parts.append(f"{tool}: {' '.join(banner)}")
    return "; ".join(parts)


def _build_env(spec: TargetSpec) -> dict[str, str]:
    """The complete environment the target's make runs in (never the user's: see the module docstring)."""
    if spec.toolchain == "openwatcom":
        return find_watcom().env(spec.watcom_os)
    require("make", MAKE_INSTALL_HINT, ToolchainMissing)
    return tool_env()


def toolchain_identity(target: str) -> str:
    """The versions of the tools `target` builds with, as the cache key holds them: make's and the compiler's
    first lines, or the OpenWatcom identity (source key and recipe of a cached build, tool banners)."""
    spec = _spec(target)
    if spec.toolchain == "openwatcom":
        return f"openwatcom={_openwatcom_identity(find_watcom())}\n"
    return (f"make={_tool_version('make', MAKE_INSTALL_HINT)}\n"
            f"compiler={_tool_version(spec.compiler, spec.install_hint)}\n")


def _make_command(spec: TargetSpec, program: str, root: str, defines: tuple[str, ...] = (),
                  goal: str | None = None) -> list[str]:
    """The make command line of a build whose copy of ports/ is under `root`: every variable the makefiles read
    is given here, where it beats both the makefile's default and the environment (see the module docstring).
    wmake names its binary itself (llama98.exe or llama98, by OS) and takes defines as -dNAME."""
    src = f"{root}/ports/{program}"
    if spec.toolchain == "openwatcom":
        command = ["wmake", "-h", "-f", f"{src}/{spec.makefile}", f"SRC={src}", *spec.make_vars,
                   "DEFINES=" + " ".join(f"-d{define}" for define in defines)]
    else:
        command = ["make", "-s", "-f", f"{src}/{spec.makefile}", f"SRC={src}", f"OUT={_binary_name(spec, program)}",
                   f"CC={spec.compiler}", *spec.make_vars,
                   "DEFINES=" + " ".join(f"-D{define}" for define in defines)]
    if program in SHARED_SOURCES:
        command.append(f"SHARED={root}/ports/{SHARED_SOURCES[program][0]}")
    return [*command, goal] if goal else command


def _inputs(src_dir: Path, spec: TargetSpec, program: str) -> list[tuple[str, Path]]:
    """Every file a build copies, as (its path under the build's ports/ directory, where it comes from): the
    cache key hashes exactly this list, so nothing reaches the compiler without being in the key."""
    if not (src_dir / spec.makefile).is_file():
        raise PortBuildError(f"{src_dir} has no {spec.makefile}: --src must point at a ports/{program} directory")
    files = [(f"{program}/{path.name}", path) for path in _source_files(src_dir)]  # the makefiles among them
    sibling, shared = _shared_files(src_dir, program)
    return files + [(f"{sibling}/{path.name}", path) for path in shared]


def build_key(target: str, src_dir: Path, program: str = "llama98", defines: tuple[str, ...] = ()) -> str:
    """sha256 over everything that reaches the compiler: the make (or wmake) command line (with DEFINES), the
    versions of make and the compiler (the OpenWatcom identity for watcom targets), and every file the build
    copies. Equal keys mean identical binaries."""
    spec = _spec(target)
    digest = hashlib.sha256()
    digest.update(f"target={target}\n".encode())
    digest.update(f"command={shlex.join(_make_command(spec, program, '$ROOT', defines))}\n".encode())
    digest.update(toolchain_identity(target).encode())
    for name, path in _inputs(src_dir, spec, program):
        data = path.read_bytes()
        digest.update(f"file={name} bytes={len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def _spec(target: str) -> TargetSpec:
    try:
        return TARGETS[target]
    except KeyError:
        raise PortBuildError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}") from None


def _first_errors(output: str) -> str:
    """The compiler lines that say what went wrong (lines with 'error' first), joined into one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    chosen = (errors or lines)[:ERROR_LINES_SHOWN]
    return " | ".join(chosen) if chosen else "no output"


def _run_make(spec: TargetSpec, root: Path, program: str, defines: tuple[str, ...] = ()) -> Path:
    """make in `root`/build, on the copy of the sources in `root`/ports; the binary it made."""
    build_dir = root / "build"
    build_dir.mkdir()
    result = run(_make_command(spec, program, str(root), defines), what=f"building the port in {build_dir}",
                 cwd=build_dir, timeout=BUILD_TIMEOUT_S, env=_build_env(spec), check=False, error=PortBuildError)
    binary = build_dir / _binary_name(spec, program)
    if result.returncode != 0 or not binary.is_file():
        raise PortBuildError(f"build failed: {_first_errors(result.stderr + result.stdout)}")
    return binary


def build_port(target: str, src_dir: Path | None = None, out: Path | None = None,
               program: str = "llama98", defines: tuple[str, ...] = ()) -> Path:
    """Build (or reuse from the cache) `program` (llama98 or agent98) for `target` and return the binary's path.

    `src_dir` defaults to this checkout's ports/<program> and is only read. `defines` (NAME or NAME=VALUE) are
    passed to the compiler: test variants such as LLAMA98_FORK_STYLE; real builds have none. With `out`, the
    binary is also copied there and that path is returned; otherwise the cached path is returned (treat it as
    read-only).
    """
    spec = _spec(target)
    _check_program(program, target)
    binary_name = _binary_name(spec, program)
    src = (src_dir or default_src_dir(program)).resolve()
    if not src.is_dir():
        raise PortBuildError(f"port source directory {src} does not exist")
    key = build_key(target, src, program, defines)
    cached = cache_dir("builds", key) / binary_name
    if not cached.is_file():
        with tempfile.TemporaryDirectory(prefix="llama98-build-") as tmp:
            root = Path(tmp)
            for name, path in _inputs(src, spec, program):  # the ports/<program> layout the makefiles expect
                (root / "ports" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, root / "ports" / name)
            binary = _run_make(spec, root, program, defines)
            staging = cached.with_name(f".{binary_name}.{os.getpid()}.tmp")
            shutil.copy2(binary, staging)
            os.replace(staging, cached)
    if out is None:
        return cached
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cached, out)
    return out
