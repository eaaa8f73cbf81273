"""The text-level judge on real output of a real build: our native port run without `-r`, wrapped in the kind of
chatter llama2.c forks print, then doctored to show a divergence is found at the right byte and token."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.judge.text_check import judge_text, locate_text, program_tok_s
from harness.oracle.generate import Oracle, clamp_args
from tests.support.port_helpers import fixture, run_port

CHATTER_BEFORE = b"llama2.c for Windows 98 (Borland C++ 5.02 build)\nConfig: dim=64 n_layers=5 vocab=512\n"
CHATTER_AFTER = b"Freeing 1056512 bytes\nDone.\n"


def _oracle() -> Oracle:
    return Oracle.load(fixture("stories260K.bin"), fixture("tok512.bin"))


def _program_output(native_bin: Path, *flags: str) -> tuple[bytes, bytes]:
    """stdout and stderr of a plain llama2.c-style run (no report)."""
    result = run_port(native_bin, [str(fixture("stories260K.bin")), "-z", str(fixture("tok512.bin")), *flags])
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_greedy_text_is_found_among_chatter_and_judged_ok(native_bin: Path) -> None:
    stdout, stderr = _program_output(native_bin, "-t", "0", "-n", "120")
    output = CHATTER_BEFORE + stdout + stderr + CHATTER_AFTER
    oracle = _oracle()
    verdict = judge_text(oracle, clamp_args(512, 0.0, 0.9, 42, 120), output)
    assert verdict.ok, verdict.message
    assert verdict.text == stdout and verdict.level == "text-level"
    assert program_tok_s(output) == pytest.approx(float(stderr.split(b":")[1]))


def test_seeded_sample_with_a_prompt_echoed_in_chatter_is_judged_ok(native_bin: Path) -> None:
    prompt = "Once upon a time, a little dog"
    stdout, stderr = _program_output(native_bin, "-t", "0.9", "-p", "0.8", "-s", "77", "-n", "150", "-i", prompt)
    # A fork that echoes the prompt before the text: the judge must pick the real text, not the echo line.
    output = b"Prompt: " + prompt.encode() + b"\nResponse: " + stdout + stderr
    verdict = judge_text(_oracle(), clamp_args(512, 0.9, 0.8, 77, 150, prompt.encode()), output)
    assert verdict.ok, verdict.message
    assert verdict.text == stdout and verdict.text.startswith(prompt.encode())
    assert locate_text(output, stdout) == output.index(b"Response: ") + len(b"Response: ")


def test_a_changed_byte_is_reported_with_byte_token_texts_and_candidates(native_bin: Path) -> None:
    stdout, _ = _program_output(native_bin, "-t", "0", "-n", "100")
    at = stdout.index(b" ", 120) + 1  # the first letter of a word well inside the story
    doctored = stdout[:at] + (b"Z" if stdout[at:at + 1] != b"Z" else b"Q") + stdout[at + 1:]
    verdict = judge_text(_oracle(), clamp_args(512, 0.0, 0.9, 42, 100), CHATTER_BEFORE + doctored)
    assert not verdict.ok
    assert verdict.divergence_byte == at, verdict.message
    assert verdict.divergence_token is not None and 10 < verdict.divergence_token < 100
    assert f"at byte {at}" in verdict.message and "top candidates" in verdict.message
    assert len(verdict.candidates) == 5 and verdict.candidates[0].probability >= verdict.candidates[1].probability
    assert verdict.text == stdout[:at]


def test_a_text_that_stops_early_or_is_absent_fails_in_one_line(native_bin: Path) -> None:
    stdout, _ = _program_output(native_bin, "-t", "0", "-n", "100")
    oracle = _oracle()
    short = judge_text(oracle, clamp_args(512, 0.0, 0.9, 42, 100), stdout[:60])
    assert not short.ok and short.divergence_byte == 60 and "\n" not in short.message
    absent = judge_text(oracle, clamp_args(512, 0.0, 0.9, 42, 100), b"Segmentation fault\n")
    assert not absent.ok and "contains none of the expected text" in absent.message


def test_program_tok_s_reads_the_last_achieved_line() -> None:
    assert program_tok_s(b"text\nachieved tok/s: 39.125000\n") == pytest.approx(39.125)
    assert program_tok_s(b"achieved tok/s: 1.5e+01\nachieved tok/s: 2\n") == 2.0
    assert program_tok_s(b"no figure here\n") is None
