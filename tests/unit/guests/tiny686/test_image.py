"""Tests of the tiny686 guest recipe: the builder's parts, its errors, and the real image booted under QEMU.

The `vm` tests build the image (cached after the first run; the first build downloads the Debian packages with
apt) and boot it exactly as the harness will, on a qcow2 overlay, then fetch a file over FTP both ways the
guest can: busybox `ftpget` (passive) and the Debian `ftp` client in active mode (PORT), with the host forward
that active mode needs added over QMP the way the harness's FTP bridge does.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pexpect
import pytest
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness import cli
from harness.core.paths import cache_dir
from harness.guests.resolve import resolve_guest
from harness.guests.tiny686.debian_packages import depends_names
from harness.guests.tiny686.host_tools import check_host_tools
from harness.guests.tiny686.image import (
    GuestBuildError,
    _damage,
    build_guest,
    cache_key,
    guest_manifest,
    load_recipe,
)
from harness.guests.tiny686.initramfs import CpioArchive, elf_needed, resolve_in_root
from harness.vm.fatspace import fat_space

PROMPT = "tiny686# "
READY = "TINY686 READY"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# ---------------------------------------------------------------------------------------------------------------
# Builder parts (fast, offline, no QEMU)


def test_depends_names_takes_the_first_alternative_without_versions() -> None:
    field = "libc6 (>= 2.34), libreadline8 (>= 6.0) | libedit2, netbase, libtinfo6:i386"
    assert depends_names(field) == ["libc6", "libreadline8", "netbase", "libtinfo6"]


def test_resolve_in_root_keeps_absolute_and_dotdot_links_inside_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "lib/i386-linux-gnu").mkdir(parents=True)
    (root / "lib/i386-linux-gnu/ld-linux.so.2").write_bytes(b"interp")
    (root / "lib/ld-linux.so.2").symlink_to("/lib/i386-linux-gnu/ld-linux.so.2")
    (root / "lib/escape").symlink_to("../../../../etc/passwd")
    assert resolve_in_root(root, "/lib/ld-linux.so.2").read_bytes() == b"interp"
    escaped = resolve_in_root(root, "lib/escape")
    assert escaped == root / "etc/passwd"  # clamped to the tree, never the host's /etc/passwd


def test_cpio_archive_is_read_back_by_gnu_cpio(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("GNU cpio not installed (apt-get install cpio)")
    archive = CpioArchive()
    archive.file("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("etc/odd", b"x" * 5)  # sizes that are not multiples of 4 exercise the padding
    archive.character_device("dev/console", 5, 1)
    data = gzip.decompress(gzip.compress(archive.close()))
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=data, capture_output=True, check=True).stdout
    names = [line.split()[-1] for line in listing.decode().splitlines() if "->" not in line]
    assert {"usr", "usr/bin", "usr/bin/tool", "etc/odd", "dev/console"} <= set(names)
    assert b"bin/sh -> busybox" in listing
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"], input=data,
                   cwd=out, check=True)
    assert (out / "usr/bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.access(out / "usr/bin/tool", os.X_OK)
    assert (out / "etc/odd").read_bytes() == b"xxxxx"


def test_cpio_archive_refuses_a_path_twice() -> None:
    archive = CpioArchive()
    archive.file("init", b"a")
    with pytest.raises(GuestBuildError, match="added twice"):
        archive.file("init", b"b")


def test_cache_key_follows_package_versions_and_recipe_contents() -> None:
    base = cache_key({"busybox-static:i386": "1"}, {"init": "aa"})
    assert base == cache_key({"busybox-static:i386": "1"}, {"init": "aa"})
    assert base != cache_key({"busybox-static:i386": "2"}, {"init": "aa"})
    assert base != cache_key({"busybox-static:i386": "1"}, {"init": "ab"})


def test_recipe_names_the_three_roles() -> None:
    recipe = load_recipe("tiny686")
    assert set(recipe.packages) >= {"kernel", "busybox", "ftp"}
    assert all(spec.endswith(":i386") for spec in recipe.packages.values())
    assert "e1000" in recipe.modules and "vfat" in recipe.modules
    with pytest.raises(GuestBuildError, match="unknown guest 'win98'"):
        load_recipe("win98")


def _path_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH holding only the named host tools (links to the real ones), to make the others missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed on this host to run this test"
        (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def test_missing_apt_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, []))
    with pytest.raises(GuestBuildError, match=r"'apt-get' not found: install it with `apt-get install apt`"):
        check_host_tools()


def test_missing_mtools_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, ["apt-get", "apt-cache", "dpkg-deb", "syslinux"]))
    assert cli.main(["build-guest", "tiny686"]) == 1
    err = capsys.readouterr().err
    assert err == "llama98-harness: error: 'mformat' not found: install it with `apt-get install mtools`\n"


def test_unknown_guest_name_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["build-guest", "win98"])
    assert stop.value.code == 2
    assert "invalid choice: 'win98'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# The built image


@pytest.fixture(scope="module")
def tiny686_image() -> Path:
    return build_guest("tiny686")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.vm
def test_build_is_cached_and_printed_by_the_cli(tiny686_image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert cli.main(["build-guest", "tiny686"]) == 0
    assert capsys.readouterr().out.strip() == str(tiny686_image)
    assert time.monotonic() - started < 30, "a cached image must not be rebuilt"
    manifest = guest_manifest(tiny686_image)
    packages = manifest["packages"]
    assert isinstance(packages, dict)
    assert any(name.startswith("linux-image-6") and name.endswith("-686:i386") for name in packages)
    assert {"busybox-static:i386", "inetutils-ftp:i386", "libc6:i386"} <= set(packages)
    assert manifest["image_sha256"] == _sha256(tiny686_image)


@pytest.mark.vm
def test_image_layout_and_initramfs_contents(tiny686_image: Path, tmp_path: Path) -> None:
    with tiny686_image.open("rb") as handle:
        mbr = handle.read(512)
    assert mbr[510:512] == b"\x55\xaa"
    assert mbr[446] == 0x80 and mbr[446 + 4] == 0x0C  # active FAT32-LBA partition
    start = int.from_bytes(mbr[446 + 8:446 + 12], "little") * 512
    target = f"{tiny686_image}@@{start}"
    listing = subprocess.run(["mdir", "-a", "-b", "-i", target, "::"], capture_output=True, text=True, check=True,
                             env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout
    for name in ("VMLINUZ", "INITRD.GZ", "SYSLINUX.CFG", "LDLINUX.SYS", "LDLINUX.C32"):
        assert f"::/{name}" in listing.upper()

    initrd = tmp_path / "initrd.gz"
    subprocess.run(["mcopy", "-n", "-i", target, "::INITRD.GZ", str(initrd)], check=True,
                   env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
    assert initrd.stat().st_size == guest_manifest(tiny686_image)["initramfs_bytes"]
    assert initrd.stat().st_size < 4 * 1024 * 1024, "the initramfs grew: boot time grows with it"
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"],
                   input=gzip.decompress(initrd.read_bytes()), cwd=root, check=True)
    assert (root / "init").read_bytes().startswith(b"#!/bin/busybox sh")
    modules = next((root / "lib/modules").iterdir())
    dep_text = (modules / "modules.dep").read_text()
    assert "kernel/drivers/net/ethernet/intel/e1000/e1000.ko:\n" in dep_text
    # Dependencies listed so that the last one is loaded first (busybox modprobe and kmod both read it so).
    assert re.search(r"ata_piix\.ko: \S*libata\.ko \S*scsi_mod\.ko \S*scsi_common\.ko", dep_text)
    for line in dep_text.splitlines():
        for module in line.replace(":", " ").split():
            assert (modules / module).is_file(), f"modules.dep names {module}, which is not shipped"

    # Every shared library the FTP client needs (transitively) is there, and nothing is left unresolved.
    pending, seen = [root / "usr/bin/inetutils-ftp"], set()
    while pending:
        needed, interpreter = elf_needed(pending.pop())
        if interpreter:
            assert (root / interpreter.lstrip("/")).is_file()
        for soname in needed:
            if soname not in seen and soname != "ld-linux.so.2":
                seen.add(soname)
                pending.append(root / "lib/i386-linux-gnu" / soname)
                assert pending[-1].is_file(), f"{soname} missing from the initramfs"
    assert {"libc.so.6", "libreadline.so.8", "libtinfo.so.6"} <= seen


@pytest.mark.vm
def test_killed_build_leaves_no_cached_image_and_the_next_build_recovers(tiny686_image: Path,
                                                                         tmp_path: Path) -> None:
    """SIGKILL mid-build (the worst case): no image may appear, and the next build cleans up and succeeds."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "debs").symlink_to(cache_dir("debs"))  # the .debs the fixture's build already downloaded
    env = dict(os.environ, LLAMA98_CACHE=str(cache))
    builder = subprocess.Popen([sys.executable, "-m", "harness.cli", "build-guest", "tiny686"], env=env,
                               stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert builder.stderr is not None
        for line in builder.stderr:
            if line.startswith("writing disk image"):
                break
        else:
            pytest.fail(f"the build never reached the disk step (exit {builder.wait()})")
        builder.send_signal(signal.SIGKILL)
    finally:
        builder.kill()
        builder.wait(timeout=30)
    guests = cache / "guests"
    assert not list(guests.glob("tiny686-*/tiny686.img"))
    assert list(guests.glob(".build-tiny686-*")), "expected the killed build's scratch directory"

    rebuilt = subprocess.run([sys.executable, "-m", "harness.cli", "build-guest", "tiny686"], env=env,
                             capture_output=True, text=True, timeout=600, check=False)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert Path(rebuilt.stdout.strip()).name == "tiny686.img"
    assert Path(rebuilt.stdout.strip()).parent.name == tiny686_image.parent.name  # same recipe, same key
    assert not list(guests.glob(".build-tiny686-*"))


def _manifested(directory: Path, data: bytes) -> Path:
    """A cache entry in miniature: an image and the manifest fields build_guest checks it against."""
    directory.mkdir()
    image = directory / "tiny686.img"
    image.write_bytes(data)
    (directory / "tiny686.json").write_text(json.dumps({"image_bytes": len(data),
                                                        "image_sha256": hashlib.sha256(data).hexdigest()}))
    return image


def test_a_cached_image_is_checked_against_its_manifest(tmp_path: Path) -> None:
    """Size always; the sha256 once per version of the file (size, mtime, inode), remembered beside it."""
    data = os.urandom(64 * 1024)
    image = _manifested(tmp_path / "entry", data)
    assert _damage(image) is None
    record = json.loads((image.parent / "tiny686.verified.json").read_text())
    assert record["size"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
    with image.open("r+b") as handle:
        handle.truncate(512)
    assert _damage(image) == f"it is 512 bytes, its manifest says {len(data)}"
    flipped = bytes([data[0] ^ 0xFF]) + data[1:]
    image.write_bytes(flipped)  # same size, new mtime: hashed again
    assert _damage(image) == (f"its sha256 is {hashlib.sha256(flipped).hexdigest()}, its manifest says "
                              f"{hashlib.sha256(data).hexdigest()}")
    (image.parent / "tiny686.json").write_text("{not json")
    assert str(_damage(image)).startswith(f"its manifest {image.parent / 'tiny686.json'} is unreadable")
    (image.parent / "tiny686.json").unlink()
    assert _damage(image) == f"its manifest {image.parent / 'tiny686.json'} is missing"


def _private_cache_with_a_copy(tiny686_image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LLAMA98_CACHE in tmp_path holding a sparse copy of the built guest (same key), apt's resolution of its
    packages (saves an apt-cache run of up to 20 s on a busy host) and the downloaded .debs."""
    cache = tmp_path / "cache"
    (cache / "guests").mkdir(parents=True)
    (cache / "debs").symlink_to(cache_dir("debs"))
    for resolved in tiny686_image.parent.parent.glob(".resolved-*.json"):
        shutil.copy(resolved, cache / "guests")
    subprocess.run(["cp", "-a", "--sparse=always", str(tiny686_image.parent), str(cache / "guests")], check=True)
    monkeypatch.setenv("LLAMA98_CACHE", str(cache))
    return cache / "guests" / tiny686_image.parent.name / tiny686_image.name


@pytest.mark.vm
def test_a_truncated_cached_image_is_rebuilt_and_says_so(tiny686_image: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The cached image cut right after its partition table (a disk that filled up): the next use, as `run` makes
    it (resolve_guest), rebuilds it with a warning. A same-size corruption takes the same path (the sha256 check
    is test_a_cached_image_is_checked_against_its_manifest); one rebuild here, as each takes 15-50 s."""
    copy = _private_cache_with_a_copy(tiny686_image, tmp_path, monkeypatch)
    manifest = guest_manifest(copy)
    with copy.open("r+b") as handle:
        handle.truncate(512)
    with caplog.at_level(logging.WARNING, logger="harness"):
        assert resolve_guest("tiny686")[1] == copy
    assert [record.getMessage() for record in caplog.records if "damaged" in record.getMessage()] == [
        f"the cached tiny686 image {copy} is damaged (it is 512 bytes, its manifest says {manifest['image_bytes']}): "
        f"rebuilding it"]
    assert copy.stat().st_size == guest_manifest(copy)["image_bytes"]
    assert _sha256(copy) == guest_manifest(copy)["image_sha256"]
    assert fat_space(copy).kind == "FAT32"


# ---------------------------------------------------------------------------------------------------------------
# Booting it


class _ActiveModeBridge(FTPHandler):
    """The harness's active-mode bridge in miniature: PORT 10,0,2,15,p1,p2 -> a QEMU host forward to it."""

    qmp_socket: ClassVar[str] = ""
    bridged_ports: ClassVar[list[int]] = []  # each handler type made by the fixture gets its own list

    def ftp_PORT(self, line: str) -> None:
        fields = [int(x) for x in line.split(",")]
        if fields[:4] != [10, 0, 2, 15]:
            self.respond("501 only the guest may be connected to")
            return
        guest_port = fields[4] * 256 + fields[5]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            host_port = probe.getsockname()[1]
        monitor = QEMUMonitorProtocol(self.qmp_socket)  # opened in this (the server's) thread only
        try:
            monitor.connect()
            monitor.cmd("human-monitor-command",
                        **{"command-line": f"hostfwd_add tcp:127.0.0.1:{host_port}-10.0.2.15:{guest_port}"})
        finally:
            monitor.close()
        self.bridged_ports.append(guest_port)
        super().ftp_PORT(f"127,0,0,1,{host_port >> 8},{host_port & 255}")


@pytest.fixture()
def ftp_server(tmp_path: Path) -> Iterator[tuple[int, Path, type[_ActiveModeBridge]]]:
    jail = tmp_path / "jail"
    jail.mkdir()
    authorizer = DummyAuthorizer()
    authorizer.add_user("guest", "s3cret", str(jail), perm="elr")
    handler = type("Bridge", (_ActiveModeBridge,), {"authorizer": authorizer, "masquerade_address": "10.0.2.2",
                                                    "qmp_socket": str(tmp_path / "qmp.sock"),
                                                    "bridged_ports": []})
    server = FTPServer(("127.0.0.1", 0), handler)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            server.serve_forever(timeout=0.1, blocking=False)
        server.close_all()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.address[1], jail, handler
    finally:
        stop.set()
        thread.join(timeout=10)


class _Serial:
    """Just enough of a console for this test: commands framed by a unique marker carrying $?."""

    def __init__(self, child: pexpect.spawn, log: Path) -> None:
        self.child = child
        self.log = log

    def wait_for(self, pattern: str, timeout: float, what: str) -> None:
        try:
            self.child.expect_exact(pattern, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as error:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; serial log: {self.log}") \
                from error

    def run(self, command: str, timeout: float = 60) -> tuple[str, int]:
        marker = uuid.uuid4().hex[:12]
        self.child.sendline(f'{command}; echo "{marker}:$?:end"')
        try:
            self.child.expect(rf"{marker}:(\d+):end", timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as error:
            raise AssertionError(f"timed out after {timeout} s running {command!r}; serial log: {self.log}") \
                from error
        before, match = self.child.before, self.child.match
        assert isinstance(before, str) and isinstance(match, re.Match)
        output = ANSI_ESCAPE.sub("", before).replace("\r", "")
        code = int(match.group(1))
        self.wait_for(PROMPT, 10, "the prompt after a command")
        return output, code


@contextlib.contextmanager
def _booted(image: Path, tmp_path: Path, nic: str, qmp_socket: str) -> Iterator[tuple[_Serial, float]]:
    """Cold-boot the image on a fresh qcow2 overlay; yield the console at the prompt and the boot time.

    QEMU is killed on the way out whatever happens (the guest is asked to power off first by the caller).
    """
    overlay = tmp_path / f"overlay-{nic}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "raw", str(overlay)],
                   check=True)
    command = ["qemu-system-i386", "-machine", "pc,accel=tcg", "-cpu", "pentium2", "-m", "128",
               "-nic", f"user,model={nic}", "-drive", f"file={overlay},format=qcow2", "-display", "none",
               # signal=off: a Ctrl-C typed into the pty must reach the guest, not stop QEMU.
               "-chardev", "stdio,id=serial0,signal=off", "-serial", "chardev:serial0", "-monitor", "none",
               "-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    log_path = tmp_path / f"serial-{nic}.log"
    started = time.monotonic()
    with log_path.open("w", encoding="latin-1") as log:
        child = pexpect.spawn(command[0], command[1:], encoding="latin-1", codec_errors="replace", logfile=log)
        try:
            console = _Serial(child, log_path)
            console.wait_for(READY, 120, f"'{READY}' from the tiny686 guest")
            boot_seconds = time.monotonic() - started
            console.wait_for(PROMPT, 30, "the tiny686 shell prompt")
            yield console, boot_seconds
        finally:
            child.terminate(force=True)
            child.close()
    assert not child.isalive(), "QEMU outlived the test"


@pytest.mark.vm
def test_boot_and_fetch_over_ftp_both_ways(tiny686_image: Path, tmp_path: Path,
                                           ftp_server: tuple[int, Path, type[_ActiveModeBridge]]) -> None:
    port, jail, handler = ftp_server
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (jail / "model.bin").write_bytes(payload)
    expected = hashlib.sha256(payload).hexdigest()
    image_before = _sha256(tiny686_image)

    with _booted(tiny686_image, tmp_path, "e1000", handler.qmp_socket) as (console, boot_seconds):
        print(f"\ntiny686 cold boot to '{READY}': {boot_seconds:.2f} s")
        output, code = console.run("uname -m")
        assert code == 0 and "\ni686\n" in output
        output, _ = console.run("cat /proc/cpuinfo")
        assert re.search(r"model name\s*: Pentium II", output)
        output, _ = console.run("mount")
        assert re.search(r"/dev/sda1 on /mnt/c type vfat \(rw,", output)
        output, _ = console.run("pwd")
        assert "\n/mnt/c/run\n" in output

        # Passive: busybox ftpget.
        output, code = console.run(f"ftpget -u guest -p s3cret -P {port} 10.0.2.2 /mnt/c/run/p.bin model.bin",
                                   timeout=120)
        assert code == 0, output
        output, _ = console.run("sha256sum /mnt/c/run/p.bin")
        assert f"{expected}  /mnt/c/run/p.bin" in output

        # Active: the Debian ftp client sends PORT; the server reaches it only through the host forward.
        script = r"user guest s3cret\nbinary\nget model.bin /mnt/c/run/a.bin\nbye\n"
        output, code = console.run(f'printf "{script}" | ftp -n -v 10.0.2.2 {port}', timeout=120)
        assert code == 0, output
        assert "226 Transfer complete" in output, output
        assert len(handler.bridged_ports) == 1 and handler.bridged_ports[0] > 1023
        output, _ = console.run("sha256sum /mnt/c/run/a.bin")
        assert f"{expected}  /mnt/c/run/a.bin" in output

        # Ctrl-C on the serial line stops the running command (the shell owns ttyS0 as controlling terminal).
        console.child.sendline('sleep 60; echo "slept""-fully"')
        time.sleep(1)
        console.child.sendcontrol("c")
        console.wait_for(PROMPT, 15, "the prompt after Ctrl-C")
        assert "slept-fully" not in str(console.child.before)

        console.child.sendline("poweroff")
        console.child.expect(pexpect.EOF, timeout=60)  # busybox init unmounts /mnt/c and powers off
    assert _sha256(tiny686_image) == image_before, "the user image was written"


@pytest.mark.vm
@pytest.mark.parametrize(("nic", "driver"), [("pcnet", "pcnet32"), ("rtl8139", "8139cp"), ("ne2k_pci", "ne2k_pci")])
def test_other_nics_get_their_driver_and_carry_ftp(tiny686_image: Path, tmp_path: Path, nic: str, driver: str,
                                                   ftp_server: tuple[int, Path, type[_ActiveModeBridge]]) -> None:
    port, jail, handler = ftp_server
    payload = os.urandom(256 * 1024)
    (jail / "small.bin").write_bytes(payload)
    with _booted(tiny686_image, tmp_path, nic, handler.qmp_socket) as (console, _):
        output, _ = console.run("lsmod")
        assert re.search(rf"^{driver}\s", output, re.MULTILINE), output
        output, code = console.run(f"ftpget -u guest -p s3cret -P {port} 10.0.2.2 s.bin small.bin && sha256sum s.bin",
                                   timeout=120)
        assert code == 0 and f"{hashlib.sha256(payload).hexdigest()}  s.bin" in output, output
