"""Debian i386 packages for the guest image: which versions apt offers, fetching them verified, unpacking them.

The guest is made only of Debian packages so that it is reproducible and needs no root: apt-cache says exactly
which version (and sha256) would be installed, `apt-get download` fetches that version into a cache without
installing it, and `dpkg-deb -x` unpacks it into a plain directory tree the initramfs builder reads from.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.core.hashing import file_sha256 as sha256_file
from harness.core.paths import cache_dir
from harness.guests.tiny686.host_tools import GuestBuildError, Log, run_tool

ARCH = "i386"
VERSIONED_KERNEL = re.compile(r"linux-image-\d+\.\d+[^\s]*")  # linux-image-6.1.0-50-686, not -686
APT_LISTS = Path("/var/lib/apt/lists")


@dataclass(frozen=True)
class DebPackage:
    """One resolved Debian package: what apt would download for `name:arch`."""

    name: str
    arch: str
    version: str
    sha256: str
    depends: str

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.arch}"

    @property
    def deb_filename(self) -> str:
        """The file name `apt-get download` gives it (epoch colon escaped as %3a)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


# ---------------------------------------------------------------------------------------------------------------
# Resolution with apt-cache


def apt_show(specs: list[str]) -> dict[str, DebPackage]:
    """The candidate versions of several `name:arch` from the host's apt lists, in one apt-cache call.

    One call per batch because each apt-cache start loads the whole package cache (over a second here).
    """
    text = run_tool(["apt-cache", "show", "--no-all-versions", *specs], f"looking up {', '.join(specs)}")
    stanzas: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            stanzas.append({})
        elif not line.startswith(" "):
            key, _, value = line.partition(":")
            stanzas[-1][key] = value.strip()
    found: dict[str, DebPackage] = {}
    for spec in specs:
        name, _, arch = spec.partition(":")
        arch = arch or ARCH
        fields = next((f for f in stanzas if f.get("Package") == name and f.get("Architecture") in (arch, "all")
                       and "SHA256" in f), None)
        if fields is None:
            raise GuestBuildError(f"apt knows no downloadable {spec} (run `apt-get update`; is {arch} added?)")
        depends = ", ".join(fields[k] for k in ("Pre-Depends", "Depends") if k in fields)
        found[spec] = DebPackage(name=name, arch=fields["Architecture"], version=fields["Version"],
                                 sha256=fields["SHA256"], depends=depends)
    return found


def depends_names(depends: str) -> list[str]:
    """Package names of a Depends field, first choice of each alternative, without versions or arch."""
    names = []
    for clause in depends.split(","):
        first = clause.split("|")[0].strip()
        if first:
            names.append(first.split()[0].split(":")[0])
    return names


def resolve_kernel(spec: str) -> DebPackage:
    """Follow a kernel metapackage (linux-image-686) to the versioned image package that holds vmlinuz."""
    package = apt_show([spec])[spec]
    for _ in range(4):
        if VERSIONED_KERNEL.fullmatch(package.name):
            return package
        images = [n for n in depends_names(package.depends) if n.startswith("linux-image-")]
        if not images:
            break
        next_spec = f"{images[0]}:{package.arch}"
        package = apt_show([next_spec])[next_spec]
    raise GuestBuildError(f"{spec} does not lead to a versioned linux-image package")


def library_packages(package: DebPackage) -> list[DebPackage]:
    """The lib* packages in the Depends closure of `package`: where its shared libraries may come from.

    Only candidates: which files are really copied is decided by the binaries' DT_NEEDED entries.
    """
    found: dict[str, DebPackage] = {}
    level = [n for n in depends_names(package.depends) if n.startswith("lib")]
    while level:
        shown = apt_show([f"{name}:{package.arch}" for name in level])
        for name in level:
            found[name] = shown[f"{name}:{package.arch}"]
        level = sorted({n for dep in (found[name] for name in level) for n in depends_names(dep.depends)
                        if n.startswith("lib") and n not in found})
    return list(found.values())


def resolve_packages(roles: dict[str, str], label: str) -> dict[str, list[DebPackage]]:
    """Role -> resolved packages ("libraries" holds the FTP client's), memoised per state of the apt lists.

    `roles` maps "kernel", "busybox" and "ftp" to package specs; `label` names the memo file (the guest).
    Resolving takes several seconds of apt-cache; the answer only changes when `apt-get update` rewrites the
    lists or the requested packages change, so a cached image is found again in a fraction of a second.
    """
    lists = sorted(APT_LISTS.glob("*_Packages*"))
    state = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in lists]
    digest = hashlib.sha256(json.dumps([state, roles, ARCH], sort_keys=True).encode()).hexdigest()[:16]
    memo = cache_dir("guests") / f".resolved-{label}-{digest}.json"
    if memo.is_file():
        try:
            raw = json.loads(memo.read_text())
            return {role: [DebPackage(**fields) for fields in items] for role, items in raw.items()}
        except (ValueError, TypeError):
            pass  # unreadable memo: resolve again below
    ftp = apt_show([roles["ftp"]])[roles["ftp"]]
    resolved = {
        "kernel": [resolve_kernel(roles["kernel"])],
        "busybox": [apt_show([roles["busybox"]])[roles["busybox"]]],
        "ftp": [ftp],
        "libraries": library_packages(ftp),
    }
    scratch = memo.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps({role: [vars(p) for p in items] for role, items in resolved.items()}))
    os.replace(scratch, memo)
    return resolved


# ---------------------------------------------------------------------------------------------------------------
# Downloading and unpacking


def fetch_deb(package: DebPackage, debs_dir: Path, log: Log) -> Path:
    """The package's .deb from the cache, downloading it with `apt-get download` if missing or corrupt."""
    target = debs_dir / package.deb_filename
    if target.is_file() and sha256_file(target) == package.sha256:
        return target
    log(f"downloading {package.spec} {package.version}")
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".download-") as scratch:
        run_tool(["apt-get", "download", f"{package.spec}={package.version}"], f"downloading {package.spec}",
                 cwd=Path(scratch))
        downloaded = Path(scratch) / package.deb_filename
        if not downloaded.is_file():
            raise GuestBuildError(f"apt-get download {package.spec} did not produce {package.deb_filename}")
        if sha256_file(downloaded) != package.sha256:
            raise GuestBuildError(f"{package.deb_filename}: sha256 does not match the apt lists")
        os.replace(downloaded, target)
    return target


def unpack_deb(deb: Path, destination: Path) -> Path:
    """Unpack a .deb's files (not its maintainer scripts) into `destination`, which may already hold others."""
    destination.mkdir(parents=True, exist_ok=True)
    run_tool(["dpkg-deb", "-x", str(deb), str(destination)], f"unpacking {deb.name}")
    return destination


