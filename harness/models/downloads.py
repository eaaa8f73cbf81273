"""Find model and tokenizer fixtures by name: a fixture directory, the user cache, or a verified download.

The README's commands must work offline on a fresh machine and CI must never touch the internet, so lookup
is local first ($LLAMA98_FIXTURE_DIR, then cache_dir("fixtures")), and a download (only when allowed) is
streamed to a temporary file, checked against the manifest's size and sha256, and renamed into place
atomically: a file in the cache is always a whole, verified file. A manifest entry without a sha256 is never
downloaded, because nothing could prove the bytes are the intended model.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests
import yaml

from harness.core.atomic import temp_beside
from harness.core.errors import HarnessError
from harness.core.hashing import file_sha256
from harness.core.paths import cache_dir, project_root

FIXTURE_DIR_ENV = "LLAMA98_FIXTURE_DIR"
BASE_URL_ENV = "LLAMA98_FIXTURE_BASE_URL"  # replaces each entry's URL by BASE/NAME (mirrors, tests)
DEFAULT_TIMEOUT = 30.0
CHUNK = 1 << 16


class FixtureError(HarnessError):
    """A fixture cannot be found, downloaded, or trusted."""


@dataclass(frozen=True)
class FixtureEntry:
    """One manifest line: what the file must be and where it can be fetched."""

    name: str
    size: int
    sha256: str | None
    url: str
    what: str = ""

    def download_url(self) -> str:
        base = os.environ.get(BASE_URL_ENV)
        return f"{base.rstrip('/')}/{self.name}" if base else self.url


def manifest_path() -> Path:
    return project_root() / "fixtures" / "manifest.yaml"


def load_manifest(path: str | Path | None = None) -> dict[str, FixtureEntry]:
    """Read fixtures/manifest.yaml (or another manifest) into entries keyed by file name."""
    path = Path(path) if path else manifest_path()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise FixtureError(f"{path}: cannot read fixture manifest: {error}") from None
    entries: dict[str, FixtureEntry] = {}
    if not isinstance(data, dict) or not isinstance(data.get("fixtures", {}), dict):
        raise FixtureError(f"{path}: a fixture manifest is a mapping with a 'fixtures' mapping")
    for name, fields in data.get("fixtures", {}).items():
        try:
            entries[name] = FixtureEntry(name, int(fields["size"]), fields.get("sha256"), str(fields["url"]),
                                         str(fields.get("what", "")))
        except (KeyError, TypeError, ValueError):
            raise FixtureError(f"{path}: fixture {name} needs size and url") from None
    return entries


_verified: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so repeated resolves do not rehash 60 MB."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = file_sha256(path)
    return _verified[key]


def _matches(path: Path, entry: FixtureEntry) -> str | None:
    """None if the file is the fixture, else why not."""
    size = path.stat().st_size
    if size != entry.size:
        return f"{path} is {size} bytes, the manifest says {entry.size}"
    if entry.sha256 and sha256_of(path) != entry.sha256:
        return f"{path} has sha256 {sha256_of(path)}, the manifest says {entry.sha256}"
    return None


def resolve(
    name: str,
    *,
    allow_download: bool = True,
    manifest: dict[str, FixtureEntry] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Path of a verified copy of fixture `name`, downloading it into the cache if allowed."""
    entries = manifest if manifest is not None else load_manifest()
    if name not in entries:
        raise FixtureError(f"unknown fixture {name!r} (known: {', '.join(sorted(entries))})")
    entry = entries[name]
    fixture_dir = os.environ.get(FIXTURE_DIR_ENV)
    if fixture_dir:
        candidate = Path(fixture_dir) / name
        # is_file() and the checksum both meet an unreadable directory or file as a bare OSError: one line here.
        try:
            present = candidate.is_file()
            problem = _matches(candidate, entry) if present else None
        except OSError as error:
            raise FixtureError(f"fixture {name} in ${FIXTURE_DIR_ENV} ({candidate}) is not readable: "
                               f"{error.strerror or error}") from None
        if present:
            if problem:
                raise FixtureError(f"fixture {name} in ${FIXTURE_DIR_ENV} is not the expected file: {problem}")
            return candidate
    cached = cache_dir("fixtures") / name
    try:
        if cached.is_file():
            if _matches(cached, entry) is None:
                return cached
            cached.unlink(missing_ok=True)  # a damaged cache copy is worthless; fetch it again below if allowed
    except OSError as error:
        raise FixtureError(f"cached fixture {cached} is not readable: {error.strerror or error}") from None
    if not allow_download:
        where = f"${FIXTURE_DIR_ENV} ({fixture_dir})" if fixture_dir else f"${FIXTURE_DIR_ENV} (unset)"
        raise FixtureError(f"fixture {name} is not in {where} or the cache {cached.parent}, and downloads are off")
    if not entry.sha256:
        raise FixtureError(
            f"fixture {name} has no sha256 in the manifest; refusing to trust a download from {entry.download_url()}"
        )
    return download(entry, cached, timeout=timeout)


