"""The port's source lists agree and its makefiles build what the command line says, whatever the environment.

gcc.mk and mingw.mk take the sources from one list, sources.mk; watcom.mk (wmake cannot include a GNU make file)
repeats it. A source missing from either list, a listed file that does not exist, or a watcom.mk object without
its compile rule fails here. And since every makefile default is a plain assignment, variables exported in the
user's environment (OUT, QDOT, DEFINES, CFLAGS, ...) change nothing: only command-line assignments do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORT = ROOT / "ports" / "llama98"
AGENT = ROOT / "ports" / "agent98"

# Sources that are no part of llama98's list: the BPE test driver (its own list), and the alternatives one build
# does not take: the portable dot products (QDOT=c) and the compiler-specific twins of the MMX kernels.
TEST_DRIVERS = {"bpetool"}
ALTERNATIVES = {"qdot", "qdot_mmx_gcc", "qdot_mmx_wat"}
# watcom.mk always builds the MMX kernels, with its own twin of GCC's inline assembly.
WATCOM_TWIN = {"qdot_mmx_gcc": "qdot_mmx_wat"}

# What a user's shell might export; none of it may reach the build.
EXPORTED = {"QDOT": "c", "DEFINES": "-DX", "CFLAGS": "-O0", "TARGET": "native-asan", "LDFLAGS": "-Wl,--bogus",
            "SRC": "/nonexistent", "SHARED": "/nonexistent", "FASTFP": "-ffast-math"}


def _clean_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def _make() -> str:
    make = shutil.which("make", path=_clean_env()["PATH"])
    if make is None:
        pytest.skip("make not installed (apt-get install make)")
    return make


def _make_output(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([_make(), "--no-print-directory", *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _sources_mk(variable: str, qdot: str, cwd: Path) -> list[str]:
    """A variable of sources.mk as GNU make evaluates it with QDOT=`qdot`."""
    out = _make_output(["-s", "-f", str(PORT / "sources.mk"), f"QDOT={qdot}",
                        "--eval", f"print-list: ; @echo $({variable})", "print-list"], cwd, _clean_env())
    return out.split()


def _watcom() -> str:
    return (PORT / "watcom.mk").read_text().replace("\\\n", " ")


def _watcom_objects() -> list[str]:
    found = re.search(r"^OBJS\s*=(.*)$", _watcom(), re.M)
    assert found is not None, "watcom.mk lost its OBJS line"
    names = found.group(1).split()
    assert all(name.endswith(".obj") for name in names), names
    return [name[:-len(".obj")] for name in names]


def _watcom_bpetool_objects() -> list[str]:
    found = re.search(r"^bpetool\.exe\s*:(.*)$", _watcom(), re.M)
    assert found is not None, "watcom.mk lost its bpetool.exe rule"
    return [name[:-len(".obj")] for name in found.group(1).split()]


def _watcom_rules() -> dict[str, tuple[str, str]]:
    """object name -> (the source it compiles, its command)."""
    rules = re.findall(r"^(\w+)\.obj\s*:\s*\$\(SRC\)/(\w+\.c)\s*\n\t(.*)$", _watcom(), re.M)
    return {obj: (source, command) for obj, source, command in rules}


def _needs_watcom_extensions(source: Path) -> bool:
    """<windows.h>/<io.h> and _asm blocks need the Watcom extensions, so such a file is built without -za."""
    text = source.read_text()
    return bool(re.search(r"#include <(windows|io)\.h>", text)) or re.search(r"^\s*_asm\b", text, re.M) is not None


def test_watcom_builds_the_objects_sources_mk_lists(tmp_path: Path) -> None:
    gnu = {WATCOM_TWIN.get(name, name) for name in _sources_mk("NAMES", "mmx", tmp_path)}
    assert set(_watcom_objects()) == gnu
    assert set(_watcom_bpetool_objects()) == set(_sources_mk("BPE_NAMES", "mmx", tmp_path))


def test_every_listed_source_exists_and_every_source_is_listed(tmp_path: Path) -> None:
    mmx = _sources_mk("NAMES", "mmx", tmp_path)
    portable = _sources_mk("NAMES", "c", tmp_path)
    bpetool = _sources_mk("BPE_NAMES", "mmx", tmp_path)
    watcom = _watcom_objects() + _watcom_bpetool_objects()
    for name in [*mmx, *portable, *bpetool, *watcom]:
        assert (PORT / f"{name}.c").is_file(), f"{name}.c is listed but does not exist"
    assert len(mmx) == len(set(mmx)) and len(_watcom_objects()) == len(set(_watcom_objects())), "listed twice"
    # QDOT picks only the dot products
    assert set(mmx) - {"qdot_mmx", "qdot_mmx_gcc"} == set(portable) - {"qdot"}
    sources = {path.stem for path in PORT.glob("*.c")}
    assert sources - TEST_DRIVERS - ALTERNATIVES <= set(mmx), "sources.mk does not build these"
    assert sources - TEST_DRIVERS - ALTERNATIVES <= set(_watcom_objects()), "watcom.mk does not build these"
    assert TEST_DRIVERS <= set(bpetool)
    assert sources == set(mmx) | set(portable) | set(bpetool) | set(watcom), "sources no build compiles"


def test_every_watcom_object_has_its_rule_with_za_unless_it_needs_extensions() -> None:
    rules = _watcom_rules()
    for name in set(_watcom_objects()) | set(_watcom_bpetool_objects()):
        assert name in rules, f"watcom.mk has no rule for {name}.obj"
        source, command = rules[name]
        assert source == f"{name}.c", f"{name}.obj is compiled from {source}"
        strict = "$(STRICT)" in command.split()
        assert strict != _needs_watcom_extensions(PORT / source), (
            f"{name}.obj: -za (STRICT) goes with every ANSI C89 file, and only with them")


def test_agent98_makefiles_build_the_same_objects_from_existing_sources() -> None:
    """agent98 has one GNU makefile, so no shared list: its two OBJS lines must agree (u64 and crc32 come from
    the llama98 port)."""
    lists = {}
    for name, suffix in (("mingw.mk", ".o"), ("watcom.mk", ".obj")):
        found = re.search(r"^OBJS\s*=(.*)$", (AGENT / name).read_text(), re.M)
        assert found is not None, f"agent98's {name} lost its OBJS line"
        assert all(word.endswith(suffix) for word in found.group(1).split())
        lists[name] = {word[:-len(suffix)] for word in found.group(1).split()}
    assert lists["mingw.mk"] == lists["watcom.mk"]
    sources = {path.stem for path in AGENT.glob("*.c")}
    assert sources <= lists["mingw.mk"], "agent98 sources no makefile builds"
    for stem in lists["mingw.mk"]:
        assert (AGENT / f"{stem}.c").is_file() or (PORT / f"{stem}.c").is_file(), f"{stem}.c does not exist"


def _dry_run(makefile: Path, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The commands a build would run in the empty directory `cwd`, without running them."""
    return _make_output(["-n", "-f", str(makefile), *args], cwd, env)


