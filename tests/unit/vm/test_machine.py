"""Machine with a real QEMU: lifecycle, overlay, QMP, screendumps, snapshots and every start-up fault.

The guest here is a one-sector boot loader that spins forever (SeaBIOS boots it, it never prints a banner), which
is all the Machine layer needs; the tiny686 tests boot a real guest. These need QEMU installed but no guest image,
so they are not marked `vm` and run in every test run (about 10 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from harness import cli
from harness.core.artifacts import ArtifactDir
from harness.core.errors import ImageError
from harness.core.hashing import file_sha256
from harness.vm import profile as profile_module
from harness.vm.console import ConsoleTimeout
from harness.vm.disk import DiskImage
from harness.vm.ftp import FileServer
from harness.vm.guest import Guest
from harness.vm.machine import Machine, MachineOptions
from harness.vm.processes import QemuError, QemuLaunchError, live_qemu_pids
from harness.vm.profile import ProfileError, load_profile
from harness.vm.snapshots import SNAPSHOT_NAME, SnapshotCache
from tests.support.child_signals import take_sigint
from tests.support.idle_qemu import process_gone
from tests.support.unreadable import locked_file, outcome_as_nobody, public_dir


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Image hashes and snapshots of these throw-away images must not pile up in the user's cache."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def spinning_image(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB raw disk whose boot sector is `jmp $` with the 0x55AA signature; its sha256 must never change."""
    image = tmp_path / "spin.img"
    sector = bytearray(512)
    sector[0:2] = b"\xeb\xfe"
    sector[510:512] = b"\x55\xaa"
    image.write_bytes(bytes(sector) + bytes(1024 * 1024 - 512))
    before = file_sha256(image)
    yield image
    assert file_sha256(image) == before, "the user's image was modified"


@pytest.fixture()
def artifacts(tmp_path: Path) -> ArtifactDir:
    return ArtifactDir(tmp_path / "artifacts")


@pytest.fixture()
def cold() -> MachineOptions:
    return MachineOptions(use_snapshot=False)


def test_starts_on_an_overlay_answers_qmp_and_stops(spinning_image: Path, artifacts: ArtifactDir,
                                                    cold: MachineOptions) -> None:
    machine = Machine(load_profile("tiny686"), spinning_image, artifacts, cold)
    with machine:
        pid = machine.pid
        assert pid in live_qemu_pids()
        command = artifacts.command_line.read_text()
        for part in ("-machine pc,accel=tcg", "-cpu pentium2", "-m 128", "e1000,netdev=net0", "format=qcow2"):
            assert part in command
        assert str(spinning_image) not in command  # QEMU only ever sees the overlay
        overlay_info = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(machine.overlay)],
                                      capture_output=True, text=True, check=True).stdout
        assert str(spinning_image) in overlay_info and '"backing-filename-format": "raw"' in overlay_info
        assert machine.qmp("query-status")["running"] is True
        time.sleep(0.5)
        png = machine.screendump(reason="check")
        with Image.open(png) as picture:
            assert picture.format == "PNG" and picture.size[0] >= 640
        machine.pause()
        assert machine.qmp("query-status")["running"] is False
        machine.resume()
        run_dir = machine.overlay.parent
        assert (run_dir.stat().st_mode & 0o777) == 0o700
    assert pid not in live_qemu_pids() and process_gone(pid)
    assert not run_dir.exists()
    machine.stop()  # idempotent


def test_icount_and_kvm_only_when_asked(spinning_image: Path, artifacts: ArtifactDir) -> None:
    profile = load_profile("tiny686")
    default = Machine(profile, spinning_image, artifacts, MachineOptions(use_snapshot=False)).device_args()
    assert "-icount" not in default and "pc,accel=tcg" in default
    deterministic = Machine(profile, spinning_image, artifacts, MachineOptions(icount_shift=1)).device_args()
    assert deterministic[deterministic.index("-icount") + 1] == "shift=1,sleep=off"
    win98 = Machine(load_profile("win98"), spinning_image, artifacts, MachineOptions()).device_args()
    assert "base=localtime" in win98 and "pcnet,netdev=net0" in win98


def test_missing_unreadable_and_non_disk_images_are_one_line_errors(tmp_path: Path, artifacts: ArtifactDir) -> None:
    with pytest.raises(ImageError, match=r"does not exist; artifacts: ") as info:
        Machine(load_profile("tiny686"), tmp_path / "absent.img", artifacts, MachineOptions(use_snapshot=False)).start()
    assert str(artifacts) in str(info.value) and "\n" not in str(info.value)
    text = tmp_path / "notes.txt"
    text.write_text("this is not a disk\n" * 100)
    with pytest.raises(ImageError, match="is not a disk image"):
        DiskImage.probe(text).require_bootable()
    with pytest.raises(ImageError, match="is a directory"):
        DiskImage.probe(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="is not a regular file"):
        DiskImage.probe(fifo)
    broken_qcow = tmp_path / "broken.qcow2"
    broken_qcow.write_bytes(b"QFI\xfb" + b"\x00\x00\x00\x03" + b"\xff" * 100)
    with pytest.raises(ImageError, match="is not a disk image qemu-img can read"):
        DiskImage.probe(broken_qcow)


