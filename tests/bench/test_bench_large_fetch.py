"""A 1 GiB injection into tiny686 (issue 14): it does not fit the image, so a work disk is attached; the jail
links the file instead of copying it; progress is logged; and the guest's checksum must not take longer than the
transfer. Run with `pytest -m bench tests/bench/test_bench_large_fetch.py --vm tiny686`; figures are printed."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from harness.run.session import Session, SessionOptions

pytestmark = [pytest.mark.bench, pytest.mark.vm]

SIZE = 1024 * 1024 * 1024


def test_one_gib_fetch_into_tiny686(tmp_path: Path, vm_image: tuple[str, Path], caplog: pytest.LogCaptureFixture,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    if vm_image[0] != "tiny686":
        pytest.skip("measures the tiny686 guest")
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        for _ in range(SIZE // (64 * 1024 * 1024)):
            handle.write(os.urandom(64 * 1024 * 1024))
    options = SessionOptions(vm="tiny686", artifacts=tmp_path / "art", inputs=(big,))
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="harness.vm.progress"), Session(options) as session:
        ready = time.monotonic() - start
        assert session.work_disk is not None
        fetched = session.fetch(big, "model.bin")
        served = session._require_guest().file_server.add_file(big, "again.bin")
    progress = [r.getMessage() for r in caplog.records if r.name == "harness.vm.progress"]
    last = progress[-1] if progress else "-"
    with capsys.disabled():
        print(f"\n[bench] 1 GiB into tiny686: session ready (cold boot + work disk + binary) {ready:.1f} s; "
              f"transfer {fetched.seconds:.1f} s ({fetched.size / fetched.seconds / 1e6:.1f} MB/s); guest checksum "
              f"{fetched.checksum_seconds:.1f} s ({fetched.size / fetched.checksum_seconds / 1e6:.1f} MB/s); "
              f"jail holds it as a {served.how}; {len(progress)} progress lines, last: {last}")
    assert fetched.verified and fetched.checksum_seconds < fetched.seconds
    assert served.how in ("hardlink", "reflink", "view") and len(progress) >= 2
