"""Build the tiny686 stand-in guest: a bootable raw disk image made only from Debian i386 packages.

Every CI run needs a pentium2 guest with a serial shell, a FAT work disk and an active-mode FTP client, and Windows
98 cannot be shipped. So this module turns the recipe in vm/tiny686/ into a disk image without root, by running the
steps of the other builder modules in order: harness.guests.tiny686.debian_packages resolves, fetches (sha256
checked) and unpacks the packages, harness.guests.tiny686.initramfs writes the initramfs,
harness.guests.tiny686.bootdisk assembles the disk with mtools and syslinux (harness.guests.tiny686.host_tools runs
the host tools for all of them). The image is cached under a key made of the resolved package versions and a hash of
the recipe and of every builder module, and is only ever published by an atomic rename, so an interrupted build
never leaves a broken image.

A published image can still be damaged afterwards (a disk that filled up while a copy of the cache was made, a
truncating copy, a stray write), and a damaged stand-in guest would fail every run in ways that point elsewhere.
So each use checks it against its manifest: the size every time (a stat), the sha256 (about 1.5 s for the 512 MB
image here, too slow for every session) only when the file's size, mtime or inode differ from the last time it
was verified (tiny686.verified.json). A damaged image is rebuilt, and the rebuild says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness.core.hashing import file_sha256 as sha256_file
from harness.core.paths import cache_dir, project_root
from harness.guests.tiny686 import bootdisk, debian_packages, host_tools, initramfs
from harness.guests.tiny686.bootdisk import IMAGE_BYTES, write_disk
from harness.guests.tiny686.debian_packages import (
    fetch_deb,
    resolve_packages,
    unpack_deb,
)
from harness.guests.tiny686.host_tools import GuestBuildError, Log, check_host_tools
from harness.guests.tiny686.initramfs import build_initramfs

# The public API; GuestBuildError is re-exported because callers of build_guest catch it from here.
__all__ = ["GUEST_NAMES", "GuestBuildError", "Recipe", "build_guest", "cache_key", "guest_manifest",
           "load_recipe", "recipe_digest"]

GUEST_NAMES: tuple[str, ...] = ("tiny686",)
IMAGE_NAME = "tiny686.img"
MANIFEST_NAME = "tiny686.json"
VERIFIED_NAME = "tiny686.verified.json"  # the image's stat when its sha256 last matched the manifest
_log = logging.getLogger(__name__)
# Every module whose code shapes the image: all are hashed into the cache key (see recipe_digest).
BUILDER_MODULES: tuple[ModuleType, ...] = (sys.modules[__name__], host_tools, debian_packages, initramfs, bootdisk)


# ---------------------------------------------------------------------------------------------------------------
# The recipe


@dataclass(frozen=True)
class Recipe:
    """The recipe files of one guest, read from vm/<name>/."""

    directory: Path
    packages: dict[str, str]  # role -> package spec
    modules: list[str]

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.rglob("*") if p.is_file() and p.name != "README.md")


def load_recipe(name: str) -> Recipe:
    """Read vm/<name>/packages.txt and modules.txt (comments and blank lines ignored)."""
    if name not in GUEST_NAMES:
        raise GuestBuildError(f"unknown guest '{name}' (known: {', '.join(GUEST_NAMES)})")
    directory = project_root() / "vm" / name
    packages: dict[str, str] = {}
    for line in _recipe_lines(directory / "packages.txt"):
        role, spec = line.split()
        packages[role] = spec
    for role in ("kernel", "busybox", "ftp"):
        if role not in packages:
            raise GuestBuildError(f"{directory / 'packages.txt'} names no '{role}' package")
    modules = _recipe_lines(directory / "modules.txt")
    return Recipe(directory=directory, packages=packages, modules=modules)


def _recipe_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise GuestBuildError(f"cannot read recipe file {path}: {error.strerror}") from error
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# ---------------------------------------------------------------------------------------------------------------
# Cache key, locking and the public entry point


def recipe_digest(recipe: Recipe) -> dict[str, str]:
    """sha256 of every recipe file and of every builder module, so changing any of them gives a new cache key."""
    digests = {p.relative_to(recipe.directory).as_posix(): sha256_file(p) for p in recipe.files()}
    for module in BUILDER_MODULES:
        source = Path(str(module.__file__))
        digests[f"harness/{source.name}"] = sha256_file(source)
    return digests


def cache_key(versions: dict[str, str], digests: dict[str, str]) -> str:
    blob = json.dumps({"packages": versions, "recipe": digests}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """One build per cache at a time (pytest-xdist workers and the CLI may ask together)."""
    with (directory / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_guest(name: str = "tiny686", *, force: bool = False, log: Log | None = None) -> Path:
    """Return the cached raw disk image of guest `name`, building it first if needed (or if `force`)."""
    say: Log = log or (lambda message: None)
    recipe = load_recipe(name)
    check_host_tools()
    resolved = resolve_packages(recipe.packages, recipe.directory.name)
    kernel, busybox, ftp = resolved["kernel"][0], resolved["busybox"][0], resolved["ftp"][0]
    libraries = resolved["libraries"]
    everything = [kernel, busybox, ftp, *libraries]
    versions = {p.spec: p.version for p in everything}
    key = cache_key(versions, recipe_digest(recipe))

    guests = cache_dir("guests")
    final_dir = guests / f"{name}-{key}"
    image = final_dir / IMAGE_NAME
    with _build_lock(guests):
        if image.is_file() and not force:
            damage = _damage(image)
            if damage is None:
                return image
            (log or _log.warning)(f"the cached {name} image {image} is damaged ({damage}): rebuilding it")
        for stale in guests.glob(f".build-{name}-*"):  # left by a killed build; nobody else holds the lock
            shutil.rmtree(stale, ignore_errors=True)
        debs = cache_dir("debs")
        say(f"building {name} ({key}) from {', '.join(f'{p.spec} {p.version}' for p in everything)}")
        with tempfile.TemporaryDirectory(dir=guests, prefix=f".build-{name}-") as scratch_name:
            scratch = Path(scratch_name)
            trees = {role: unpack_deb(fetch_deb(p, debs, say), scratch / role)
                     for role, p in (("kernel", kernel), ("busybox", busybox), ("ftp", ftp))}
            libs_root = scratch / "libs"
            for library in libraries:
                unpack_deb(fetch_deb(library, debs, say), libs_root)
            kernel_version = kernel.name[len("linux-image-"):]
            vmlinuz = trees["kernel"] / "boot" / f"vmlinuz-{kernel_version}"
            if not vmlinuz.is_file():
                raise GuestBuildError(f"{kernel.spec} has no boot/vmlinuz-{kernel_version}")
            say("writing initramfs")
            initramfs_gz = build_initramfs(recipe.directory, recipe.modules, trees, kernel_version, libs_root)
            say("writing disk image")
            partial = scratch / IMAGE_NAME
            write_disk(partial, vmlinuz, initramfs_gz, recipe.directory / "syslinux.cfg", scratch)
            if partial.stat().st_size != IMAGE_BYTES:
                raise GuestBuildError(f"the disk image written is {partial.stat().st_size} bytes, not {IMAGE_BYTES} "
                                      f"(is the disk holding {guests} full?)")
            image_sha256 = sha256_file(partial)
            manifest = {
                "guest": name, "key": key, "kernel_version": kernel_version, "packages": versions,
                "image_bytes": partial.stat().st_size, "kernel_bytes": vmlinuz.stat().st_size,
                "initramfs_bytes": len(initramfs_gz), "image_sha256": image_sha256,
            }
            (scratch / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            final_dir.mkdir(exist_ok=True)
            (final_dir / VERIFIED_NAME).unlink(missing_ok=True)
            os.replace(scratch / MANIFEST_NAME, final_dir / MANIFEST_NAME)
            os.replace(partial, image)  # published last: the image's presence means the build completed
            _record_verified(image, image_sha256)  # just hashed: the first use need not hash it again
    return image


def _stamp(image: Path, sha256: str) -> dict[str, object]:
    st = image.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "sha256": sha256}


def _record_verified(image: Path, sha256: str) -> None:
    """Remember that the image, as it is now, matched its manifest (best effort: without it, the next use hashes)."""
    record = image.parent / VERIFIED_NAME
    partial = record.with_name(f".{VERIFIED_NAME}.{os.getpid()}")
    try:
        partial.write_text(json.dumps(_stamp(image, sha256), sort_keys=True) + "\n")
        os.replace(partial, record)
    except OSError:
        partial.unlink(missing_ok=True)


def _damage(image: Path) -> str | None:
    """Why the cached image does not match its manifest, or None when it does (see the module docstring)."""
    manifest_path = image.parent / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
        expected_bytes, expected_sha256 = int(manifest["image_bytes"]), str(manifest["image_sha256"])
    except FileNotFoundError:
        return f"its manifest {manifest_path} is missing"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its manifest {manifest_path} is unreadable or incomplete: {error}"
    try:
        size = image.stat().st_size
        if size != expected_bytes:
            return f"it is {size} bytes, its manifest says {expected_bytes}"
        try:
            if json.loads((image.parent / VERIFIED_NAME).read_text()) == _stamp(image, expected_sha256):
                return None
        except (OSError, ValueError):
            pass  # never verified, or the record is damaged: hash below
        digest = sha256_file(image)
    except OSError as error:
        raise GuestBuildError(f"the cached guest image {image} is not readable: {error.strerror}") from None
    if digest != expected_sha256:
        return f"its sha256 is {digest}, its manifest says {expected_sha256}"
    _record_verified(image, digest)
    return None


def guest_manifest(image: Path) -> dict[str, object]:
    """What a built image contains (package versions, sizes), written beside it by build_guest."""
    manifest: dict[str, object] = json.loads((image.parent / MANIFEST_NAME).read_text())
    return manifest
