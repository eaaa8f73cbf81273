"""Shared pieces of the llama98 port tests: fixture lookup, built binaries, running the port, reading its report.

The report parsing here is deliberately minimal (the real parser is harness/formats/report.py); the tests use it to
check what the port writes, so it must not share code with the parser it will later be compared against.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.core.paths import cache_dir, project_root
from harness.core.proc import tool_env
from harness.port.build import build_port
from harness.toolchains import ToolchainMissing

RUN_TIMEOUT_S = 120
GREEDY_STORY_START = (
    b"Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
)


def fixture_dir() -> Path:
    """$LLAMA98_FIXTURE_DIR, else the shared/fixtures directory beside the checkout."""
    env = os.environ.get("LLAMA98_FIXTURE_DIR")
    return Path(env) if env else project_root().parent / "shared" / "fixtures"


def fixture(name: str) -> Path:
    """A model fixture; skips (with the reason) when it is not on this machine."""
    path = fixture_dir() / name
    if not path.is_file():
        pytest.skip(f"fixture {name} not found in {fixture_dir()} (set LLAMA98_FIXTURE_DIR)")
    return path


def built(target: str, src: Path | None = None, program: str = "llama98", defines: tuple[str, ...] = ()) -> Path:
    """The cached build of `program` for a target (harness.port.build.build_port's arguments): the one "build it
    or skip" of the tests. Only a missing toolchain (harness.toolchains.ToolchainMissing, which port.build's
    subclasses: make, the compiler or OpenWatcom not installed) skips, with the package to install; any other
    failure (a deleted makefile, a compile error) fails the test, as it is a defect, not a machine without a
    compiler."""
    try:
        return build_port(target, src, program=program, defines=defines)
    except ToolchainMissing as error:
        pytest.skip(str(error))


def run_port(binary: Path, args: list[str], timeout: float = RUN_TIMEOUT_S,
             env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a native build of the port and capture stdout/stderr as bytes (text comparisons are byte-exact)."""
    return subprocess.run(
        [str(binary), *args], capture_output=True, timeout=timeout, env=env, cwd=cwd, check=False
    )


def stories_args(*extra: str) -> list[str]:
    """Arguments for stories260K with its tokenizer, plus `extra`."""
    return [str(fixture("stories260K.bin")), "-z", str(fixture("tok512.bin")), *extra]


@dataclass
class PortReport:
    """The records of a `-r` report, as plain dicts of strings."""

    header: str
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: list[dict[str, str]] = field(default_factory=list)
    done: dict[str, str] | None = None


def parse_report(text: str) -> PortReport:
    """Split `KIND key=value ...` lines; token lines are kept in order."""
    lines = text.split("\n")
    assert lines[-1] == "", "report must end with a newline"
    report = PortReport(header=lines[0])
    for line in lines[1:-1]:
        kind, *pairs = line.split(" ")
        values = dict(pair.split("=", 1) for pair in pairs)
        if kind == "token":
            report.tokens.append(values)
        elif kind == "done":
            report.done = values
        else:
            report.records[kind] = values
    return report


def wine_env() -> dict[str, str]:
    """The environment the tests run Win32 programs in under Wine: headless, quiet, the tests' own prefix, and
    nothing else of the user's environment (tool_env), whose WINEARCH, WINEDLLOVERRIDES or LANG would change
    what the program does."""
    return tool_env(WINEDEBUG="-all", DISPLAY="", WINEPREFIX=str(cache_dir("wine", "prefix")),
                    WINEDLLOVERRIDES="mscoree,mshtml=")


def wine_command() -> list[str] | None:
    """The wine launcher, or None when Wine is not installed."""
    wine = shutil.which("wine")
    return [wine] if wine else None


WINE_MISSING = (
    "wine is not installed; install it with `dpkg --add-architecture i386 && apt-get update && "
    "apt-get install wine wine32:i386`"
)


@pytest.fixture(scope="session")
def native_bin() -> Path:
    return built("native")


@pytest.fixture(scope="session")
def tiny686_bin() -> Path:
    return built("tiny686")


@pytest.fixture(scope="session")
def asan_bin() -> Path:
    return built("native-asan")


def win32_program(program: str) -> Path:
    """A Win32 program under test (llama98 or agent98): $LLAMA98_WINE_<PROGRAM>_EXE (the nightly OpenWatcom
    build) when set, else the MinGW build; a missing MinGW skips with the package to install."""
    prebuilt = os.environ.get(f"LLAMA98_WINE_{program.upper()}_EXE")
    if prebuilt:
        path = Path(prebuilt)
        assert path.is_file(), f"LLAMA98_WINE_{program.upper()}_EXE={prebuilt} does not exist"
        return path
    return built("win32", program=program)


@pytest.fixture(scope="session")
def win32_exe() -> Path:
    return win32_program("llama98")


@pytest.fixture(scope="session")
def agent_exe() -> Path:
    return win32_program("agent98")
