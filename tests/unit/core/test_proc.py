"""core.proc: external programs run with an explicit environment (tool_env), and fail as one line naming the tool."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from harness.core.errors import HarnessError
from harness.core.proc import INHERITED_ENV, ToolError, first_line, last_line, require, run, tool_env

# What a user may have exported that changes what a build or a tool produces.
PLANTED = {"LLAMA98_PLANTED": "planted", "CC": "false", "CFLAGS": "-O0", "MAKEFLAGS": "-e", "OUT": "/tmp/x",
           "QDOT": "c", "DEFINES": "-DLLAMA98_FORK_STYLE", "CPATH": "/nonexistent", "LANG": "de_DE.UTF-8",
           "WINEARCH": "win64", "MTOOLSRC": "/nonexistent"}


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)
    return PLANTED


def test_tool_env_drops_every_planted_variable(planted: dict[str, str]) -> None:
    env = tool_env()
    assert not set(planted) & set(env), "a user's variable reached a tool"
    assert set(env) <= {*INHERITED_ENV, "LC_ALL"}
    assert env["LC_ALL"] == "C"
    assert env["PATH"] == os.environ["PATH"]


def test_tool_env_keeps_home_and_tmpdir_and_adds_the_tools_own(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    env = tool_env(WINEPREFIX="/p", LC_ALL="C.UTF-8")
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path)
    assert env["WINEPREFIX"] == "/p" and env["LC_ALL"] == "C.UTF-8", "the tool's own settings win"
    monkeypatch.delenv("TMPDIR")
    monkeypatch.delenv("PATH")
    env = tool_env()
    assert "TMPDIR" not in env and env["PATH"] == os.defpath


def test_a_child_started_with_tool_env_does_not_see_a_planted_variable(planted: dict[str, str]) -> None:
    shown = run([sys.executable, "-c", "import os, json; print(json.dumps(sorted(os.environ)))"], env=tool_env())
    names = set(json.loads(shown.stdout))
    assert not set(planted) & names
    assert "PATH" in names


def test_first_line_runs_with_the_clean_environment(planted: dict[str, str]) -> None:
    """Version strings go into cache keys and records: the user's environment must not change them."""
    assert first_line(["sh", "-c", "echo ${LLAMA98_PLANTED:-clean} ${LC_ALL}"]) == "clean C"
    assert first_line(["no-such-tool-llama98"]) is None
    assert first_line(["sh", "-c", "echo partial; exit 3"]) is None


def test_run_failures_are_one_line_errors_of_the_callers_type() -> None:
    class Mine(HarnessError):
        pass

    with pytest.raises(Mine, match=r"^step failed \(exit code 2\): the reason$") as failed:
        run(["sh", "-c", "echo noise >&2; echo the reason >&2; exit 2"], what="step", error=Mine)
    assert "\n" not in str(failed.value)
    with pytest.raises(ToolError, match="no-such-tool-llama98 not found on PATH"):
        run(["no-such-tool-llama98"])
    with pytest.raises(ToolError, match="did not finish within 0.2 s"):
        run(["sleep", "5"], timeout=0.2)
    assert run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_require_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match=r"^gcc not found on PATH: apt-get install gcc$"):
        require("gcc", "apt-get install gcc")


def test_last_line() -> None:
    assert last_line("a\n\n  b  \n\n") == "b"
    assert last_line(b"x\ny\n") == "y"
    assert last_line("  \n", default="none") == "none"
