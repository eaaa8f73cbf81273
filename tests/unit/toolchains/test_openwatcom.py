"""OpenWatcom built from the shared source archive (or taken from $WATCOM): real compiles for i386 Linux (run
natively) and Win32 (run under Wine), the cache reused without a rebuild, and every way of asking for it wrongly
answered in one line.

The build is real and goes to the normal harness cache, so the suite builds it once (about 2 minutes on 2 cores)
and every later run, worker or command reuses it; only the cheap error tests get a private LLAMA98_CACHE.
"""

from __future__ import annotations

import _thread
import argparse
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest

from harness.commands import toolchain as command
from harness.core.errors import HarnessError, UsageError
from harness.core.paths import cache_dir
from harness.toolchains.openwatcom import (
    RECIPE,
    REQUIRED_FILES,
    SOURCE_ENV,
    STAMP_NAME,
    OpenWatcom,
    Target,
    ToolchainError,
    ToolchainMissing,
    entry_ready,
    find_openwatcom,
    source_key,
)
from harness.toolchains.steps import BuildLog

SHARED_TOOLCHAINS = Path(__file__).resolve().parents[3].parent / "shared" / "toolchains"
ARCHIVE_GLOB = "open-watcom-v2-*-src.tar.xz"
WINE_TIMEOUT_S = 300  # the first run creates the shared Wine prefix

PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static unsigned long checksum(const char *text)
{
    unsigned long sum = 5381UL;
    while (*text != '\0') {
        sum = (sum * 33UL + (unsigned char)*text) & 0xFFFFFFFFUL;
        text++;
    }
    return sum;
}

int main(int argc, char **argv)
{
    char *copy;
    double root = sqrt(2.0);
    copy = (char *)malloc(16);
    if (copy == NULL) {
        return 2;
    }
    strcpy(copy, "llama98");
    printf("args=%d named=%d sum=%lu sqrt2=%.6f exp1=%.5f\n", argc, argv[0] != NULL, checksum(copy), root,
           exp(1.0));
    free(copy);
    return 0;
}
"""
EXPECTED = "args=1 named=1 sum=2153190685 sqrt2=1.414214 exp1=2.71828\n"


def _shared_archive() -> Path | None:
    configured = os.environ.get(SOURCE_ENV, "").strip()
    if configured:
        return Path(configured)
    found = sorted(SHARED_TOOLCHAINS.glob(ARCHIVE_GLOB))
    return found[-1] if found else None


@pytest.fixture(scope="module")
def archive() -> Path | None:
    return _shared_archive()


@pytest.fixture(scope="module")
def openwatcom(archive: Path | None) -> OpenWatcom:
    """Built from the shared archive into the normal cache (or reused), else $WATCOM's installation."""
    if archive is not None:
        return find_openwatcom(archive)
    if os.environ.get("WATCOM"):
        return find_openwatcom(None)
    pytest.skip(f"no OpenWatcom: neither a source archive ({SOURCE_ENV} or {SHARED_TOOLCHAINS / ARCHIVE_GLOB}) "
                f"nor WATCOM is available")


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("LLAMA98_CACHE", str(cache))
    return cache


