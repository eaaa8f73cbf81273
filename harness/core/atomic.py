"""Write a file so that nobody ever sees half of it: chunks go to a temporary file beside the target, which is
renamed over it only when complete. Cached models, quantized files and results files all rely on this: an
interrupted write leaves the old file (or none), never a truncated one that a later run would trust.

The temporary file is created by temp_beside with mode 0666 filtered by the umask, the permissions a plain
open() gives. tempfile's files are 0600 whatever the umask, and a rename keeps them: every quantized, exported
or generated model came out unreadable by the group and others (a shared cache, a web server, another user's
copy). Every writer that renames a temporary file into place creates it here.

Whether a path can take a file at all (output_problem) is asked here too, before any work: a directory in its
place, or a file where one of its directories must be, would otherwise fail the final rename (or mkdir) after
the whole output was computed. Every command and writer asks this one function and words its own error class.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".part"
CREATE_ATTEMPTS = 100
FILE_MODE = 0o666  # what open(path, "w") asks for; the kernel applies the umask


def output_problem(path: Path, *, directory: bool = False) -> str | None:
    """Why nothing can be put at `path`, as a phrase for a one-line error, or None when nothing visible is in the
    way (a parent that does not exist yet is fine: it will be created; one that cannot be searched is left for
    the write itself to report). For a file (the default): `path` is a directory, or a file stands where one of
    its parent directories must be. For a directory (`directory=True`): a file stands at `path` or above it."""
    if not directory and path.is_dir():
        return f"{path} is a directory, not a file"
    deepest = path if directory else path.parent
    for candidate in [*reversed(deepest.parents), deepest]:
        try:
            blocked = candidate.exists() and not candidate.is_dir()
        except OSError:  # not searchable: the write itself will say so
            return None
        if blocked:
            return f"{candidate} is a file, not a directory"
    return None


def temp_beside(path: Path, prefix: str | None = None, suffix: str = TEMP_SUFFIX) -> tuple[IO[bytes], Path]:
    """A new empty file `.<name>.<random><suffix>` in `path`'s directory (which must exist), open for binary
    reading and writing, and its path. Like tempfile.NamedTemporaryFile(delete=False), except for the mode:
    FILE_MODE under the umask, so the file renamed into place has a normal file's permissions."""
    stem = prefix if prefix is not None else f".{path.name}."
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(CREATE_ATTEMPTS):
        temp = path.parent / f"{stem}{secrets.token_hex(6)}{suffix}"
        try:
            descriptor = os.open(temp, flags, FILE_MODE)
        except FileExistsError:
            continue
        return os.fdopen(descriptor, "w+b"), temp
    raise FileExistsError(f"no free temporary name beside {path} after {CREATE_ATTEMPTS} attempts")


def write_atomically(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write `chunks` to `path` atomically (creating its directory); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = temp_beside(path)
    try:
        with handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
