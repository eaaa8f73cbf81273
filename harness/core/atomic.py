"""Write a file so that nobody ever sees half of it: chunks go to a temporary file beside the target, which is
renamed over it only when complete. Cached models, quantized files and results files all rely on this: an
interrupted write leaves the old file (or none), never a truncated one that a later run would trust."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_atomically(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write `chunks` to `path` atomically (creating its directory); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False)
    temp = Path(handle.name)
    try:
        with handle:
            for chunk in chunks:
                handle.write(chunk)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path
