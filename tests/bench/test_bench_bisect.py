"""Bisection with the noisy metric: guest wall-clock tok/s on tiny686 (plain emulation, repeated samples).

Too slow for every CI run (a few guest runs of 200 tokens per commit), so it is a benchmark:
`pytest -m bench --vm tiny686 tests/bench/test_bench_bisect.py -s` prints the table and the samples taken.
The deterministic metrics (host-ipt, guest-ipt) are bisected in tests/unit/perf/bisect/test_runner.py on every CI run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.perf.bisect import bisect, print_outcome
from tests.support.port_helpers import fixture, fixture_dir
from tests.unit.perf.bisect.test_runner import make_port_repo, repo_snapshot

pytestmark = [pytest.mark.bench, pytest.mark.vm]


def test_bisect_with_guest_tok_s(request: pytest.FixtureRequest, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fixture("stories260K.bin")
    monkeypatch.setenv("LLAMA98_FIXTURE_DIR", str(fixture_dir()))
    repo = make_port_repo(tmp_path)
    before = repo_snapshot(repo.path)
    outcome = bisect(repo.path, repo.good, "main", metric="tok_s", threshold=0.20,
                     vm=request.config.getoption("--vm"), out_dir=tmp_path / "run")
    print()
    print_outcome(outcome, "tok_s")
    for record in outcome.measurements:
        print(f"{record.sha[:7]} {record.verdict:8} samples: {', '.join(f'{v:.2f}' for v in record.samples)}")
    assert repo_snapshot(repo.path) == before
    assert outcome.culprit == repo.slow
    assert len(outcome.measured) <= math.floor(math.log2(repo.candidates)) + 2