@pytest.mark.parametrize("makefile, args", [
    (PORT / "gcc.mk", []),
    (PORT / "gcc.mk", ["TARGET=tiny686"]),
    (PORT / "gcc.mk", ["bpetool"]),
    (PORT / "mingw.mk", []),
    (AGENT / "mingw.mk", []),
], ids=["gcc-native", "gcc-tiny686", "gcc-bpetool", "mingw", "agent98-mingw"])
def test_exported_variables_do_not_change_what_make_builds(makefile: Path, args: list[str],
                                                            tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean", tmp_path / "dirty"
    clean.mkdir()
    dirty.mkdir()
    expected = _dry_run(makefile, args, clean, _clean_env())
    env = {**_clean_env(), **EXPORTED, "OUT": str(tmp_path / "x")}
    assert _dry_run(makefile, args, dirty, env) == expected
    for word in ("-DX", "-O0", str(tmp_path / "x"), "/nonexistent", "-ffast-math", "--bogus", "asan"):
        assert word not in expected


def test_command_line_assignments_still_choose(tmp_path: Path) -> None:
    env = _clean_env()
    gcc = PORT / "gcc.mk"
    tiny = _dry_run(gcc, ["TARGET=tiny686"], tmp_path, env)
    assert "qdot_mmx.c" in tiny and "qdot.c" not in tiny and "-fexcess-precision=fast" in tiny  # tiny686: MMX
    portable = _dry_run(gcc, ["TARGET=tiny686", "QDOT=c"], tmp_path, env)
    assert "qdot.c" in portable and "qdot_mmx" not in portable
    native = _dry_run(gcc, [], tmp_path, env)
    assert "qdot.c" in native and "qdot_mmx" not in native and "-fexcess-precision" not in native
    out = tmp_path / "elsewhere" / "prog"
    named = _dry_run(gcc, [f"OUT={out}", "DEFINES=-DLLAMA98_FORK_STYLE"], tmp_path, env)
    assert f"-o {out} " in named and "-DLLAMA98_FORK_STYLE" in named
    windows = _dry_run(PORT / "mingw.mk", ["QDOT=c"], tmp_path, env)
    assert "qdot.c" in windows and "qdot_mmx" not in windows


def test_fast_excess_precision_applies_to_the_forward_pass_only(tmp_path: Path) -> None:
    for makefile, args in ((PORT / "gcc.mk", ["TARGET=tiny686"]), (PORT / "mingw.mk", [])):
        commands = _dry_run(makefile, args, tmp_path, _clean_env()).splitlines()
        fast = [line.split()[-1] for line in commands if "-fexcess-precision=fast" in line]
        assert [Path(source).name for source in fast] == ["forward.c"], makefile.name


def test_native_build_ignores_the_environment(tmp_path: Path) -> None:
    """A real build with OUT, QDOT, DEFINES and CFLAGS exported: the default binary, the default flags."""
    if shutil.which("gcc", path=_clean_env()["PATH"]) is None:
        pytest.skip("gcc not installed")
    build = tmp_path / "build"
    build.mkdir()
    elsewhere = tmp_path / "x"
    env = {**_clean_env(), "OUT": str(elsewhere), "QDOT": "c", "DEFINES": "-DX", "CFLAGS": "-O0"}
    flags = _make_output(["-s", "-f", str(PORT / "gcc.mk"), "print-cflags"], build, _clean_env())
    assert "-O2" in flags and "-O0" not in flags and "-DX" not in flags
    assert _make_output(["-s", "-f", str(PORT / "gcc.mk"), "print-cflags"], build, env) == flags
    _make_output(["-s", "-f", str(PORT / "gcc.mk")], build, env)
    assert (build / "llama98").is_file() and os.access(build / "llama98", os.X_OK)
    assert not elsewhere.exists()
