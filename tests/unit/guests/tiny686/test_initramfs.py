"""The tiny686 initramfs writer on real ELF files made here with gcc: the newc archive read back by GNU cpio, the
FTP client shipped with exactly the libraries its DT_NEEDED/PT_INTERP chain names (found through the packages'
symlinks, never outside their tree), and kernel modules with a modules.dep that busybox modprobe reads.

The "packages" are small trees built in tmp_path: a program and shared objects linked with -nostdlib (so their
only dependencies are the ones the test gives them) and relocatable objects with a .modinfo section, which is all
a kernel module is to the writer.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.guests.tiny686.host_tools import GuestBuildError
from harness.guests.tiny686.initramfs import (
    CpioArchive,
    build_initramfs,
    elf_needed,
    module_closure,
    module_info,
    resolve_in_root,
)

KERNEL_VERSION = "6.1.0-99-686"
INTERPRETER = "/lib/ld-test.so.2"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("cpio") is None,
                                reason="needs gcc and GNU cpio (apt-get install gcc cpio)")


def _gcc(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["gcc", *[str(a) for a in args]], cwd=cwd, check=True, capture_output=True)


def _module(path: Path, modinfo: str) -> Path:
    """A relocatable ELF object with `modinfo` (NUL-separated key=value) as its .modinfo section."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = path.with_suffix(".c")
    literal = modinfo.replace("\0", "\\0")
    source.write_text(f'__attribute__((section(".modinfo"), used)) static const char info[] = "{literal}";\n'
                      "int init_module(void) { return 0; }\n")
    _gcc("-c", "-o", path, source, cwd=path.parent)
    source.unlink()
    return path


@dataclass
class Trees:
    recipe: Path
    kernel: Path
    busybox: Path
    ftp: Path
    libs: Path

    def trees(self) -> dict[str, Path]:
        return {"kernel": self.kernel, "busybox": self.busybox, "ftp": self.ftp}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Trees:
    root = tmp_path_factory.mktemp("packages")
    build = root / "build"
    build.mkdir()
    (build / "inner.c").write_text("int inner(void) { return 2; }\n")
    (build / "dep.c").write_text("int inner(void);\nint dep(void) { return inner() + 1; }\n")
    (build / "ld.c").write_text("int loader_marker(void) { return 3; }\n")
    (build / "prog.c").write_text("int dep(void);\nvoid _start(void) { dep(); for (;;) {} }\n")
    _gcc("-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libinner.so.2", "-o", "libinner.so.2.0.0", "inner.c",
         cwd=build)
    shutil.copy(build / "libinner.so.2.0.0", build / "libinner.so.2")
    _gcc("-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libdep.so.1", "-o", "libdep.so.1", "dep.c", "-L.",
         "-l:libinner.so.2", cwd=build)
    _gcc("-shared", "-fPIC", "-nostdlib", "-Wl,-soname,ld-test.so.2", "-o", "ld-test.so.2", "ld.c", cwd=build)
    _gcc("-nostdlib", f"-Wl,--dynamic-linker={INTERPRETER}", "-Wl,-rpath-link,.", "-o", "inetutils-ftp",
         "prog.c", "-L.", "-l:libdep.so.1", cwd=build)

    libs = root / "libs"  # the library packages unpacked together, with their symlinks
    (libs / "lib/i386-linux-gnu").mkdir(parents=True)
    (libs / "usr/lib/i386-linux-gnu").mkdir(parents=True)
    shutil.copy(build / "ld-test.so.2", libs / "lib/i386-linux-gnu/ld-test.so.2")
    (libs / "lib/ld-test.so.2").symlink_to("/lib/i386-linux-gnu/ld-test.so.2")  # absolute: means the tree
    shutil.copy(build / "libdep.so.1", libs / "usr/lib/i386-linux-gnu/libdep.so.1")
    shutil.copy(build / "libinner.so.2.0.0", libs / "lib/i386-linux-gnu/libinner.so.2.0.0")
    (libs / "lib/i386-linux-gnu/libinner.so.2").symlink_to("libinner.so.2.0.0")
    shutil.copy(build / "libinner.so.2.0.0", libs / "lib/i386-linux-gnu/libunused.so.9")  # never needed

    ftp = root / "ftp"
    (ftp / "usr/bin").mkdir(parents=True)
    shutil.copy(build / "inetutils-ftp", ftp / "usr/bin/inetutils-ftp")
    (ftp / "usr/bin/pftp").symlink_to("inetutils-ftp")  # a link, not a program to ship
    (ftp / "usr/bin/README").write_text("not an ELF program\n")

    busybox = root / "busybox"
    (busybox / "bin").mkdir(parents=True)
    (busybox / "bin/busybox").write_bytes(b"\x7fELF fake busybox")

    modules = root / "kernel" / "lib/modules" / KERNEL_VERSION / "kernel/drivers"
    _module(modules / "net/e1000.ko", "license=GPL\0depends=\0alias=pci:v00008086d0000100Esv*")
    _module(modules / "ata/ata_piix.ko", "depends=libata,scsi_mod\0license=GPL")
    _module(modules / "ata/libata.ko", "depends=scsi_mod,scsi-common")
    _module(modules / "scsi/scsi_mod.ko", "depends=scsi_common")
    _module(modules / "scsi/scsi-common.ko", "license=GPL")
    _module(modules / "sound/unwanted.ko", "depends=")

    recipe = root / "recipe"
    (recipe / "rootfs/etc").mkdir(parents=True)
    (recipe / "rootfs/usr/sbin").mkdir(parents=True)
    (recipe / "init").write_text("#!/bin/busybox sh\necho init\n")
    (recipe / "rootfs/etc/profile").write_text("PS1='tiny686# '\n")
    (recipe / "rootfs/usr/sbin/helper").write_text("#!/bin/sh\n")
    (recipe / "rootfs/usr/sbin/helper").chmod(0o755)
    return Trees(recipe, root / "kernel", busybox, ftp, libs)


