"""FileServer with a real FTP client (ftplib) on loopback: credentials, the jail, modes, logging, shutdown.

The active-mode bridge through QEMU's hostfwd is exercised end to end with the real guest in tests/e2e/test_guest.py.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.vm.ftp import (
    DIGEST_CACHE_MIN_BYTES,
    FileServer,
    FtpError,
    ascii_mangled_digests,
    cached_digests,
    digests,
)


@pytest.fixture()
def artifacts(tmp_path: Path) -> ArtifactDir:
    return ArtifactDir(tmp_path / "artifacts")


@pytest.fixture()
def server(artifacts: ArtifactDir) -> Iterator[FileServer]:
    with FileServer(artifacts) as running:
        yield running


def _login(server: FileServer) -> ftplib.FTP:
    client = ftplib.FTP()
    client.connect("127.0.0.1", server.port, timeout=10)
    client.login(server.user, server.password)
    return client


def _retr(client: ftplib.FTP, name: str) -> bytes:
    buffer = io.BytesIO()
    client.retrbinary(f"RETR {name}", buffer.write)
    return buffer.getvalue()


def test_serves_a_file_with_digests_and_records_the_binary_transfer(server: FileServer, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(300_000) + b"\n\r\n")
    served = server.add_file(source, "MODEL.BIN")
    assert (served.size, served.sha256) == digests(source)[:2]
    if served.how == "reflink":
        assert served.path.stat().st_mode & 0o222 == 0
    client = _login(server)
    assert _retr(client, "MODEL.BIN") == source.read_bytes()
    client.quit()
    records = server.transfers_of("MODEL.BIN")
    assert [(r.command, r.transfer_type, r.complete) for r in records] == [("RETR", "binary", True)]


def _same_file_system_as_jail(server: FileServer, tmp_path: Path) -> bool:
    return os.stat(tmp_path).st_dev == os.stat(server.jail).st_dev


def test_a_file_on_the_jails_file_system_is_linked_not_copied(server: FileServer, tmp_path: Path) -> None:
    if not _same_file_system_as_jail(server, tmp_path):
        pytest.skip("tmp_path and the jail are on different file systems here")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2_000_000))
    served = server.add_file(source, "BIG.BIN")
    assert served.how in ("hardlink", "reflink")
    if served.how == "hardlink":
        assert served.path.stat().st_ino == source.stat().st_ino
        assert source.stat().st_nlink == 2
    client = _login(server)
    assert _retr(client, "BIG.BIN") == source.read_bytes()
    with pytest.raises(ftplib.error_perm, match="550"):
        client.storbinary("STOR BIG.BIN", io.BytesIO(b"overwrite"))
    client.quit()
    assert source.read_bytes()[:4] != b"over"
    server.stop()
    assert source.stat().st_nlink == 1 and source.is_file()


def test_a_file_on_another_file_system_is_a_confined_read_only_view(server: FileServer, tmp_path: Path) -> None:
    """/dev/shm is a tmpfs: a hard link from the jail to it fails with EXDEV for real, so the view is used."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(server.jail).st_dev:
        pytest.skip("needs a second file system (/dev/shm) beside the jail's")
    outside = Path(tempfile.mkdtemp(dir=shm, prefix="llama98-test-"))
    try:
        source = outside / "model.bin"
        source.write_bytes(os.urandom(1_000_000))
        neighbour = outside / "neighbour.txt"
        neighbour.write_text("not served")
        used_before = shutil.disk_usage(server.jail).used
        served = server.add_file(source, "MODEL.BIN")
        assert served.how == "view"
        assert served.path.is_symlink() and served.path.lstat().st_size < 4096
        assert shutil.disk_usage(server.jail).used - used_before < 1_000_000
        assert (served.size, served.sha256) == digests(source)[:2]
        os.symlink(neighbour, server.jail / "unregistered")
        client = _login(server)
        assert _retr(client, "MODEL.BIN") == source.read_bytes()
        for name in ("unregistered", str(neighbour), f"../../{neighbour}", "../neighbour.txt"):
            with pytest.raises(ftplib.error_perm, match="550"):
                _retr(client, name)
        with pytest.raises(ftplib.error_perm, match="550"):
            client.storbinary("STOR MODEL.BIN", io.BytesIO(b"overwrite"))
        with pytest.raises(ftplib.error_perm, match="550"):
            client.delete("MODEL.BIN")
        client.quit()
        # repointing a registered view elsewhere revokes it
        served.path.unlink()
        os.symlink(neighbour, served.path)
        client = _login(server)
        with pytest.raises(ftplib.error_perm, match="550"):
            _retr(client, "MODEL.BIN")
        client.quit()
        assert source.stat().st_size == 1_000_000
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def test_passive_mode_announces_the_guest_view_of_the_host(server: FileServer) -> None:
    client = _login(server)
    reply = client.sendcmd("PASV")
    assert reply.startswith("227") and "(10,0,2,2," in reply
    client.quit()


