"""resolve_guest: what `--vm` and `--vm-profile` pick. The built-in name builds (or finds) tiny686; a path is the
user's image, whose profile is detected from its contents unless one is named; bad values are one-line errors.
The images are real synthetic disks (an MBR and an mtools-made FAT32 partition), never written by resolving."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from harness.core.errors import ImageError
from harness.guests import BUILTIN_GUEST
from harness.guests.detect import detect_profile
from harness.guests.resolve import resolve_guest
from harness.vm.profile import ProfileError, load_profile
from tests.support.diskimages import make_fat32_disk


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def win98_image(tmp_path: Path) -> Path:
    image = tmp_path / "win98.img"
    make_fat32_disk(image, size_mb=40, windows_tree=True)
    return image


@pytest.fixture()
def linux_image(tmp_path: Path) -> Path:
    image = tmp_path / "linux.img"
    make_fat32_disk(image, size_mb=40, windows_tree=False)
    return image


def test_a_windows_tree_resolves_to_win98_without_writing_the_image(win98_image: Path) -> None:
    before = _sha256(win98_image)
    profile, image = resolve_guest(str(win98_image))
    assert (profile.name, image) == ("win98", win98_image)
    assert profile.console.kind == "agent98"
    assert _sha256(win98_image) == before


def test_any_other_disk_resolves_to_the_serial_console_guest(linux_image: Path, tmp_path: Path) -> None:
    profile, image = resolve_guest(str(linux_image), "auto")
    assert (profile.name, image) == ("tiny686", linux_image)
    bare = tmp_path / "boot-sector-only.img"  # no partition table at all
    sector = bytearray(512)
    sector[510:512] = b"\x55\xaa"
    bare.write_bytes(bytes(sector) + bytes(1024 * 1024))
    assert resolve_guest(str(bare))[0].name == "tiny686"


def test_a_qcow2_image_is_detected_through_a_raw_copy(win98_image: Path, tmp_path: Path) -> None:
    qcow = tmp_path / "win98.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(win98_image), str(qcow)], check=True)
    before = _sha256(qcow)
    assert resolve_guest(str(qcow))[0].name == "win98"
    assert _sha256(qcow) == before


@pytest.mark.parametrize(("which", "named", "expected"), [
    ("linux", "win98", "win98"),
    ("win98", "tiny686", "tiny686"),
])
def test_a_named_profile_wins_over_detection(which: str, named: str, expected: str, win98_image: Path,
                                             linux_image: Path) -> None:
    image = win98_image if which == "win98" else linux_image
    profile, resolved = resolve_guest(str(image), named)
    assert (profile.name, resolved) == (expected, image)


def test_a_profile_file_can_be_named_by_path(linux_image: Path, tmp_path: Path) -> None:
    custom = tmp_path / "my-tiny.yaml"
    custom.write_text(load_profile("tiny686").source.read_text().replace("memory_mb: 128", "memory_mb: 256"))
    profile, _ = resolve_guest(str(linux_image), str(custom))
    assert profile.source == custom and profile.machine.memory_mb == 256


@pytest.mark.parametrize("name", ["nosuch", "win95"])
def test_an_unknown_profile_is_one_line_naming_the_known_ones(name: str, linux_image: Path) -> None:
    with pytest.raises(ProfileError) as info:
        resolve_guest(str(linux_image), name)
    message = str(info.value)
    assert message.startswith(f"unknown guest profile {name!r} (available: ") and "tiny686" in message
    assert "win98" in message and "\n" not in message


def test_a_missing_image_or_a_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as missing:
        resolve_guest(str(tmp_path / "nope.img"))
    assert str(missing.value) == f"guest image {tmp_path / 'nope.img'} does not exist"
    with pytest.raises(ImageError) as directory:
        resolve_guest(str(tmp_path))
    assert str(directory.value) == f"guest image {tmp_path} is a directory, not a disk image"


@pytest.mark.vm
@pytest.mark.parametrize("vm", [BUILTIN_GUEST, None])
def test_the_builtin_name_gives_the_cached_tiny686_image(vm: str | None) -> None:
    """The guest is built once per cache; with the image cached (as after any `--vm tiny686` run) this is quick."""
    profile, image = resolve_guest(vm)
    assert profile.name == "tiny686" and image.name == "tiny686.img" and image.is_file()
    assert detect_profile(image) == "tiny686"  # what auto-detection says of the same file given as a path
    assert resolve_guest(vm, "win98")[0].name == "win98"  # a named profile applies to the built-in image too
