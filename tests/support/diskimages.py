"""Synthetic disk images for tests: an MBR plus a FAT32 partition made with mtools, optionally holding a
Windows 98-like tree. Real mtools, real partition tables; nothing mocked."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

SECTOR = 512
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def write_mbr(image: Path, size_mb: int, partition_type: int = 0x0C, start_lba: int = 2048) -> int:
    """Create a sparse raw image with one bootable primary partition; return the partition's byte offset."""
    total_sectors = size_mb * 1024 * 1024 // SECTOR
    with image.open("wb") as handle:
        handle.truncate(total_sectors * SECTOR)
        entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", partition_type, b"\xfe\xff\xff",
                            start_lba, total_sectors - start_lba)
        handle.seek(446)
        handle.write(entry)
        handle.seek(510)
        handle.write(b"\x55\xaa")
    return start_lba * SECTOR


def make_fat32_disk(image: Path, size_mb: int = 64, windows_tree: bool = True) -> int:
    """An MBR disk with a FAT32 partition; with windows_tree, WINDOWS/WIN.COM and friends like a Win98 install."""
    offset = write_mbr(image, size_mb)
    target = f"{image}@@{offset}"
    subprocess.run(["mformat", "-i", target, "-F", "-v", "WIN98", "::"], check=True, env=MTOOLS_ENV,
                   capture_output=True)
    if windows_tree:
        for directory in ("WINDOWS", "WINDOWS/COMMAND", "WINDOWS/START MENU", "WINDOWS/START MENU/PROGRAMS",
                          "WINDOWS/START MENU/PROGRAMS/STARTUP"):
            subprocess.run(["mmd", "-i", target, f"::/{directory}"], check=True, env=MTOOLS_ENV, capture_output=True)
        source = image.parent / "WIN.COM"
        source.write_bytes(b"\xe9\x00\x00fake win.com for tests")
        subprocess.run(["mcopy", "-i", target, str(source), "::/WINDOWS/WIN.COM"], check=True, env=MTOOLS_ENV,
                       capture_output=True)
        win_ini = image.parent / "WIN.INI"
        win_ini.write_bytes(b"[windows]\r\nload=\r\nrun=\r\n")
        subprocess.run(["mcopy", "-i", target, str(win_ini), "::/WINDOWS/WIN.INI"], check=True, env=MTOOLS_ENV,
                       capture_output=True)
    return offset
