"""Reading a guest image's FAT volume on the host when the image is cut short (an interrupted copy, a disk that
filled up): one TruncatedImageError line naming the file and the sizes, from fat_space, from the work-space plan
(never downgraded to a warning) and from `llama98-harness run`, never an IndexError from the boot sector.

The images are real: an MBR and a FAT32 volume made by mtools (tests/support/diskimages.py), then truncated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from harness import cli
from harness.core.errors import ImageError
from harness.core.proc import run
from harness.run.workspace import plan_work_space
from harness.vm.disk import DiskImage
from harness.vm.fatspace import TruncatedImageError, fat_space
from harness.vm.profile import load_profile
from tests.support.diskimages import make_fat32_disk

MB = 1024 * 1024


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` generates its stand-in model into the cache: a private one, so the user's is never touched."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def fat32_image(tmp_path: Path) -> tuple[Path, int]:
    """A 64 MB MBR disk with one FAT32 partition; (path, byte offset of the volume)."""
    image = tmp_path / "disk.img"
    return image, make_fat32_disk(image, 64, windows_tree=False)


def _truncated(image: Path, size: int) -> Path:
    with image.open("r+b") as handle:
        handle.truncate(size)
    return image


def test_an_image_cut_right_after_its_partition_table_is_one_line(fat32_image: tuple[Path, int]) -> None:
    image, offset = fat32_image
    assert fat_space(image).kind == "FAT32"  # whole, it reads
    _truncated(image, 512)
    with pytest.raises(TruncatedImageError) as info:
        fat_space(image)
    assert str(info.value) == (f"guest image {image} is truncated: it is 512 bytes but the boot sector of its first "
                               f"FAT volume lies at bytes {offset}-{offset + 512} (an interrupted copy? copy or build "
                               f"it again)")
    assert isinstance(info.value, ImageError)


def test_cut_inside_the_fat_or_the_data_or_before_the_partition_table(fat32_image: tuple[Path, int]) -> None:
    image, offset = fat32_image
    _truncated(image, 40 * MB)  # the FAT is whole, the volume is not
    with pytest.raises(TruncatedImageError, match=rf"it is {40 * MB} bytes but its boot sector says its first FAT "
                                                  rf"volume ends at byte {64 * MB}"):
        fat_space(image)
    _truncated(image, offset + 4096)  # inside the reserved sectors: the FAT itself is missing
    with pytest.raises(TruncatedImageError, match=rf"it is {offset + 4096} bytes but its boot sector says"):
        fat_space(image)
    _truncated(image, 100)
    with pytest.raises(TruncatedImageError, match=r"it is 100 bytes but its partition table \(sector 0\) lies at "
                                                  r"bytes 0-512"):
        fat_space(image)


def test_a_truncated_qcow2_image_is_caught_too(fat32_image: tuple[Path, int], tmp_path: Path) -> None:
    """qcow2's virtual size is what the guest sees: an image converted from a cut copy ends early the same way."""
    image, offset = fat32_image
    _truncated(image, 1 * MB)
    qcow2 = tmp_path / "cut.qcow2"
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(image), str(qcow2)])
    disk = DiskImage.probe(qcow2)
    with pytest.raises(TruncatedImageError, match=rf"guest image {qcow2} is truncated: it is {MB} bytes but the "
                                                  rf"boot sector of its first FAT volume lies at bytes {offset}-"):
        fat_space(disk.path, disk.format, disk.size)


def test_the_work_space_plan_refuses_a_truncated_image_instead_of_warning(
        fat32_image: tuple[Path, int], caplog: pytest.LogCaptureFixture) -> None:
    image, _ = fat32_image
    _truncated(image, 512)
    with caplog.at_level(logging.WARNING), pytest.raises(TruncatedImageError):
        plan_work_space(load_profile("tiny686"), DiskImage.probe(image), [("MODEL.BIN", 1000)])
    assert not caplog.records


def test_run_with_a_truncated_image_exits_with_one_line(fat32_image: tuple[Path, int],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before the port is built and before QEMU starts."""
    image, offset = fat32_image
    _truncated(image, 512)
    assert cli.main(["run", "--vm", str(image), "--model", "260K-shape", "-n", "2"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "IndexError" not in err
    lines = err.splitlines()
    assert lines[-1] == (f"llama98-harness: error: guest image {image} is truncated: it is 512 bytes but the boot "
                         f"sector of its first FAT volume lies at bytes {offset}-{offset + 512} (an interrupted copy? "
                         f"copy or build it again)")
    assert all(line.startswith("[") for line in lines[:-1])  # only timestamped progress lines before it
    assert not any("building llama98" in line for line in lines)
