"""What a bisection keeps between its processes (harness.perf.bisect.state): the state file, the measurement log,
the step bound and the distinct measured commits."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.perf.bisect.state import (
    EXIT_ABORT,
    EXIT_BAD,
    EXIT_GOOD,
    EXIT_SKIP,
    STATE_VERSION,
    BisectError,
    BisectOutcome,
    BisectState,
    Measurement,
    append_log,
    max_steps,
    read_log,
)


def a_state(tmp_path: Path, **overrides: object) -> BisectState:
    values: dict[str, object] = dict(metric="host-ipt", threshold=0.05, workload="260K", short_steps=8,
                                     long_steps=40, port_dir="ports/llama98", log_path=str(tmp_path / "log.jsonl"),
                                     candidates=12)
    values.update(overrides)
    return BisectState(**values)  # type: ignore[arg-type]


def test_exit_codes_are_git_bisect_runs():
    assert (EXIT_GOOD, EXIT_BAD, EXIT_SKIP) == (0, 1, 125)  # what `git bisect run` reads
    assert EXIT_ABORT >= 128  # anything from 128 up makes git bisect run stop


def test_state_round_trips_through_its_file(tmp_path):
    state = a_state(tmp_path, metric="tok_s", wall_clock=True, baseline=12.5, baseline_samples=[12.0, 13.0],
                    build_command="make run", binary_path="run", cli="llama2c", vm="/images/w98.qcow2")
    path = tmp_path / "state.json"
    state.save(path)
    assert json.loads(path.read_text())["version"] == STATE_VERSION
    assert BisectState.load(path) == state


def test_state_defaults(tmp_path):
    state = a_state(tmp_path)
    assert state.use_cache and not state.wall_clock and state.cli == "llama98"
    assert state.baseline is None and state.baseline_samples == []


@pytest.mark.parametrize("content", ["{not json", json.dumps({"metric": "host-ipt"}),
                                     json.dumps({**asdict(BisectState("m", 0.1, "w", 1, 2, "p", "l", 3)),
                                                 "unknown_field": 1}), "[]"])
def test_a_bad_state_file_is_one_bisect_error_line(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(BisectError, match="not a bisect state file") as error:
        BisectState.load(path)
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_missing_state_file_is_a_bisect_error(tmp_path):
    with pytest.raises(BisectError, match="not a bisect state file"):
        BisectState.load(tmp_path / "missing.json")


def test_log_appends_and_reads_back_in_order(tmp_path):
    log = tmp_path / "log.jsonl"
    assert read_log(log) == []
    records = [Measurement("a" * 40, "good one", "baseline", 1.0e6, role="baseline"),
               Measurement("b" * 40, "broken", "skip", error="does not build"),
               Measurement("c" * 40, "slow", "bad", 1.2e6, samples=[1.2e6], cached=True)]
    for record in records:
        append_log(log, record)
    assert read_log(log) == records
    assert len(log.read_text().splitlines()) == 3
    log.write_text(log.read_text() + "\n\n")  # blank lines (an interrupted writer) are not records
    assert read_log(log) == records


@pytest.mark.parametrize("candidates, skipped, expected", [(1, 0, 2), (2, 0, 3), (3, 0, 3), (7, 0, 4), (8, 0, 5),
                                                           (1000, 0, 11), (7, 2, 6)])
def test_max_steps(candidates, skipped, expected):
    assert max_steps(candidates, skipped) == expected
    assert expected == 1 + math.ceil(math.log2(candidates + 1)) + skipped


def test_outcome_measured_lists_each_measured_commit_once(tmp_path):
    good = Measurement("a" * 40, "good", "baseline", 1.0, role="baseline")
    step = Measurement("b" * 40, "x", "good", 1.01)
    again = Measurement("b" * 40, "x", "good", 1.02, role="culprit-check")
    skip = Measurement("c" * 40, "broken", "skip", error="build failed")
    culprit = Measurement("d" * 40, "slow", "bad", 1.5)
    outcome = BisectOutcome("d" * 40, "slow", "b" * 40, good, culprit, step, [good, step, skip, again, culprit],
                            candidates=4, commits=[("b" * 40, "x"), ("c" * 40, "broken"), ("d" * 40, "slow")],
                            json_path=tmp_path / "bisect.json", plot_path=None)
    assert [m.sha[0] for m in outcome.measured] == ["a", "b", "d"]
    assert outcome.measured[1].value == 1.01  # the first measurement of a commit is kept
