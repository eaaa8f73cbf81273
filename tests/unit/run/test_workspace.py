"""The work disk: free space read from a guest image's FAT volume on the host, the plan (fits / second disk /
one-line refusal), and, on the real tiny686 guest, a run whose files do not fit the image getting a second
sparse qcow2 FAT32 disk mounted over the work directory."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness.core.proc import run
from harness.guests.tiny686.workdisk import create_work_disk, work_disk_bytes
from harness.run.session import Session, SessionOptions
from harness.run.workspace import FAT32_MAX_FILE, WorkSpaceError, plan_work_space, run_files
from harness.vm.disk import DiskImage
from harness.vm.fatspace import fat_space
from harness.vm.profile import load_profile
from tests.support.diskimages import make_fat32_disk

MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": "/dev/null", "LC_ALL": "C"}


def _mdir_free(image: Path, offset: int) -> int:
    """Free bytes of a FAT volume as mtools itself reports them (an independent reading)."""
    out = run(["mdir", "-i", f"{image}@@{offset}", "::"], extra_env=MTOOLS_ENV).stdout
    match = re.search(r"([\d ]+) bytes free", out)
    assert match, out
    return int(match.group(1).replace(" ", ""))


def _raw_work_disk(tmp_path: Path, size: int) -> Path:
    qcow2 = create_work_disk(tmp_path / "disk.qcow2", size)
    raw = tmp_path / "disk.img"
    run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(raw)])
    return raw


def test_free_space_is_read_from_the_fat_in_raw_and_qcow2_images(tmp_path: Path) -> None:
    raw = _raw_work_disk(tmp_path, 300 * 1024 * 1024)
    filler = tmp_path / "FILLER.BIN"
    filler.write_bytes(os.urandom(5 * 1024 * 1024 + 1))
    run(["mcopy", "-i", f"{raw}@@1048576", str(filler), "::FILLER.BIN"], extra_env=MTOOLS_ENV)
    space = fat_space(raw)
    assert space.kind == "FAT32" and space.free_bytes == _mdir_free(raw, 1048576)
    assert space.total_bytes - space.free_bytes >= 5 * 1024 * 1024 + space.cluster_bytes
    qcow2 = tmp_path / "copy.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)])
    assert fat_space(qcow2, "qcow2") == space
    assert space.fits([space.free_bytes - 2 * space.cluster_bytes]) and not space.fits([space.free_bytes])


def test_a_fat16_volume_without_a_partition_table_is_read_too(tmp_path: Path) -> None:
    image = tmp_path / "fat16.img"
    with image.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    run(["mformat", "-i", str(image), "-T", str(64 * 2048), "-h", "64", "-s", "32", "::"], extra_env=MTOOLS_ENV)
    space = fat_space(image)
    assert space.kind == "FAT16" and space.free_bytes == _mdir_free(image, 0)


def test_a_sparse_work_disk_takes_almost_no_host_space(tmp_path: Path) -> None:
    size = work_disk_bytes(3 * 10**9)
    disk = create_work_disk(tmp_path / "work.qcow2", size)
    assert size >= 3 * 10**9 and disk.stat().st_size < 8 * 1024 * 1024
    assert DiskImage.probe(disk).format == "qcow2" and DiskImage.probe(disk).size == size
    assert fat_space(disk, "qcow2").free_bytes > 3 * 10**9


def test_the_plan_attaches_a_disk_for_tiny686_and_refuses_for_win98_in_one_line(tmp_path: Path) -> None:
    image = DiskImage.probe(create_work_disk(tmp_path / "small.qcow2", 256 * 1024 * 1024))
    free = fat_space(image.path, image.format).free_bytes
    small = [("MODEL.BIN", 100 * 10**6), ("TOK.BIN", 500_000)]
    big = [("LLAMA98.EXE", 200_000), ("MODEL.BIN", free + 1), ("TOK.BIN", 500_000)]
    tiny686, win98 = load_profile("tiny686"), load_profile("win98")
    assert plan_work_space(win98, image, small).work_disk_bytes == 0
    plan = plan_work_space(tiny686, image, big)
    assert plan.work_disk_bytes > plan.needed_bytes > free and plan.free_bytes == free
    with pytest.raises(WorkSpaceError) as info:
        plan_work_space(win98, image, big)
    message = str(info.value)
    assert "\n" not in message and "C:\\RUN" in message and f"{free / 1e6:.1f} MB free" in message
    assert f"MODEL.BIN {(free + 1) / 1e6:.1f} MB" in message and "needs" in message
    with pytest.raises(WorkSpaceError, match="below 4 GiB"):
        plan_work_space(tiny686, image, [("MODEL.BIN", FAT32_MAX_FILE + 1)])


def test_run_files_names_the_inputs_as_the_guest_will(tmp_path: Path) -> None:
    files = []
    for name, size in (("llama98", 10), ("m.bin", 20), ("t.bin", 30)):
        (tmp_path / name).write_bytes(b"x" * size)
        files.append(tmp_path / name)
    listed = run_files(load_profile("win98"), files[0], (files[1], files[2]))
    assert listed == [("LLAMA98.EXE", 10), ("MODEL.BIN", 20), ("TOK.BIN", 30)]


@pytest.mark.vm
def test_tiny686_gets_a_second_work_disk_when_the_files_do_not_fit(tmp_path: Path,
                                                                  vm_image: tuple[str, Path]) -> None:
    """An image whose work volume is nearly full (a filler file) and an input larger than what is left."""
    if vm_image[0] != "tiny686":
        pytest.skip("the second work disk is a tiny686 feature")
    image = tmp_path / "full.img"
    run(["cp", "--sparse=always", str(vm_image[1]), str(image)])
    free = fat_space(image).free_bytes
    filler = tmp_path / "filler"
    with filler.open("wb") as handle:
        handle.truncate(free - 40 * 1024 * 1024)
    run(["mcopy", "-i", f"{image}@@1048576", str(filler), "::FILLER.BIN"], extra_env=MTOOLS_ENV, timeout=300)
    filler.unlink()
    assert fat_space(image).free_bytes < 41 * 1024 * 1024
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(48 * 1024 * 1024))
    options = SessionOptions(vm=str(image), profile="tiny686", use_snapshot=False, artifacts=tmp_path / "art",
                             inputs=(model,))
    with Session(options) as session:
        assert session.work_disk is not None and session.work_space is not None
        assert session.work_space.work_disk_bytes > 48 * 1024 * 1024
        line = session.artifacts.command_line.read_text()
        assert f"file={session.work_disk},format=qcow2,if=ide,index=1" in line and "-loadvm" not in line
        guest = session._require_guest()
        mounted = guest.run_checked("grep ' /mnt/c/run ' /proc/mounts", 20).output
        work_device = guest.run_checked("findfs LABEL=WORK", 20).output.strip()
        boot_device = guest.run_checked("findfs LABEL=TINY686", 20).output.strip()
        assert mounted.startswith(f"{work_device} /mnt/c/run vfat") and work_device != boot_device
        assert guest.run_checked("grep ' /mnt/c ' /proc/mounts", 20).output.startswith(f"{boot_device} /mnt/c ")
        fetched = session.fetch(model, "model.bin")
        assert fetched.verified and fetched.guest_path == "/mnt/c/run/model.bin"
        # the guest computed its own checksum of the file (how long that takes beside the transfer is a figure of
        # tests/bench/test_bench_large_fetch.py, not an assertion here: host load moves both)
        assert fetched.checksum_seconds > 0
        assert session.calibration.transfer_rates[-1] == fetched.size / fetched.seconds
        assert session.binary_fetch is not None and session.binary_fetch.verified
    assert not session.work_disk.exists()


def test_a_session_says_which_files_its_disk_takes_without_a_second_disk(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Session.fits, the question llama98_run asks before injecting into the worker's guest (which was started
    with no inputs, so has no work disk): files that fit the image's free space, or were declared, go in; a bigger
    model needs a session of its own (False); a file no FAT32 volume holds is refused outright."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "disk.img"
    make_fat32_disk(image, 64, windows_tree=False)
    free = fat_space(image).free_bytes
    binary, small, big, huge = (tmp_path / name for name in ("llama98", "small.bin", "big.bin", "huge.bin"))
    binary.write_bytes(b"\x7fELF" + bytes(1000))
    small.write_bytes(bytes(100_000))
    for path, size in ((big, free), (huge, FAT32_MAX_FILE + 1)):
        with path.open("wb") as handle:
            handle.truncate(size)
    session = Session(SessionOptions(vm=str(image), profile="tiny686", binary=binary, artifacts=tmp_path / "art",
                                     inputs=(big, small)))
    assert session.fits([small, small]) and session.fits([big, small])  # declared: the session planned for them
    undeclared = Session(SessionOptions(vm=str(image), profile="tiny686", binary=binary, artifacts=tmp_path / "a2"))
    assert undeclared.fits([small, small]) and not undeclared.fits([big, small])
    with pytest.raises(WorkSpaceError, match="below 4 GiB"):
        undeclared.fits([huge, small])
