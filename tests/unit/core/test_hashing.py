"""file_sha256: the digest every "these bytes are unchanged" proof relies on, streamed in blocks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from harness.core.hashing import BLOCK, file_sha256


@pytest.mark.parametrize("size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17])
def test_matches_hashlib_across_block_boundaries(size: int, tmp_path: Path) -> None:
    data = os.urandom(size)
    path = tmp_path / f"data-{size}.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)  # str and Path alike


def test_known_digests(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    abc = tmp_path / "abc"
    abc.write_bytes(b"abc")
    assert file_sha256(abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_one_changed_byte_changes_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "image.raw"
    path.write_bytes(bytes(2 * BLOCK))
    before = file_sha256(path)
    with path.open("r+b") as handle:
        handle.seek(BLOCK + 5)
        handle.write(b"\x01")
    assert file_sha256(path) != before


def test_a_large_sparse_image_is_hashed_without_reading_it_into_memory(tmp_path: Path) -> None:
    """A 64 MiB sparse image: the digest of that many zero bytes, computed in blocks."""
    path = tmp_path / "sparse.img"
    size = 64 * BLOCK
    with path.open("wb") as handle:
        handle.truncate(size)
    expected = hashlib.sha256()
    zeros = bytes(BLOCK)
    for _ in range(size // BLOCK):
        expected.update(zeros)
    assert file_sha256(path) == expected.hexdigest()


def test_the_file_is_only_read(tmp_path: Path) -> None:
    path = tmp_path / "readonly.bin"
    path.write_bytes(b"user image")
    path.chmod(0o444)
    stat_before = path.stat()
    assert file_sha256(path) == hashlib.sha256(b"user image").hexdigest()
    assert path.stat().st_mtime_ns == stat_before.st_mtime_ns and path.read_bytes() == b"user image"


def test_missing_file_and_directory_raise_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "absent")
    with pytest.raises(IsADirectoryError):
        file_sha256(tmp_path)