def test_unreadable_image(artifacts: ArtifactDir) -> None:
    """A mode-000 image, read by a user who is not root: a one-line ImageError naming it and the artifacts.

    Everything the check needs from the checkout (the profile) is loaded here, before the child drops to
    `nobody`, so the test passes wherever the checkout lives (a 0700 `mktemp -d` clone, /root)."""
    profile = load_profile("tiny686")
    with public_dir() as directory:
        locked = locked_file(directory, "locked.img", b"\x00" * 1024)
        message = outcome_as_nobody(
            lambda: Machine(profile, locked, artifacts, MachineOptions(use_snapshot=False)).start())
    assert message.startswith("ImageError: "), message
    assert f"guest image {locked} is not readable: Permission denied" in message and str(artifacts) in message
    assert "\n" not in message


def test_unreadable_profile_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile the user cannot read: by name or by path inside a directory they cannot search (what a private
    checkout is to another user: Path.exists() itself raises there), a directory, a FIFO (refused without being
    opened, so nothing blocks), a path under a regular file."""
    with public_dir() as directory:
        private = directory / "profiles"
        private.mkdir(mode=0o700)
        shutil.copy(load_profile("tiny686").source, private / "mine.yaml")
        monkeypatch.setattr(profile_module, "profiles_dir", lambda: private)  # the shipped profiles' directory
        by_name = outcome_as_nobody(lambda: load_profile("mine"))
        by_path = outcome_as_nobody(lambda: load_profile(private / "mine.yaml"))
    assert by_name == by_path == f"ProfileError: cannot read guest profile {private / 'mine.yaml'}: Permission denied"
    with pytest.raises(ProfileError, match=r"cannot read guest profile .*: it is a directory, not a YAML file$"):
        load_profile(f"{tmp_path}/")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ProfileError, match=r"fifo\.yaml: it is not a regular file, not a YAML file$"):
        load_profile(fifo)
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(ProfileError, match=r"cannot read guest profile .*plain/p\.yaml: Not a directory$"):
        load_profile(plain / "p.yaml")


def test_unreadable_profile_through_the_cli(tmp_path: Path, spinning_image: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--vm", str(spinning_image), "--profile", f"{tmp_path}/", "--model", "260K-shape"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (f"llama98-harness: error: cannot read guest profile {tmp_path}: it is a "
                                    f"directory, not a YAML file")
    assert all(line.startswith("[") for line in err.splitlines()[:-1])  # only progress lines before it


def test_qemu_not_installed(spinning_image: Path, artifacts: ArtifactDir, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(QemuError, match="QEMU is not installed: qemu-system-i386 not found on PATH") as info:
        with Machine(load_profile("tiny686"), spinning_image, artifacts, MachineOptions(use_snapshot=False)):
            pass
    assert str(artifacts) in str(info.value) and "\n" not in str(info.value)


def test_launch_failure_carries_exit_code_command_and_stderr(spinning_image: Path, artifacts: ArtifactDir) -> None:
    options = MachineOptions(use_snapshot=False, extra_args=("-no-such-option",))
    running_before = live_qemu_pids()  # a worker's session guest may be up: judge only the QEMU started here
    with pytest.raises(QemuLaunchError) as info:
        with Machine(load_profile("tiny686"), spinning_image, artifacts, options):
            pass
    error = info.value
    assert error.returncode == 1 and "-no-such-option" in error.command
    assert "no-such-option" in error.stderr and "\n" not in str(error) and str(artifacts) in str(error)
    assert not live_qemu_pids() - running_before


def test_guest_that_never_reaches_its_prompt_times_out_with_a_screendump(
        spinning_image: Path, artifacts: ArtifactDir, cold: MachineOptions) -> None:
    with Machine(load_profile("tiny686"), spinning_image, artifacts, cold) as machine, \
            FileServer(artifacts, bridge=machine) as server, Guest(machine, server, artifacts) as guest:
        pid = machine.pid
        with pytest.raises(ConsoleTimeout) as info:
            guest.wait_ready(timeout=3)
    message = str(info.value)
    assert "timed out after 3s waiting for the guest's ready banner 'TINY686 READY'" in message
    assert str(artifacts.serial_transcript) in message and str(artifacts) in message
    assert info.value.screendump is not None and info.value.screendump.exists()
    assert info.value.screendump.suffix == ".png" and str(info.value.screendump) in message
    assert pid not in live_qemu_pids() and process_gone(pid)


_CHILD = textwrap.dedent("""
    import sys, time
    from harness.core.artifacts import ArtifactDir
    from harness.vm.profile import load_profile
    from harness.vm.machine import Machine, MachineOptions
    with Machine(load_profile("tiny686"), sys.argv[1], ArtifactDir(sys.argv[2]),
                 MachineOptions(use_snapshot=False)) as machine:
        print(machine.pid, flush=True)
        time.sleep(120)