def _unpack(archive_gz: bytes, where: Path) -> tuple[list[str], str]:
    """Extract with GNU cpio (devices skipped: no root); return the names and the verbose listing."""
    data = gzip.decompress(archive_gz)
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True, check=True).stdout.decode()
    names = subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True,
                           check=True).stdout.decode().splitlines()
    where.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"], input=data,
                   cwd=where, check=True, capture_output=True)
    return names, listing


@dataclass
class Built:
    archive: bytes  # the gzip'd initramfs
    names: list[str]  # `cpio -t`
    listing: str  # `cpio -tv`
    root: Path  # where `cpio -i` unpacked it


@pytest.fixture(scope="module")
def built(packages: Trees, tmp_path_factory: pytest.TempPathFactory) -> Built:
    archive = build_initramfs(packages.recipe, ["ata_piix", "e1000"], packages.trees(), KERNEL_VERSION,
                              packages.libs)
    root = tmp_path_factory.mktemp("unpacked") / "root"
    names, listing = _unpack(archive, root)
    return Built(archive, names, listing, root)


def test_the_base_system_is_there(built: Built, packages: Trees) -> None:
    names, listing, root = built.names, built.listing, built.root
    for directory in ("bin", "sbin", "usr/bin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt", "mnt/c",
                      "lib/modules"):
        assert directory in names and (root / directory).is_dir()
    assert (root / "init").read_bytes() == (packages.recipe / "init").read_bytes()
    assert os.access(root / "init", os.X_OK) and os.access(root / "bin/busybox", os.X_OK)
    assert os.readlink(root / "bin/sh") == "busybox"
    console = next(line for line in listing.splitlines() if line.endswith(" dev/console"))
    null = next(line for line in listing.splitlines() if line.endswith(" dev/null"))
    assert console.startswith("crw-------") and re.search(r"\s5,\s+1\s", console), console
    assert null.startswith("crw-rw-rw-") and re.search(r"\s1,\s+3\s", null), null


