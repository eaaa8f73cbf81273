"""How a bisection reads on a terminal (harness.perf.bisect.output): values with units, the progress line with its
bar and step bound, and the result line of each measurement; pure functions of the state and the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.perf.bisect.output import UNITS, format_value, progress_line, result_line
from harness.perf.bisect.state import BisectState, Measurement, max_steps


def a_state(metric: str = "host-ipt", baseline: float | None = 1.0e6, candidates: int = 7) -> BisectState:
    return BisectState(metric=metric, threshold=0.05, workload="260K", short_steps=8, long_steps=40,
                       port_dir="ports/llama98", log_path=str(Path("/nonexistent/log.jsonl")),
                       candidates=candidates, baseline=baseline)


def test_units_cover_every_metric():
    assert set(UNITS) == {"host-ipt", "guest-ipt", "tok_s"}


@pytest.mark.parametrize("metric, value, text", [
    ("host-ipt", 1_234_567.0, "1.2346 M instr/token"),
    ("guest-ipt", 5.0e7, "50.0000 M instr/token"),
    ("tok_s", 39.456, "39.46 tok/s"),
    ("tok_s", None, "-"),
    ("host-ipt", None, "-"),
])
def test_format_value(metric, value, text):
    assert format_value(metric, value) == text


def test_progress_line_counts_steps_and_bounds_them():
    state = a_state(candidates=7)  # at most 1 + ceil(log2 8) = 4 measurements
    line = progress_line(state, [], "abcdef0123456789", "make the matmul faster")
    assert line == ("[............] commit 1 of at most 4: measuring host-ipt of abcdef0 (make the matmul faster) "
                    "...")
    log = [Measurement("a" * 40, "good", "baseline", 1.0e6, role="baseline"),
           Measurement("b" * 40, "x", "good", 1.0e6)]
    assert progress_line(state, log, "c" * 40, "y").startswith("[######......] commit 3 of at most 4: ")


def test_a_skip_raises_the_bound():
    state = a_state(candidates=7)
    log = [Measurement("a" * 40, "good", "baseline", 1.0e6, role="baseline"),
           Measurement("b" * 40, "broken", "skip", error="does not build")]
    assert max_steps(7, 1) == 5
    assert "commit 3 of at most 5" in progress_line(state, log, "c" * 40, "z")


def test_the_bound_never_falls_below_the_step_being_taken():
    state = a_state(candidates=1)  # at most 2, but a run may take more (culprit checks)
    log = [Measurement(str(i) * 40, "s", "good", 1.0) for i in range(5)]
    line = progress_line(state, log, "f" * 40, "s")
    assert "commit 6 of at most 6" in line and line.startswith("[##########..]")  # 5 of 6 done


def test_progress_line_shortens_long_subjects():
    line = progress_line(a_state(), [], "a" * 40, "x" * 80)
    assert "(" + "x" * 50 + ")" in line and "x" * 51 not in line


def test_result_line_of_a_step_shows_the_change_against_good():
    state = a_state(baseline=1.0e6)
    bad = Measurement("abcdef0" + "0" * 33, "slow", "bad", 1.25e6)
    assert result_line(state, bad) == "    abcdef0: 1.2500 M instr/token, slowdown +25.0% vs good -> bad"
    cached = Measurement("1234567" + "0" * 33, "same", "good", 0.99e6, cached=True)
    assert result_line(state, cached) == "    1234567: 0.9900 M instr/token (cached), slowdown -1.0% vs good -> good"


def test_result_line_of_tok_s_inverts_the_slowdown():
    state = a_state(metric="tok_s", baseline=40.0)
    slower = Measurement("a" * 40, "s", "bad", 20.0)
    assert result_line(state, slower) == "    aaaaaaa: 20.00 tok/s, slowdown +100.0% vs good -> bad"


def test_result_line_never_says_minus_zero():
    state = a_state(baseline=1.0e6)
    same = Measurement("a" * 40, "s", "good", 1.0e6 * (1 - 1e-6))
    assert "slowdown +0.0% vs good" in result_line(state, same)


def test_result_line_of_the_baseline_and_of_a_skip():
    state = a_state(baseline=1.0e6)
    baseline = Measurement("a" * 40, "good", "baseline", 1.0e6, role="baseline")
    assert result_line(state, baseline) == "    aaaaaaa: 1.0000 M instr/token -> baseline"
    skip = Measurement("b" * 40, "broken", "skip", error="the port does not build")
    assert result_line(state, skip) == "    bbbbbbb: skip (the port does not build)"
    no_baseline = a_state(baseline=None)
    assert result_line(no_baseline, Measurement("c" * 40, "s", "good", 2.0e6)) == (
        "    ccccccc: 2.0000 M instr/token -> good")
