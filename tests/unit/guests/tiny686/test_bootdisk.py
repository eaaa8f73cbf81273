"""The tiny686 boot disk assembled without root: syslinux's MBR code and one active FAT32-LBA partition at 1 MiB,
formatted and filled with mtools at a byte offset, syslinux installed. Read back with harness.guests.detect (the
partition table) and mtools (the volume and its files), as the harness and the guest's /init see it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.paths import project_root
from harness.guests.detect import detect_profile, read_partitions
from harness.guests.tiny686.bootdisk import (
    FAT_LABEL,
    FAT_SERIAL,
    IMAGE_BYTES,
    PARTITION_START_SECTOR,
    SECTOR,
    _master_boot_record,
    write_disk,
)
from harness.guests.tiny686.host_tools import MBR_BIN, GuestBuildError

MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC="/dev/null", LC_ALL="C")


def _mtools(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, env=MTOOLS_ENV).stdout


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bytes, bytes]]:
    """(image, kernel bytes, initramfs bytes): one disk written with the recipe's syslinux.cfg."""
    work = tmp_path_factory.mktemp("bootdisk")
    kernel = work / "vmlinuz"
    kernel_bytes = b"MZ fake bzImage " + os.urandom(300_000)
    kernel.write_bytes(kernel_bytes)
    initramfs = os.urandom(123_457)  # not a multiple of a cluster
    scratch = work / "scratch"
    scratch.mkdir()
    image = work / "tiny686.img"
    write_disk(image, kernel, initramfs, project_root() / "vm" / "tiny686" / "syslinux.cfg", scratch)
    yield image, kernel_bytes, initramfs


def test_the_image_is_sparse_and_of_the_documented_size(disk: tuple[Path, bytes, bytes]) -> None:
    image, _, _ = disk
    assert image.stat().st_size == IMAGE_BYTES
    assert image.stat().st_blocks * 512 < IMAGE_BYTES // 4, "the 512 MiB image should be mostly holes"


def test_the_partition_table_has_one_active_fat32_lba_partition(disk: tuple[Path, bytes, bytes]) -> None:
    image, _, _ = disk
    [partition] = read_partitions(image)
    assert (partition.index, partition.type_id, partition.bootable, partition.is_fat) == (1, 0x0C, True, True)
    assert partition.start_lba == PARTITION_START_SECTOR and partition.offset == 1024 * 1024
    assert partition.start_lba + partition.sectors == IMAGE_BYTES // SECTOR  # fills the disk
    assert detect_profile(image) == "tiny686"  # FAT, but no WINDOWS/WIN.COM


def test_sector_zero_is_syslinux_boot_code_with_a_fixed_disk_signature(disk: tuple[Path, bytes, bytes]) -> None:
    image, _, _ = disk
    with image.open("rb") as handle:
        mbr = handle.read(SECTOR)
    boot_code = MBR_BIN.read_bytes()[:440]
    assert mbr[:len(boot_code)] == boot_code and mbr[510:512] == b"\x55\xaa"
    assert mbr[440:444] == bytes.fromhex("686a6971") and mbr[444:446] == b"\0\0"
    assert mbr[446 + 16:510] == bytes(48)  # entries 2-4 empty


def test_the_volume_carries_the_label_the_guest_mounts_by(disk: tuple[Path, bytes, bytes]) -> None:
    image, _, _ = disk
    target = f"{image}@@{PARTITION_START_SECTOR * SECTOR}"
    info = _mtools("minfo", "-i", target, "::")
    assert 'disk type="FAT32   "' in info and "hidden sectors: 2048" in info
    assert f'disk label="{FAT_LABEL:<11}"' in info  # the boot sector's label (what blkid/findfs read)...
    assert _mtools("mlabel", "-s", "-i", target, "::").split() == ["Volume", "label", "is", FAT_LABEL]  # ...and root's
    assert f"serial number: {FAT_SERIAL.upper()}" in info
    init = (project_root() / "vm" / "tiny686" / "init").read_text()
    assert f"findfs LABEL={FAT_LABEL}" in init, "the guest's /init looks for another volume label"


def test_the_files_are_there_byte_for_byte(disk: tuple[Path, bytes, bytes], tmp_path: Path) -> None:
    image, kernel_bytes, initramfs = disk
    target = f"{image}@@{PARTITION_START_SECTOR * SECTOR}"
    listing = _mtools("mdir", "-a", "-b", "-i", target, "::").upper().split()
    for name in ("VMLINUZ", "INITRD.GZ", "SYSLINUX.CFG", "LDLINUX.SYS", "LDLINUX.C32"):
        assert f"::/{name}" in listing, listing
    for name, expected in (("VMLINUZ", kernel_bytes), ("INITRD.GZ", initramfs),
                           ("SYSLINUX.CFG", (project_root() / "vm/tiny686/syslinux.cfg").read_bytes())):
        copy = tmp_path / name
        _mtools("mcopy", "-n", "-i", target, f"::{name}", str(copy))
        assert copy.read_bytes() == expected, name


def test_the_partition_boot_sector_is_syslinuxs(disk: tuple[Path, bytes, bytes]) -> None:
    image, _, _ = disk
    with image.open("rb") as handle:
        handle.seek(PARTITION_START_SECTOR * SECTOR)
        boot_sector = handle.read(SECTOR)
    assert boot_sector[510:512] == b"\x55\xaa" and boot_sector[82:90] == b"FAT32   "
    assert boot_sector[3:11] == b"SYSLINUX"  # syslinux --install wrote its own boot sector (OEM name)


def test_the_master_boot_record_entry_fields() -> None:
    record = _master_boot_record(2048, 1000)
    assert len(record) == SECTOR
    entry = record[446:462]
    assert entry[0] == 0x80 and entry[4] == 0x0C
    assert int.from_bytes(entry[8:12], "little") == 2048 and int.from_bytes(entry[12:16], "little") == 1000


def test_a_missing_kernel_is_a_one_line_build_error(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(GuestBuildError) as info:
        write_disk(tmp_path / "x.img", tmp_path / "no-vmlinuz", b"initrd",
                   project_root() / "vm" / "tiny686" / "syslinux.cfg", scratch)
    assert "copying VMLINUZ into the image" in str(info.value) and "\n" not in str(info.value)
