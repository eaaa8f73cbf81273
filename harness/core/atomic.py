"""Write a file so that nobody ever sees half of it: chunks go to a temporary file beside the target, which is
renamed over it only when complete. Cached models, quantized files and results files all rely on this: an
interrupted write leaves the old file (or none), never a truncated one that a later run would trust.

The temporary file is created by temp_beside with mode 0666 filtered by the umask, the permissions a plain
open() gives. tempfile's files are 0600 whatever the umask, and a rename keeps them: every quantized, exported
or generated model came out unreadable by the group and others (a shared cache, a web server, another user's
copy). Every writer that renames a temporary file into place creates it here.
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
