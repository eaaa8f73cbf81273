"""The tiny686 guest's initramfs: busybox, /init, the FTP client with exactly its libraries, and kernel modules.

The whole guest runs from the initramfs, so its contents decide boot time and whether the FTP client starts.
It is written as a newc cpio archive in Python (no root, no cpio/depmod/ldd needed on the host); which shared
libraries and kernel modules go in is worked out from the ELF files themselves (DT_NEEDED, PT_INTERP and the
modules' .modinfo "depends"), so nothing is shipped that is not needed and nothing needed is missed.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from harness.guests.tiny686.host_tools import GuestBuildError

GUEST_LIB_DIR = "lib/i386-linux-gnu"
LIB_SEARCH_DIRS = ("lib/i386-linux-gnu", "usr/lib/i386-linux-gnu", "lib", "usr/lib")


# ---------------------------------------------------------------------------------------------------------------
# Paths inside the unpacked packages


def resolve_in_root(root: Path, relative: str) -> Path:
    """Follow symlinks of an unpacked package tree without ever leaving it (absolute targets mean `root`)."""
    parts = [p for p in relative.strip("/").split("/") if p]
    current = root
    hops = 0
    while parts:
        candidate = current / parts.pop(0)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise GuestBuildError(f"symlink loop at {candidate}")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p] + parts
            current = root if target.startswith("/") else current
            continue
        if candidate.name == "..":
            current = current.parent if current != root else root
            continue
        current = candidate
    return current


# ---------------------------------------------------------------------------------------------------------------
# ELF inspection (shared libraries and kernel modules)


def elf_needed(path: Path) -> tuple[list[str], str | None]:
    """DT_NEEDED sonames and the PT_INTERP program interpreter of an ELF file."""
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        needed: list[str] = []
        interpreter: str | None = None
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interpreter = segment.get_interp_name()
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                # pyelftools sets `.needed` on DT_NEEDED tags while parsing, which type checkers cannot see.
                tags = section.iter_tags("DT_NEEDED")
                needed.extend(str(tag.needed) for tag in tags)  # type: ignore[attr-defined]  # DT_NEEDED tags carry .needed; the stubs type them as the base tag
    return needed, interpreter


def module_info(path: Path) -> dict[str, list[str]]:
    """The key=value pairs of a kernel module's .modinfo section (keys may repeat, e.g. alias)."""
    with path.open("rb") as handle:
        section = ELFFile(handle).get_section_by_name(".modinfo")
        data = section.data() if section is not None else b""
    info: dict[str, list[str]] = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode("utf-8", "replace").partition("=")
        if sep:
            info.setdefault(key, []).append(value)
    return info


def module_closure(modules_root: Path, wanted: list[str]) -> tuple[list[Path], dict[Path, list[Path]]]:
    """Modules to ship (dependencies first) and each one's full dependency list for modules.dep.

    modules.dep lists, after `module:`, every dependency with the ones to load last first; busybox modprobe
    loads them from the end of the line, so it needs no depmod on the host.
    """
    index = {p.name[: -len(".ko")].replace("-", "_"): p for p in modules_root.rglob("*.ko")}
    order: list[Path] = []
    direct: dict[Path, list[Path]] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key not in index:
            raise GuestBuildError(f"kernel module '{name}' not found under {modules_root}")
        path = index[key]
        if path in direct:
            return
        if key in chain:
            raise GuestBuildError(f"kernel module dependency cycle: {' -> '.join((*chain, key))}")
        depends = [d for d in ",".join(module_info(path).get("depends", [])).split(",") if d]
        for dependency in depends:
            visit(dependency, (*chain, key))
        direct[path] = [index[d.replace("-", "_")] for d in depends]
        order.append(path)

    for module in wanted:
        visit(module, ())

    load_order: dict[Path, list[Path]] = {}  # every dependency of a module, each after its own dependencies
    for path in order:  # dependencies come first in `order`, so their lists are ready
        closure: list[Path] = []
        for dependency in direct[path]:
            for item in load_order[dependency] + [dependency]:
                if item not in closure:
                    closure.append(item)
        load_order[path] = closure
    return order, {path: list(reversed(closure)) for path, closure in load_order.items()}


# ---------------------------------------------------------------------------------------------------------------
# The initramfs


