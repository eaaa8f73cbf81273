"""`llama98-harness build`: help, a real build of the native target (its path printed), a copy with -o, and
one-line refusals of a wrong source directory or program/target pair."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli
from tests.support.port_helpers import run_port, stories_args


def test_help_lists_the_options(capsys):
    assert_help("build", capsys, "native", "tiny686", "win32", "agent98")


def test_native_build_prints_an_existing_runnable_binary(capsys):
    result = run_cli(["build", "--target", "native"], capsys)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 1
    binary = Path(lines[0])
    assert binary.is_absolute() and binary.is_file() and os.access(binary, os.X_OK)
    run = run_port(binary, stories_args("-t", "0", "-n", "8"))
    assert run.returncode == 0 and run.stdout.startswith(b"Once upon a time")
    again = run_cli(["build", "--target", "native"], capsys)
    assert again.out == result.out  # cached by source hash: the same path


def test_output_copies_the_binary_there(tmp_path, capsys):
    out = tmp_path / "bin" / "llama98"
    result = run_cli(["build", "--target", "native", "-o", str(out)], capsys)
    assert result.code == 0, result.err
    assert result.out == f"{out}\n"
    cached = Path(run_cli(["build", "--target", "native"], capsys).out.strip())
    assert out.read_bytes() == cached.read_bytes() and os.access(out, os.X_OK)


def test_a_missing_source_directory_is_refused(tmp_path, capsys):
    result = run_cli(["build", "--src", str(tmp_path / "nowhere")], capsys)
    assert_one_line_error(result, "port source directory", "nowhere", "does not exist")


def test_a_source_directory_without_the_port_is_refused(tmp_path, capsys):
    (tmp_path / "hello.c").write_text("int main(void) { return 0; }\n")
    result = run_cli(["build", "--src", str(tmp_path)], capsys)
    assert_one_line_error(result, str(tmp_path), "gcc.mk")


def test_a_file_as_source_directory_is_refused(tmp_path, capsys):
    afile = tmp_path / "gcc.mk"
    afile.write_text("all:\n")
    result = run_cli(["build", "--src", str(afile)], capsys)
    assert_one_line_error(result, "does not exist")


def test_agent98_for_a_non_windows_target_is_refused(capsys):
    result = run_cli(["build", "--target", "native", "--program", "agent98"], capsys)
    assert_one_line_error(result, "agent98 is built only for target win32")


def test_a_directory_as_output_is_refused_before_building(tmp_path, capsys):
    """The copy would land in DIR/llama98 while DIR was printed: refused, nothing copied."""
    result = run_cli(["build", "--target", "native", "-o", str(tmp_path)], capsys)
    assert_one_line_error(result, str(tmp_path), "is a directory", code=2)
    assert list(tmp_path.iterdir()) == []


def test_an_output_below_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_cli(["build", "--target", "native", "-o", str(afile / "llama98")], capsys)
    assert_one_line_error(result, str(afile), "is a file", code=2)
