"""FileServer: how files get into the guest. pyftpdlib on 127.0.0.1, one jail per run, both FTP modes.

Why FTP: it is the one transfer path Windows 98 has out of the box (`ftp.exe`), and tiny686 exercises the same
path. Why the rules:
- Bind 127.0.0.1 only, ephemeral port, random user and password per run: nothing else on the host can use it.
- One fresh jail directory per run: `upload/` is write-only, everything else read-only (the jail's permissions
  refuse STOR, DELE, RNFR... on inputs), and pyftpdlib's filesystem refuses anything resolving outside the jail
  (`..`, absolute paths, symlinks pointing out).
- Inputs are never copied (a model may be gigabytes): a reflink (own inode, chmod 0444) or a hard link where the
  file system allows, else a *view*: a symlink in the jail that `_JailFS` admits only because the server itself
  registered that exact name -> target pair, opened only for reading. Any other path that resolves outside
  the jail is still refused. What the guest receives is still proved by a checksum against the host's digests
  (computed once per file version and cached).
- Passive mode announces 10.0.2.2, which QEMU user networking maps to the host's loopback.
- Active mode (the only mode Windows 98's ftp.exe has): QEMU user networking cannot carry an inbound connection
  to the guest by itself, so on `PORT 10,0,2,15,p1,p2` the server asks QEMU (via a HostForwarder, i.e. the
  Machine's QMP) for a `hostfwd` from a fresh 127.0.0.1 port to the guest's port, connects only there, and removes
  the forward when the data connection closes. Any other PORT target is refused: the server never connects
  anywhere but 127.0.0.1.
- Every RETR is recorded with its transfer type, so the Guest can tell an ASCII-mode transfer of a binary from
  ordinary corruption.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.core.lifecycle import StartStop
from harness.core.paths import cache_dir
from harness.vm.network import GUEST_ADDRESS, HOST_ADDRESS

UPLOAD_DIR = "upload"
PASSIVE_PORT_COUNT = 8
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int), share the source's data blocks (btrfs, xfs, ...)
DIGEST_CACHE_MIN_BYTES = 16 * 1024 * 1024  # smaller files are hashed again each time (faster than the cache)


class FtpError(HarnessError):
    """The FTP server could not start or a transfer failed."""


class HostForwarder(Protocol):
    """What the active-mode bridge needs from the Machine."""

    def add_host_forward(self, guest_port: int) -> int: ...

    def remove_host_forward(self, host_port: int) -> None: ...


@dataclass(frozen=True)
class ServedFile:
    """A file placed in the jail, with the digests the guest's copy will be checked against."""

    name: str
    path: Path
    size: int
    sha256: str
    md5: str
    crc32: str
    how: str = "copy"  # "reflink", "hardlink" or "view": how the jail holds it without a copy

    def digest(self, algorithm: str) -> str:
        """Host-side digest for a profile's checksum algorithm (sha256, md5, crc32)."""
        return {"sha256": self.sha256, "md5": self.md5, "crc32": self.crc32}[algorithm]


@dataclass(frozen=True)
class TransferRecord:
    """One RETR/STOR seen by the server."""

    command: str
    name: str
    transfer_type: str  # "binary" or "ascii"
    complete: bool
    bytes: int = 0  # bytes the data connection carried


def digests(path: Path) -> tuple[int, str, str, str]:
    """(size, sha256, md5, crc32 as 8 hex digits) of a file, in one pass."""
    sha, md5, crc, size = hashlib.sha256(), hashlib.md5(), 0, 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest(), f"{crc & 0xFFFFFFFF:08x}"


