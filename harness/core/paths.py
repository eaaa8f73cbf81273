"""Where the harness keeps what it builds once and reuses: built binaries, guest images, snapshots, models.

One place decides it so that tests, the CLI and bisection share the same cache and CI can point it elsewhere
with LLAMA98_CACHE. A cache that cannot be used (LLAMA98_CACHE naming a file, a directory the user may not
write or search) is bad configuration, not a harness bug: it is one CacheDirError line naming the directory and
the variable that chose it, never a bare OSError from deep inside a model generator or a guest build.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.core.atomic import output_problem
from harness.core.errors import HarnessError


class CacheDirError(HarnessError):
    """The harness cache directory cannot be created, searched or written."""


def _cache_root() -> tuple[Path, str]:
    """The cache root and what chose it (for the error message)."""
    root = os.environ.get("LLAMA98_CACHE")
    if root:
        return Path(root), "LLAMA98_CACHE"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "llama98-harness", "XDG_CACHE_HOME"
    return Path.home() / ".cache" / "llama98-harness", "the default location"


def cache_dir(*parts: str) -> Path:
    """Return (and create) a directory under the harness cache; CacheDirError when it cannot be made or used.

    $LLAMA98_CACHE wins, then $XDG_CACHE_HOME/llama98-harness, then ~/.cache/llama98-harness.
    """
    base, chosen_by = _cache_root()
    path = base.joinpath(*parts)
    problem = f"cannot use the harness cache {base} (set by {chosen_by})"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        reason = output_problem(path, directory=True) or f"{path} is a file, not a directory"
        raise CacheDirError(f"{problem}: {reason}") from None
    except OSError as error:
        raise CacheDirError(f"{problem}: cannot create {path}: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheDirError(f"{problem}: {path} is not writable and searchable by this user")
    return path


def project_root() -> Path:
    """The checkout this package was imported from (ports/, vm/ and fixtures/ live beside harness/)."""
    return Path(__file__).resolve().parents[2]
