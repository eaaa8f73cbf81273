"""Profile detection on real synthetic disk images (mtools-made FAT32 partitions), raw and qcow2."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from harness.core.errors import ImageError
from harness.guests.detect import detect_profile, read_partitions
from harness.vm.disk import DiskImage
from tests.support.diskimages import make_fat32_disk, write_mbr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_windows_tree_is_detected_as_win98_without_writing(tmp_path: Path) -> None:
    image = tmp_path / "win98.img"
    make_fat32_disk(image, windows_tree=True)
    before = sha256(image)
    assert detect_profile(image) == "win98"
    assert sha256(image) == before


def test_fat_disk_without_windows_is_not_win98(tmp_path: Path) -> None:
    image = tmp_path / "plain.img"
    make_fat32_disk(image, windows_tree=False)
    assert detect_profile(image) == "tiny686"


def test_qcow2_input_is_read_through_a_copy(tmp_path: Path) -> None:
    raw = tmp_path / "win98.img"
    make_fat32_disk(raw, windows_tree=True)
    qcow = tmp_path / "win98.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow)], check=True)
    before = sha256(qcow)
    assert DiskImage.probe(qcow).format == "qcow2"
    assert detect_profile(qcow) == "win98"
    assert sha256(qcow) == before


def test_partition_table_is_parsed(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    offset = write_mbr(image, 8, partition_type=0x0B, start_lba=63)
    [partition] = read_partitions(image)
    assert (partition.type_id, partition.offset, partition.bootable, partition.is_fat) == (0x0B, 63 * 512, True, True)
    assert offset == 63 * 512


def test_missing_image_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not exist"):
        detect_profile(tmp_path / "nope.img")


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="directory"):
        detect_profile(tmp_path)
