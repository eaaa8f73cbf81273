"""The whole VM layer on the real tiny686 guest: ready, run, fetch (both FTP modes), verification and faults.

One guest is booted for the module (from the snapshot cache when there is one) and shared; every test leaves it
answering. The image's sha256 is checked when the module is done, and no QEMU may be left running.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.core.hashing import file_sha256
from harness.vm.console import ConsoleTimeout
from harness.vm.ftp import FileServer, ServedFile
from harness.vm.guest import Guest, GuestMemoryError, TransferError, open_guest
from harness.vm.machine import Machine, MachineOptions
from harness.vm.processes import live_qemu_pids
from harness.vm.profile import load_profile
from harness.vm.progress import LARGE_FILE_BYTES

pytestmark = pytest.mark.vm


def tiny686_image(config: pytest.Config) -> Path:
    """The tiny686 image for these tests, from `--vm` (the pytest plugin skips `vm` tests without it).

    `--vm tiny686` builds it (or takes it from the cache) with harness.guests.tiny686.image; `--vm IMAGE` uses
    IMAGE if it is a tiny686 image; a Windows 98 image skips these tiny686-specific tests.
    """
    chosen = config.getoption("--vm", default=None) or os.environ.get("LLAMA98_TINY686_IMAGE")
    if not chosen:
        pytest.skip("needs a QEMU guest: run with `--vm tiny686`")
    if str(chosen) != "tiny686":
        profile = str(config.getoption("--vm-profile", default="auto"))
        if profile == "auto":
            from harness.guests.detect import detect_profile

            profile = detect_profile(Path(str(chosen)))
        if profile != "tiny686":
            pytest.skip(f"these tests drive the tiny686 guest; --vm {chosen} is a {profile} image")
        return Path(str(chosen))
    from harness.guests.tiny686.image import build_guest

    try:
        return build_guest("tiny686")
    except HarnessError as error:
        pytest.fail(f"cannot build the tiny686 guest: {error}")


@dataclass
class Booted:
    machine: Machine
    server: FileServer
    guest: Guest
    artifacts: ArtifactDir
    image: Path


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = tiny686_image(request.config)
    before = file_sha256(path)
    running_before = live_qemu_pids()  # a worker's session guest may be up: judge only the QEMUs started here
    yield path
    assert file_sha256(path) == before, "the tiny686 image was modified"
    assert not live_qemu_pids() - running_before, "a QEMU process started in this module outlived its test"


@pytest.fixture(scope="module")
def booted(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    artifacts = ArtifactDir(tmp_path_factory.mktemp("guest-artifacts"))
    with open_guest(load_profile("tiny686"), image, artifacts) as guest:
        assert guest.ready is not None and guest.ready.seconds > 0
        yield Booted(guest.machine, guest.file_server, guest, artifacts, image)


def _crc32(path: Path) -> str:
    return f"{zlib.crc32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def _random_file(tmp_path: Path, size: int, name: str = "payload.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size) + b"line\nends\r\n")
    return path


def test_runs_commands_on_a_pentium2_and_reports_exit_codes(booted: Booted) -> None:
    guest = booted.guest
    result = guest.run("echo hello; uname -m", 20)
    assert (result.output, result.exit_code) == ("hello\ni686", 0)
    assert "Pentium II" in guest.run("grep -m1 'model name' /proc/cpuinfo", 20).output
    assert guest.run("false", 20).exit_code == 1
    assert guest.run("sh -c 'exit 7'", 20).exit_code == 7


def test_a_crashing_program_reports_its_exit_code(booted: Booted) -> None:
    result = booted.guest.run("sh -c 'kill -SEGV $$'", 20)
    assert result.exit_code == 128 + 11


def test_guest_clock_is_set_from_the_host(booted: Booted) -> None:
    booted.guest.set_clock(1_000_000_000)
    assert abs(int(booted.guest.run("date +%s", 20).output) - 1_000_000_000) < 5
    booted.guest.set_clock()
    assert abs(int(booted.guest.run("date +%s", 20).output) - time.time()) < 5


def test_passive_fetch_is_verified_by_the_guests_checksum(booted: Booted, tmp_path: Path) -> None:
    source = _random_file(tmp_path, 2 * 1024 * 1024)
    result = booted.guest.fetch(source, "model.bin", mode="passive")
    assert result.verified and result.mode == "passive" and result.guest_path == "/mnt/c/run/model.bin"
    assert result.digest == _crc32(source)
    assert booted.guest.checksum("/mnt/c/run/model.bin") == _crc32(source)


def test_active_fetch_is_bridged_through_a_temporary_host_forward(booted: Booted, tmp_path: Path) -> None:
    source = _random_file(tmp_path, 1024 * 1024)
    result = booted.guest.fetch(source, "tok.bin", mode="active")
    assert result.verified and result.digest == _crc32(source)
    log = booted.artifacts.ftp_log.read_text()
    assert "bridging PORT 10.0.2.15:" in log and "removed hostfwd 127.0.0.1:" in log
    assert booted.machine.host_forwards() == []
    assert booted.guest.run("ls /mnt/c/run/ftp.scr", 20).exit_code != 0  # the script (with password) is gone


def test_a_large_fetch_logs_plain_progress_lines_when_stderr_is_not_a_terminal(
        booted: Booted, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _random_file(tmp_path, 48 * 1024 * 1024, "large.bin")
    guest = booted.guest
    guest.progress_min_bytes, guest.progress_interval = 16 * 1024 * 1024, 0.25
    try:
        with caplog.at_level(logging.INFO, logger="harness.vm.progress"):
            result = guest.fetch(source, "large.bin", mode="passive")
    finally:
        guest.progress_min_bytes, guest.progress_interval = LARGE_FILE_BYTES, None
        guest.run("rm -f /mnt/c/run/large.bin", 20)
    assert result.verified and result.digest == _crc32(source)
    logged = [r.getMessage() for r in caplog.records if r.name == "harness.vm.progress"]
    assert logged == guest.last_progress and len(logged) >= 2
    assert all(line.startswith("large.bin: ") and "MB/s" in line and "ETA" in line for line in logged)
    assert "\r" not in "".join(logged)
    assert logged[-1].startswith(f"large.bin: {result.size / 1e6:.1f} / {result.size / 1e6:.1f} MB (100%)")


def test_ascii_mode_transfer_of_a_binary_is_reported_as_such(booted: Booted, tmp_path: Path) -> None:
    source = _random_file(tmp_path, 64 * 1024)
    with pytest.raises(TransferError, match="sent in ASCII mode") as info:
        booted.guest.fetch(source, "ascii.bin", mode="active", transfer_type="ascii")
    assert str(booted.artifacts) in str(info.value) and "\n" not in str(info.value)
    assert booted.machine.host_forwards() == []


def test_corrupted_transfer_is_detected(booted: Booted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The served copy is damaged after its digest was taken (as if by the disk or the wire)."""
    original_add = booted.server.add_file

    def add_then_damage(source: str | Path, name: str | None = None) -> ServedFile:
        served = original_add(source, name)
        served.path.chmod(0o644)
        with served.path.open("r+b") as handle:
            handle.seek(1000)
            handle.write(b"\xff\x00\xff")
        return served

    monkeypatch.setattr(booted.server, "add_file", add_then_damage)
    source = _random_file(tmp_path, 256 * 1024)
    with pytest.raises(TransferError, match=r"arrived corrupted: guest crc32 [0-9a-f]{8} != host") as info:
        booted.guest.fetch(source, "bad.bin", mode="passive")
    assert str(booted.artifacts) in str(info.value)


