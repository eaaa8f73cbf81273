"""Debian package handling for the tiny686 image, offline: parsing what apt says (Depends fields, versions with
epochs, versioned kernel names), apt-cache lookups against the host's own lists (no download), the resolution memo,
a cached .deb trusted only with the right sha256, and unpacking a real .deb made here with dpkg-deb."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.paths import cache_dir
from harness.guests.tiny686.debian_packages import (
    ARCH,
    VERSIONED_KERNEL,
    DebPackage,
    apt_show,
    depends_names,
    fetch_deb,
    resolve_packages,
    unpack_deb,
)
from harness.guests.tiny686.host_tools import GuestBuildError


def _has_i386_lists() -> bool:
    if shutil.which("dpkg") is None or shutil.which("apt-cache") is None:
        return False
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout
    return "i386" in foreign.split() and any(Path("/var/lib/apt/lists").glob("*i386_Packages*"))


needs_apt_lists = pytest.mark.skipif(not _has_i386_lists(), reason="needs apt lists with i386 added "
                                     "(`dpkg --add-architecture i386 && apt-get update`, as building tiny686 does)")


@pytest.mark.parametrize(("field", "names"), [
    ("", []),
    ("libc6 (>= 2.34)", ["libc6"]),
    ("libc6 (>= 2.34), libreadline8 (>= 6.0) | libedit2, netbase", ["libc6", "libreadline8", "netbase"]),
    ("libtinfo6:i386, debconf (>= 0.5) | debconf-2.0 ,  ,linux-base (>= 4.3~)", ["libtinfo6", "debconf",
                                                                                   "linux-base"]),
    ("kmod | linux-initramfs-tool [linux-any], initramfs-tools", ["kmod", "initramfs-tools"]),
])
def test_depends_names_take_the_first_choice_without_versions_or_arch(field: str, names: list[str]) -> None:
    assert depends_names(field) == names


@pytest.mark.parametrize(("name", "versioned"), [
    ("linux-image-6.1.0-50-686", True),
    ("linux-image-6.1.0-57-686-pae", True),
    ("linux-image-686", False),
    ("linux-image-686-pae", False),
    ("linux-image-6.1.0-50-686 extra", False),
])
def test_versioned_kernel_names(name: str, versioned: bool) -> None:
    assert bool(VERSIONED_KERNEL.fullmatch(name)) is versioned


def test_a_package_names_its_spec_and_the_file_apt_get_download_writes() -> None:
    package = DebPackage("busybox-static", "i386", "1:1.35.0-4+deb12u1+b1", "0" * 64, "")
    assert package.spec == "busybox-static:i386"
    assert package.deb_filename == "busybox-static_1%3a1.35.0-4+deb12u1+b1_i386.deb"
    assert DebPackage("libc6", "i386", "2.36-9", "0" * 64, "").deb_filename == "libc6_2.36-9_i386.deb"


@pytest.fixture(scope="module")
def shown() -> dict[str, DebPackage]:
    if not _has_i386_lists():
        pytest.skip("needs apt lists with i386 added")
    return apt_show(["busybox-static:i386", "linux-image-686:i386"])


@needs_apt_lists
def test_apt_show_reads_versions_hashes_and_depends_from_the_lists(shown: dict[str, DebPackage]) -> None:
    busybox, kernel = shown["busybox-static:i386"], shown["linux-image-686:i386"]
    assert busybox.name == "busybox-static" and busybox.arch == ARCH
    assert re.fullmatch(r"[0-9a-f]{64}", busybox.sha256) and re.fullmatch(r"(\d+:)?[0-9][\w.+~:-]*", busybox.version)
    images = [name for name in depends_names(kernel.depends) if name.startswith("linux-image-")]
    assert images and VERSIONED_KERNEL.fullmatch(images[0]), kernel.depends


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"


@needs_apt_lists
def test_resolution_is_memoised_per_apt_state_and_a_bad_memo_is_redone(
        shown: dict[str, DebPackage], private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Roles chosen to keep apt-cache calls few: a versioned kernel (no metapackage to follow) and an FTP
    # "client" without library dependencies.
    kernel = next(n for n in depends_names(shown["linux-image-686:i386"].depends) if n.startswith("linux-image-"))
    roles = {"kernel": f"{kernel}:i386", "busybox": "busybox-static:i386", "ftp": "busybox-static:i386"}
    first = resolve_packages(roles, "unit")
    assert first["kernel"][0].name == kernel and first["busybox"][0] == shown["busybox-static:i386"]
    assert first["libraries"] == []
    [memo] = (private_cache / "guests").glob(".resolved-unit-*.json")
    assert json.loads(memo.read_text())["busybox"][0]["version"] == first["busybox"][0].version

    empty_bin = tmp_path / "no-apt"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # from now on any apt-cache call would fail
    assert resolve_packages(roles, "unit") == first  # answered from the memo
    memo.write_text("{not json")
    with pytest.raises(GuestBuildError, match="apt-cache"):  # an unreadable memo is not trusted: apt is asked again
        resolve_packages(roles, "unit")
    other_roles = {**roles, "ftp": "inetutils-ftp:i386"}
    with pytest.raises(GuestBuildError, match="apt-cache"):  # other packages, another memo
        resolve_packages(other_roles, "unit")


def test_a_cached_deb_is_used_only_with_the_right_sha256(tmp_path: Path) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    content = b"!<arch>\ncached package bytes"
    package = DebPackage("tool", "i386", "1:2.0-1", hashlib.sha256(content).hexdigest(), "")
    cached = debs / package.deb_filename
    cached.write_bytes(content)
    said: list[str] = []
    assert fetch_deb(package, debs, said.append) == cached and said == []  # no download, nothing said


def test_a_real_deb_is_unpacked_beside_what_is_already_there(tmp_path: Path) -> None:
    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb (apt-get install dpkg)")
    tree = tmp_path / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text("Package: llama98-test\nVersion: 1.0\nArchitecture: i386\n"
                                         "Maintainer: test <t@example.invalid>\nDescription: test package\n")
    (tree / "DEBIAN/postinst").write_text("#!/bin/sh\ntouch /tmp/should-never-run\n")
    (tree / "DEBIAN/postinst").chmod(0o755)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/tool").write_bytes(b"\x7fELF tool")
    (tree / "usr/bin/tool").chmod(0o755)
    (tree / "usr/bin/alias").symlink_to("tool")
    deb = tmp_path / "llama98-test_1.0_i386.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True,
                   capture_output=True)
    destination = tmp_path / "unpacked"
    (destination / "lib").mkdir(parents=True)
    (destination / "lib/libc.so.6").write_bytes(b"from another package")
    assert unpack_deb(deb, destination) == destination
    assert (destination / "usr/bin/tool").read_bytes() == b"\x7fELF tool"
    assert (destination / "usr/bin/alias").is_symlink()
    assert (destination / "lib/libc.so.6").read_bytes() == b"from another package"
    assert not (destination / "DEBIAN").exists()  # files only, no maintainer scripts


def test_a_damaged_deb_is_a_one_line_build_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken_1.0_i386.deb"
    broken.write_bytes(b"this is not an ar archive")
    with pytest.raises(GuestBuildError) as info:
        unpack_deb(broken, tmp_path / "out")
    assert str(info.value).startswith("unpacking broken_1.0_i386.deb failed (exit code ")
    assert "\n" not in str(info.value)


def test_the_default_debs_cache_is_under_llama98_cache(private_cache: Path) -> None:
    assert cache_dir("debs") == private_cache / "debs"
