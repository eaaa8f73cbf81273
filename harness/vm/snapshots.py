"""The snapshot cache: overlays holding a `savevm` snapshot taken when a guest was first ready.

Why: a cold boot of the stand-in guest takes seconds and of Windows 98 a minute; resuming a snapshot takes well
under one. The key covers everything the saved device state depends on: the image bytes (sha256), the profile
file, the QEMU version and the device part of the command line (not per-run socket or overlay paths).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.paths import cache_dir
from harness.vm.profile import GuestProfile

SNAPSHOT_NAME = "llama98-ready"


@dataclass(frozen=True)
class SnapshotCache:
    """A directory of cached overlays, one per key."""

    root: Path

    @classmethod
    def default(cls) -> SnapshotCache:
        return cls(cache_dir("snapshots"))

    @staticmethod
    def key(image_sha256: str, profile: GuestProfile, version: str, device_args: Sequence[str]) -> str:
        material = json.dumps([image_sha256, profile.name, profile.digest, version, list(device_args)])
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.root / key / "overlay.qcow2"

    def lookup(self, key: str) -> Path | None:
        candidate = self.path(key)
        return candidate if candidate.is_file() else None

    def store(self, key: str, overlay: Path) -> Path:
        """Copy `overlay` into the cache atomically (a crashed copy never looks like a valid snapshot)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        try:
            shutil.copyfile(overlay, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target
