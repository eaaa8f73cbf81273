"""`llama98-harness run --build CMD` and `--toolchain`: help, and one-line refusals before any guest boots (the
build that works, in the guest, is tests/e2e/test_foreign_watcom.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.toolchains.openwatcom import SOURCE_ENV, WATCOM_ENV
from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli


def test_help_names_build_and_toolchain(capsys: pytest.CaptureFixture[str]) -> None:
    assert_help("run", capsys, "--build", "--toolchain", "wmake")


def test_build_needs_binary(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["run", "--build", "wmake -f fork.mk"], capsys)
    assert_one_line_error(result, "--build needs --binary: the path of the binary the build command leaves", code=2)


def test_a_failing_build_and_a_missing_binary_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the build runs where the user is
    result = run_cli(["run", "--binary", "run", "--build", "echo 'fork.c:1: error: oops' >&2; exit 3"], capsys)
    assert_one_line_error(result, f"failed in {tmp_path} (exit 3, your environment): fork.c:1: error: oops")
    result = run_cli(["run", "--binary", "run", "--build", "true"], capsys)
    assert_one_line_error(result, "the build command 'true' left no binary at run")


def test_a_wmake_build_without_openwatcom_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.delenv(WATCOM_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    result = run_cli(["run", "--binary", "run", "--build", "wmake -f fork.mk"], capsys)
    assert_one_line_error(result, "a build with OpenWatcom needs the toolchain: no OpenWatcom toolchain")


def test_toolchain_openwatcom_with_a_prebuilt_binary_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(["run", "--binary", sys.executable, "--toolchain", "openwatcom"], capsys)
    assert_one_line_error(result, "--toolchain openwatcom with --binary applies to --build", code=2)
