"""worker_id: which pytest-xdist worker this process is (`gw0`, `gw1`, ...) or `main`, read from the environment
xdist sets, so each worker's guest, ports and artifacts are its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.worker import worker_id

pytest_plugins = ["pytester"]


def test_outside_xdist_it_is_main(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert worker_id() == "main"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "")
    assert worker_id() == "main"


def test_it_follows_the_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert worker_id() == "gw3"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw11")
    assert worker_id() == "gw11"


def test_real_xdist_workers_get_distinct_ids(pytester: pytest.Pytester, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Two real xdist workers each see their own id; the controller's own id does not leak into them."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    out = tmp_path / "ids"
    out.mkdir()
    pytester.makepyfile(test_ids=f"""
        import json, os, time
        from pathlib import Path
        from harness.core.worker import worker_id

        OUT = Path({str(out)!r})

        def _record(name):
            (OUT / name).write_text(json.dumps([worker_id(), os.getpid()]))
            deadline = time.monotonic() + 60
            while len(list(OUT.iterdir())) < 2:  # both tests at once: one per worker
                assert time.monotonic() < deadline
                time.sleep(0.05)

        def test_a():
            _record("a")

        def test_b():
            _record("b")
    """)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2)
    ids = {name: json.loads((out / name).read_text()) for name in ("a", "b")}
    assert {ids["a"][0], ids["b"][0]} == {"gw0", "gw1"} and ids["a"][1] != ids["b"][1]
