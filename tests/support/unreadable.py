"""Files the user running the harness cannot read, made for real, wherever the checkout lives.

Root reads any file whatever its mode, so a mode-000 file only stops a reader that is not root. When the tests run
as root the check runs in a forked child that drops to user `nobody`; that child must need nothing from the
checkout or from pytest's temp directories (both may sit in a 0700 directory: a `mktemp -d` clone, /root), so the
caller prepares everything in the parent (profiles loaded, modules imported) and only the call under test runs in
the child. The file itself lives in a fresh world-searchable directory under the system temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

NOBODY = 65534


@contextlib.contextmanager
def public_dir() -> Iterator[Path]:
    """A fresh 0755 directory under the system temp dir (so `nobody` can search it), removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="llama98-unreadable-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def locked_file(directory: Path, name: str, data: bytes) -> Path:
    """A file of mode 000 in `directory`: unreadable to anyone but root."""
    path = directory / name
    path.write_bytes(data)
    path.chmod(0o000)
    return path


def outcome_as_nobody(call: Callable[[], object]) -> str:
    """Run `call` in a forked child that is not root; returns "ok" if it returned, else `<ExceptionClass>: <str>`.

    The child reports through a pipe and leaves with os._exit, so nothing of pytest runs twice.
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            call()
            message = "ok"
        except BaseException as error:  # noqa: BLE001 - every outcome is reported to the parent
            message = f"{type(error).__name__}: {error}"
        os.write(write_end, message.encode("utf-8", errors="replace"))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as pipe:
        message = pipe.read()
    os.waitpid(child, 0)
    return message
