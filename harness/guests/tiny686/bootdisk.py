"""The tiny686 guest's disk: an MBR, one bootable FAT32 partition, syslinux, the kernel and the initramfs.

The FAT32 partition is both what the guest boots from and its work disk (/mnt/c, like C: on Windows 98), so
the harness can read results back from the image with mtools. It is assembled without root: the MBR is written
by hand (syslinux's mbr.bin code plus one partition entry), the partition formatted and filled with mtools at a
byte offset, and syslinux installed through its mtools-based installer (no loop devices, no mounts).
"""

from __future__ import annotations

from pathlib import Path

from harness.guests.tiny686.host_tools import MBR_BIN, run_tool

IMAGE_BYTES = 512 * 1024 * 1024  # sparse; the FAT32 partition is the guest's work disk
PARTITION_START_SECTOR = 2048  # 1 MiB, the usual alignment
SECTOR = 512
FAT_LABEL = "TINY686"
FAT_SERIAL = "7191686a"  # fixed, so the volume is recognisable (file dates still differ between builds)


def write_disk(image: Path, kernel: Path, initramfs: bytes, syslinux_cfg: Path, scratch: Path) -> None:
    """MBR (syslinux mbr.bin) + one active FAT32 partition holding syslinux, the kernel and the initramfs."""
    partition_sectors = IMAGE_BYTES // SECTOR - PARTITION_START_SECTOR
    with image.open("wb") as handle:
        handle.truncate(IMAGE_BYTES)
        handle.write(_master_boot_record(PARTITION_START_SECTOR, partition_sectors))
    target = f"{image}@@{PARTITION_START_SECTOR * SECTOR}"
    run_tool(["mformat", "-i", target, "-F", "-T", str(partition_sectors), "-h", "64", "-s", "32",
              "-H", str(PARTITION_START_SECTOR), "-v", FAT_LABEL, "-N", FAT_SERIAL, "::"], "formatting FAT32")
    initrd = scratch / "INITRD.GZ"
    initrd.write_bytes(initramfs)
    for source, name in ((kernel, "VMLINUZ"), (initrd, "INITRD.GZ"), (syslinux_cfg, "SYSLINUX.CFG")):
        run_tool(["mcopy", "-i", target, "-m", str(source), f"::{name}"], f"copying {name} into the image")
    run_tool(["syslinux", "--offset", str(PARTITION_START_SECTOR * SECTOR), "--install", str(image)],
             "installing syslinux")


def _master_boot_record(start: int, sectors: int) -> bytes:
    """Sector 0: mbr.bin's boot code, a fixed disk signature and one active FAT32-LBA (0x0C) partition entry."""
    code = MBR_BIN.read_bytes()[:440]
    entry = bytes([0x80, 0xFE, 0xFF, 0xFF, 0x0C, 0xFE, 0xFF, 0xFF]) + start.to_bytes(4, "little") \
        + sectors.to_bytes(4, "little")
    record = code.ljust(440, b"\0") + bytes.fromhex("686a6971") + b"\0\0" + entry + b"\0" * 48 + b"\x55\xaa"
    assert len(record) == SECTOR
    return record
