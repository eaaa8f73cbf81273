"""Free space of a guest image's first FAT volume, read on the host from the image (never written, never mounted).

Why on the host: a model bigger than the guest's free disk would fail minutes into its transfer, or worse fill
C: and wedge Windows 98; agent98 has no free-space built-in (ports/agent98/README.md lists them), and tiny686
must decide whether it needs a second work disk before QEMU starts. So the harness reads the volume itself: the
MBR's first FAT partition (or a partitionless volume), its BIOS parameter block, and the FAT, counting free
clusters (the FSInfo hint can be stale, the FAT cannot). Raw images are read directly; any other format qemu-img
understands is read through `qemu-img dd`, only the sectors needed (a few MB of FAT for a multi-GB volume).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.errors import ImageError
from harness.core.proc import run, tool_env
from harness.vm.processes import QEMU_IMG, find_tool

SECTOR = 512
FAT_PARTITION_TYPES = {0x01: "FAT12", 0x04: "FAT16", 0x06: "FAT16", 0x0E: "FAT16", 0x0B: "FAT32", 0x0C: "FAT32"}


class TruncatedImageError(ImageError):
    """The image ends before what its own partition table and boot sector say it holds (an interrupted copy, a
    disk that filled up while the image was written). Never a warning: QEMU would boot a broken disk."""


@dataclass(frozen=True)
class FatSpace:
    """The first FAT volume of an image: its kind, cluster size, and total and free bytes."""

    kind: str  # FAT16 or FAT32
    cluster_bytes: int
    total_bytes: int
    free_bytes: int

    def fits(self, sizes: list[int]) -> bool:
        """Whether files of these sizes fit (each rounded up to whole clusters, one more cluster for their
        directory entries)."""
        clusters = sum(-(-size // self.cluster_bytes) for size in sizes) + 1
        return clusters * self.cluster_bytes <= self.free_bytes


class _Reader:
    """Bytes at an offset of the image as the guest sees the disk; a short read is a TruncatedImageError naming
    what was being read, so no caller ever indexes past the end of what it got."""

    def __init__(self, image: Path, fmt: str, size: int | None) -> None:
        self.image = image
        self.fmt = fmt
        self.size = size  # bytes the guest sees; None: not known (then only short reads tell)

    def read(self, offset: int, length: int, what: str) -> bytes:
        data = self._read(offset, length)
        if len(data) < length:
            size = self.size if self.size is not None else offset + len(data)
            raise TruncatedImageError(
                f"guest image {self.image} is truncated: it is {size} bytes but {what} lies at bytes "
                f"{offset}-{offset + length} (an interrupted copy? copy or build it again)")
        return data

    def _read(self, offset: int, length: int) -> bytes:
        if self.fmt == "raw":
            with self.image.open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        first, last = offset // SECTOR, -(-(offset + length) // SECTOR)
        with tempfile.TemporaryDirectory(prefix="llama98-fat-") as scratch:
            out = Path(scratch) / "part.raw"
            # qemu-img dd counts `count` from the start of the input, `skip` included
            run([find_tool(QEMU_IMG), "dd", "-f", self.fmt, "-O", "raw", f"bs={SECTOR}", f"skip={first}",
                 f"count={last}", f"if={self.image}", f"of={out}"], what="qemu-img dd", timeout=300,
                env=tool_env(), error=ImageError)
            data = out.read_bytes()
        start = offset - first * SECTOR
        return data[start:start + length]


def _volume_start(sector0: bytes) -> int:
    """Byte offset of the first FAT volume: the first FAT partition of an MBR, or 0 for a partitionless disk."""
    if sector0[510:512] != b"\x55\xaa":
        raise ImageError("no MBR or boot sector (55 AA missing)")
    if sector0[0x36:0x3B] in (b"FAT12", b"FAT16") or sector0[0x52:0x57] == b"FAT32":
        return 0  # a volume boot sector at sector 0
    for index in range(4):
        entry = sector0[446 + 16 * index: 446 + 16 * (index + 1)]
        if entry[4] in FAT_PARTITION_TYPES:
            return int.from_bytes(entry[8:12], "little") * SECTOR
    raise ImageError("the partition table has no FAT partition")


def fat_space(image: str | Path, fmt: str = "raw", size: int | None = None) -> FatSpace:
    """Free and total bytes of the first FAT16/FAT32 volume of `image` (format `fmt` as qemu-img names it;
    `size`: the disk's virtual size when known, else a raw file's own size).

    One-line ImageError when the image holds no FAT volume the harness can read; TruncatedImageError (one line,
    the file and the sizes) when the image ends before its partition table, boot sector, FAT or volume do."""
    path = Path(image)
    try:
        if size is None and fmt == "raw":
            size = path.stat().st_size
        reader = _Reader(path, fmt, size)
        start = _volume_start(reader.read(0, SECTOR, "its partition table (sector 0)"))
        boot = reader.read(start, SECTOR, "the boot sector of its first FAT volume")
        bytes_per_sector = int.from_bytes(boot[11:13], "little")
        per_cluster = boot[13]
        reserved = int.from_bytes(boot[14:16], "little")
        fats = boot[16]
        root_entries = int.from_bytes(boot[17:19], "little")
        total_sectors = int.from_bytes(boot[19:21], "little") or int.from_bytes(boot[32:36], "little")
        fat_sectors = int.from_bytes(boot[22:24], "little") or int.from_bytes(boot[36:40], "little")
        if bytes_per_sector not in (512, 1024, 2048, 4096) or per_cluster == 0 or fats == 0 or fat_sectors == 0:
            raise ImageError("its first volume has no valid FAT boot sector")
        root_sectors = -(-root_entries * 32 // bytes_per_sector)
        data_sectors = total_sectors - reserved - fats * fat_sectors - root_sectors
        clusters = data_sectors // per_cluster
        kind = "FAT32" if root_entries == 0 else "FAT16" if clusters >= 4085 else "FAT12"
        if kind == "FAT12":
            raise ImageError("its first volume is FAT12 (a floppy-sized volume), not a work disk")
        volume_end = start + total_sectors * bytes_per_sector
        if reader.size is not None and volume_end > reader.size:
            raise TruncatedImageError(
                f"guest image {path} is truncated: it is {reader.size} bytes but its boot sector says its first FAT "
                f"volume ends at byte {volume_end} (an interrupted copy? copy or build it again)")
        entry = 4 if kind == "FAT32" else 2
        table = reader.read(start + reserved * bytes_per_sector, (clusters + 2) * entry, "its FAT")
    except OSError as error:
        raise ImageError(f"cannot read guest image {path}: {error.strerror}") from None
    except TruncatedImageError:
        raise
    except ImageError as error:
        raise ImageError(f"cannot read the free space of guest image {path}: {error.message}") from None
    values = np.frombuffer(table, dtype="<u4" if entry == 4 else "<u2")[2:clusters + 2]
    if entry == 4:
        values = values & np.uint32(0x0FFFFFFF)
    cluster_bytes = per_cluster * bytes_per_sector
    free = int(np.count_nonzero(values == 0))
    return FatSpace(kind, cluster_bytes, clusters * cluster_bytes, free * cluster_bytes)