def _compile(openwatcom: OpenWatcom, target: Target, driver: str, work: Path) -> Path:
    source = work / "hello.c"
    source.write_text(PROGRAM, encoding="ascii")
    output = work / (f"hello-{driver}.exe" if target == "nt" else f"hello-{driver}")
    if driver == "wcl386":
        argv = ["wcl386", "-q", "-za", "-wx", "-we", f"-bt={target}", f"-l={target}", f"-fe={output}", str(source)]
    else:
        argv = ["owcc", f"-b{target}", "-std=c89", "-Wall", "-Werror", "-o", str(output), str(source)]
    result = subprocess.run(argv, cwd=work, env=openwatcom.env(target), capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"{driver} for {target} failed:\n{result.stdout}{result.stderr}"
    return output


@pytest.mark.parametrize("driver", ["wcl386", "owcc"])
def test_linux_i386_program_runs_natively(driver: str, openwatcom: OpenWatcom, tmp_path: Path) -> None:
    program = _compile(openwatcom, "linux", driver, tmp_path)
    assert program.read_bytes()[:5] == b"\x7fELF\x01"  # a 32-bit ELF
    result = subprocess.run([str(program)], capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout) == (0, EXPECTED), result.stderr


@pytest.mark.wine
@pytest.mark.parametrize("driver", ["wcl386", "owcc"])
def test_win32_program_runs_under_wine(driver: str, openwatcom: OpenWatcom, tmp_path: Path) -> None:
    program = _compile(openwatcom, "nt", driver, tmp_path)
    assert program.read_bytes()[:2] == b"MZ"
    wine = shutil.which("wine")
    if wine is None:
        pytest.skip("wine is not installed (.ci/install-wine installs it): the Win32 build was not run")
    env = {**os.environ, "WINEDEBUG": "-all", "DISPLAY": "", "WINEPREFIX": str(cache_dir("wine", "prefix")),
           "WINEDLLOVERRIDES": "mscoree,mshtml="}
    result = subprocess.run([wine, str(program)], capture_output=True, env=env, timeout=WINE_TIMEOUT_S,
                            check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout.replace(b"\r\n", b"\n").decode() == EXPECTED


def test_second_resolution_reuses_the_cache(openwatcom: OpenWatcom, archive: Path | None) -> None:
    if archive is None or openwatcom.stamp is None:
        pytest.skip(f"OpenWatcom comes from WATCOM={openwatcom.root}, not a cached build")
    stamp = openwatcom.stamp
    before = stamp.stat().st_mtime_ns, (openwatcom.root.parent / "build.log").stat().st_mtime_ns
    started = time.monotonic()
    again = find_openwatcom(archive)
    assert time.monotonic() - started < 10
    assert again.root == openwatcom.root
    assert (stamp.stat().st_mtime_ns, (again.root.parent / "build.log").stat().st_mtime_ns) == before
    assert not list(openwatcom.root.parent.parent.glob(f".{openwatcom.root.parent.name}.tmp-*"))


def test_cached_tree_is_trimmed_and_readable(openwatcom: OpenWatcom, archive: Path | None) -> None:
    if openwatcom.stamp is None:
        pytest.skip(f"OpenWatcom comes from WATCOM={openwatcom.root}, not a cached build")
    assert sorted(path.name for path in openwatcom.root.iterdir()) == ["binl64", "h", "lh", "lib386"]
    assert not list(openwatcom.root.rglob("*.sym"))
    for name in REQUIRED_FILES:
        assert (openwatcom.root / name).stat().st_mode & 0o444 == 0o444, name


def test_command_prints_the_installation(openwatcom: OpenWatcom, archive: Path | None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    argv = ["toolchain", "openwatcom"] + (["--source", str(archive)] if archive is not None else [])
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert capsys.readouterr().out == f"{openwatcom.root}\n"


def test_env_is_explicit_and_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CC", "CFLAGS", "LIB", "INCLUDE", "WCL386"):
        monkeypatch.setenv(name, "from-the-user")
    toolchain = OpenWatcom(Path("/opt/watcom"), origin="test")
    home = Path("/tmp/home")
    nt, linux = toolchain.env("nt", home=home), toolchain.env("linux", home=home)
    assert nt == {"PATH": "/opt/watcom/binl64:/usr/bin:/bin", "WATCOM": "/opt/watcom",
                  "INCLUDE": "/opt/watcom/h:/opt/watcom/h/nt", "LC_ALL": "C", "HOME": "/tmp/home"}
    assert linux == {**nt, "INCLUDE": "/opt/watcom/lh"}
    with pytest.raises(ValueError):
        toolchain.env("dos", home=home)  # type: ignore[arg-type]


def _one_line(error: pytest.ExceptionInfo[HarnessError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_source_file_is_one_line(private_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ToolchainError) as error:
        find_openwatcom(tmp_path / "nope.tar.xz")
    assert "nope.tar.xz: no such file or directory" in _one_line(error)


def test_source_that_is_not_an_archive_is_one_line(private_cache: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.tar.xz"
    text.write_text("not an archive\n")
    with pytest.raises(ToolchainError) as error:
        find_openwatcom(text)
    assert "neither an open-watcom-v2 source directory nor a tar archive" in _one_line(error)
    assert not (private_cache / "toolchains").exists() or not list((private_cache / "toolchains").iterdir())


def test_directory_that_is_not_a_source_tree_is_one_line(private_cache: Path, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(ToolchainError) as error:
        find_openwatcom(tmp_path / "src")
    assert "is not an open-watcom-v2 source directory" in _one_line(error)


def test_corrupted_archive_fails_at_unpack_naming_the_log(private_cache: Path, tmp_path: Path) -> None:
    payload = os.urandom(1 << 20)  # incompressible, so cutting the file in half cuts into the tar's data
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("open-watcom-v2/cmnvars.sh", b"export OWBLDVER=20\n"),
                           ("open-watcom-v2/bld/builder/blob", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    whole = lzma.compress(buffer.getvalue())
    archive = tmp_path / "open-watcom-v2-broken-src.tar.xz"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ToolchainError) as error:
        find_openwatcom(archive)
    message = _one_line(error)
    assert "step 'unpack' failed" in message
    log = Path(message.rsplit("; log: ", 1)[1])
    assert log.is_file() and log.parent == private_cache / "toolchains"
    leftovers = [path.name for path in log.parent.iterdir() if path.suffix not in (".log", ".lock")]
    assert leftovers == []  # no half-built entry, no scratch directory


def test_bad_watcom_is_one_line(private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.setenv("WATCOM", str(tmp_path))
    with pytest.raises(ToolchainError) as error:
        find_openwatcom(None)
    assert f"WATCOM={tmp_path} is not an OpenWatcom installation" in _one_line(error)


def test_force_with_only_watcom_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.setenv("WATCOM", str(tmp_path))
    with pytest.raises(UsageError):
        find_openwatcom(None, force=True)


def test_missing_toolchain_names_both_ways(private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.delenv("WATCOM", raising=False)
    with pytest.raises(ToolchainMissing) as error:
        find_openwatcom(None)
    message = _one_line(error)
    for way in ("--source ARCHIVE_OR_DIR", SOURCE_ENV, "WATCOM", "binl64/wcc386"):
        assert way in message


def test_directory_source_key_follows_the_tree_not_the_path(tmp_path: Path) -> None:
    tree = tmp_path / "unpacked" / "open-watcom-v2"
    (tree / "bld" / "builder").mkdir(parents=True)
    (tree / "cmnvars.sh").write_text("export OWBLDVER=20\n")
    copy = tmp_path / "copy" / "open-watcom-v2"
    shutil.copytree(tree, copy)
    key = source_key(tree, "directory")
    assert len(key) == 16
    assert source_key(copy, "directory") == key  # where it lies does not matter
    (copy / "cmnvars.sh").write_text("export OWBLDVER=21\n")
    assert source_key(copy, "directory") != key  # what it holds does


def test_damaged_cache_entries_are_not_reused(tmp_path: Path) -> None:
    entry = tmp_path / "openwatcom-0123456789abcdef"
    root = entry / "watcom"
    for name in REQUIRED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
        (root / name).chmod(0o755)
    assert not entry_ready(entry, "0123456789abcdef")  # no stamp: a build that never finished
    (entry / STAMP_NAME).write_text(f'{{"source_key": "0123456789abcdef", "recipe": {RECIPE}}}')
    assert entry_ready(entry, "0123456789abcdef")
    assert not entry_ready(entry, "fedcba9876543210")
    (root / "binl64" / "wcc386").unlink()
    assert not entry_ready(entry, "0123456789abcdef")
    (root / "binl64" / "wcc386").write_bytes(b"")
    (entry / STAMP_NAME).write_text(f'{{"source_key": "0123456789abcdef", "recipe": {RECIPE + 1}}}')
    assert not entry_ready(entry, "0123456789abcdef")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pgid: int) -> bool:
    for _ in range(50):
        if not _group_alive(pgid):
            return True
        time.sleep(0.1)
    return False


def test_a_late_step_stops_its_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    build_log = BuildLog(tmp_path / "build.log", label="test build", deadline=time.monotonic() + 1.0,
                         error=ToolchainError)
    with pytest.raises(ToolchainError) as error:
        build_log.run("sleepy", ["sh", "-c", f"echo $$ > {pid_file}; sleep 60 & sleep 60"], cwd=tmp_path,
                      env={"PATH": "/usr/bin:/bin"})
    message = _one_line(error)
    assert "step 'sleepy' failed: the build did not finish within its 1 s budget" in message
    assert message.endswith(f"; log: {tmp_path / 'build.log'}")
    assert _wait_gone(int(pid_file.read_text()))


def test_ctrl_c_stops_the_step_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    build_log = BuildLog(tmp_path / "build.log", label="test build", deadline=time.monotonic() + 60,
                         error=ToolchainError)

    def interrupt_when_started() -> None:
        for _ in range(100):
            if pid_file.is_file() and pid_file.read_text().strip():
                break
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        build_log.run("sleepy", ["sh", "-c", f"echo $$ > {pid_file}; sleep 60 & sleep 60"], cwd=tmp_path,
                      env={"PATH": "/usr/bin:/bin"})
    assert _wait_gone(int(pid_file.read_text()))


def test_a_failed_step_names_the_reason_and_the_log(tmp_path: Path) -> None:
    build_log = BuildLog(tmp_path / "build.log", label="test build", deadline=time.monotonic() + 60,
                         error=ToolchainError)
    with pytest.raises(ToolchainError) as error:
        build_log.run("compile", ["sh", "-c", "echo cc -c x.c; echo 'x.c:1: error: nope' >&2; echo done; exit 3"],
                      cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert _one_line(error) == (
        f"test build: step 'compile' failed: exit code 3: x.c:1: error: nope; log: {tmp_path / 'build.log'}")
