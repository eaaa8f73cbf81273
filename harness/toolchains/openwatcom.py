"""OpenWatcom for the port's Win32 and i386 Linux builds: built from source and cached, or an installation.

Why build it: the nightly job uses OpenWatcom (setup-watcom on GitHub), and a compiler that only CI has finds the
port's Watcom-only mistakes a day late. The whole of open-watcom-v2 takes far too long to build, so this builds
only what the port needs: the 386 C compiler and its drivers (wcc386, wcl386, owcc), wlink, wlib, wmake, the
headers, the C and math runtimes for Win32 (os_nt) and i386 Linux (os_linux), and the Win32 import libraries.

Where it comes from, in this order:
  1. an explicit source (`--source`, or $LLAMA98_OPENWATCOM_SOURCE): an open-watcom-v2 source archive or an
     unpacked source directory, built once into the harness cache under a key made from the source's hash;
  2. $WATCOM, an existing installation (what setup-watcom sets), checked for binl64/wcc386;
  3. otherwise ToolchainMissing, which names both ways.

The cache entry `toolchains/openwatcom-KEY/` holds `watcom/` (the WATCOM directory), `stamp.json` and
`build.log`. It is built in a temporary directory beside it and renamed into place only when complete, under a
file lock, so concurrent pytest-xdist workers or commands build it once and the others wait and reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.core.errors import HarnessError, UsageError
from harness.core.paths import cache_dir
from harness.core.proc import ToolError, run
from harness.toolchains.steps import BuildLog

log = logging.getLogger(__name__)

SOURCE_ENV = "LLAMA98_OPENWATCOM_SOURCE"
WATCOM_ENV = "WATCOM"
BUILD_TIMEOUT_S = 1800.0  # about 2 minutes on a 2-core host; the margin is for slow or busy CI runners
# What the build host needs (the rest of the toolchain is built from the source).
BUILD_PATH = "/usr/local/bin:/usr/bin:/bin"
HOST_TOOLS = ("sh", "gcc", "make", "tar", "xz")
# Bumped whenever the recipe below changes what a cache entry contains: an entry with another recipe is rebuilt.
RECIPE = 1

Target = Literal["nt", "linux"]
TARGETS: tuple[Target, ...] = ("nt", "linux")

# Bootstrap projects, in dependency order: the build tools and the 386 compiler built with gcc (bwcc386, bwlink,
# bwlib, wasm...), which then compile the runtime libraries. This is the part of bld/builder.ctl's boot block
# that the 386 C compiler needs.
BOOT_DIRS = ("watcom", "git", "posix", "builder", "yacc", "cpp", "fe_misc", "orl", "nwlib", "wres", "rc/rc",
             "wstrip", "dwarf/dw", "wl", "owl", "wasm", "wcl/386", "wcl/owcc", "cfloat", "cg/intel/386",
             "cc/386", "lib_misc", "omftools", "wmake")
HOST = ("os_linux", "cpu_x64")
# Release projects with their pmake filter words (evaluated in RPN; several words are and-ed): the host tools
# for x86-64 Linux with the libraries they link, then the headers and the target libraries. `register` keeps
# only the register-calling-convention runtimes (the port's -6r; -6s/-3s would need the stack ones); profiling
# and the runtime DLL variants are left out (the math rtdll even fails to build for want of a library).
REL_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    *((directory, HOST) for directory in ("watcom", "cfloat", "orl", "wres", "owl", "dwarf")),
    ("cg", (*HOST, "target_386")),
    ("cc", (*HOST, "target_386")),
    *((directory, HOST) for directory in ("wcl", "wl", "nwlib", "wmake")),
    ("hdr", ()),
    ("w32api", ("os_nt", "cpu_386")),
    *((directory, (os_name, "cpu_386", "register", "profile", ".not", "rtdll", ".not"))
      for os_name in ("os_nt", "os_linux") for directory in ("clib", "mathlib")),
    ("fpuemu", ("os_nt", "cpu_386")),
    ("fpuemu", ("os_linux", "cpu_386")),
)
# builder hands pmake at most eight filter words (<2> to <9>) and silently drops the rest.
MAX_FILTER_WORDS = 8
# What the cached tree keeps of binl64/ (the rest is other CPUs' drivers and tools the port never runs).
KEEP_BINARIES = ("wcc386", "wcc38601.int", "wcl386", "owcc", "specs.owc", "wlink", "wlink.lnk", "wlib", "wmake")
KEEP_TOP = ("binl64", "h", "lh", "lib386")
VERSIONED_TOOLS = ("wcc386", "wcl386", "owcc", "wlink", "wlib", "wmake")
# What a usable installation has; a cache entry missing any of them is rebuilt.
REQUIRED_FILES = ("binl64/wcc386", "binl64/wcl386", "binl64/owcc", "binl64/wlink", "binl64/wlib", "binl64/wmake",
                  "h/stdio.h", "h/nt/windows.h", "lh/stdio.h", "lib386/math387r.lib", "lib386/nt/clib3r.lib",
                  "lib386/nt/kernel32.lib", "lib386/linux/clib3r.lib")
STAMP_NAME = "stamp.json"
LOG_NAME = "build.log"
ROOT_NAME = "watcom"


class ToolchainError(HarnessError):
    """A toolchain could not be found, checked or built."""


class ToolchainMissing(ToolchainError):
    """No OpenWatcom source was given and $WATCOM is not set."""


@dataclass(frozen=True)
class OpenWatcom:
    """An OpenWatcom installation: `root` is what WATCOM must name; `origin` says where it came from."""

    root: Path
    origin: str

    @property
    def bin_dir(self) -> Path:
        return self.root / "binl64"

    @property
    def stamp(self) -> Path | None:
        """The stamp of a cached build (source hash, build time, tool versions), None for an installation."""
        path = self.root.parent / STAMP_NAME
        return path if self.root.name == ROOT_NAME and path.is_file() else None

    def tool(self, name: str) -> Path:
        return self.bin_dir / name

    def include_dirs(self, target: Target) -> list[Path]:
        if target == "nt":
            return [self.root / "h", self.root / "h" / "nt"]
        if target == "linux":
            return [self.root / "lh"]
        raise ValueError(f"OpenWatcom target must be one of {', '.join(TARGETS)}, not {target!r}")

    def env(self, target: Target, *, home: Path | None = None) -> dict[str, str]:
        """The complete environment for compiling for `target` ("nt": Win32, -bt=nt -l=nt; "linux": i386 Linux,
        -bt=linux -l=linux): nothing of the caller's (no CC, CFLAGS, INCLUDE or LIB leaking in), so a build
        means the same on every machine."""
        return {
            "PATH": f"{self.bin_dir}:/usr/bin:/bin",
            "WATCOM": str(self.root),
            "INCLUDE": ":".join(str(path) for path in self.include_dirs(target)),
            "LC_ALL": "C",
            "HOME": str(home if home is not None else cache_dir("toolchains", "home")),
        }


def find_openwatcom(source: Path | None = None, *, force: bool = False,
                    timeout: float = BUILD_TIMEOUT_S) -> OpenWatcom:
    """The OpenWatcom to use: built from `source` (or $LLAMA98_OPENWATCOM_SOURCE), else $WATCOM, else
    ToolchainMissing. `force` rebuilds a toolchain built from source even when the cache has it."""
    if source is None:
        configured = os.environ.get(SOURCE_ENV, "").strip()
        if configured:
            return build_openwatcom(Path(configured), force=force, timeout=timeout, named_by=f"${SOURCE_ENV}")
        watcom = os.environ.get(WATCOM_ENV, "").strip()
        if watcom:
            if force:
                raise UsageError(f"--force rebuilds a toolchain built from source; WATCOM={watcom} is an existing "
                                 f"installation (give --source to build one)")
            return installed_openwatcom(Path(watcom))
        raise ToolchainMissing(
            f"no OpenWatcom toolchain: give an open-watcom-v2 source archive or directory to build one "
            f"(--source ARCHIVE_OR_DIR or ${SOURCE_ENV}), or set ${WATCOM_ENV} to an existing installation "
            f"(the directory with binl64/wcc386, as setup-watcom sets it)")
    return build_openwatcom(source, force=force, timeout=timeout)


def installed_openwatcom(root: Path) -> OpenWatcom:
    """An existing installation named by WATCOM, checked for the 64-bit Linux host compiler."""
    compiler = root / "binl64" / "wcc386"
    if not (compiler.is_file() and os.access(compiler, os.X_OK)):
        raise ToolchainError(f"WATCOM={root} is not an OpenWatcom installation: it has no executable "
                             f"binl64/wcc386")
    return OpenWatcom(root.resolve(), origin=f"WATCOM={root}")


def build_openwatcom(source: Path, *, force: bool = False, timeout: float = BUILD_TIMEOUT_S,
                     named_by: str = "source") -> OpenWatcom:
    """The toolchain built from `source` (archive or directory), from the cache when it is there and complete."""
    kind = _check_source(source, named_by)
    if kind == "directory":  # the tree itself, so `dir` and `dir/open-watcom-v2` are one source with one key
        source = _source_root(source) or source
    key = source_key(source, kind)
    toolchains = cache_dir("toolchains")
    entry = toolchains / f"openwatcom-{key}"
    with _locked(toolchains / f"openwatcom-{key}.lock", entry):
        if not force and entry_ready(entry, key):
            return OpenWatcom(entry / ROOT_NAME, origin=f"built from {source}")
        for stale in toolchains.glob(f".openwatcom-{key}.tmp-*"):  # a killed build's; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        _build(source, kind, key, entry, timeout)
    return OpenWatcom(entry / ROOT_NAME, origin=f"built from {source}")


def source_key(source: Path, kind: Literal["archive", "directory"]) -> str:
    """16 hex digits naming the source: the archive's SHA-256; for a directory, its git commit when the work
    tree is clean, else a hash of every file's path, mode and contents (about a second for open-watcom-v2)."""
    digest = hashlib.sha256()
    if kind == "archive":
        with source.open("rb") as archive:
            for block in iter(lambda: archive.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:16]
    commit = _clean_git_commit(source)
    if commit is not None:
        digest.update(f"git {commit}".encode())
        return digest.hexdigest()[:16]
    for path in sorted(_walk(source)):
        relative = path.relative_to(source).as_posix()
        info = path.lstat()
        digest.update(f"{relative}\0{stat.S_IFMT(info.st_mode)}\0{info.st_mode & 0o111 != 0}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def entry_ready(entry: Path, key: str) -> bool:
    """Whether a cache entry is complete: a stamp for this key and recipe, and every file the port uses."""
    try:
        stamp = json.loads((entry / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or stamp.get("source_key") != key or stamp.get("recipe") != RECIPE:
        return False
    root = entry / ROOT_NAME
    return all((root / name).is_file() for name in REQUIRED_FILES) and os.access(root / "binl64/wcc386", os.X_OK)


def _check_source(source: Path, named_by: str) -> Literal["archive", "directory"]:
    """Refuse, in one line, a source that cannot be an open-watcom-v2 tree before touching the cache."""
    if source.is_dir():
        if _source_root(source) is None:
            raise ToolchainError(f"OpenWatcom {named_by} {source} is not an open-watcom-v2 source directory "
                                 f"(no cmnvars.sh and bld/builder)")
        return "directory"
    if not source.exists():
        raise ToolchainError(f"OpenWatcom {named_by} {source}: no such file or directory")
    try:
        is_tar = tarfile.is_tarfile(source)
    except OSError as error:
        raise ToolchainError(f"OpenWatcom {named_by} {source}: {error.strerror or error}") from None
    if not is_tar:
        raise ToolchainError(f"OpenWatcom {named_by} {source} is neither an open-watcom-v2 source directory nor a "
                             f"tar archive (.tar.xz, .tar.gz, .tar)")
    return "archive"


def _source_root(directory: Path) -> Path | None:
    """The open-watcom-v2 tree in `directory`: the directory itself or its only subdirectory (an archive's
    top-level folder)."""
    def is_tree(path: Path) -> bool:
        return (path / "cmnvars.sh").is_file() and (path / "bld" / "builder").is_dir()

    if is_tree(directory):
        return directory
    children = [child for child in directory.iterdir() if child.is_dir() and not child.name.startswith(".")]
    return children[0] if len(children) == 1 and is_tree(children[0]) else None


def _clean_git_commit(directory: Path) -> str | None:
    if not (directory / ".git").exists() or shutil.which("git") is None:
        return None
    env = {"PATH": BUILD_PATH, "HOME": str(directory), "LC_ALL": "C", "GIT_CONFIG_NOSYSTEM": "1"}
    try:
        commit = run(["git", "-C", str(directory), "rev-parse", "HEAD"], env=env, timeout=60).stdout.strip()
        dirty = run(["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=normal"],
                    env=env, timeout=120).stdout.strip()
    except ToolError:
        return None
    return commit if commit and not dirty else None


def _walk(directory: Path) -> Iterator[Path]:
    for parent, dirnames, filenames in os.walk(directory):
        dirnames[:] = [name for name in dirnames if name != ".git"]
        for name in (*dirnames, *filenames):
            yield Path(parent) / name


@contextmanager
def _locked(lock_path: Path, entry: Path) -> Iterator[None]:
    """One build of an entry at a time; whoever comes second waits, then finds the entry ready."""
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another process building {entry.name}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(source: Path, kind: Literal["archive", "directory"], key: str, entry: Path, timeout: float) -> None:
    """Build into a scratch directory beside `entry` and rename the result into place only if complete. The log
    is written beside the entry and moved into it on success, so a failed build's log outlives its scratch."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool, path=BUILD_PATH) is None]
    if missing:
        raise ToolchainError(f"building OpenWatcom needs {', '.join(missing)} in {BUILD_PATH}: install them "
                             f"(Debian: apt-get install gcc make tar xz-utils)")
    started = time.monotonic()
    log_path = entry.parent / f"openwatcom-{key}.log"
    build_log = BuildLog(log_path, label="OpenWatcom build", deadline=started + timeout, error=ToolchainError)
    log.info(f"building OpenWatcom from {source} (cache key {key}; about 2 minutes on 2 cores; log: {log_path})")
    scratch = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".openwatcom-{key}.tmp-"))
    try:
        staged = scratch / "entry"
        rel = staged / ROOT_NAME
        rel.mkdir(parents=True)
        root = _unpack(source, kind, scratch / "src", build_log)
        env = _build_env(root, rel, scratch, build_log)
        _bootstrap(root, env, build_log)
        _release(root, env, build_log)
        _trim(rel, build_log)
        for name in REQUIRED_FILES:
            if not (rel / name).is_file():
                raise build_log.fail("check", f"the build produced no {name}")
        seconds = time.monotonic() - started
        stamp = {"source": str(source), "source_key": key, "recipe": RECIPE,
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": round(seconds, 1),
                 "versions": _versions(rel, env, build_log)}
        (staged / STAMP_NAME).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        build_log.note(f"built in {seconds:.0f} s; moving into {entry}")
        _normalise_modes(staged)
        os.replace(log_path, staged / LOG_NAME)
        if entry.exists():  # forced, or damaged: set aside first, the rename below must not land inside it
            os.rename(entry, scratch / "previous")
        os.rename(staged, entry)
        log.info(f"OpenWatcom built in {seconds:.0f} s: {entry / ROOT_NAME}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _unpack(source: Path, kind: Literal["archive", "directory"], destination: Path, build_log: BuildLog) -> Path:
    destination.mkdir()
    if kind == "archive":
        log.info("unpacking the source")
        build_log.run("unpack", ["tar", "-xf", source.resolve(), "-C", destination], cwd=destination,
                      env={"PATH": BUILD_PATH, "LC_ALL": "C", "HOME": str(destination)})
    else:
        log.info("copying the source")
        build_log.note(f"copying {source} (without .git)")
        try:
            shutil.copytree(source, destination / source.resolve().name, symlinks=True,
                            ignore=shutil.ignore_patterns(".git"))
        except (OSError, shutil.Error) as error:
            raise build_log.fail("copy", str(error).splitlines()[0]) from None
    root = _source_root(destination)
    if root is None:
        raise build_log.fail("unpack", f"{source} holds no open-watcom-v2 source tree (cmnvars.sh, bld/builder)")
    return root


def _build_env(root: Path, rel: Path, scratch: Path, build_log: BuildLog) -> dict[str, str]:
    """The build's whole environment: ours, completed by the source's own cmnvars.sh (version numbers, PATH to
    the freshly built tools), and nothing of the user's."""
    (scratch / "home").mkdir()
    (scratch / "tmp").mkdir()
    base = {"PATH": BUILD_PATH, "HOME": str(scratch / "home"), "TMPDIR": str(scratch / "tmp"), "LC_ALL": "C",
            "OWROOT": str(root), "OWTOOLS": "GCC", "OWDOCBUILD": "0", "OWDISTRBUILD": "0", "OWGUINOBUILD": "1",
            "OWNOWGML": "1", "OWRELROOT": str(rel)}
    build_log.note("environment: . ./cmnvars.sh")
    try:
        result = run(["sh", "-c", ". ./cmnvars.sh >&2 && env -0"], env=base, cwd=root, what="cmnvars.sh",
                     timeout=60, error=ToolchainError)
    except ToolchainError as error:
        raise build_log.fail("environment", str(error)) from None
    env = dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)
    env.pop("PWD", None)
    env.pop("OLDPWD", None)
    env.pop("SHLVL", None)
    env.pop("_", None)
    env.update({name: value for name, value in base.items() if name != "PATH"})
    build_log.note("build environment: " + " ".join(f"{name}={env[name]}" for name in sorted(env)))
    return env


def _bootstrap(root: Path, env: dict[str, str], build_log: BuildLog) -> None:
    """wmake and builder with the host's make and gcc (what build.sh's preboot does), then the boot projects."""
    objdir = env.get("OWOBJDIR", "binbuild")
    tools = root / "build" / objdir
    tools.mkdir(parents=True, exist_ok=True)
    log.info(f"bootstrap: wmake, builder, then {len(BOOT_DIRS)} projects with gcc")
    wmake_dir = root / "bld" / "wmake" / objdir
    wmake_dir.mkdir(exist_ok=True)
    build_log.run("preboot wmake", ["make", "-f", "../posmake", "TARGETDEF=-D__LINUX__", "CC=gcc"],
                  cwd=wmake_dir, env=env)
    builder_dir = root / "bld" / "builder" / objdir
    builder_dir.mkdir(exist_ok=True)
    build_log.run("preboot builder", [tools / "wmake", "-f", "../preboot"], cwd=builder_dir, env=env)
    for tool in ("wmake", "builder"):
        if not (tools / tool).is_file():
            raise build_log.fail("preboot", f"no {tools / tool} after the preboot step")
    for directory in BOOT_DIRS:
        project = root / "bld" / directory
        build_log.run(f"boot {directory}", ["builder", "-q", "boot"], cwd=project, env=env,
                      attach=project / "boot.log")


def _release(root: Path, env: dict[str, str], build_log: BuildLog) -> None:
    """The release build of each needed project, filtered to the host tools and the 386 os_nt/os_linux targets."""
    log.info(f"release build: {len(REL_STEPS)} steps (host tools, headers, Win32 and Linux runtimes)")
    for directory, words in REL_STEPS:
        if len(words) > MAX_FILTER_WORDS:
            raise ToolchainError(f"internal: rel {directory} has {len(words)} filter words; builder passes "
                                 f"{MAX_FILTER_WORDS}")
        project = root / "bld" / directory
        build_log.run(f"rel {directory} {' '.join(words)}".strip(), ["builder", "-q", "rel", *words],
                      cwd=project, env=env, attach=project / "rel.log")


def _trim(rel: Path, build_log: BuildLog) -> None:
    """Keep what the port uses: the 386 tools, headers, libraries; no other CPUs' drivers, no debug symbols
    (*.sym), no Windows-hosted binaries. The tools are not stripped: OpenWatcom appends its message resources
    to the executable, and strip(1) cuts them off (wlib then fails with "could not open message resource file")."""
    removed = [child for child in rel.iterdir() if child.name not in KEEP_TOP]
    for path in removed:
        _remove(path)
    for path in [*(rel / "binl64").iterdir(), *rel.rglob("*.sym")]:
        if path.name not in KEEP_BINARIES and (path.exists() or path.is_symlink()):
            _remove(path)
            removed.append(path)
    build_log.note(f"trimmed {len(removed)} files and directories the port does not use")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _versions(rel: Path, env: dict[str, str], build_log: BuildLog) -> dict[str, str]:
    """Each tool's banner up to its version line (and the host gcc's first line), for the stamp. A tool that
    prints no version line is broken (e.g. its appended message resources are missing): the build fails."""
    versions: dict[str, str] = {}
    for name in ("gcc", *VERSIONED_TOOLS):
        argv = ["gcc", "--version"] if name == "gcc" else [str(rel / "binl64" / name), "-?"]
        try:
            result = run(argv, env=env, timeout=30, check=False)
        except ToolError as error:
            raise build_log.fail("check", str(error)) from None
        lines = [line.strip() for line in (result.stdout or result.stderr).strip().splitlines() if line.strip()]
        if name == "gcc":
            versions[name] = lines[0] if lines else "unknown"
            continue
        ends = next((index for index, line in enumerate(lines) if "version" in line.lower()), None)
        if ends is None:
            reason = lines[0] if lines else f"no output, exit code {result.returncode}"
            raise build_log.fail("check", f"{name} -? printed no version: {reason}")
        versions[name] = " ".join(lines[:ends + 1])
    return versions


def _normalise_modes(tree: Path) -> None:
    """Files as the user's umask would have made them (mkdtemp's 0700, or a tool's odd modes, would stay)."""
    umask = os.umask(0)
    os.umask(umask)
    directory_mode, executable_mode, file_mode = 0o777 & ~umask, 0o777 & ~umask, 0o666 & ~umask
    tree.chmod(directory_mode)
    for parent, dirnames, filenames in os.walk(tree):
        for name in dirnames:
            os.chmod(os.path.join(parent, name), directory_mode)
        for name in filenames:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, executable_mode if executable else file_mode)
