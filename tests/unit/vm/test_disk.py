"""The user's disk image when it cannot be read: every way is one ImageError line naming the image, from the probe,
from its checksum and from `llama98-harness run`, never a bare OSError."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli
from harness.core.errors import ImageError
from harness.vm.disk import DiskImage
from tests.support.diskimages import write_mbr
from tests.support.unreadable import locked_file, outcome_as_nobody, public_dir


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Image hashes and generated models go to a private cache, never the user's."""
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))


def test_a_path_through_a_regular_file_does_not_exist(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(ImageError) as info:
        DiskImage.probe(plain / "disk.img")
    assert str(info.value) == f"guest image {plain / 'disk.img'} does not exist (a directory on its path is a file)"


def test_an_image_the_user_cannot_read(tmp_path: Path) -> None:
    with public_dir() as directory:
        locked = locked_file(directory, "locked.img", b"\0" * 1024)
        message = outcome_as_nobody(lambda: DiskImage.probe(locked))
        private = directory / "private"
        private.mkdir(mode=0o700)
        hidden = private / "disk.img"
        write_mbr(hidden, 1)
        behind_a_locked_directory = outcome_as_nobody(lambda: DiskImage.probe(hidden))
    assert message == f"ImageError: guest image {locked} is not readable: Permission denied"
    assert behind_a_locked_directory == f"ImageError: guest image {hidden} is not readable: Permission denied"


def test_an_image_made_unreadable_after_its_probe_is_not_served_from_the_memo() -> None:
    """chmod changes no mtime: the memo must not hand a now-unreadable image on to QEMU and the hasher."""
    with public_dir() as directory:
        image = directory / "disk.img"
        write_mbr(image, 1)
        image.chmod(0o644)
        DiskImage.probe(image)
        image.chmod(0o000)
        message = outcome_as_nobody(lambda: DiskImage.probe(image))
    assert message == f"ImageError: guest image {image} is not readable: Permission denied"


def test_the_checksum_of_an_image_gone_since_its_probe_is_one_line(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    write_mbr(image, 1)
    probed = DiskImage.probe(image)
    assert len(probed.sha256()) == 64
    image.unlink()
    with pytest.raises(ImageError, match=rf"^guest image {image} is not readable: No such file or directory$"):
        probed.sha256()


@pytest.mark.parametrize("kind", ["directory", "through-a-file"])
def test_run_with_an_unusable_image_exits_with_one_line(kind: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "plain"
    plain.write_text("x")
    image, expected = {
        "directory": (tmp_path, f"guest image {tmp_path} is a directory, not a disk image"),
        "through-a-file": (plain / "disk.img", f"guest image {plain / 'disk.img'} does not exist (a directory on "
                                               f"its path is a file)"),
    }[kind]
    assert cli.main(["run", "--vm", str(image), "--model", "260K-shape", "-n", "2"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"llama98-harness: error: {expected}"
    assert all(line.startswith("[") for line in err.splitlines()[:-1])  # only timestamped progress lines before it