def test_the_rootfs_overlay_keeps_its_modes(built: Built) -> None:
    root = built.root
    assert (root / "etc/profile").read_text() == "PS1='tiny686# '\n"
    assert os.access(root / "usr/sbin/helper", os.X_OK)
    assert not os.access(root / "etc/profile", os.X_OK)


def test_the_ftp_client_ships_with_exactly_its_library_chain(built: Built) -> None:
    names, root = built.names, built.root
    assert os.access(root / "usr/bin/inetutils-ftp", os.X_OK)
    assert os.readlink(root / "usr/bin/ftp") == "inetutils-ftp"  # no program called ftp: linked to the client
    assert "usr/bin/pftp" not in names and "usr/bin/README" not in names
    shipped_libs = sorted(name for name in names if name.startswith("lib/") and ".so" in name)
    assert shipped_libs == ["lib/i386-linux-gnu/libdep.so.1", "lib/i386-linux-gnu/libinner.so.2",
                            "lib/ld-test.so.2"]
    # The symlinks in the packages were followed: real ELF files, under their sonames.
    assert elf_needed(root / "lib/i386-linux-gnu/libdep.so.1") == (["libinner.so.2"], None)
    assert (root / "lib/ld-test.so.2").read_bytes()[:4] == b"\x7fELF" and not (root / "lib/ld-test.so.2").is_symlink()
    # Nothing the chain names is missing from the archive.
    needed, interpreter = elf_needed(root / "usr/bin/inetutils-ftp")
    assert needed == ["libdep.so.1"] and interpreter == INTERPRETER


def test_modules_and_a_modules_dep_busybox_modprobe_can_follow(built: Built) -> None:
    names, modules = built.names, built.root / "lib/modules" / KERNEL_VERSION
    shipped = sorted(name.rsplit("/", 1)[1] for name in names if name.endswith(".ko"))
    assert shipped == ["ata_piix.ko", "e1000.ko", "libata.ko", "scsi-common.ko", "scsi_mod.ko"]  # not unwanted.ko
    lines = (modules / "modules.dep").read_text().splitlines()
    dep = {line.split(":")[0]: line.split(":")[1].split() for line in lines}
    drivers = "kernel/drivers"
    assert dep[f"{drivers}/net/e1000.ko"] == []
    assert dep[f"{drivers}/scsi/scsi-common.ko"] == []
    assert dep[f"{drivers}/scsi/scsi_mod.ko"] == [f"{drivers}/scsi/scsi-common.ko"]
    # Every dependency, the one to load last first: busybox loads from the end of the line.
    assert dep[f"{drivers}/ata/ata_piix.ko"] == [f"{drivers}/ata/libata.ko", f"{drivers}/scsi/scsi_mod.ko",
                                                  f"{drivers}/scsi/scsi-common.ko"]
    for module, dependencies in dep.items():
        for path in (module, *dependencies):
            assert (modules / path).is_file(), f"modules.dep names {path}, which is not shipped"
        loaded = set()
        for dependency in reversed(dependencies):  # modprobe's order: each one's own dependencies already loaded
            assert set(dep[dependency]) <= loaded, f"{dependency} loaded before its dependencies"
            loaded.add(dependency)


def test_the_archive_is_reproducible_and_newc_aligned(built: Built,
                                                      packages: Trees) -> None:
    archive = built.archive
    again = build_initramfs(packages.recipe, ["ata_piix", "e1000"], packages.trees(), KERNEL_VERSION, packages.libs)
    assert again == archive  # gzip mtime 0, fixed inode order: a rebuild of the same inputs is the same bytes
    raw = gzip.decompress(archive)
    assert raw.startswith(b"070701") and len(raw) % 4 == 0
    assert b"TRAILER!!!\0" in raw[-512:]


