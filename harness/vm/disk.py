"""The user's guest disk image, checked once per run, and the throw-away overlay QEMU writes instead of it.

Why: the user's image must never be written. QEMU only ever sees a qcow2 overlay in the run's private directory
whose backing file is the image. `qemu-img info` runs once per image version (memoised by path, size and mtime),
because both profile detection and the Machine need its answer.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import ImageError
from harness.core.hashing import file_sha256
from harness.core.paths import cache_dir
from harness.core.proc import run, tool_env
from harness.vm.processes import QEMU_IMG, QemuError, find_tool

# Formats qemu-img recognises by content; "raw" is what it answers for anything else, so raw needs a closer look.
STRUCTURED_FORMATS = ("qcow2", "qcow", "vmdk", "vdi", "vpc", "vhdx", "qed", "parallels", "dmg", "cloop", "bochs")
BOOT_SIGNATURE = b"\x55\xaa"

_PROBED: dict[tuple[str, int, int, int], DiskImage] = {}


@dataclass(frozen=True)
class DiskImage:
    """A user's guest image: absolute path, format as QEMU reads it, virtual size, first sector."""

    path: Path
    format: str
    size: int
    first_sector: bytes = b""

    @property
    def has_boot_signature(self) -> bool:
        """Whether the first sector ends in 55 AA (an MBR or boot sector), as every bootable raw disk does."""
        return len(self.first_sector) >= 512 and self.first_sector[510:512] == BOOT_SIGNATURE

    @classmethod
    def probe(cls, image: str | Path) -> DiskImage:
        """Check `image` is a readable file qemu-img can open and learn its format; one-line ImageError otherwise.

        Memoised per (path, size, mtime): a run probes each image once however many layers ask.
        """
        path = Path(image).expanduser().absolute()
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ImageError(f"guest image {path} does not exist") from None
        except NotADirectoryError:
            raise ImageError(f"guest image {path} does not exist (a directory on its path is a file)") from None
        except OSError as error:
            raise ImageError(f"guest image {path} is not readable: {error.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"guest image {path} is a directory, not a disk image")
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"guest image {path} is not a regular file")
        # The mode is part of the key: chmod changes no mtime, and an image made unreadable since it was probed
        # must get its one-line error here, not a bare PermissionError later from whoever opens it next.
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_mode)
        if key in _PROBED:
            return _PROBED[key]
        try:
            with path.open("rb") as handle:
                first_sector = handle.read(512)
        except OSError as error:
            raise ImageError(f"guest image {path} is not readable: {error.strerror}") from None
        try:
            qemu_img = find_tool(QEMU_IMG)
        except QemuError as error:
            raise ImageError(error.message) from None
        result = run([qemu_img, "info", "--output=json", str(path)], what="qemu-img info", timeout=60,
                     env=tool_env(), check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise ImageError(f"guest image {path} is not a disk image qemu-img can read: {detail}")
        info = json.loads(result.stdout)
        fmt = str(info.get("format", ""))
        fmt = fmt if fmt in STRUCTURED_FORMATS else "raw"
        probed = cls(path=path, format=fmt, size=int(info.get("virtual-size", st.st_size)),
                     first_sector=first_sector)
        _PROBED[key] = probed
        return probed

    def require_bootable(self) -> None:
        """A raw file without a boot signature is not a disk QEMU could boot (qemu-img calls anything "raw")."""
        if self.format == "raw" and not self.has_boot_signature:
            raise ImageError(f"guest image {self.path} is not a disk image (no boot sector signature, "
                             f"qemu-img sees format raw)")

    def sha256(self) -> str:
        """sha256 of the image file, cached by (path, size, mtime) so a multi-GB image is hashed once."""
        try:
            st = self.path.stat()
        except OSError as error:
            raise ImageError(f"guest image {self.path} is not readable: {error.strerror}") from None
        identity = f"{self.path}|{st.st_size}|{st.st_mtime_ns}"
        record = cache_dir("image-hashes") / (hashlib.sha256(identity.encode()).hexdigest()[:32] + ".json")
        try:
            cached = json.loads(record.read_text())
            if cached.get("identity") == identity:
                return str(cached["sha256"])
        except (OSError, ValueError, KeyError):
            pass
        try:
            digest = file_sha256(self.path)
        except OSError as error:
            raise ImageError(f"guest image {self.path} is not readable: {error.strerror}") from None
        try:
            record.write_text(json.dumps({"identity": identity, "sha256": digest}))
        except OSError:  # a full cache disk costs a re-hash next time, not this run
            pass
        return digest


def create_overlay(image: DiskImage, overlay: Path) -> None:
    """A fresh qcow2 overlay backed (read-only) by the image."""
    run([find_tool(QEMU_IMG), "create", "-q", "-f", "qcow2", "-b", str(image.path), "-F", image.format,
         str(overlay)], what="qemu-img create", env=tool_env(), error=QemuError)


def rebase_overlay(overlay: Path, image: DiskImage) -> None:
    """Point a cached overlay at the image's path today (it records whatever the image was called when cached)."""
    run([find_tool(QEMU_IMG), "rebase", "-u", "-b", str(image.path), "-F", image.format, str(overlay)],
        what="qemu-img rebase", env=tool_env(), error=QemuError)
