"""The throw-away work disk for runs whose files do not fit the boot disk: a sparse qcow2 with one empty FAT32-LBA
partition labelled WORK at 1 MiB, which the tiny686 profile mounts by that label. Read back through qemu-img,
harness.guests.detect and mtools."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.guests.detect import read_partitions
from harness.guests.tiny686.workdisk import (
    HEADROOM,
    LABEL,
    MIN_BYTES,
    PARTITION_START_SECTOR,
    SECTOR,
    SERIAL,
    create_work_disk,
    work_disk_bytes,
)
from harness.vm.profile import load_profile

MIB = 1024 * 1024
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC="/dev/null", LC_ALL="C")


@pytest.mark.parametrize("needed", [0, 1, 100 * MIB, 200 * MIB, 440 * 10**6, 1_300_000_001, 5 * 1024 * MIB])
def test_the_size_holds_the_files_with_headroom_in_whole_mib(needed: int) -> None:
    size = work_disk_bytes(needed)
    assert size % MIB == 0 and size >= MIN_BYTES
    assert size >= needed * HEADROOM + 64 * MIB
    assert size - MIB < max(needed * HEADROOM + 64 * MIB, MIN_BYTES)  # rounded up by less than a MiB


def test_the_size_grows_with_the_files() -> None:
    sizes = [work_disk_bytes(n) for n in (0, 300 * MIB, 600 * MIB, 1200 * MIB)]
    assert sizes == sorted(sizes) and sizes[0] == MIN_BYTES and sizes[-1] > sizes[-2]


@pytest.fixture(scope="module")
def work_disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(qcow2 disk of 300 MiB, its raw conversion for reading)."""
    where = tmp_path_factory.mktemp("workdisk")
    target = create_work_disk(where / "work.qcow2", 300 * MIB)
    raw = where / "readback.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(target), str(raw)], check=True)
    return target, raw


def test_a_sparse_qcow2_of_the_asked_size(work_disk: tuple[Path, Path]) -> None:
    target, _ = work_disk
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(target)], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 300 * MIB
    assert target.stat().st_size < 16 * MIB, "only the FAT and the MBR should take host space"
    assert not target.with_suffix(".raw").exists(), "the raw scratch file was left behind"


def test_one_fat32_lba_partition_at_one_mib_filling_the_disk(work_disk: tuple[Path, Path]) -> None:
    _, raw = work_disk
    [partition] = read_partitions(raw)
    assert (partition.type_id, partition.is_fat, partition.bootable) == (0x0C, True, False)
    assert partition.start_lba == PARTITION_START_SECTOR and partition.offset == MIB
    assert partition.start_lba + partition.sectors == 300 * MIB // SECTOR
    with raw.open("rb") as handle:
        mbr = handle.read(SECTOR)
    assert mbr[440:444] == bytes.fromhex(SERIAL) and mbr[510:512] == b"\x55\xaa"


def test_an_empty_fat32_volume_labelled_as_the_profile_mounts_it(work_disk: tuple[Path, Path]) -> None:
    _, raw = work_disk
    target = f"{raw}@@{PARTITION_START_SECTOR * SECTOR}"
    info = subprocess.run(["minfo", "-i", target, "::"], capture_output=True, text=True, check=True,
                          env=MTOOLS_ENV).stdout
    assert 'disk type="FAT32   "' in info and f'disk label="{LABEL:<11}"' in info
    assert f"serial number: {SERIAL.upper()}" in info
    cluster = int(info.split("cluster size: ")[1].split()[0]) * SECTOR
    free = int(info.split("free clusters=")[1].split()[0])
    assert free * cluster > 280 * MIB  # practically all of it is free for the run's files
    listing = subprocess.run(["mdir", "-a", "-b", "-i", target, "::"], capture_output=True, text=True,
                             env=MTOOLS_ENV)
    assert listing.stdout.strip() == ""  # no files
    mount = load_profile("tiny686").files.work_disk_mount
    assert mount is not None and f"LABEL={LABEL}" in mount


def test_the_minimum_size_formats_as_fat32(tmp_path: Path) -> None:
    """MIN_BYTES is the smallest disk mformat will make FAT32 (it needs >= 65525 clusters)."""
    target = create_work_disk(tmp_path / "min.qcow2", work_disk_bytes(0))
    raw = tmp_path / "min.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(target), str(raw)], check=True)
    info = subprocess.run(["minfo", "-i", f"{raw}@@{PARTITION_START_SECTOR * SECTOR}", "::"], capture_output=True,
                          text=True, check=True, env=MTOOLS_ENV).stdout
    assert 'disk type="FAT32   "' in info