class CpioArchive:
    """A newc ("070701") cpio archive built in memory: what the kernel unpacks as the initramfs."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._inode = 1
        self._names: set[str] = set()

    def directory(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            self._entry("/".join(parts[:depth]), stat.S_IFDIR | mode, b"", skip_existing=True)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._parent(name)
        self._entry(name.strip("/"), stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._parent(name)
        self._entry(name.strip("/"), stat.S_IFLNK | 0o777, target.encode())

    def character_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name.strip("/"), stat.S_IFCHR | mode, b"", rdev=(major, minor))

    def _parent(self, name: str) -> None:
        parent = os.path.dirname(name.strip("/"))
        if parent:
            self.directory(parent)

    def close(self) -> bytes:
        self._entry("TRAILER!!!", 0, b"", inode=0)
        return self._out.getvalue()

    def _entry(self, name: str, mode: int, data: bytes, *, skip_existing: bool = False,
               rdev: tuple[int, int] = (0, 0), inode: int | None = None) -> None:
        if name in self._names:
            if skip_existing:
                return
            raise GuestBuildError(f"initramfs: {name} added twice")
        self._names.add(name)
        encoded = name.encode() + b"\0"
        fields = [
            self._inode if inode is None else inode, mode, 0, 0,
            2 if stat.S_ISDIR(mode) else 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        ]
        self._inode += 1
        self._out.write(b"070701" + b"".join(b"%08X" % value for value in fields) + encoded)
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))


def build_initramfs(recipe_dir: Path, modules: list[str], trees: dict[str, Path], kernel_version: str,
                    libs_root: Path) -> bytes:
    """The gzip'd initramfs: busybox, /init, the FTP client with its libraries, and the chosen modules.

    `recipe_dir` holds `init` and the `rootfs/` overlay; `trees` maps "kernel", "busybox" and "ftp" to their
    unpacked packages; `libs_root` is where the FTP client's library packages were unpacked together.
    """
    archive = CpioArchive()
    for name in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt/c",
                 "lib/modules"):
        archive.directory(name)
    archive.character_device("dev/console", 5, 1)
    archive.character_device("dev/null", 1, 3, 0o666)
    archive.file("init", (recipe_dir / "init").read_bytes(), 0o755)
    archive.file("bin/busybox", (trees["busybox"] / "bin/busybox").read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")

    overlay = recipe_dir / "rootfs"
    for path in sorted(overlay.rglob("*")) if overlay.is_dir() else []:
        relative = path.relative_to(overlay).as_posix()
        if path.is_dir():
            archive.directory(relative)
        else:
            archive.file(relative, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)

    _add_ftp_client(archive, trees["ftp"], libs_root)

    modules_root = trees["kernel"] / "lib/modules" / kernel_version
    order, dependencies = module_closure(modules_root, modules)
    guest_modules = f"lib/modules/{kernel_version}"
    dep_lines = []
    for path in order:
        relative = path.relative_to(modules_root).as_posix()
        archive.file(f"{guest_modules}/{relative}", path.read_bytes())
        deps = " ".join(d.relative_to(modules_root).as_posix() for d in dependencies[path])
        dep_lines.append(f"{relative}:{' ' + deps if deps else ''}\n")
    archive.file(f"{guest_modules}/modules.dep", "".join(dep_lines).encode())
    return gzip.compress(archive.close(), compresslevel=9, mtime=0)


def _add_ftp_client(archive: CpioArchive, ftp_tree: Path, libs_root: Path) -> None:
    """Install the package's ELF programs as /usr/bin/* (plus `ftp`) with exactly the libraries they need."""
    programs = [p for p in sorted((ftp_tree / "usr/bin").iterdir()) if p.is_file() and not p.is_symlink()
                and p.read_bytes()[:4] == b"\x7fELF"]
    if not programs:
        raise GuestBuildError(f"no FTP client program in {ftp_tree / 'usr/bin'}")
    for program in programs:
        archive.file(f"usr/bin/{program.name}", program.read_bytes(), 0o755)
    if not any(p.name == "ftp" for p in programs):
        archive.symlink("usr/bin/ftp", programs[0].name)

    shipped: set[str] = set()
    pending: list[Path] = list(programs)
    while pending:
        needed, interpreter = elf_needed(pending.pop())
        if interpreter and interpreter not in shipped:
            shipped.add(interpreter)
            real = resolve_in_root(libs_root, interpreter)
            if not real.is_file():
                raise GuestBuildError(f"program interpreter {interpreter} not in the library packages")
            archive.file(interpreter, real.read_bytes(), 0o755)
            pending.append(real)
        for soname in needed:
            if soname in shipped or (interpreter and soname == os.path.basename(interpreter)):
                continue
            shipped.add(soname)
            real = _find_library(libs_root, soname)
            archive.file(f"{GUEST_LIB_DIR}/{soname}", real.read_bytes(), 0o755)
            pending.append(real)


def _find_library(libs_root: Path, soname: str) -> Path:
    for directory in LIB_SEARCH_DIRS:
        candidate = resolve_in_root(libs_root, f"{directory}/{soname}")
        if candidate.is_file():
            return candidate
    raise GuestBuildError(f"shared library {soname} not found in the FTP client's library packages")
