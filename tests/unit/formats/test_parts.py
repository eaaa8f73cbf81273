"""Checkpoints split into parts (harness/formats/parts.py): the naming rule the port shares, discovery, the two
writers (byte-exact against the unsplit file, stale parts removed, nothing half-written after a failure) and
their one-line refusals."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.formats.parts import (
    MAX_PART_INDEX,
    PART_BYTES_DEFAULT,
    PART_LIMIT,
    PartsError,
    PartsWriter,
    check_port_readable,
    describe,
    logical_crc32,
    logical_size,
    part_bytes_from_mb,
    part_name,
    part_path,
    part_paths,
    part_sizes,
    plan_parts,
    read_head,
    read_logical,
    write_parts,
)


def _data(size: int, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _joined(first: Path) -> bytes:
    return b"".join(path.read_bytes() for path in part_paths(first))


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize(("first", "index", "expected"), [
    ("MODEL.BIN", 1, "MODEL.B01"),
    ("MODEL.BIN", 99, "MODEL.B99"),
    ("model.bin", 2, "model.b02"),
    ("stories110M.bin", 12, "stories110M.b12"),
    ("Model.Bin", 1, "Model.b01"),  # any lowercase letter in the extension: lowercase
    ("MODEL.B1n", 1, "MODEL.b01"),
    ("v1.2.BIN", 3, "v1.2.B03"),  # only the last extension is replaced
    ("MODEL", 1, "MODEL.B01"),  # no extension: appended, uppercase
    ("model", 1, "model.B01"),
    ("MODEL.BIN", 0, "MODEL.BIN"),  # part 0 is the file itself
])
def test_part_names_follow_the_rule(first: str, index: int, expected: str) -> None:
    assert part_name(first, index) == expected


def test_part_path_looks_at_the_file_name_only(tmp_path: Path) -> None:
    assert part_path(tmp_path / "dir.x" / "MODEL", 1) == tmp_path / "dir.x" / "MODEL.B01"
    with pytest.raises(PartsError, match=r"part 100 is out of range"):
        part_name("MODEL.BIN", MAX_PART_INDEX + 1)


def test_discovery_stops_at_the_first_missing_part(tmp_path: Path) -> None:
    first = tmp_path / "model.bin"
    for name, size in (("model.bin", 10), ("model.b01", 20), ("model.b02", 5), ("model.b04", 7), ("MODEL.B03", 1)):
        (tmp_path / name).write_bytes(b"x" * size)
    assert [p.name for p in part_paths(first)] == ["model.bin", "model.b01", "model.b02"]
    assert part_sizes(first) == [10, 20, 5]
    assert logical_size(first) == 35
    assert describe(first) == f"{first} (+ model.b01..model.b02, 3 parts)"
    lone = tmp_path / "lone.bin"
    lone.write_bytes(b"y")
    assert part_paths(lone) == [lone] and describe(lone) == str(lone)


def test_auto_split_only_from_the_limit(tmp_path: Path) -> None:
    data = _data(2500)
    first = tmp_path / "MODEL.BIN"
    assert write_parts(first, _chunks(data[:999], 100), limit=1000) == [first]
    assert part_sizes(first) == [999]
    write_parts(first, _chunks(data[:1000], 333), limit=1000)  # exactly the limit: already too big for one part
    assert part_sizes(first) == [999, 1]
    paths = write_parts(first, _chunks(data, 700), limit=1000)
    assert [p.name for p in paths] == ["MODEL.BIN", "MODEL.B01", "MODEL.B02"]
    assert part_sizes(first) == [999, 999, 502] == plan_parts(2500, limit=1000)
    assert _joined(first) == data


def test_asked_split_is_byte_exact_and_never_ends_with_an_empty_part(tmp_path: Path) -> None:
    data = _data(3000, seed=2)
    first = tmp_path / "model.bin"
    write_parts(first, _chunks(data, 128), part_bytes=1000)
    assert part_sizes(first) == [1000, 1000, 1000] == plan_parts(3000, 1000)
    write_parts(first, _chunks(data[:2001], 4096), part_bytes=1000)
    assert part_sizes(first) == [1000, 1000, 1]
    assert _joined(first) == data[:2001]
    assert logical_crc32(first) == (2001, zlib.crc32(data[:2001]))
    assert read_head(first, 1500) == data[:1500]
    assert read_logical(first).tobytes() == data[:2001]


def test_random_access_writer_matches_the_stream_writer(tmp_path: Path) -> None:
    data = _data(5000, seed=3)
    first = tmp_path / "model.bin"
    with PartsWriter(first, len(data), part_bytes=1200) as out:
        for start in reversed(range(0, len(data), 700)):  # any order, across part boundaries
            out.write_at(start, data[start:start + 700])
    assert out.paths == part_paths(first)
    assert part_sizes(first) == [1200, 1200, 1200, 1200, 200]
    assert _joined(first) == data
    with pytest.raises(PartsError, match="beyond the logical file's 10 bytes"), PartsWriter(tmp_path / "x", 10) as w:
        w.write_at(8, b"abc")
    assert not (tmp_path / "x").exists()


def test_a_shorter_split_removes_the_stale_parts(tmp_path: Path) -> None:
    first = tmp_path / "MODEL.BIN"
    write_parts(first, [_data(5000)], part_bytes=1000)
    assert len(part_paths(first)) == 5
    (tmp_path / "MODEL.B07").write_bytes(b"older still")  # beyond a gap: invisible, but removed all the same
    write_parts(first, [_data(1500, seed=4)], part_bytes=1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL.B01", "MODEL.BIN"]
    with PartsWriter(first, 10) as out:
        out.write_at(0, b"0123456789")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MODEL.BIN"]


def test_a_failed_write_leaves_the_old_set_and_no_temporary_files(tmp_path: Path) -> None:
    first = tmp_path / "model.bin"
    old = _data(2500, seed=5)
    write_parts(first, [old], part_bytes=1000)
    before = sorted(os.listdir(tmp_path))

    def broken() -> Iterator[bytes]:
        yield _data(1700)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_parts(first, broken(), part_bytes=1000)
    with pytest.raises(OSError, match="disk full"), PartsWriter(first, 3000, part_bytes=1000) as out:
        out.write_at(0, b"new")
        raise OSError("disk full")
    assert sorted(os.listdir(tmp_path)) == before
    assert _joined(first) == old


def test_part_size_and_count_refusals_are_one_line(tmp_path: Path) -> None:
    for bad in (0, -5, PART_LIMIT):
        with pytest.raises(PartsError, match=rf"^part size {bad} bytes is impossible: it must be positive and "
                                             rf"below {PART_LIMIT}$"):
            write_parts(tmp_path / "m.bin", [b"x"], part_bytes=bad)
    with pytest.raises(PartsError, match=r"101 parts; at most 100 \(the first file and .B01 to .B99\)"):
        plan_parts(101, part_bytes=1)
    with pytest.raises(PartsError, match=r"more than 100 parts of 1 bytes") as caught:
        write_parts(tmp_path / "m.bin", [b"x" * 101], part_bytes=1)
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.iterdir())
    assert len(plan_parts(100, part_bytes=1)) == 100
    assert part_bytes_from_mb(3) == 3 * 2 ** 20 and part_bytes_from_mb(None) is None
    with pytest.raises(PartsError, match="impossible"):
        part_bytes_from_mb(2048)


def test_a_part_too_big_for_the_port_is_refused_in_one_line(tmp_path: Path) -> None:
    first = tmp_path / "MODEL.BIN"
    write_parts(first, [_data(1000)], part_bytes=600)
    assert check_port_readable(first, limit=601) == [600, 400]
    with pytest.raises(PartsError, match=r"MODEL.BIN is 600 bytes; the port reads parts below 600 bytes: write the "
                                         r"checkpoint split \(--part-mb\) or quantize it$"):
        check_port_readable(first, limit=600)


def test_the_real_limits() -> None:
    assert PART_BYTES_DEFAULT < PART_LIMIT == 2 ** 31 and PART_BYTES_DEFAULT % 4096 == 0
    assert plan_parts(PART_LIMIT - 1) == [PART_LIMIT - 1]
    assert plan_parts(PART_LIMIT) == [PART_BYTES_DEFAULT, PART_LIMIT - PART_BYTES_DEFAULT]


def _mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="Linux only: the joined mapping")
def test_page_aligned_parts_are_mapped_not_read(tmp_path: Path) -> None:
    import gc
    import mmap

    data = _data(5 * mmap.PAGESIZE + 123, seed=6)
    first = tmp_path / "model.bin"
    write_parts(first, [data], part_bytes=2 * mmap.PAGESIZE)
    joined = read_logical(first)
    assert not joined.flags.owndata and not joined.flags.writeable and joined.tobytes() == data
    assert all(_mapped(path) for path in part_paths(first))
    with pytest.raises(ValueError):
        joined.flags.writeable = True  # the pages are read-only: numpy must refuse, not segfault later
    view = joined[mmap.PAGESIZE:3 * mmap.PAGESIZE + 7]
    del joined
    gc.collect()
    assert view.tobytes() == data[mmap.PAGESIZE:3 * mmap.PAGESIZE + 7]  # a view keeps the mapping alive
    del view
    gc.collect()
    assert not any(_mapped(path) for path in part_paths(first))  # released with the last array
    write_parts(first, [data], part_bytes=2 * mmap.PAGESIZE + 1)  # not page-aligned: read into one array
    read = read_logical(first)
    assert read.flags.owndata and not read.flags.writeable and read.tobytes() == data


def test_an_empty_part_is_an_error_as_in_the_port(tmp_path: Path) -> None:
    first = tmp_path / "MODEL.BIN"
    first.write_bytes(b"x" * 10)
    (tmp_path / "MODEL.B01").write_bytes(b"")
    with pytest.raises(PartsError, match=r"^checkpoint part .*MODEL.B01 is empty$"):
        logical_size(first)
    with pytest.raises(PartsError, match="is empty"):
        read_logical(first)


def test_only_ascii_lowercase_makes_lowercase_part_names() -> None:
    assert part_name("MODEL.BÉN", 1) == "MODEL.B01"  # the port compares bytes with 'a'..'z'
    assert part_name("MODEL.BéN", 1) == "MODEL.B01"


def test_an_output_below_a_file_or_a_directory_as_output_is_refused_before_any_write(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    with pytest.raises(PartsError, match=f"cannot write {afile}/sub/m.bin: {afile} is a file, not a directory"):
        write_parts(afile / "sub" / "m.bin", [b"data"])
    (tmp_path / "m.bin").mkdir()
    with pytest.raises(PartsError, match="m.bin is a directory"):
        with PartsWriter(tmp_path / "m.bin", 4):
            raise AssertionError("entered")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m.bin"]
    assert afile.read_bytes() == b"x" and list((tmp_path / "m.bin").iterdir()) == []


def test_an_os_error_while_writing_is_one_parts_error_and_leaves_nothing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure of the final rename (here: refused) is one line naming the checkpoint; no temporary is left."""
    import harness.formats.parts as parts

    def refuse(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parts.os, "replace", refuse)
    with pytest.raises(PartsError, match="cannot write .*m.bin: No space left on device"):
        write_parts(tmp_path / "m.bin", [b"data"])
    assert list(tmp_path.iterdir()) == []
