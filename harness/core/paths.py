"""Where the harness keeps what it builds once and reuses: built binaries, guest images, snapshots, models.

One place decides it so that tests, the CLI and bisection share the same cache and CI can point it elsewhere
with LLAMA98_CACHE.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """Return (and create) a directory under the harness cache.

    $LLAMA98_CACHE wins, then $XDG_CACHE_HOME/llama98-harness, then ~/.cache/llama98-harness.
    """
    root = os.environ.get("LLAMA98_CACHE")
    if root:
        base = Path(root)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "llama98-harness"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_root() -> Path:
    """The checkout this package was imported from (ports/, vm/ and fixtures/ live beside harness/)."""
    return Path(__file__).resolve().parents[2]
