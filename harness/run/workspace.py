"""Will a run's files fit the guest's work disk? Decided on the host before QEMU starts and before any transfer.

Why before: a model that does not fit fails minutes into its transfer (or fills C: and wedges Windows 98), and
tiny686 can only get a second disk at launch. The free space is read from the image's FAT volume on the host
(harness/vm/fatspace.py). Outcomes: the files fit (nothing to do); they do not, and the profile can mount a
second work disk (tiny686: `files.work_disk_mount`), so one of the right size is attached; or they do not and
it cannot (Windows 98): a one-line WorkSpaceError naming what is needed and what is free. A file of 4 GiB or
more fits no FAT32 volume at all, whatever its free space.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError, ImageError
from harness.formats.parts import part_name, part_paths
from harness.vm.disk import DiskImage
from harness.vm.fatspace import FatSpace, TruncatedImageError, fat_space
from harness.vm.profile import GuestProfile

FAT32_MAX_FILE = 4 * 1024 ** 3 - 1
SAFETY_BYTES = 4 * 1024 * 1024  # what the guest writes besides the files (FTP script, report, temp files)
MB = 1e6
log = logging.getLogger(__name__)


class WorkSpaceError(HarnessError):
    """The run's files cannot fit the guest's work disk."""


@dataclass(frozen=True)
class WorkSpacePlan:
    """What a run needs: `work_disk_bytes` > 0 means attach a second work disk of that size."""

    needed_bytes: int
    free_bytes: int | None  # None: the image's volume could not be read (then nothing is refused)
    work_disk_bytes: int = 0


def _listing(files: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {size / MB:.1f} MB" for name, size in files)


def work_volume(image: DiskImage) -> FatSpace | None:
    """The image's work volume, or None (with a warning) when it holds no FAT volume the harness can read.

    A truncated image is not a warning but its one-line TruncatedImageError: QEMU would boot a broken disk, and
    the Session asks this before it builds anything so that the user hears it first."""
    try:
        return fat_space(image.path, image.format, image.size)
    except TruncatedImageError:
        raise
    except ImageError as error:
        log.warning(f"free space on the guest's work disk not checked: {error.message}")
        return None


def plan_work_space(profile: GuestProfile, image: DiskImage, files: list[tuple[str, int]]) -> WorkSpacePlan:
    """Check `files` ((guest name, bytes) each) against the free space of the image's work volume."""
    return plan_for_volume(profile, image, files, work_volume(image))


def plan_for_volume(profile: GuestProfile, image: DiskImage, files: list[tuple[str, int]],
                    space: FatSpace | None) -> WorkSpacePlan:
    """plan_work_space with the volume already read by work_volume (a Session reads it once, before building)."""
    too_big = [(name, size) for name, size in files if size > FAT32_MAX_FILE]
    if too_big:
        name, size = too_big[0]
        raise WorkSpaceError(f"{name} is {size / MB:.1f} MB but a FAT32 volume holds files below 4 GiB "
                             f"({FAT32_MAX_FILE / MB:.1f} MB): split the checkpoint into parts or quantize it")
    needed = sum(size for _, size in files) + SAFETY_BYTES
    if space is None:
        return WorkSpacePlan(needed, None)
    if space.fits([size for _, size in files] + [SAFETY_BYTES]):
        return WorkSpacePlan(needed, space.free_bytes)
    if profile.files.work_disk_mount is not None:
        from harness.guests.tiny686.workdisk import work_disk_bytes

        size = work_disk_bytes(needed)
        log.info(f"the run's files ({needed / MB:.1f} MB) do not fit the image's {space.free_bytes / MB:.1f} MB "
                 f"free: attaching a {size / MB:.0f} MB work disk")
        return WorkSpacePlan(needed, space.free_bytes, size)
    raise WorkSpaceError(
        f"the work disk {profile.files.work_dir} of {image.path} has {space.free_bytes / MB:.1f} MB free but this "
        f"run needs {needed / MB:.1f} MB ({_listing(files)}, {SAFETY_BYTES / MB:.1f} MB spare): free "
        f"{(needed - space.free_bytes) / MB:.1f} MB on it or enlarge the image")


def run_files(profile: GuestProfile, binary: Path, inputs: tuple[Path, ...]) -> list[tuple[str, int]]:
    """(guest name, size) of the binary and the inputs (model, then tokenizer, named as the profile names
    them; more inputs keep their own names). The model counts every part of a split checkpoint, each under
    its guest name (MODEL.BIN, MODEL.B01, ...: harness/formats/parts.py)."""
    names = [profile.files.names["binary"], profile.files.names["model"], profile.files.names["tokenizer"]]
    out: list[tuple[str, int]] = []
    for index, path in enumerate([binary, *inputs]):
        name = names[index] if index < len(names) else path.name
        if index == 1:
            out += [(part_name(name, part), part_path.stat().st_size)
                    for part, part_path in enumerate(part_paths(path))]
        else:
            out.append((name, path.stat().st_size))
    return out
