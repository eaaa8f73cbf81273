"""check_run's verdict on real runs of the native port build: ok for what the port really printed and reported, and
a not-ok verdict naming the problem for each way a run can be wrong (a token id that is not the port's, text
that is not the decoding of the ids, an incomplete report)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.formats.report import parse_report
from harness.judge.token_check import check_run, first_difference
from harness.judge.verify import load_oracle
from harness.models.names import ModelChoice
from tests.support.port_helpers import GREEDY_STORY_START, built, fixture, run_port, stories_args


@dataclass(frozen=True)
class PortRun:
    choice: ModelChoice
    text: bytes
    report_text: str


def port_run(directory: Path, *extra: str) -> PortRun:
    report = directory / "report.txt"
    result = run_port(built("native"), stories_args(*extra, "-r", str(report)))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    choice = ModelChoice(fixture("stories260K.bin"), fixture("tok512.bin"), "stories260K (test)")
    return PortRun(choice, result.stdout, report.read_text())


@pytest.fixture(scope="module")
def greedy(tmp_path_factory: pytest.TempPathFactory) -> PortRun:
    return port_run(tmp_path_factory.mktemp("greedy"), "-t", "0", "-n", "60")


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> PortRun:
    return port_run(tmp_path_factory.mktemp("sampled"), "-t", "1.0", "-p", "0.9", "-s", "42", "-n", "80",
                    "-i", "Once upon a time")


def check(run: PortRun, text: bytes | None = None, report_text: str | None = None):
    return check_run(run.choice, run.text if text is None else text,
                     parse_report(run.report_text if report_text is None else report_text))


def token_line_id(report_text: str, pos: int) -> int:
    match = re.search(rf"^token pos={pos} id=(\d+)", report_text, flags=re.M)
    assert match is not None
    return int(match.group(1))


def with_token(report_text: str, pos: int, new_id: int) -> str:
    changed = re.sub(rf"^token pos={pos} id=\d+", f"token pos={pos} id={new_id}", report_text, flags=re.M)
    assert changed != report_text
    return changed


def test_a_real_greedy_run_is_ok(greedy):
    assert greedy.text.startswith(GREEDY_STORY_START)
    result = check(greedy)
    assert result.ok, str(result)
    assert result.transport_ok and result.text_matches_oracle
    assert result.oracle_text == greedy.text
    assert str(result).startswith("ok: ") and "\n" not in str(result)
    assert result.verdict.checked == 60


def test_a_real_sampled_run_with_a_prompt_is_ok(sampled):
    assert sampled.text.startswith(b"Once upon a time")
    result = check(sampled)
    assert result.ok, str(result)
    assert "T=1 seed=42" in result.message


def test_one_altered_token_id_fails_transport_and_names_the_byte(greedy):
    """The report says a different id than the text shows: the text is no longer the decoding of the ids."""
    pos = 30
    changed = with_token(greedy.report_text, pos, 5 if token_line_id(greedy.report_text, pos) != 5 else 6)
    result = check(greedy, report_text=changed)
    assert not result.ok and not result.transport_ok
    assert str(result).startswith("FAIL: ")
    assert "differs from the port's reported tokens at byte" in result.message


def test_one_altered_token_id_with_matching_text_fails_verify_at_its_position(greedy):
    """A port that printed and reported the same wrong token: transport is fine, the model check names it."""
    pos = 30
    original = token_line_id(greedy.report_text, pos)
    new_id = 5 if original != 5 else 6
    changed = with_token(greedy.report_text, pos, new_id)
    oracle = load_oracle(greedy.choice.checkpoint, greedy.choice.tokenizer)
    ids = parse_report(changed).token_ids
    text = oracle.tokenizer.decode_sequence(ids, first_prev=1) + b"\n"
    result = check(greedy, text=text, report_text=changed)
    assert not result.ok and result.transport_ok
    assert result.verdict.position == pos
    assert result.verdict.actual_id == new_id and result.verdict.expected_id == original
    assert f"position {pos}: the port chose {new_id}" in result.message


def test_text_that_is_not_the_decoding_of_the_ids_is_named_with_its_byte(greedy):
    damaged = bytearray(greedy.text)
    at = 45
    damaged[at] = ord("#")
    result = check(greedy, text=bytes(damaged))
    assert not result.ok and not result.transport_ok
    assert f"at byte {at}" in result.message and "#" in result.message


def test_text_cut_short_is_not_ok(sampled):
    result = check(sampled, text=sampled.text[:-10])
    assert not result.ok and not result.transport_ok
    assert f"at byte {len(sampled.text) - 10}" in result.message


def test_a_missing_done_line_is_an_incomplete_run(greedy):
    without_done = "".join(line for line in greedy.report_text.splitlines(keepends=True)
                           if not line.startswith("done "))
    assert without_done != greedy.report_text
    result = check(greedy, report_text=without_done)
    assert not result.ok
    assert "no done line" in result.message and "incomplete" in result.message


def test_a_report_of_another_seed_is_not_ok(sampled):
    """The args record says which coins the oracle replays: a different seed cannot verify the same tokens."""
    changed = re.sub(r"^args (.*) seed=42 ", r"args \1 seed=43 ", sampled.report_text, flags=re.M)
    assert changed != sampled.report_text
    result = check(sampled, report_text=changed)
    assert not result.ok and "position" in result.message


def test_first_difference():
    assert first_difference(b"abc", b"abc") is None
    assert first_difference(b"abc", b"abd") == 2
    assert first_difference(b"abc", b"ab") == 2
    assert first_difference(b"", b"x") == 0
