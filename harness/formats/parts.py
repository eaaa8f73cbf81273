"""A checkpoint split into parts: one logical file stored as `MODEL.BIN`, `MODEL.B01`, `MODEL.B02`, ...

Why: the port is C89, whose fseek/ftell take a `long` (2 GiB on the guests), and FAT32 holds no file of 4 GiB,
so a model of several GB (the 1B shape in float32) can only reach the guest, and be read there, in pieces.
The rule, shared with the port (ports/llama98) and nowhere else in the harness:

- the first part keeps the checkpoint's name;
- part i (1..99) replaces the extension (after the last '.' of the file name) with `B` + two digits, in lowercase
  when the extension has a lowercase letter (`model.bin` -> `model.b01`, `MODEL.BIN` -> `MODEL.B01`); a name
  without an extension gets `.B01` appended;
- the parts are the first file plus the consecutive `.Bnn` files that exist from 01, up to the first missing one;
  the logical file is their concatenation, and each part of a split set is below 2**31 bytes.

Writers split when asked (`part_bytes`) or when the logical file reaches `limit` (2**31), into parts of
PART_BYTES_DEFAULT. They remove the `.Bnn` files of an earlier, longer split of the same name, and commit like
harness/core/atomic.py: every part is written to a temporary file first; then the old first file goes, the new
`.Bnn` files take their places, and the new first file is renamed in last. A crash leaves either the old set,
or no first file (nothing that looks like a model), never a mix that looks complete. The output path is checked
before the first byte (check_output_path): a directory in its place would otherwise fail the final rename, after
the whole model was written; any other OSError while writing is one PartsError line naming the checkpoint.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import sys
import weakref
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from harness.core.atomic import output_problem, temp_beside
from harness.core.errors import HarnessError

PART_LIMIT = 2 ** 31  # every part of a split set is smaller than this (C89 `long` offsets)
PART_BYTES_DEFAULT = 2 ** 31 - 2 ** 20  # the part size of an automatic split (page-aligned, 1 MiB below the limit)
MAX_PART_INDEX = 99  # .B01 .. .B99 after the first file
COPY_BLOCK = 1 << 20
MAP_FIXED = getattr(mmap, "MAP_FIXED", 0x10)  # Linux's value; Python 3.11's mmap module does not name it


class PartsError(HarnessError):
    """A split checkpoint cannot be written or read as asked (part size, part count)."""


def part_name(first: str, index: int) -> str:
    """The file name of part `index` (0 = `first` itself, 1..99 = `.Bnn`) of the checkpoint named `first`."""
    if index == 0:
        return first
    if not 1 <= index <= MAX_PART_INDEX:
        raise PartsError(f"{first}: part {index} is out of range (parts are .B01 to .B{MAX_PART_INDEX:02d})")
    stem, dot, extension = first.rpartition(".")
    if not dot:
        return f"{first}.B{index:02d}"
    letter = "b" if any("a" <= ch <= "z" for ch in extension) else "B"  # ASCII letters only, as the port
    return f"{stem}.{letter}{index:02d}"


def part_path(first: Path, index: int) -> Path:
    """The path of part `index` of the checkpoint whose first part is `first` (same directory)."""
    return first.with_name(part_name(first.name, index))


def part_paths(first: Path) -> list[Path]:
    """The parts of a checkpoint: `first`, then `.B01`, `.B02`, ... while they exist (a gap ends the set)."""
    first = Path(first)
    paths = [first]
    for index in range(1, MAX_PART_INDEX + 1):
        candidate = part_path(first, index)
        if not candidate.is_file():
            break
        paths.append(candidate)
    return paths


def part_sizes(first: Path) -> list[int]:
    """The size of every part (OSError for a missing first part, as for any file); an empty part after the
    first is an error, as in the port (the writers never make one)."""
    paths = part_paths(first)
    sizes = [path.stat().st_size for path in paths]
    for path, size in list(zip(paths, sizes))[1:]:
        if size == 0:
            raise PartsError(f"checkpoint part {path} is empty")
    return sizes


def logical_size(first: Path) -> int:
    """Bytes of the logical file: the sum of its parts (one file: its size)."""
    return sum(part_sizes(first))


def describe(first: Path) -> str:
    """How error messages name a checkpoint: its path, plus its parts when it is split."""
    paths = part_paths(first)
    if len(paths) == 1:
        return str(first)
    return f"{first} (+ {paths[1].name}..{paths[-1].name}, {len(paths)} parts)"


def check_port_readable(first: Path, limit: int = PART_LIMIT) -> list[int]:
    """The part sizes, or a PartsError when a part is too big for the port's `long` file offsets."""
    sizes = part_sizes(first)
    for path, size in zip(part_paths(first), sizes):
        if size >= limit:
            raise PartsError(f"{path} is {size} bytes; the port reads parts below {limit} bytes: write the "
                             f"checkpoint split (--part-mb) or quantize it")
    return sizes