def test_credentials_are_random_per_run_and_checked(artifacts: ArtifactDir, server: FileServer) -> None:
    with FileServer(ArtifactDir(artifacts.path / "second")) as other:
        assert (other.user, other.password) != (server.user, server.password)
        assert other.port != server.port
    client = ftplib.FTP()
    client.connect("127.0.0.1", server.port, timeout=10)
    with pytest.raises(ftplib.error_perm, match="530"):
        client.login(server.user, "wrong-password")
    client.close()


def test_nothing_outside_the_jail_is_reachable(server: FileServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    os.symlink(secret, server.jail / "link-out")
    client = _login(server)
    for name in ("../secret.txt", f"/../../{tmp_path}/secret.txt", str(secret), "link-out", "/etc/passwd"):
        with pytest.raises(ftplib.error_perm, match="550"):
            _retr(client, name)
    client.cwd("..")
    assert client.pwd() == "/"
    client.quit()


def test_inputs_are_read_only_and_upload_is_write_only(server: FileServer, tmp_path: Path) -> None:
    source = tmp_path / "tok.bin"
    source.write_bytes(b"tokens")
    server.add_file(source, "TOK.BIN")
    client = _login(server)
    with pytest.raises(ftplib.error_perm, match="550"):
        client.storbinary("STOR TOK.BIN", io.BytesIO(b"overwrite"))
    with pytest.raises(ftplib.error_perm, match="550"):
        client.delete("TOK.BIN")
    client.storbinary("STOR upload/report.txt", io.BytesIO(b"report"))
    assert (server.upload_dir / "report.txt").read_bytes() == b"report"
    with pytest.raises(ftplib.error_perm, match="550"):
        _retr(client, "upload/report.txt")
    with pytest.raises(ftplib.error_perm, match="550"):
        client.nlst("upload")
    client.quit()


def test_active_mode_refuses_every_target_but_the_bridged_guest(server: FileServer) -> None:
    """Without a QEMU bridge, PORT is refused outright; with one, only 10.0.2.15 is accepted (see test_guest)."""
    client = _login(server)
    for target in ("127,0,0,1,200,10", "8,8,8,8,0,80", "10,0,2,15,200,10"):
        with pytest.raises(ftplib.error_perm, match="501"):
            client.sendcmd(f"PORT {target}")
    with pytest.raises(ftplib.error_perm, match="522"):
        client.sendcmd("EPRT |1|127.0.0.1|5000|")
    client.quit()
    log = server.artifacts.ftp_log.read_text()
    assert "refused PORT target 8.8.8.8:80" in log and "PASS" in log and server.password not in log


def test_ascii_transfers_are_recorded_and_their_digests_predictable(server: FileServer, tmp_path: Path) -> None:
    source = tmp_path / "binary.bin"
    source.write_bytes(b"\x00\x01\n\x02\r\n\x03" * 1000)
    served = server.add_file(source, "B.BIN")
    client = _login(server)
    received = io.BytesIO()
    client.sendcmd("TYPE A")
    with client.transfercmd("RETR B.BIN") as data:
        while chunk := data.recv(65536):
            received.write(chunk)
    client.voidresp()
    client.quit()
    assert server.transfers_of("B.BIN")[-1].transfer_type == "ascii"
    import hashlib

    assert hashlib.sha256(received.getvalue()).hexdigest() != served.sha256
    assert hashlib.sha256(received.getvalue()).hexdigest() in ascii_mangled_digests(source, "sha256")


def test_port_in_use_is_one_line_naming_the_artifacts(artifacts: ArtifactDir) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        with pytest.raises(FtpError) as info:
            with FileServer(artifacts, port=blocker.getsockname()[1]):
                pass
        message = str(info.value)
        assert "is in use" in message and str(artifacts.path) in message and "\n" not in message
    finally:
        blocker.close()


def test_stop_closes_the_port_and_removes_the_jail(artifacts: ArtifactDir) -> None:
    server = FileServer(artifacts)
    server.start()
    port, jail = server.port, server.jail
    client = _login(server)
    server.stop()
    server.stop()  # idempotent
    assert not jail.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    client.close()


def test_digests_of_large_files_are_cached_per_file_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(DIGEST_CACHE_MIN_BYTES + 1))
    assert cached_digests(big) == digests(big)
    [record] = (tmp_path / "cache" / "file-digests").glob("*.json")
    stored = json.loads(record.read_text())
    stored["sha256"] = "0" * 64  # a cache hit returns what the record says
    record.write_text(json.dumps(stored))
    assert cached_digests(big)[1] == "0" * 64
    with big.open("r+b") as handle:  # a new version of the file (size and mtime change) is hashed again
        handle.write(b"changed")
    os.utime(big, ns=(big.stat().st_atime_ns, big.stat().st_mtime_ns + 10**9))
    assert cached_digests(big) == digests(big) and cached_digests(big)[1] != "0" * 64
