"""`llama98-harness oracle`: help, llama2.c's known story at T=0, a report written with -r verified with --verify,
and one-line refusals of missing or unreadable checkpoints, tokenizers and reports."""

from __future__ import annotations

from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli
from tests.support.port_helpers import GREEDY_STORY_START, fixture


def model_args(*extra: str) -> list[str]:
    return ["oracle", str(fixture("stories260K.bin")), "-z", str(fixture("tok512.bin")), *extra]


def test_help_lists_the_options(capsys):
    assert_help("oracle", capsys, "checkpoint")


def test_greedy_generation_prints_the_known_story_start(capsys):
    result = run_cli(model_args("-t", "0", "-n", "20"), capsys)
    assert result.code == 0, result.err
    assert result.out.startswith("Once upon a time")
    assert GREEDY_STORY_START.decode().startswith(result.out.rstrip("\n"))
    assert result.out.endswith("\n") and result.err == ""


def test_a_report_it_writes_verifies(tmp_path, capsys):
    report = tmp_path / "report.txt"
    generated = run_cli(model_args("-t", "0.9", "-s", "5", "-n", "40", "-i", "Tom", "-r", str(report)), capsys)
    assert generated.code == 0, generated.err
    assert report.read_text().startswith("llama98 report ")
    verified = run_cli(model_args("--verify", str(report)), capsys)
    assert verified.code == 0, verified.out
    assert verified.out.startswith("ok: 40 tokens match the oracle") and verified.out.count("\n") == 1


def test_a_report_on_stdout(capsys):
    result = run_cli(model_args("-t", "0", "-n", "5", "-r", "-"), capsys)
    assert result.code == 0
    text, _, report = result.out.partition("llama98 report ")
    assert text.startswith("Once upon a time") and "\ndone tokens=5 " in report


def test_a_missing_checkpoint_is_refused(tmp_path, capsys):
    result = run_cli(["oracle", str(tmp_path / "nope.bin"), "-z", str(fixture("tok512.bin"))], capsys)
    assert_one_line_error(result, "nope.bin", "not found")


def test_a_directory_as_checkpoint_is_refused(tmp_path, capsys):
    result = run_cli(["oracle", str(tmp_path), "-z", str(fixture("tok512.bin"))], capsys)
    assert_one_line_error(result, "checkpoint path is a directory")


def test_a_directory_as_tokenizer_is_refused(tmp_path, capsys):
    result = run_cli(["oracle", str(fixture("stories260K.bin")), "-z", str(tmp_path)], capsys)
    assert_one_line_error(result, "tokenizer path is a directory")


def test_a_truncated_checkpoint_is_refused(tmp_path, capsys):
    short = tmp_path / "short.bin"
    short.write_bytes(fixture("stories260K.bin").read_bytes()[:5000])
    result = run_cli(["oracle", str(short), "-z", str(fixture("tok512.bin"))], capsys)
    assert_one_line_error(result, "short.bin", "shorter than")


def test_an_unsupported_mode_is_refused(capsys):
    result = run_cli(model_args("-m", "chat"), capsys)
    assert_one_line_error(result, "only -m generate", code=2)


def test_verify_of_a_missing_or_directory_report_is_refused(tmp_path, capsys):
    missing = run_cli(model_args("--verify", str(tmp_path / "none.txt")), capsys)
    assert_one_line_error(missing, "none.txt", "cannot read report")
    directory = run_cli(model_args("--verify", str(tmp_path)), capsys)
    assert_one_line_error(directory, "cannot read report")


def test_verify_of_a_file_that_is_no_report_is_refused(tmp_path, capsys):
    bogus = tmp_path / "bogus.txt"
    bogus.write_text("Once upon a time\n")
    result = run_cli(model_args("--verify", str(bogus)), capsys)
    assert_one_line_error(result, "bogus.txt")


def test_a_report_path_that_is_a_directory_is_one_line(tmp_path, capsys):
    result = run_cli(model_args("-t", "0", "-n", "5", "-r", str(tmp_path)), capsys)
    assert_one_line_error(result, str(tmp_path))
