"""Build the tiny686 stand-in guest: a bootable raw disk image made only from Debian i386 packages.

Every CI run needs a pentium2 guest with a serial shell, a FAT work disk and an active-mode FTP client, and
Windows 98 cannot be shipped. So this module turns the recipe in vm/tiny686/ into a disk image without root:
packages are fetched with `apt-get download`, unpacked with `dpkg-deb -x`, the initramfs is written as a newc
cpio archive in Python, and the disk is assembled with mtools and syslinux's mtools installer (no loop devices,
no mounts, no chroot). The image is cached under a key made of the resolved package versions and a hash of the
recipe, and is only ever published by an atomic rename, so an interrupted build never leaves a broken image.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from harness.errors import HarnessError
from harness.paths import cache_dir, project_root

GUEST_NAMES: tuple[str, ...] = ("tiny686",)
IMAGE_NAME = "tiny686.img"
MANIFEST_NAME = "tiny686.json"
ARCH = "i386"
IMAGE_BYTES = 512 * 1024 * 1024  # sparse; the FAT32 partition is the guest's work disk
PARTITION_START_SECTOR = 2048  # 1 MiB, the usual alignment
SECTOR = 512
FAT_LABEL = "TINY686"
FAT_SERIAL = "7191686a"  # fixed, so the volume is recognisable (file dates still differ between builds)
GUEST_LIB_DIR = "lib/i386-linux-gnu"
LIB_SEARCH_DIRS = ("lib/i386-linux-gnu", "usr/lib/i386-linux-gnu", "lib", "usr/lib")
VERSIONED_KERNEL = re.compile(r"linux-image-\d+\.\d+[^\s]*")  # linux-image-6.1.0-50-686, not -686
MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")

# Host tool -> Debian package that provides it, for the "install it" error.
HOST_TOOLS: dict[str, str] = {
    "apt-get": "apt",
    "apt-cache": "apt",
    "dpkg-deb": "dpkg",
    "mformat": "mtools",
    "mcopy": "mtools",
    "syslinux": "syslinux",
}

Log = Callable[[str], None]


class GuestBuildError(HarnessError):
    """The guest image could not be built (missing host tool, package, or a failing build step)."""


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


@dataclass(frozen=True)
class Recipe:
    """The recipe files of one guest, read from vm/<name>/."""

    directory: Path
    packages: dict[str, str]  # role -> package spec
    modules: list[str]

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.rglob("*") if p.is_file() and p.name != "README.md")


# ---------------------------------------------------------------------------------------------------------------
# Host tools and subprocesses


def check_host_tools() -> None:
    """Fail early, in one line, naming the apt package to install for the first missing tool."""
    for tool, package in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise GuestBuildError(f"'{tool}' not found: install it with `apt-get install {package}`")
    if not MBR_BIN.is_file():
        raise GuestBuildError(f"{MBR_BIN} not found: install it with `apt-get install syslinux-common`")


def run_tool(command: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a host tool; on failure raise a one-line error with its last line of stderr."""
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", MTOOLSRC="/dev/null", LC_ALL="C")
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired as error:
        raise GuestBuildError(f"{what}: `{' '.join(command)}` did not finish in 600 s") from error
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit code {done.returncode}"
        raise GuestBuildError(f"{what}: `{' '.join(command)}` failed: {detail}")
    return done.stdout


# ---------------------------------------------------------------------------------------------------------------
# Recipe and package resolution


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


def resolve_packages(recipe: Recipe) -> dict[str, list[DebPackage]]:
    """Role -> resolved packages ("libraries" holds the FTP client's), memoised per state of the apt lists.

    Resolving takes several seconds of apt-cache; the answer only changes when `apt-get update` rewrites the
    lists or the recipe's package list changes, so a cached image is found again in a fraction of a second.
    """
    lists = sorted(Path("/var/lib/apt/lists").glob("*_Packages*"))
    state = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in lists]
    packages_txt = (recipe.directory / "packages.txt").read_text(encoding="utf-8")
    digest = hashlib.sha256(json.dumps([state, packages_txt, ARCH]).encode()).hexdigest()[:16]
    memo = cache_dir("guests") / f".resolved-{recipe.directory.name}-{digest}.json"
    if memo.is_file():
        try:
            raw = json.loads(memo.read_text())
            return {role: [DebPackage(**fields) for fields in items] for role, items in raw.items()}
        except (ValueError, TypeError):
            pass  # unreadable memo: resolve again below
    ftp = apt_show([recipe.packages["ftp"]])[recipe.packages["ftp"]]
    resolved = {
        "kernel": [resolve_kernel(recipe.packages["kernel"])],
        "busybox": [apt_show([recipe.packages["busybox"]])[recipe.packages["busybox"]]],
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
    if target.is_file() and _sha256_file(target) == package.sha256:
        return target
    log(f"downloading {package.spec} {package.version}")
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".download-") as scratch:
        run_tool(["apt-get", "download", f"{package.spec}={package.version}"], f"downloading {package.spec}",
                 cwd=Path(scratch))
        downloaded = Path(scratch) / package.deb_filename
        if not downloaded.is_file():
            raise GuestBuildError(f"apt-get download {package.spec} did not produce {package.deb_filename}")
        if _sha256_file(downloaded) != package.sha256:
            raise GuestBuildError(f"{package.deb_filename}: sha256 does not match the apt lists")
        os.replace(downloaded, target)
    return target