""")


def _child_with_machine(image: Path, artifacts: ArtifactDir) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(image), str(artifacts.path)],
                             stdout=subprocess.PIPE, text=True, preexec_fn=take_sigint)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip().isdigit(), f"child did not start QEMU: {line!r}"
    return child, int(line)


def test_ctrl_c_stops_qemu(spinning_image: Path, artifacts: ArtifactDir) -> None:
    child, qemu_pid = _child_with_machine(spinning_image, artifacts)
    child.send_signal(signal.SIGINT)
    child.wait(30)
    assert process_gone(qemu_pid)


def test_killed_parent_never_leaves_qemu_behind(spinning_image: Path, artifacts: ArtifactDir) -> None:
    child, qemu_pid = _child_with_machine(spinning_image, artifacts)
    child.kill()  # SIGKILL: no finally runs; PR_SET_PDEATHSIG must take QEMU down
    child.wait(30)
    assert process_gone(qemu_pid)


def test_snapshot_is_saved_then_loaded_on_a_copy(spinning_image: Path, artifacts: ArtifactDir,
                                                 tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snapshots")
    profile = load_profile("tiny686")
    with Machine(profile, spinning_image, artifacts, MachineOptions(snapshot_cache=cache)) as first:
        assert not first.loaded_snapshot
        saved = first.save_snapshot()
        assert saved is not None and saved.is_file()
        assert first.qmp("query-status")["running"] is True  # resumed after saving
    snapshots = subprocess.run(["qemu-img", "snapshot", "-l", str(saved)], capture_output=True, text=True,
                               check=True).stdout
    assert SNAPSHOT_NAME in snapshots
    cached_bytes = file_sha256(saved)
    with Machine(profile, spinning_image, artifacts, MachineOptions(snapshot_cache=cache)) as second:
        assert second.loaded_snapshot and f"-loadvm {SNAPSHOT_NAME}" in artifacts.command_line.read_text()
        assert second.overlay != saved and second.qmp("query-status")["running"] is True
        assert second.save_snapshot() is None  # never re-saved from a loaded snapshot
    assert file_sha256(saved) == cached_bytes  # the cached copy is never run on directly
    with Machine(profile, spinning_image, artifacts, MachineOptions(snapshot_cache=cache,
                                                                    use_snapshot=False)) as forced_cold:
        assert not forced_cold.loaded_snapshot and "-loadvm" not in artifacts.command_line.read_text()
    with Machine(profile, spinning_image, artifacts, MachineOptions(snapshot_cache=cache, icount_shift=1)) as other:
        assert not other.loaded_snapshot  # a different command line is a different snapshot


def test_image_hash_is_cached_by_path_size_and_mtime(spinning_image: Path, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    image = DiskImage.probe(spinning_image)
    assert image.sha256() == file_sha256(spinning_image)
    calls: list[Path] = []
    import harness.vm.disk as disk_module

    monkeypatch.setattr(disk_module, "file_sha256", lambda path: calls.append(path) or "x")
    assert image.sha256() == file_sha256(spinning_image) and not calls  # served from the cache
    os.utime(spinning_image, ns=(0, 12345))
    assert image.sha256() == "x" and calls == [spinning_image]  # new mtime: rehashed


def test_a_damaged_cached_snapshot_falls_back_to_a_cold_boot(spinning_image: Path, artifacts: ArtifactDir,
                                                            tmp_path: Path) -> None:
    cache = SnapshotCache(tmp_path / "snapshots")
    profile = load_profile("tiny686")
    with Machine(profile, spinning_image, artifacts, MachineOptions(snapshot_cache=cache)) as first:
        saved = first.save_snapshot()
    assert saved is not None
    subprocess.run(["qemu-img", "snapshot", "-d", SNAPSHOT_NAME, str(saved)], check=True)  # entry without state
    with Machine(profile, spinning_image, artifacts, MachineOptions(snapshot_cache=cache)) as second:
        assert not second.loaded_snapshot and second.qmp("query-status")["running"] is True
        assert "-loadvm" not in artifacts.command_line.read_text()
    assert not saved.exists()


_CHILD_WAITING = textwrap.dedent("""
    import sys
    from harness.core.artifacts import ArtifactDir
    from harness.vm.ftp import FileServer
    from harness.vm.guest import Guest
    from harness.vm.profile import load_profile
    from harness.vm.machine import Machine, MachineOptions
    artifacts = ArtifactDir(sys.argv[2])
    with Machine(load_profile("tiny686"), sys.argv[1], artifacts, MachineOptions(use_snapshot=False)) as machine, \\
            FileServer(artifacts, bridge=machine) as server, Guest(machine, server, artifacts) as guest:
        print(machine.pid, server.port, flush=True)
        guest.wait_ready(timeout=120)
""")


def test_ctrl_c_while_waiting_for_the_guest_stops_qemu_and_the_ftp_server(spinning_image: Path,
                                                                          artifacts: ArtifactDir) -> None:
    import socket

    child = subprocess.Popen([sys.executable, "-c", _CHILD_WAITING, str(spinning_image), str(artifacts.path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=take_sigint)
    assert child.stdout is not None
    qemu_pid, ftp_port = (int(value) for value in child.stdout.readline().split())
    time.sleep(0.5)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr
    assert process_gone(qemu_pid)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ftp_port), timeout=2).close()
