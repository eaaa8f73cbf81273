"""The port builds as strict C89 with every compiler we ship, and the build API caches and never writes sources."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from harness.core.proc import tool_env
from harness.port.build import (
    PROGRAM_TARGETS,
    TARGETS,
    PortBuildError,
    ToolchainMissing,
    build_key,
    build_port,
    compile_flags,
    default_src_dir,
    find_watcom,
    toolchain_identity,
)
from tests.support.port_helpers import (
    built,
    win32_exe,  # noqa: F401  (a fixture)
)

STRICT = ["-std=c89", "-pedantic-errors", "-Wall", "-Wextra", "-Wdeclaration-after-statement", "-Werror"]
SOURCES = sorted(p.name for p in default_src_dir().glob("*.c"))
COMPILERS = {
    "gcc": ["gcc"],
    "gcc-m32": ["gcc", "-m32", "-march=pentium2"],
    "mingw": ["i686-w64-mingw32-gcc", "-march=pentium2", "-D__USE_MINGW_ANSI_STDIO=0"],
}


def test_port_has_sources() -> None:
    assert {"llama98.c", "forward.c", "tokenizer.c", "sampler.c"} <= set(SOURCES)


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
    (src / "sampler.c").write_text((src / "sampler.c").read_text() + "\nint broken(void) { return 1 }\n")
    with pytest.raises(PortBuildError) as caught:
        build_port("native", src)
    message = str(caught.value)
    assert "sampler.c" in message and "error" in message
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


# --- the user's environment does not change the build (issue 18) ----------------------------------------------

def _hostile_env(tmp_path: Path) -> dict[str, str]:
    """What a user may have exported: every variable the makefiles read, and MAKEFLAGS=-e, with which make lets
    the environment override even the makefiles' plain assignments."""
    return {"OUT": str(tmp_path / "x"), "QDOT": "c", "DEFINES": "-DLLAMA98_FORK_STYLE", "CFLAGS": "-O0",
            "CC": "false", "TARGET": "native-asan", "MAKEFLAGS": "-e"}


def _conditional_defaults(src: Path) -> None:
    """Make gcc.mk take TARGET, OUT, QDOT and DEFINES from the environment (`?=`), as the makefiles of older
    commits did: what bisection builds."""
    makefile = src / "gcc.mk"
    text, count = re.subn(r"^(TARGET|OUT|QDOT|DEFINES) =", r"\1 ?=", makefile.read_text(), flags=re.M)
    assert count >= 3, "gcc.mk no longer assigns TARGET, OUT and QDOT: update this test"
    makefile.write_text(text)


@pytest.mark.parametrize("makefiles", ["current", "conditional-defaults"])
@pytest.mark.parametrize("target", ["native", "tiny686"])
def test_exported_variables_change_neither_the_binary_nor_the_key(target: str, makefiles: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    src = _copy_sources(tmp_path)
    if makefiles == "conditional-defaults":
        _conditional_defaults(src)
    hostile = _hostile_env(tmp_path)
    for name in hostile:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "clean-cache"))
    clean_key = build_key(target, src)
    clean = built(target, src).read_bytes()

    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "hostile-cache"))  # a fresh cache: really built again
    for name, value in hostile.items():
        monkeypatch.setenv(name, value)
    assert build_key(target, src) == clean_key
    binary = build_port(target, src)
    assert str(binary).startswith(str(tmp_path / "hostile-cache"))
    assert binary.read_bytes() == clean, "the environment changed the binary"
    assert not (tmp_path / "x").exists()
    assert build_key(target, src, defines=("LLAMA98_FORK_STYLE",)) != clean_key


def test_the_key_covers_every_file_copied_and_the_defines(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path)
    key = build_key("native", src)
    assert build_key("native", src, defines=("LLAMA98_FORK_STYLE",)) != key
    assert build_key("native", src, defines=("LLAMA98_FORK_STYLE", "LLAMA98_ROPE_BASE=5000.0f")) not in (
        key, build_key("native", src, defines=("LLAMA98_FORK_STYLE",)))
    assert build_key("tiny686", src) != build_key("tiny686-c", src), "QDOT is on the command line"
    (src / "sources.mk").write_text((src / "sources.mk").read_text() + "# changed\n")
    assert build_key("native", src) != key, "an included makefile reaches the compiler too"


def test_compile_flags_ignore_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _hostile_env(tmp_path):
        monkeypatch.delenv(name, raising=False)
    clean = compile_flags("tiny686")
    for name, value in _hostile_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert compile_flags("tiny686") == clean
    assert "-O2" in clean and "-O0" not in clean and "-march=pentium2" in clean


# --- a missing toolchain is the only build failure a test skips on ----------------------------------------------