def cached_digests(path: Path) -> tuple[int, str, str, str]:
    """digests(path), remembered per file version (device, inode, size, mtime): hashing a multi-gigabyte model
    takes seconds, and every run of the same model would pay it again."""
    st = path.stat()
    if st.st_size < DIGEST_CACHE_MIN_BYTES:
        return digests(path)
    identity = f"{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}"
    record = cache_dir("file-digests") / (hashlib.sha256(identity.encode()).hexdigest()[:32] + ".json")
    try:
        cached = json.loads(record.read_text(encoding="utf-8"))
        if cached.get("identity") == identity:
            return int(cached["size"]), str(cached["sha256"]), str(cached["md5"]), str(cached["crc32"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    size, sha256, md5, crc32 = digests(path)
    temp = record.with_suffix(f".{os.getpid()}.tmp")
    temp.write_text(json.dumps({"identity": identity, "size": size, "sha256": sha256, "md5": md5,
                                "crc32": crc32}), encoding="utf-8")
    os.replace(temp, record)
    return size, sha256, md5, crc32


def _reflink(source: Path, target: Path) -> bool:
    """Clone `source` as `target` sharing its data blocks (no copy); False where the file system cannot."""
    try:
        with source.open("rb") as src, target.open("xb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
                return True
            except OSError:
                pass
    except OSError:
        return False
    target.unlink(missing_ok=True)
    return False


def place_without_copy(source: Path, target: Path) -> str:
    """Put `source` at `target` without copying its bytes; returns how: "reflink" (own inode, made read-only),
    "hardlink" (same inode: its mode is the source's, so the jail's permissions alone keep it read-only) or
    "view" (a symlink the jail's file system admits for this one name, see _JailFS)."""
    if _reflink(source, target):
        target.chmod(0o444)
        return "reflink"
    try:
        os.link(source, target)
        return "hardlink"
    except OSError:
        pass  # another file system (EXDEV), a file we do not own (protected_hardlinks), too many links
    os.symlink(source.resolve(), target)
    return "view"


class _JailFS(AbstractedFS):
    """pyftpdlib's jail plus read-only views: `views` (set on a per-server subclass) maps a jail path to the
    one outside file the server registered for it. Everything else is confined as by AbstractedFS."""

    views: dict[str, str] = {}

    def _view_target(self, path: str) -> str | None:
        target = self.views.get(os.path.normpath(path))
        if target is None or os.path.realpath(path) != target:
            return None  # not registered, or the link was changed to point elsewhere
        return target

    def validpath(self, path: str) -> bool:
        return self._view_target(path) is not None or bool(super().validpath(path))

    def open(self, filename: str, mode: str) -> Any:
        if self._view_target(filename) is not None and any(flag in mode for flag in "wax+"):
            raise PermissionError(errno.EACCES, "read-only view", filename)
        return super().open(filename, mode)


def ascii_mangled_digests(path: Path, algorithm: str) -> set[str]:
    """Digests `path` would have after an ASCII-mode transfer (LF -> CRLF as sent on the wire; or CRLF -> LF as a
    Unix client stores it), so a checksum mismatch can be reported as "sent in ASCII mode" rather than noise."""
    data = path.read_bytes()
    crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    lf = data.replace(b"\r\n", b"\n")
    found = set()
    for variant in (crlf, lf):
        if variant == data:
            continue
        if algorithm == "sha256":
            found.add(hashlib.sha256(variant).hexdigest())
        elif algorithm == "md5":
            found.add(hashlib.md5(variant).hexdigest())
        else:
            found.add(f"{zlib.crc32(variant) & 0xFFFFFFFF:08x}")
    return found


def _free_ports(count: int) -> list[int]:
    """Ports the kernel just handed out as free on 127.0.0.1 (for pyftpdlib's passive range)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
            ports.append(probe.getsockname()[1])
    finally:
        for probe in sockets:
            probe.close()
    return ports


class _BridgingHandler(FTPHandler):
    """pyftpdlib handler with the active-mode bridge, per-server logging and transfer records.

    Class attributes (`bridge`, `server_log`, `records`, `records_lock`) are set on a per-server subclass.
    """

    bridge: HostForwarder | None = None
    server_log: logging.Logger = logging.getLogger("harness.vm.ftp")
    records: list[TransferRecord] = []
    records_lock = threading.Lock()
    sessions: weakref.WeakSet[_BridgingHandler] = weakref.WeakSet()  # live control connections (for progress)

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        super().__init__(conn, server, ioloop)
        self._log_debug = True  # every command and reply goes to the run's ftp.log
        self._bridged_ports: list[int] = []
        with self.records_lock:
            self.sessions.add(self)

    def bytes_sent_of(self, name: str) -> int | None:
        """Bytes sent so far by this connection's running RETR of `name`, or None (another file or idle).

        Called from another thread: it only reads attributes the server thread replaces atomically."""
        channel = self.data_channel
        handle = getattr(channel, "file_obj", None) if channel is not None else None
        if channel is None or handle is None or os.path.basename(str(getattr(handle, "name", ""))) != name:
            return None
        return int(channel.tot_bytes_sent)

    # logging: to this server's own log file, not the process-wide pyftpdlib logger
    def log(self, msg: str, logfun: Any = None) -> None:
        self.server_log.info("%s %s", self.log_prefix % self.__dict__, msg)

    def logline(self, msg: str, logfun: Any = None) -> None:
        self.server_log.info("%s %s", self.log_prefix % self.__dict__, msg)

    def logerror(self, msg: str) -> None:
        self.server_log.error("%s %s", self.log_prefix % self.__dict__, msg)

    def log_exception(self, instance: Any) -> None:
        self.server_log.exception("unhandled exception in %r", instance)

    # active mode: only to the guest, only through a QEMU host forward on 127.0.0.1
    def _make_eport(self, ip: str, port: int) -> None:
        if ip != GUEST_ADDRESS or self.bridge is None:
            self.respond(f"501 Active mode is only bridged to the guest {GUEST_ADDRESS}; refusing {ip}:{port}.")
            self.log(f"refused PORT target {ip}:{port}")
            return
        try:
            host_port = self.bridge.add_host_forward(port)
        except HarnessError as error:
            self.respond("425 Cannot bridge the data connection through QEMU.")
            self.log(f"hostfwd for guest port {port} failed: {error}")
            return
        self._bridged_ports.append(host_port)
        self.log(f"bridging PORT {ip}:{port} through 127.0.0.1:{host_port}")
        super()._make_eport("127.0.0.1", host_port)

    def ftp_EPRT(self, line: str) -> None:
        self.respond("522 Use PORT; extended active mode is not bridged.")

    def _drop_bridges(self) -> None:
        while self._bridged_ports:
            host_port = self._bridged_ports.pop()
            try:
                assert self.bridge is not None
                self.bridge.remove_host_forward(host_port)
                self.log(f"removed hostfwd 127.0.0.1:{host_port}")
            except HarnessError as error:
                self.log(f"removing hostfwd 127.0.0.1:{host_port} failed: {error}")

    def _on_dtp_close(self) -> None:
        super()._on_dtp_close()
        self._drop_bridges()

    def close(self) -> None:
        self._drop_bridges()
        with self.records_lock:
            self.sessions.discard(self)
        super().close()

    # transfer records
    def _record(self, command: str, file: str, complete: bool) -> None:
        name = os.path.basename(file)
        kind = "ascii" if self._current_type == "a" else "binary"
        channel = self.data_channel
        moved = int(channel.get_transmitted_bytes()) if channel is not None else 0
        with self.records_lock:
            self.records.append(TransferRecord(command, name, kind, complete, moved))

    def on_file_sent(self, file: str) -> None:
        self._record("RETR", file, True)

    def on_incomplete_file_sent(self, file: str) -> None:
        self._record("RETR", file, False)

    def on_file_received(self, file: str) -> None:
        self._record("STOR", file, True)

    def on_incomplete_file_received(self, file: str) -> None:
        self._record("STOR", file, False)


class FileServer(StartStop):
    """An FTP server for one run, in a background thread; a context manager that always stops it.

    `add_file(path)` copies an input into the jail (read-only) and returns a ServedFile with its digests.
    `user`, `password`, `port` and `guest_host` ("10.0.2.2") are what the guest's client needs. `bridge` (the
    Machine) enables active mode; without it PORT is refused.
    """

    def __init__(self, artifacts: ArtifactDir, bridge: HostForwarder | None = None, port: int = 0,
                 masquerade_address: str = HOST_ADDRESS) -> None:
        self.artifacts = artifacts
        self.bridge = bridge
        self.requested_port = port
        self.masquerade_address = masquerade_address
        self.user = "u" + secrets.token_hex(4)
        self.password = secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
        self.guest_host = masquerade_address
        self.jail = Path(tempfile.mkdtemp(prefix="llama98-ftp-"))
        self.upload_dir = self.jail / UPLOAD_DIR
        self.records: list[TransferRecord] = []
        self._records_lock = threading.Lock()
        self._sessions: weakref.WeakSet[_BridgingHandler] = weakref.WeakSet()
        self._views: dict[str, str] = {}  # jail path -> outside file, for _JailFS (read by the server thread)
        self._server: FTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._logger = logging.getLogger(f"harness.vm.ftp.{id(self)}")
        self._log_handler: logging.Handler | None = None
        self.port = 0

    def start(self) -> None:
        """Create the jail, bind 127.0.0.1 and serve in a daemon thread."""
        self.upload_dir.mkdir(mode=0o700)
        self._log_handler = logging.FileHandler(self.artifacts.ftp_log, encoding="utf-8")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self._logger.addHandler(self._log_handler)
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False

        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.jail), perm="elr")
        authorizer.override_perm(self.user, str(self.upload_dir), perm="ew")
        filesystem = type("RunJailFS", (_JailFS,), {"views": self._views})
        handler = type("RunFtpHandler", (_BridgingHandler,), {
            "authorizer": authorizer,
            "abstracted_fs": filesystem,
            "bridge": self.bridge,
            "server_log": self._logger,
            "records": self.records,
            "records_lock": self._records_lock,
            "sessions": self._sessions,
            "masquerade_address": self.masquerade_address,
            "passive_ports": _free_ports(PASSIVE_PORT_COUNT),
            "permit_foreign_addresses": False,
            "banner": "llama98-harness FTP",
            "timeout": 600,
        })
        try:
            self._server = FTPServer(("127.0.0.1", self.requested_port), handler, ioloop=IOLoop())
        except OSError as error:
            # pyftpdlib wraps the bind error in another OSError; unwrap to read errno.
            while error.errno is None and error.args and isinstance(error.args[0], OSError):
                error = error.args[0]
            if error.errno == errno.EADDRINUSE:
                raise FtpError(f"FTP port {self.requested_port} on 127.0.0.1 is in use",
                               artifacts=self.artifacts) from None
            raise FtpError(f"cannot start the FTP server on 127.0.0.1:{self.requested_port}: {error.strerror}",
                           artifacts=self.artifacts) from None
        self.port = int(self._server.address[1])
        self._logger.info("serving %s on 127.0.0.1:%d as user %s", self.jail, self.port, self.user)
        self._thread = threading.Thread(target=self._serve, name=f"ftp-{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            self._server.ioloop.loop(timeout=0.1, blocking=False)

    def stop(self) -> None:
        """Stop serving, close every connection, delete the jail. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        if self._server is not None:
            self._server.close_all()
            self._server = None
        if self._log_handler is not None:
            self._logger.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        shutil.rmtree(self.jail, ignore_errors=True)

    def add_file(self, source: str | Path, name: str | None = None) -> ServedFile:
        """Serve `source` as `name` (read-only, never copied: see place_without_copy) with its digests."""
        source_path = Path(source)
        target_name = name or source_path.name
        if "/" in target_name or target_name in ("", ".", "..", UPLOAD_DIR):
            raise FtpError(f"invalid served file name {target_name!r}")
        target = self.jail / target_name
        key = os.path.normpath(str(target))
        try:
            if not source_path.is_file():
                raise FileNotFoundError(errno.ENOENT, "not a file", str(source_path))
            self._views.pop(key, None)
            target.unlink(missing_ok=True)  # a previous one is read-only or a link: replace it, never write through
            how = place_without_copy(source_path, target)
            if how == "view":
                self._views[key] = os.path.realpath(target)
            size, sha256, md5, crc32 = cached_digests(source_path)
        except OSError as error:
            raise FtpError(f"cannot serve {source_path}: {error.strerror}") from None
        return ServedFile(target_name, target, size, sha256, md5, crc32, how)

    def bytes_sent(self, name: str, since: int = 0) -> int | None:
        """Bytes of served file `name` sent so far by a running RETR (the largest if several), else by the last
        RETR among the transfers of `name` after the first `since` (as counted by transfers_of), else None.
        Safe to call from any thread: it is what harness.vm.progress samples."""
        with self._records_lock:
            sessions = list(self._sessions)
            done = [r for r in [r for r in self.records if r.name == name][since:] if r.command == "RETR"]
        counts = [count for session in sessions if (count := session.bytes_sent_of(name)) is not None]
        if counts:
            return max(counts)
        return done[-1].bytes if done else None

    def transfers_of(self, name: str) -> list[TransferRecord]:
        """Transfers the server saw for a served file name, oldest first."""
        with self._records_lock:
            return [record for record in self.records if record.name == name]