@pytest.mark.parametrize(("wanted", "message"), [
    (["no_such_module"], "kernel module 'no_such_module' not found under"),
    (["loop_a"], "kernel module dependency cycle: loop_a -> loop_b -> loop_a"),
])
def test_module_errors_are_one_line(wanted: list[str], message: str, tmp_path: Path) -> None:
    _module(tmp_path / "loop_a.ko", "depends=loop_b")
    _module(tmp_path / "loop_b.ko", "depends=loop-a")
    with pytest.raises(GuestBuildError) as info:
        module_closure(tmp_path, wanted)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_module_info_keeps_repeated_keys(tmp_path: Path) -> None:
    module = _module(tmp_path / "m.ko", "alias=pci:a\0alias=pci:b\0depends=x,y\0vermagic=6.1.0 SMP mod_unload 686")
    info = module_info(module)
    assert info["alias"] == ["pci:a", "pci:b"] and info["depends"] == ["x,y"]
    assert info["vermagic"] == ["6.1.0 SMP mod_unload 686"]


def test_a_library_missing_from_the_packages_is_one_line(packages: Trees, tmp_path: Path) -> None:
    libs = tmp_path / "libs"
    shutil.copytree(packages.libs, libs, symlinks=True)
    (libs / "lib/i386-linux-gnu/libinner.so.2").unlink()
    with pytest.raises(GuestBuildError) as info:
        build_initramfs(packages.recipe, ["e1000"], packages.trees(), KERNEL_VERSION, libs)
    assert str(info.value) == "shared library libinner.so.2 not found in the FTP client's library packages"


def test_a_package_without_a_program_is_one_line(packages: Trees, tmp_path: Path) -> None:
    empty = tmp_path / "ftp"
    (empty / "usr/bin").mkdir(parents=True)
    (empty / "usr/bin/README").write_text("docs only\n")
    trees = {**packages.trees(), "ftp": empty}
    with pytest.raises(GuestBuildError, match="no FTP client program in"):
        build_initramfs(packages.recipe, ["e1000"], trees, KERNEL_VERSION, packages.libs)


def test_resolve_in_root_follows_chains_and_stops_loops(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/libz.so.1.2.13").write_bytes(b"z")
    (root / "usr/lib/libz.so.1").symlink_to("libz.so.1.2.13")
    (root / "lib").symlink_to("usr/lib")  # usrmerge
    assert resolve_in_root(root, "/lib/libz.so.1") == root / "usr/lib/libz.so.1.2.13"
    (root / "usr/lib/loop1").symlink_to("loop2")
    (root / "usr/lib/loop2").symlink_to("loop1")
    with pytest.raises(GuestBuildError, match="symlink loop at"):
        resolve_in_root(root, "lib/loop1")


def test_the_cpio_writer_refuses_duplicates_but_shares_parents() -> None:
    archive = CpioArchive()
    archive.file("a/b/c.txt", b"1")
    archive.file("a/b/d.txt", b"2")  # a and a/b are not added twice
    archive.directory("a/b")
    with pytest.raises(GuestBuildError, match="initramfs: a/b/c.txt added twice"):
        archive.file("/a/b/c.txt", b"3")  # a leading slash names the same entry
    raw = archive.close()
    assert raw.count(b"a/b\0") == 1 and raw.count(b"070701") == 5  # a, a/b, c.txt, d.txt, trailer
    headers = [raw[index:index + 110] for index in range(len(raw)) if raw.startswith(b"070701", index)]
    inodes = [int(header[6:14], 16) for header in headers[:-1]]
    assert len(set(inodes)) == len(inodes) and int(headers[-1][6:14], 16) == 0
    modes = [int(header[14:22], 16) for header in headers[:-1]]
    assert [stat.S_ISDIR(mode) for mode in modes] == [True, True, False, False]
