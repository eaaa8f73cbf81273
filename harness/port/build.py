"""Build the llama98 C89 port for one target and cache the binary.

Every consumer (tests, the guest runs, bisection over other commits) needs the same few binaries, built from
whatever `ports/llama98` checkout it points at. Building copies the sources into a temporary directory and runs
the port's own makefile there, so a checkout is never written to; the result is cached under a key made of the
sources, the makefile, the target and the compiler version, so an unchanged port is built once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.paths import cache_dir, project_root
from harness.core.proc import first_line, require, run

BUILD_TIMEOUT_S = 300
ERROR_LINES_SHOWN = 6


class PortBuildError(HarnessError):
    """The compiler or make failed, or the toolchain for a target is missing."""


@dataclass(frozen=True)
class TargetSpec:
    """How one target is built: which makefile, which make variables, which compiler it needs."""

    makefile: str
    make_vars: tuple[str, ...]
    compiler: str
    binary: str
    install_hint: str


TARGETS: dict[str, TargetSpec] = {
    "native": TargetSpec("gcc.mk", ("TARGET=native",), "gcc", "llama98", "apt-get install gcc"),
    "native-asan": TargetSpec("gcc.mk", ("TARGET=native-asan",), "gcc", "llama98", "apt-get install gcc"),
    "tiny686": TargetSpec("gcc.mk", ("TARGET=tiny686",), "gcc", "llama98", "apt-get install gcc-multilib"),
    # the guest build with the portable C dot products instead of MMX (tests equal output; what a P5 would run)
    "tiny686-c": TargetSpec("gcc.mk", ("TARGET=tiny686", "QDOT=c"), "gcc", "llama98",
                            "apt-get install gcc-multilib"),
    "win32": TargetSpec(
        "mingw.mk", (), "i686-w64-mingw32-gcc", "llama98.exe", "apt-get install gcc-mingw-w64-i686"
    ),
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
    """The compiler command and flags `target` builds with, as its makefile says (the one source of them)."""
    spec = _spec(target)
    src = default_src_dir()
    result = run(["make", "-s", "-f", str(src / spec.makefile), f"SRC={src}", *spec.make_vars, "print-cflags"],
                 what=f"reading the {target} build flags", timeout=60, error=PortBuildError)
    return result.stdout.strip()


# Programs under ports/: the llama98 port itself and agent98, the Windows 98 serial agent (Win32 only).
PROGRAM_TARGETS: dict[str, tuple[str, ...]] = {
    "llama98": tuple(TARGETS),
    "agent98": ("win32",),
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
    """The files a build reads: every C source and header (makefiles are hashed separately)."""
    files = sorted(p for p in src_dir.iterdir() if p.is_file() and p.suffix in (".c", ".h"))
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


def _compiler_version(compiler: str, install_hint: str) -> str:
    """First line of `CC --version`; a missing compiler is a user-facing error with the package to install."""
    require(compiler, install_hint, PortBuildError)
    return first_line([compiler, "--version"], timeout=60) or compiler


def build_key(target: str, src_dir: Path, program: str = "llama98", defines: tuple[str, ...] = ()) -> str:
    """sha256 over program, target, compiler version, makefile and sources: equal keys mean identical binaries."""
    spec = _spec(target)
    digest = hashlib.sha256()
    if program != "llama98":  # keeps the keys (and caches) of existing llama98 builds unchanged
        digest.update(f"program={program}\n".encode())
    if defines:
        digest.update(f"defines={' '.join(defines)}\n".encode())
    digest.update(f"target={target}\n".encode())
    digest.update(f"compiler={_compiler_version(spec.compiler, spec.install_hint)}\n".encode())
    makefile = src_dir / spec.makefile
    if not makefile.is_file():
        raise PortBuildError(f"{makefile} not found: --src must point at a ports/llama98 directory")
    for path in [makefile, *_source_files(src_dir)]:
        digest.update(f"file={path.name} bytes={path.stat().st_size}\n".encode())
        digest.update(path.read_bytes())
    sibling, shared = _shared_files(src_dir, program)
    for path in shared:
        digest.update(f"shared={sibling}/{path.name} bytes={path.stat().st_size}\n".encode())
        digest.update(path.read_bytes())
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


def _run_make(spec: TargetSpec, build_dir: Path, src_copy: Path, binary_name: str,
              defines: tuple[str, ...] = ()) -> Path:
    command = ["make", "-s", "-f", str(src_copy / spec.makefile), f"SRC={src_copy}", *spec.make_vars]
    if defines:
        command.append("DEFINES=" + " ".join(f"-D{define}" for define in defines))
    require("make", "apt-get install make", PortBuildError)
    result = run(command, what=f"building the port in {build_dir}", cwd=build_dir, timeout=BUILD_TIMEOUT_S,
                 check=False, error=PortBuildError)
    binary = build_dir / binary_name
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
            tmp_path = Path(tmp)
            src_copy = tmp_path / "ports" / program  # keeps the ports/<program> layout the makefiles expect
            src_copy.mkdir(parents=True)
            for path in [src / spec.makefile, *_source_files(src)]:
                shutil.copy2(path, src_copy / path.name)
            sibling, shared = _shared_files(src, program)
            if shared:
                (tmp_path / "ports" / sibling).mkdir()
                for path in shared:
                    shutil.copy2(path, tmp_path / "ports" / sibling / path.name)
            build_dir = tmp_path / "build"
            build_dir.mkdir()
            binary = _run_make(spec, build_dir, src_copy, binary_name, defines)
            staging = cached.with_name(f".{binary_name}.{os.getpid()}.tmp")
            shutil.copy2(binary, staging)
            os.replace(staging, cached)
    if out is None:
        return cached
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(cached, out)
    return out
