"""`llama98-harness bench`: help and one-line refusals of bad input, before anything is built or booted. (Its
measuring paths need a guest or callgrind and run in tests/unit/perf/test_bench.py and the e2e suite.)"""

from __future__ import annotations

from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli


def test_help_lists_the_options(capsys):
    assert_help("bench", capsys, "icount", "wall", "host")


def test_repeat_below_one_is_refused(capsys):
    result = run_cli(["bench", "--mode", "host", "--repeat", "0"], capsys)
    assert_one_line_error(result, "--repeat must be at least 1, got 0", code=2)


def test_an_unknown_model_is_refused(capsys):
    result = run_cli(["bench", "--mode", "host", "--models", "260K,nope"], capsys)
    assert_one_line_error(result, "unknown model 'nope'", code=2)


def test_an_unsupported_quantization_suffix_is_refused(capsys):
    result = run_cli(["bench", "--mode", "host", "--models", "260K:q4_k"], capsys)
    assert_one_line_error(result, "q4_k")


def test_a_missing_binary_is_refused(tmp_path, capsys):
    result = run_cli(["bench", "--mode", "host", "--binary", str(tmp_path / "nope.exe")], capsys)
    assert_one_line_error(result, "--binary", "nope.exe", "does not exist", code=2)


def test_a_directory_as_binary_is_refused(tmp_path, capsys):
    result = run_cli(["bench", "--mode", "host", "--binary", str(tmp_path)], capsys)
    assert_one_line_error(result, f"--binary {tmp_path} is a directory, not a binary", code=2)
    assert "does not exist" not in result.err
