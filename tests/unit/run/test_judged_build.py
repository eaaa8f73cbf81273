"""A fork's own build command before a run (`run --binary run --build CMD`, each step of `bisect --build`): which
toolchain it runs with, the environment it gets, and how a failure reads.

The OpenWatcom case builds a real program with wmake and wcl386 for i386 Linux and runs it here; it needs the
toolchain (in CI the source archive is given, so it does not skip there)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.core.errors import UsageError
from harness.port.build import PortBuildError
from harness.run.judged import build_env, build_toolchain, run_build, watcom_os
from harness.toolchains.openwatcom import SOURCE_ENV, WATCOM_ENV, ToolchainMissing, find_openwatcom

HELLO_MK = """# hello.mk: a fork's OpenWatcom makefile (wmake -f hello.mk leaves ./hello)
hello: hello.c
\twcl386 -zq -bt=linux -l=linux -fe=hello hello.c
"""
HELLO_C = '#include <stdio.h>\nint main(void) { printf("hello from Open Watcom\\n"); return 0; }\n'


@pytest.mark.parametrize("command, toolchain", [
    ("wmake -f fork.mk", "openwatcom"),
    ("wmake -h -f fork.mk SRC=src", "openwatcom"),
    ("/opt/watcom/binl64/wcl386 -bt=linux run.c", "openwatcom"),
    ("owcc -o run run.c", "openwatcom"),
    ("OPT=-ox wmake -f fork.mk", "openwatcom"),
    ("make run", "gcc"),
    ("gcc -m32 -o run run.c", "gcc"),
    ("./build.sh wmake", "gcc"),
])
def test_auto_picks_openwatcom_when_the_command_starts_with_its_tool(command: str, toolchain: str) -> None:
    assert build_toolchain(command) == toolchain
    assert build_toolchain(command, "gcc") == "gcc" and build_toolchain(command, "openwatcom") == "openwatcom"


def test_bad_toolchain_or_command_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown toolchain 'clang'"):
        build_toolchain("make", "clang")
    with pytest.raises(UsageError, match="cannot parse the build command"):
        build_toolchain("make 'run")
    with pytest.raises(UsageError, match="the build command is empty"):
        run_build("  ", tmp_path)
    assert watcom_os("tiny686") == "linux" and watcom_os("win32") == "nt"


def test_without_openwatcom_a_watcom_build_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.delenv(WATCOM_ENV, raising=False)
    with pytest.raises(ToolchainMissing) as caught:
        run_build("wmake -f fork.mk", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("a build with OpenWatcom needs the toolchain: ")
    assert SOURCE_ENV in message and WATCOM_ENV in message
    assert build_env("gcc") is None  # gcc's build runs in the user's environment, which needs nothing found


def test_a_gcc_build_runs_in_your_environment_and_fails_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA98_PLANTED", "from-the-user")
    assert run_build("env > env.txt", tmp_path, toolchain="gcc") == "gcc"
    assert "LLAMA98_PLANTED=from-the-user" in (tmp_path / "env.txt").read_text().splitlines()
    with pytest.raises(PortBuildError) as caught:
        run_build("echo compiling; echo 'run.c:3: error: expected expression' >&2; exit 2", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and f"failed in {tmp_path} (exit 2, your environment)" in message
    assert message.endswith("run.c:3: error: expected expression")


def test_a_wmake_build_runs_in_openwatcoms_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    try:
        watcom = find_openwatcom()
    except ToolchainMissing as error:
        pytest.skip(str(error))
    monkeypatch.setenv("LLAMA98_PLANTED", "from-the-user")
    (tmp_path / "hello.mk").write_text(HELLO_MK)
    (tmp_path / "hello.c").write_text(HELLO_C)
    assert run_build("wmake -h -f hello.mk && env > env.txt", tmp_path) == "openwatcom"
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
    assert env["WATCOM"] == str(watcom.root) and env["INCLUDE"] == str(watcom.root / "lh")
    assert env["PATH"].startswith(str(watcom.bin_dir)) and "LLAMA98_PLANTED" not in env
    ran = subprocess.run([str(tmp_path / "hello")], capture_output=True, text=True, timeout=30, check=True)
    assert ran.stdout == "hello from Open Watcom\n"
    assert run_build("env > nt.txt", tmp_path, toolchain="openwatcom", target="nt") == "openwatcom"
    assert f"INCLUDE={watcom.root / 'h'}:{watcom.root / 'h' / 'nt'}" in (tmp_path / "nt.txt").read_text()
    with pytest.raises(PortBuildError) as caught:
        run_build("wmake -h -f missing.mk", tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "(exit 2, OpenWatcom's linux environment)" in message and "missing.mk" in message
