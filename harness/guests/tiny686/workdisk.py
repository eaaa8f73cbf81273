"""A second, sparse work disk for tiny686 when the files of a run do not fit its boot disk's FAT32 volume.

The tiny686 image has one 512 MiB FAT32 partition that is both boot and work disk; a 440 MB model plus the
binary barely fit and a quantized 1B model does not. Growing the cached image would make every run copy a
bigger snapshot, so instead a run that needs room gets its own throw-away disk: an MBR with one FAT32-LBA
partition at 1 MiB, formatted with mtools at a byte offset (no root, no loop device), converted to a sparse
qcow2 (only the FAT and what the guest writes take host space). The guest profile's `files.work_disk_mount`
mounts its partition over the work directory, so guest paths do not change. FAT32 is what Windows 98 has too,
so the same 4 GiB-per-file limit applies in both guests.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.proc import run, tool_env
from harness.guests.tiny686.host_tools import GuestBuildError, run_tool
from harness.vm.processes import QEMU_IMG, find_tool

SECTOR = 512
PARTITION_START_SECTOR = 2048
MIN_BYTES = 256 * 1024 * 1024  # mformat picks 4 KiB clusters from here up, and FAT32 wants >= 65525 clusters
HEADROOM = 1.05  # FAT tables, directory clusters, rounding every file up to a cluster
LABEL = "WORK"
SERIAL = "776f726b"


def work_disk_bytes(needed: int) -> int:
    """Disk size for files of `needed` bytes in total: headroom, at least MIN_BYTES, whole MiB."""
    size = max(int(needed * HEADROOM) + 64 * 1024 * 1024, MIN_BYTES)
    return -(-size // (1024 * 1024)) * 1024 * 1024


def create_work_disk(target: Path, size: int) -> Path:
    """Write a sparse qcow2 disk of `size` bytes holding one empty FAT32 partition; returns `target`."""
    raw = target.with_suffix(".raw")
    sectors = size // SECTOR - PARTITION_START_SECTOR
    entry = bytes([0x00, 0xFE, 0xFF, 0xFF, 0x0C, 0xFE, 0xFF, 0xFF]) + PARTITION_START_SECTOR.to_bytes(4, "little") \
        + sectors.to_bytes(4, "little")
    mbr = b"\0" * 440 + bytes.fromhex(SERIAL) + b"\0\0" + entry + b"\0" * 48 + b"\x55\xaa"
    try:
        with raw.open("wb") as handle:
            handle.truncate(size)
            handle.write(mbr)
        run_tool(["mformat", "-i", f"{raw}@@{PARTITION_START_SECTOR * SECTOR}", "-F", "-T", str(sectors),
                  "-h", "64", "-s", "32", "-H", str(PARTITION_START_SECTOR), "-v", LABEL, "-N", SERIAL, "::"],
                 "formatting the FAT32 work disk")
        run([find_tool(QEMU_IMG), "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(target)],
            what="qemu-img convert (work disk)", error=GuestBuildError, timeout=600, env=tool_env())
    finally:
        raw.unlink(missing_ok=True)
    return target
