"""The port builds as strict C89 with every compiler we ship, and the build API caches and never writes sources."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.port.build import PortBuildError, build_port, default_src_dir
from tests.support.port_helpers import (
    built,  # noqa: F401  (fixtures below)
    win32_exe,  # noqa: F401
)

STRICT = ["-std=c89", "-pedantic-errors", "-Wall", "-Wextra", "-Wdeclaration-after-statement", "-Werror"]
SOURCES = sorted(p.name for p in default_src_dir().glob("*.c"))
COMPILERS = {
    "gcc": ["gcc"],
    "gcc-m32": ["gcc", "-m32", "-march=pentium2"],
    "mingw": ["i686-w64-mingw32-gcc", "-march=pentium2", "-D__USE_MINGW_ANSI_STDIO=0"],
}


def test_port_has_sources() -> None:
    assert {"llama98.c", "model.c", "tokenizer.c", "sampler.c"} <= set(SOURCES)


@pytest.mark.parametrize("compiler", sorted(COMPILERS))
@pytest.mark.parametrize("source", SOURCES)
def test_each_source_is_strict_c89(compiler: str, source: str, tmp_path: Path) -> None:
    command = COMPILERS[compiler]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} not installed")
    result = subprocess.run(
        [*command, *STRICT, "-O2", "-c", str(default_src_dir() / source), "-o", str(tmp_path / "x.o")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("source", sorted(p.name for p in default_src_dir().glob("*.[ch]")))
def test_sources_use_only_c89_headers(source: str) -> None:
    text = (default_src_dir() / source).read_text()
    includes = set(re.findall(r"#include <([^>]+)>", text))
    allowed = {"stdio.h", "stdlib.h", "string.h", "math.h", "time.h", "limits.h", "stdarg.h", "stddef.h",
               "windows.h", "io.h", "fcntl.h"}
    assert includes <= allowed, f"non-C89 headers: {includes - allowed}"
    assert "long long" not in text


def _copy_sources(tmp_path: Path) -> Path:
    src = tmp_path / "llama98"
    shutil.copytree(default_src_dir(), src)
    return src


def test_build_port_builds_caches_and_leaves_sources_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path)
    before = sorted(p.name for p in src.iterdir())
    first = build_port("native", src)
    assert first.is_file() and os.access(first, os.X_OK)
    assert str(first).startswith(str(tmp_path / "cache" / "builds"))
    assert sorted(p.name for p in src.iterdir()) == before
    mtime = first.stat().st_mtime_ns
    assert build_port("native", src) == first
    assert first.stat().st_mtime_ns == mtime, "an unchanged port must come from the cache"
    out = build_port("native", src, tmp_path / "out" / "llama98")
    assert out == (tmp_path / "out" / "llama98").resolve() and out.read_bytes() == first.read_bytes()
    (src / "util.c").write_text((src / "util.c").read_text() + "\n/* changed */\n")
    assert build_port("native", src) != first, "a source change must give a new cache entry"


def test_build_failure_names_the_compiler_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path)
    (src / "model.c").write_text((src / "model.c").read_text() + "\nint broken(void) { return 1 }\n")
    with pytest.raises(PortBuildError) as caught:
        build_port("native", src)
    message = str(caught.value)
    assert "model.c" in message and "error" in message
    assert "\n" not in message


def test_build_rejects_unknown_target_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(PortBuildError, match="unknown target"):
        build_port("vax", default_src_dir())
    with pytest.raises(PortBuildError, match="does not exist"):
        build_port("native", tmp_path / "nowhere")


def test_cli_build_prints_the_binary_path(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path)
    env = {**os.environ, "LLAMA98_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli", "build", "--target", "native", "--src", str(src),
         "-o", str(tmp_path / "bin" / "llama98")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == (tmp_path / "bin" / "llama98").resolve()
    assert Path(result.stdout.strip()).is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "harness.cli", "build", "--src", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert bad.returncode != 0 and bad.stderr.startswith("llama98-harness: error:")


def test_tiny686_is_static_i386_elf() -> None:
    data = built("tiny686").read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 1, "must be a 32-bit ELF"
    assert struct.unpack_from("<H", data, 18)[0] == 3, "e_machine must be EM_386"
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "PT_INTERP present: the binary is not static"


def _objdump(exe: Path) -> str:
    if shutil.which("i686-w64-mingw32-objdump") is None:
        pytest.skip("i686-w64-mingw32-objdump not installed (apt-get install binutils-mingw-w64-i686)")
    return subprocess.run(["i686-w64-mingw32-objdump", "-p", str(exe)], capture_output=True, text=True,
                          timeout=60, check=True).stdout


def test_win32_exe_imports_only_kernel32_and_msvcrt(win32_exe: Path) -> None:  # noqa: F811
    dump = _objdump(win32_exe)
    dlls = set(re.findall(r"DLL Name: (\S+)", dump))
    assert {d.lower() for d in dlls} == {"kernel32.dll", "msvcrt.dll"}, dlls
    # msvcrt.dll of Windows 98 predates these; MinGW's own stdio would pull them in
    for newer in ("___lc_codepage_func", "___mb_cur_max_func", "__iob_func"):
        assert re.search(rf"\s{newer}\s", dump) is None, f"imports {newer}, absent on Windows 98"


def test_win32_exe_is_a_console_program_for_windows_4(win32_exe: Path) -> None:  # noqa: F811
    dump = _objdump(win32_exe)
    assert re.search(r"MajorSubsystemVersion\s+4\b", dump)
    assert re.search(r"MinorSubsystemVersion\s+0\b", dump)
    assert re.search(r"MajorOSystemVersion\s+4\b", dump)
    assert "(Windows CUI)" in dump
