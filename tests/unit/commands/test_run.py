"""`llama98-harness run`: help and one-line refusals of bad input before any guest starts. (A run needs a guest: the
e2e suite runs it with --vm.)"""

from __future__ import annotations

from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli


def test_help_lists_the_options(capsys):
    assert_help("run", capsys, "llama98", "llama2c", "passive", "active")


def test_a_missing_model_path_is_refused(tmp_path, capsys):
    result = run_cli(["run", "--model", str(tmp_path / "model.bin")], capsys)
    assert_one_line_error(result, "model.bin", "is neither a file nor a known name")


def test_an_unknown_model_name_is_refused(capsys):
    result = run_cli(["run", "--model", "stories7B"], capsys)
    assert_one_line_error(result, "'stories7B'", "stories260K")


def test_a_directory_as_model_is_refused(tmp_path, capsys):
    result = run_cli(["run", "--model", str(tmp_path)], capsys)
    assert_one_line_error(result, str(tmp_path), "is a directory")


def test_a_directory_as_binary_is_refused(tmp_path, capsys):
    result = run_cli(["run", "--binary", str(tmp_path)], capsys)
    assert_one_line_error(result, "cannot read the binary", code=2)


def test_a_missing_binary_is_refused(tmp_path, capsys):
    result = run_cli(["run", "--binary", str(tmp_path / "run.exe")], capsys)
    assert_one_line_error(result, "cannot read the binary", "run.exe", code=2)


def test_json_into_a_missing_directory_is_refused(tmp_path, capsys):
    result = run_cli(["run", "--json", str(tmp_path / "no" / "out.json")], capsys)
    assert_one_line_error(result, "--json: directory", "does not exist", code=2)
