"""A tiny686 snapshot resumes with its network already up (issue 10).

The harness saves its snapshot when the guest prints its ready banner. If the e1000 was still negotiating its
link then, QEMU restarts the negotiation on loadvm and the resumed guest has no network for ~1.5 s: its first
ARP request is dropped, and the first FTP connection waited ~2.8 s. The guest's init therefore waits for link
before the banner; this checks the state that guarantees it, right after a resume from a fresh snapshot.
How fast the first connection then is, is measured in tests/bench/test_bench_first_connection.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.vm.guest import open_guest
from harness.vm.machine import MachineOptions
from harness.vm.processes import live_qemu_pids
from harness.vm.profile import load_profile
from harness.vm.snapshots import SnapshotCache
from tests.e2e.test_guest import tiny686_image

pytestmark = pytest.mark.vm

NETWORK_STATE = "cat /sys/class/net/eth0/operstate /sys/class/net/eth0/carrier"


def test_a_resumed_snapshot_has_its_link_up(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    image = tiny686_image(request.config)
    running_before = live_qemu_pids()  # a worker's session guest may be up: judge only the QEMUs started here
    options = MachineOptions(snapshot_cache=SnapshotCache(tmp_path / "snapshots"))
    with open_guest(load_profile("tiny686"), image, ArtifactDir(tmp_path / "cold"), options) as guest:
        assert guest.ready is not None and guest.ready.snapshot_saved is not None
    with open_guest(load_profile("tiny686"), image, ArtifactDir(tmp_path / "warm"), options) as guest:
        assert guest.ready is not None and guest.ready.from_snapshot
        state = guest.run_checked(NETWORK_STATE, 20).output.splitlines()
        assert state[:2] == ["up", "1"], f"eth0 after loadvm: {state}"
    assert not live_qemu_pids() - running_before