def read_logical(first: Path) -> np.ndarray:
    """The logical bytes as a read-only uint8 array: a memory map of the file when it is one part; for a split
    file the parts mapped side by side (_map_joined, as cheap as one memory map: a 5 GB model is not read to be
    opened), or, where that cannot be done, the parts read into one array."""
    paths = part_paths(first)
    if len(paths) == 1:
        return np.memmap(first, dtype="u1", mode="r")
    sizes = part_sizes(first)
    joined = _map_joined(paths, sizes)
    if joined is not None:
        return joined
    data = np.empty(sum(sizes), dtype="u1")
    offset = 0
    for path, size in zip(paths, sizes):
        with path.open("rb") as handle:
            got = handle.readinto(data[offset:offset + size].data)
        if got != size:
            raise PartsError(f"{path}: read {got} of its {size} bytes (changed while reading?)")
        offset += size
    data.flags.writeable = False
    return data


def _map_joined(paths: list[Path], sizes: list[int]) -> np.ndarray | None:
    """On Linux, the parts mapped read-only one after the other into one reserved address range, when every
    part but the last is a whole number of pages (every split made with --part-mb or the automatic size is);
    None otherwise, or when the system refuses. The mapping is released when the last array using it goes."""
    total = sum(sizes)
    if not sys.platform.startswith("linux") or not total or any(size % mmap.PAGESIZE for size in sizes[:-1]):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    failed = ctypes.c_void_p(-1).value
    base = libc.mmap(None, total, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base is None or base == failed:
        return None
    offset = 0
    for path, size in zip(paths, sizes):
        if size:
            fd = os.open(path, os.O_RDONLY)
            try:
                got = libc.mmap(base + offset, size, mmap.PROT_READ, mmap.MAP_PRIVATE | MAP_FIXED, fd, 0)
            finally:
                os.close(fd)
            if got != base + offset:
                libc.munmap(base, total)
                return None
        offset += size
    buffer = (ctypes.c_uint8 * total).from_address(base)
    weakref.finalize(buffer, libc.munmap, base, total)
    # A read-only view, so numpy refuses to make the array writeable: the pages are PROT_READ, and a write would
    # be a segfault, not an exception.
    return np.frombuffer(memoryview(buffer).toreadonly(), dtype="u1")


def read_head(first: Path, count: int) -> bytes:
    """The first `count` bytes of the logical file (fewer if it is shorter), across parts."""
    out = bytearray()
    for path in part_paths(first):
        if len(out) >= count:
            break
        with path.open("rb") as handle:
            out += handle.read(count - len(out))
    return bytes(out)


def logical_crc32(first: Path) -> tuple[int, int]:
    """(size, CRC-32) of the logical file: what the port reports as `model bytes= crc32=`."""
    crc = size = 0
    for path in part_paths(first):
        with path.open("rb") as handle:
            while chunk := handle.read(COPY_BLOCK):
                crc = zlib.crc32(chunk, crc)
                size += len(chunk)
    return size, crc


def check_part_bytes(part_bytes: int, limit: int = PART_LIMIT) -> int:
    """`part_bytes` if it is a usable part size (positive, below `limit`), else a one-line PartsError."""
    if not 0 < part_bytes < limit:
        raise PartsError(f"part size {part_bytes} bytes is impossible: it must be positive and below {limit}")
    return part_bytes


def part_bytes_from_mb(mib: int | None) -> int | None:
    """`--part-mb N` (MiB) as bytes; None stays None (automatic split)."""
    return None if mib is None else check_part_bytes(mib * 1024 * 1024)


def add_part_mb_option(parser: argparse.ArgumentParser) -> None:
    """`--part-mb N` for every command that writes a checkpoint (read back with part_bytes_from_mb)."""
    parser.add_argument("--part-mb", type=int, default=None, metavar="N",
                        help=f"split the checkpoint into parts of N MiB (FILE, then .B01, .B02, ...); default: "
                             f"split into parts of {PART_BYTES_DEFAULT} bytes only when it reaches 2 GiB")


def auto_part_bytes(limit: int) -> int:
    """The part size of an automatic split under `limit` (PART_BYTES_DEFAULT under the real limit)."""
    return min(PART_BYTES_DEFAULT, limit - 1)


def plan_parts(total: int, part_bytes: int | None = None, limit: int = PART_LIMIT) -> list[int]:
    """The part sizes a writer uses for a logical file of `total` bytes: `part_bytes` each when asked (the last
    part non-empty and possibly shorter), else one file below `limit`, else auto_part_bytes(limit) each."""
    if part_bytes is None:
        if total < limit:
            return [total]
        size = auto_part_bytes(limit)
    else:
        size = check_part_bytes(part_bytes, limit)
    count = max(1, -(-total // size))
    if count > MAX_PART_INDEX + 1:
        raise PartsError(f"{total} bytes in parts of {size} make {count} parts; at most {MAX_PART_INDEX + 1} "
                         f"(the first file and .B01 to .B{MAX_PART_INDEX:02d}): choose bigger parts")
    return [size] * (count - 1) + [total - size * (count - 1)]


def check_output_path(path: Path) -> None:
    """A one-line PartsError unless a file can be renamed into `path` (core.atomic.output_problem). The writers
    call it before their first byte; callers that write more than one file (export: model and tokenizer) call it
    for each of them before writing any, so a bad second path does not leave the first file behind."""
    problem = output_problem(path)
    if problem is not None:
        raise PartsError(f"cannot write {path}: {problem}")


@contextmanager
def _writing(first: Path) -> Iterator[None]:
    """An OSError while creating, filling or renaming the parts of `first` (no space left, no permission, a
    directory that appeared in the way) as one PartsError line naming the checkpoint."""
    try:
        yield
    except OSError as error:
        raise PartsError(f"cannot write {first}: {error.strerror or error}") from None


def _temp_beside(first: Path, index: int) -> tuple[IO[bytes], Path]:
    """Part `index`'s temporary file, with a plain open()'s permissions (core.atomic.temp_beside says why)."""
    return temp_beside(first, prefix=f".{part_name(first.name, index)}.")


def _commit(first: Path, temps: list[Path]) -> list[Path]:
    """Move complete temporary parts into place; the first file last (module docstring)."""
    first.unlink(missing_ok=True)
    for index in range(len(temps), MAX_PART_INDEX + 1):  # an earlier, longer split of the same name
        part_path(first, index).unlink(missing_ok=True)
    finals = [part_path(first, index) for index in range(len(temps))]
    for temp, final in list(zip(temps, finals))[1:]:
        os.replace(temp, final)
    os.replace(temps[0], first)
    return finals


class PartsWriter:
    """Random-access writer of a logical file of known size (`write_at` anywhere, in any order), for writers
    that place tensors with seeks. Use as a context manager: the parts are committed on a clean exit and the
    temporary files removed on any exit."""

    def __init__(self, first: Path, total: int, part_bytes: int | None = None, limit: int = PART_LIMIT) -> None:
        self.first = Path(first)
        self.sizes = plan_parts(total, part_bytes, limit)
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.handles: list[IO[bytes]] = []
        self.temps: list[Path] = []
        self.paths: list[Path] = []

    def __enter__(self) -> PartsWriter:
        check_output_path(self.first)
        try:
            with _writing(self.first):
                self.first.parent.mkdir(parents=True, exist_ok=True)
                for index, size in enumerate(self.sizes):
                    handle, temp = _temp_beside(self.first, index)
                    self.handles.append(handle)
                    self.temps.append(temp)
                    handle.truncate(size)
        except BaseException:
            self._discard()
            raise
        return self

    def write_at(self, offset: int, data: bytes) -> None:
        """Write `data` at logical `offset`, across part boundaries."""
        view = memoryview(data)
        while view:
            index = max(i for i, start in enumerate(self.starts) if start <= offset)
            room = self.starts[index] + self.sizes[index] - offset
            if room <= 0:
                raise PartsError(f"{self.first}: write at {offset} is beyond the logical file's "
                                 f"{sum(self.sizes)} bytes")
            handle = self.handles[index]
            with _writing(self.first):
                handle.seek(offset - self.starts[index])
                handle.write(view[:room])
            offset += min(room, len(view))
            view = view[room:]

    def _discard(self) -> None:
        for handle in self.handles:
            handle.close()
        for temp in self.temps:
            temp.unlink(missing_ok=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            with _writing(self.first):
                for handle in self.handles:
                    handle.close()
                if kind is None:
                    self.paths = _commit(self.first, self.temps)
        finally:
            self._discard()


def write_parts(first: Path, chunks: Iterable[bytes], part_bytes: int | None = None,
                limit: int = PART_LIMIT) -> list[Path]:
    """Write a stream of unknown length as a checkpoint (plan_parts' sizes); returns the part paths.

    Streaming: one chunk in memory at a time. Without `part_bytes` the first temporary file grows until the
    logical file reaches `limit`; then what lies beyond auto_part_bytes(limit) (1 MiB with the real limit) is
    moved into the next part and the stream goes on in parts of that size.
    """
    return _StreamWriter(Path(first), part_bytes, limit).write(chunks)


class _StreamWriter:
    """write_parts' state: the temporary parts so far and how full the last one is."""

    def __init__(self, first: Path, part_bytes: int | None, limit: int) -> None:
        self.first, self.limit, self.auto = first, limit, part_bytes is None
        self.size = limit if part_bytes is None else check_part_bytes(part_bytes, limit)
        self.temps: list[Path] = []
        self.handles: list[IO[bytes]] = []
        self.used = 0  # bytes in the last part

    def write(self, chunks: Iterable[bytes]) -> list[Path]:
        check_output_path(self.first)
        try:
            with _writing(self.first):
                self.first.parent.mkdir(parents=True, exist_ok=True)
                self._new_part()
            for chunk in chunks:  # an OSError of the producer's is its own, not a failed write
                with _writing(self.first):
                    self._put(chunk)
            with _writing(self.first):
                if self.auto and self.size == self.limit and self.used == self.limit:
                    self._spill()  # exactly `limit` bytes: still too big for one part
                for handle in self.handles:
                    handle.close()
                return _commit(self.first, self.temps)
        finally:
            for handle in self.handles:
                handle.close()
            for temp in self.temps:
                temp.unlink(missing_ok=True)

    def _new_part(self) -> None:
        if len(self.temps) > MAX_PART_INDEX:
            raise PartsError(f"{self.first}: more than {MAX_PART_INDEX + 1} parts of {self.size} bytes (the first "
                             f"file and .B01 to .B{MAX_PART_INDEX:02d}): choose bigger parts")
        handle, temp = _temp_beside(self.first, len(self.temps))
        self.handles.append(handle)
        self.temps.append(temp)
        self.used = 0

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.used == self.size:
                if self.auto and self.size == self.limit:
                    self._spill()
                    continue
                self._new_part()
            take = min(self.size - self.used, len(view))
            self.handles[-1].write(view[:take])
            self.used += take
            view = view[take:]

    def _spill(self) -> None:
        """The single part reached `limit`: keep auto_part_bytes(limit) of it and send the rest on."""
        self.size = auto_part_bytes(self.limit)
        head = self.handles[0]
        head.flush()
        head.seek(self.size)
        tail = head.read()  # limit - auto_part_bytes(limit): 1 MiB with the real limit
        head.truncate(self.size)
        self.used = self.size
        for start in range(0, len(tail), COPY_BLOCK):
            self._put(tail[start:start + COPY_BLOCK])