def test_a_deleted_makefile_fails_and_is_not_a_missing_toolchain(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path)
    (src / "gcc.mk").unlink()
    with pytest.raises(PortBuildError, match="gcc.mk") as caught:
        build_port("native", src)
    assert not isinstance(caught.value, ToolchainMissing)
    try:
        built("native", src)
    except pytest.skip.Exception:
        pytest.fail("the test helper skipped a build whose makefile is missing: that is a defect, not a machine")
    except PortBuildError as error:
        assert not isinstance(error, ToolchainMissing)
    else:
        pytest.fail("a build without its makefile succeeded")


def _path_with_only(tmp_path: Path, *tools: str) -> str:
    """A PATH directory holding links to `tools` (found on the real PATH) and nothing else."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, f"{tool} is needed to run this test"
        (directory / tool).symlink_to(found)
    return str(directory)


@pytest.mark.parametrize(("present", "missing"), [(("make",), "gcc"), (("gcc",), "make")])
def test_a_missing_make_or_compiler_is_toolchain_missing(present: tuple[str, ...], missing: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    src = _copy_sources(tmp_path)
    monkeypatch.setenv("PATH", _path_with_only(tmp_path, *present))
    with pytest.raises(ToolchainMissing, match=rf"^{missing} not found on PATH: apt-get install \S+") as caught:
        build_port("native", src)
    assert isinstance(caught.value, PortBuildError) and "\n" not in str(caught.value)
    with pytest.raises(pytest.skip.Exception, match=f"{missing} not found"):
        built("native", src)


def test_the_build_runs_with_the_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A makefile that records the environment make ran with: nothing of the user's is in it."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LLAMA98_PLANTED", "planted")
    src = _copy_sources(tmp_path)
    recorded = tmp_path / "env.txt"
    makefile = src / "gcc.mk"
    makefile.write_text(makefile.read_text().replace(
        "all: $(OUT)\n", f"all: $(OUT)\n\tenv > {recorded}\n", 1))
    build_port("native", src)
    seen = dict(line.split("=", 1) for line in recorded.read_text().splitlines() if "=" in line)
    assert "LLAMA98_PLANTED" not in seen
    assert {name: seen[name] for name in tool_env()} == tool_env()


# --- OpenWatcom: the watcom-* targets (issue 19) --------------------------------------------------------------------

WATCOM_TARGETS = ("watcom-win32", "watcom-win32-c", "watcom-tiny686", "watcom-tiny686-c")
# What a user's shell might export for OpenWatcom: wcl386 and wcc386 read extra options from WCL386/WCC386, wlink
# reads WLINK_LNK, the compilers search INCLUDE; OS/QDOT/DEFINES are watcom.mk's macros.
WATCOM_HOSTILE = {"WCL386": "-od -d2", "WCC386": "-od", "WLINK_LNK": "/nonexistent.lnk", "INCLUDE": "/nonexistent",
                  "OS": "nt", "QDOT": "c", "DEFINES": "-dLLAMA98_FORK_STYLE", "CFLAGS": "-od"}


def _watcom_root() -> Path:
    """The OpenWatcom installation the targets build with ($LLAMA98_OPENWATCOM_SOURCE's cached build or $WATCOM);
    skips, naming both, only when neither is set."""
    try:
        return find_watcom().root
    except ToolchainMissing as error:
        pytest.skip(str(error))


def _installed_watcom(monkeypatch: pytest.MonkeyPatch, root: Path, cache: Path) -> None:
    """Build with a fresh LLAMA98_CACHE: OpenWatcom is named by WATCOM (the toolchain built once stays where it is;
    with the source archive it would be built again into the fresh cache)."""
    monkeypatch.delenv("LLAMA98_OPENWATCOM_SOURCE", raising=False)
    monkeypatch.setenv("WATCOM", str(root))
    monkeypatch.setenv("LLAMA98_CACHE", str(cache))


def test_watcom_targets_are_built_by_wmake_with_every_choice_on_the_command_line() -> None:
    for target in WATCOM_TARGETS:
        spec = TARGETS[target]
        assert (spec.toolchain, spec.makefile, spec.compiler) == ("openwatcom", "watcom.mk", "wcl386")
        os_name = "nt" if "win32" in target else "linux"
        qdot = "c" if target.endswith("-c") else "mmx"
        assert spec.watcom_os == os_name and spec.make_vars == (f"OS={os_name}", f"QDOT={qdot}")
        assert spec.binary == ("llama98.exe" if os_name == "nt" else "llama98")
    assert PROGRAM_TARGETS["agent98"] == ("win32", "watcom-win32")


def test_watcom_key_holds_the_wmake_line_and_the_toolchain_identity(tmp_path: Path) -> None:
    _watcom_root()
    src = _copy_sources(tmp_path)
    keys = {build_key(target, src) for target in WATCOM_TARGETS}
    assert len(keys) == len(WATCOM_TARGETS), "OS and QDOT are on the wmake command line"
    assert build_key("watcom-win32", src, defines=("LLAMA98_FORK_STYLE",)) not in keys
    identity = toolchain_identity("watcom-win32")
    assert identity.startswith("openwatcom=") and "Open Watcom C x86 32-bit" in identity and "wlink:" in identity
    stamp = find_watcom().stamp
    if stamp is not None:  # a cached build from source: its source key names it
        assert f"source_key={json.loads(stamp.read_text())['source_key']}" in identity
    (src / "watcom.mk").write_text((src / "watcom.mk").read_text() + "# changed\n")
    assert build_key("watcom-win32", src) not in keys, "the makefile reaches the compiler"


def test_watcom_compile_flags_are_the_nightlys_for_both_systems() -> None:
    _watcom_root()
    windows, linux = compile_flags("watcom-win32"), compile_flags("watcom-tiny686")
    for flag in ("-6r", "-fp6", "-ox", "-s", "-wx", "-we"):
        assert flag in windows.split() and flag in linux.split(), flag
    assert "-bt=nt" in windows and "-bt=linux" in linux and "runtime console=4.0" in windows
    assert windows.replace("-bt=nt", "-bt=linux").split("(")[0] == linux.split("(")[0], "the same compiler flags"


def test_watcom_builds_ignore_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _watcom_root()
    src = _copy_sources(tmp_path)
    for name in WATCOM_HOSTILE:
        monkeypatch.delenv(name, raising=False)
    _installed_watcom(monkeypatch, root, tmp_path / "clean-cache")
    clean_key = build_key("watcom-tiny686", src)
    clean = build_port("watcom-tiny686", src).read_bytes()
    _installed_watcom(monkeypatch, root, tmp_path / "hostile-cache")
    for name, value in WATCOM_HOSTILE.items():
        monkeypatch.setenv(name, value)
    assert build_key("watcom-tiny686", src) == clean_key
    binary = build_port("watcom-tiny686", src)
    assert str(binary).startswith(str(tmp_path / "hostile-cache"))
    assert binary.read_bytes() == clean, "the environment changed the OpenWatcom binary"


def test_watcom_builds_both_programs_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _watcom_root()
    _installed_watcom(monkeypatch, root, tmp_path / "cache")
    exe = build_port("watcom-win32")
    assert exe.name == "llama98.exe" and exe.read_bytes()[:2] == b"MZ"
    assert build_port("watcom-win32") == exe and exe.stat().st_mtime_ns == build_port("watcom-win32").stat().st_mtime_ns
    agent = build_port("watcom-win32", program="agent98")
    assert agent.name == "agent98.exe" and agent.read_bytes()[:2] == b"MZ"
    elf = build_port("watcom-tiny686-c", out=tmp_path / "out" / "llama98")
    assert elf.read_bytes()[:4] == b"\x7fELF"
    with pytest.raises(PortBuildError, match="agent98 is built only for target win32, watcom-win32"):
        build_port("watcom-tiny686", program="agent98")


def test_a_watcom_compile_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _watcom_root()
    _installed_watcom(monkeypatch, root, tmp_path / "cache")
    src = _copy_sources(tmp_path)
    (src / "sampler.c").write_text((src / "sampler.c").read_text() + "\nint broken(void) { return 1 }\n")
    with pytest.raises(PortBuildError) as caught:
        build_port("watcom-tiny686", src)
    assert not isinstance(caught.value, ToolchainMissing)
    assert "sampler.c" in str(caught.value) and "Error" in str(caught.value) and "\n" not in str(caught.value)


def test_a_warning_fails_the_watcom_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """-wx -we: an unused variable (W202) is an error, as in the nightly."""
    root = _watcom_root()
    _installed_watcom(monkeypatch, root, tmp_path / "cache")
    src = _copy_sources(tmp_path)
    (src / "util.c").write_text((src / "util.c").read_text() + "\nint unused_local(void) { int x; return 1; }\n")
    with pytest.raises(PortBuildError, match="util.c"):
        build_port("watcom-win32", src)


def test_no_openwatcom_is_toolchain_missing_naming_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLAMA98_OPENWATCOM_SOURCE", raising=False)
    monkeypatch.delenv("WATCOM", raising=False)
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ToolchainMissing) as caught:
        build_port("watcom-win32")
    message = str(caught.value)
    assert "$LLAMA98_OPENWATCOM_SOURCE" in message and "$WATCOM" in message and "\n" not in message
    with pytest.raises(pytest.skip.Exception, match="LLAMA98_OPENWATCOM_SOURCE"):
        built("watcom-tiny686")


def test_a_broken_openwatcom_source_fails_instead_of_skipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_OPENWATCOM_SOURCE", str(tmp_path / "missing-src.tar.xz"))
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    with pytest.raises(PortBuildError, match="no such file") as caught:
        build_key("watcom-win32", default_src_dir())
    assert not isinstance(caught.value, ToolchainMissing)