def download(entry: FixtureEntry, destination: Path, *, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Stream entry's URL to `destination`, verifying size and sha256 before an atomic rename."""
    url = entry.download_url()
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = temp_beside(destination, prefix=f".{entry.name}.")  # a plain open()'s permissions
    except OSError as error:
        raise FixtureError(f"cannot download {entry.name} into {destination.parent}: "
                           f"{error.strerror or error}") from None
    try:
        with handle:
            digest, size = _fetch(url, entry, handle, timeout)
        if size != entry.size:
            raise FixtureError(f"download of {url} gave {size} bytes, expected {entry.size}")
        if digest != entry.sha256:
            raise FixtureError(f"download of {url} has sha256 {digest}, expected {entry.sha256}; not used")
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)
    return destination


def _fetch(url: str, entry: FixtureEntry, sink: IO[bytes], timeout: float) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    limit = max(timeout * 20, 600.0)  # a stalled read times out per read; a crawl ends here
    deadline = time.monotonic() + limit
    try:
        with requests.get(url, stream=True, timeout=(timeout, timeout)) as response:
            if response.status_code != 200:
                raise FixtureError(f"download of {url} failed: HTTP {response.status_code} {response.reason}")
            progress = _Progress(entry.name, entry.size)
            for chunk in response.iter_content(CHUNK):
                sink.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                progress.update(size)
                if size > entry.size:
                    raise FixtureError(f"download of {url} is larger than the expected {entry.size} bytes")
                if time.monotonic() > deadline:
                    raise FixtureError(f"download of {url} took too long (over {limit:.0f} s); giving up")
            progress.finish(size)
    except requests.Timeout:
        raise FixtureError(f"download of {url} timed out after {timeout:g} s waiting for the server") from None
    except requests.RequestException as error:
        raise FixtureError(f"download of {url} failed: {type(error).__name__}: {error}") from None
    return digest.hexdigest(), size


class _Progress:
    """A one-line percentage on stderr, redrawn at most a few times per second."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total, self.last = name, total, 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= 0.25:
            self.last = now
            percent = 100.0 * done / self.total if self.total else 100.0
            sys.stderr.write(f"\rdownloading {self.name}: {done / 1e6:.1f} MB ({percent:.0f}%)")
            sys.stderr.flush()

    def finish(self, done: int) -> None:
        sys.stderr.write(f"\rdownloading {self.name}: {done / 1e6:.1f} MB done\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class Prompt:
    """A named prompt for port-vs-oracle runs (fixtures/prompts.yaml)."""

    name: str
    text: str
    why: str

    @property
    def data(self) -> bytes:
        """The bytes passed as `-i` (UTF-8)."""
        return self.text.encode("utf-8")


def load_prompts(path: str | Path | None = None) -> list[Prompt]:
    """The comparison prompts, in file order."""
    path = Path(path) if path else project_root() / "fixtures" / "prompts.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return [Prompt(str(p["name"]), str(p["text"]), str(p.get("why", ""))) for p in data["prompts"]]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
        raise FixtureError(f"{path}: cannot read prompts: {error}") from None