def test_model_too_large_for_guest_ram_is_refused_before_transfer(booted: Booted, tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with huge.open("wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # sparse
    transfers_before = len(booted.server.records)
    with pytest.raises(GuestMemoryError, match=r"huge.bin is 200.0 MiB but guest tiny686 has 128 MiB RAM"):
        booted.guest.fetch(huge, "big.bin", must_fit_in_memory=True)
    assert len(booted.server.records) == transfers_before and not (booted.server.jail / "big.bin").exists()


def test_guest_that_stops_answering_times_out_with_a_screendump(booted: Booted) -> None:
    booted.machine.pause()
    try:
        with pytest.raises(ConsoleTimeout) as info:
            booted.guest.run("echo are-you-there", timeout=3)
    finally:
        booted.machine.resume()
    error = info.value
    assert "waiting for the end of guest command 'echo are-you-there'" in str(error)
    assert error.screendump is not None and error.screendump.exists()
    assert str(booted.artifacts.serial_transcript) in str(error)
    booted.guest.console.sync()  # the guest answers again once resumed
    assert booted.guest.run("echo back", 20).output == "back"


def test_snapshot_load_is_ready_fast_and_cold_boot_can_be_forced(booted: Booted, image: Path,
                                                                 tmp_path: Path) -> None:
    """The module guest saved (or loaded) the snapshot; a second machine must resume from it."""
    artifacts = ArtifactDir(tmp_path / "second")
    with Machine(load_profile("tiny686"), image, artifacts, MachineOptions()) as machine, \
            FileServer(artifacts, bridge=machine) as server, Guest(machine, server, artifacts) as guest:
        ready = guest.wait_ready()
        assert ready.from_snapshot and machine.loaded_snapshot
        assert ready.seconds < 10
        assert abs(int(guest.run("date +%s", 20).output) - time.time()) < 5  # clock reset after the load
        assert "date -s @" in artifacts.serial_transcript.read_text()
        assert guest.shutdown(timeout=30), "the guest did not power off"
    cold_artifacts = ArtifactDir(tmp_path / "cold")
    with Machine(load_profile("tiny686"), image, cold_artifacts, MachineOptions(use_snapshot=False)) as machine, \
            FileServer(cold_artifacts, bridge=machine) as server, Guest(machine, server, cold_artifacts) as guest:
        ready = guest.wait_ready()
        assert not ready.from_snapshot and ready.snapshot_saved is None
        assert "TINY686 READY" in cold_artifacts.serial_transcript.read_text()


def test_bridged_server_still_refuses_port_targets_other_than_the_guest(booted: Booted) -> None:
    import ftplib

    client = ftplib.FTP()
    client.connect("127.0.0.1", booted.server.port, timeout=10)
    client.login(booted.server.user, booted.server.password)
    try:
        for target in ("127,0,0,1,200,10", "8,8,8,8,0,80", "10,0,2,2,200,10"):
            with pytest.raises(ftplib.error_perm, match="501"):
                client.sendcmd(f"PORT {target}")
    finally:
        client.quit()
    assert booted.machine.host_forwards() == []