def unpack_deb(deb: Path, destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    run_tool(["dpkg-deb", "-x", str(deb), str(destination)], f"unpacking {deb.name}")
    return destination


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
                needed.extend(str(tag.needed) for tag in tags)  # type: ignore[attr-defined]
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


def build_initramfs(recipe: Recipe, trees: dict[str, Path], kernel_version: str, libs_root: Path) -> bytes:
    """The gzip'd initramfs: busybox, /init, the FTP client with its libraries, and the chosen modules."""
    archive = CpioArchive()
    for name in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "mnt/c",
                 "lib/modules"):
        archive.directory(name)
    archive.character_device("dev/console", 5, 1)
    archive.character_device("dev/null", 1, 3, 0o666)
    archive.file("init", (recipe.directory / "init").read_bytes(), 0o755)
    archive.file("bin/busybox", (trees["busybox"] / "bin/busybox").read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")

    overlay = recipe.directory / "rootfs"
    for path in sorted(overlay.rglob("*")) if overlay.is_dir() else []:
        relative = path.relative_to(overlay).as_posix()
        if path.is_dir():
            archive.directory(relative)
        else:
            archive.file(relative, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)

    _add_ftp_client(archive, trees["ftp"], libs_root)

    modules_root = trees["kernel"] / "lib/modules" / kernel_version
    order, dependencies = module_closure(modules_root, recipe.modules)
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


# ---------------------------------------------------------------------------------------------------------------
# The disk


def write_disk(image: Path, kernel: Path, initramfs: bytes, syslinux_cfg: Path, scratch: Path) -> None:
    """MBR (syslinux mbr.bin) + one active FAT32 partition holding syslinux, the kernel and the initramfs."""
    partition_sectors = IMAGE_BYTES // SECTOR - PARTITION_START_SECTOR
    with image.open("wb") as handle:
        handle.truncate(IMAGE_BYTES)
        handle.write(_master_boot_record(PARTITION_START_SECTOR, partition_sectors))
    target = f"{image}@@{PARTITION_START_SECTOR * SECTOR}"
    run_tool(["mformat", "-i", target, "-F", "-T", str(partition_sectors), "-h", "64", "-s", "32",
              "-H", str(PARTITION_START_SECTOR), "-v", FAT_LABEL, "-N", FAT_SERIAL, "::"], "formatting FAT32")
    initrd = scratch / "INITRD.GZ"
    initrd.write_bytes(initramfs)
    for source, name in ((kernel, "VMLINUZ"), (initrd, "INITRD.GZ"), (syslinux_cfg, "SYSLINUX.CFG")):
        run_tool(["mcopy", "-i", target, "-m", str(source), f"::{name}"], f"copying {name} into the image")
    run_tool(["syslinux", "--offset", str(PARTITION_START_SECTOR * SECTOR), "--install", str(image)],
             "installing syslinux")


def _master_boot_record(start: int, sectors: int) -> bytes:
    code = MBR_BIN.read_bytes()[:440]
    entry = bytes([0x80, 0xFE, 0xFF, 0xFF, 0x0C, 0xFE, 0xFF, 0xFF]) + start.to_bytes(4, "little") \
        + sectors.to_bytes(4, "little")
    record = code.ljust(440, b"\0") + bytes.fromhex("686a6971") + b"\0\0" + entry + b"\0" * 48 + b"\x55\xaa"
    assert len(record) == SECTOR
    return record


# ---------------------------------------------------------------------------------------------------------------
# Cache key, locking and the public entry point


def recipe_digest(recipe: Recipe) -> dict[str, str]:
    """sha256 of every recipe file and of this builder, so changing either gives a new cache key."""
    digests = {p.relative_to(recipe.directory).as_posix(): _sha256_file(p) for p in recipe.files()}
    digests["harness/guest_image.py"] = _sha256_file(Path(__file__))
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
    resolved = resolve_packages(recipe)
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
            return image
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
            initramfs = build_initramfs(recipe, trees, kernel_version, libs_root)
            say("writing disk image")
            partial = scratch / IMAGE_NAME
            write_disk(partial, vmlinuz, initramfs, recipe.directory / "syslinux.cfg", scratch)
            manifest = {
                "guest": name, "key": key, "kernel_version": kernel_version, "packages": versions,
                "image_bytes": IMAGE_BYTES, "kernel_bytes": vmlinuz.stat().st_size,
                "initramfs_bytes": len(initramfs), "image_sha256": _sha256_file(partial),
            }
            (scratch / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            final_dir.mkdir(exist_ok=True)
            os.replace(scratch / MANIFEST_NAME, final_dir / MANIFEST_NAME)
            os.replace(partial, image)  # published last: the image's presence means the build completed
    return image


def guest_manifest(image: Path) -> dict[str, object]:
    """What a built image contains (package versions, sizes), written beside it by build_guest."""
    manifest: dict[str, object] = json.loads((image.parent / MANIFEST_NAME).read_text())
    return manifest


def _command(args: argparse.Namespace) -> int:
    image = build_guest(args.guest, force=args.force, log=lambda message: print(message, file=sys.stderr))
    print(image)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `build-guest NAME [--force]`, which prints the path of the (cached) image."""
    parser = subparsers.add_parser("build-guest", help="build (or reuse the cached) stand-in guest disk image",
                                   description="Build the tiny686 guest image from Debian i386 packages and "
                                               "print its path.")
    parser.add_argument("guest", choices=GUEST_NAMES, help="guest to build")
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached image exists")
    parser.set_defaults(func=_command)
