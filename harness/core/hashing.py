"""One streamed sha256 of a file, shared by every part that proves bytes unchanged: the user's image (never
written), injected files, downloaded fixtures and Debian packages."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (a multi-GB image never sits in memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
