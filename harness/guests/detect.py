"""Tell which guest profile a user's disk image needs, without ever writing to it.

`--vm-profile auto` relies on this: an image whose MBR has a FAT partition holding WINDOWS/WIN.COM is a Windows 98
image (profile `win98`); anything else is treated as a serial-console Linux guest like the built-in `tiny686`.
Raw images are read in place through mtools' offset addressing (read-only commands only); other formats are
first converted to a temporary raw copy, so the user's file is only ever opened for reading.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import ImageError
from harness.core.proc import require, run, tool_env
from harness.vm.disk import DiskImage

FAT_PARTITION_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}
SECTOR = 512


@dataclass(frozen=True)
class Partition:
    """One primary MBR partition entry."""

    index: int
    type_id: int
    start_lba: int
    sectors: int
    bootable: bool

    @property
    def offset(self) -> int:
        return self.start_lba * SECTOR

    @property
    def is_fat(self) -> bool:
        return self.type_id in FAT_PARTITION_TYPES


def read_partitions(raw_image: Path) -> list[Partition]:
    """The primary partitions of a raw image's MBR; an empty list when sector 0 carries no MBR signature."""
    with raw_image.open("rb") as handle:
        sector = handle.read(SECTOR)
    if len(sector) < SECTOR or sector[510:512] != b"\x55\xaa":
        return []
    partitions = []
    for index in range(4):
        entry = sector[446 + 16 * index: 462 + 16 * index]
        status, type_id = entry[0], entry[4]
        start_lba, sectors = struct.unpack_from("<II", entry, 8)
        if type_id and sectors:
            partitions.append(Partition(index + 1, type_id, start_lba, sectors, status == 0x80))
    return partitions


def fat_file_exists(raw_image: Path, partition: Partition, dos_path: str) -> bool:
    """Whether DOS_PATH (e.g. `WINDOWS/WIN.COM`) exists on a FAT partition, using read-only mtools."""
    mdir = require("mdir", "apt-get install mtools", ImageError)
    listing = run([mdir, "-b", "-i", f"{raw_image}@@{partition.offset}", f"::/{dos_path}"], what="mdir",
                  timeout=60, env=tool_env(MTOOLS_SKIP_CHECK="1", MTOOLS_NO_VFAT="0"), check=False,
                  error=ImageError)
    return listing.returncode == 0


_detected: dict[tuple[str, int, int], str] = {}


def detect_profile(image: Path) -> str:
    """`win98` for an image with a FAT partition holding WINDOWS/WIN.COM, else `tiny686`.

    Remembered per (path, size, mtime): collection, fixtures and the Session all ask, and a qcow2 image is
    converted to raw to be read.
    """
    image_format = DiskImage.probe(image).format  # one-line errors for a missing or non-image file
    stat = image.stat()
    key = (str(image.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _detected:
        _detected[key] = _detect(image, image_format)
    return _detected[key]


def _detect(image: Path, image_format: str) -> str:
    if image_format == "raw":
        return _detect_in_raw(image)
    with tempfile.TemporaryDirectory(prefix="llama98-detect-") as scratch:
        raw_copy = Path(scratch) / "image.raw"
        run(["qemu-img", "convert", "-f", image_format, "-O", "raw", str(image), str(raw_copy)],
            what=f"reading {image_format} image {image} (qemu-img convert)", timeout=600, error=ImageError)
        return _detect_in_raw(raw_copy)


def _detect_in_raw(raw_image: Path) -> str:
    for partition in read_partitions(raw_image):
        if partition.is_fat and fat_file_exists(raw_image, partition, "WINDOWS/WIN.COM"):
            return "win98"
    return "tiny686"
