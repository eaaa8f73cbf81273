"""Machine: one QEMU process for one guest run, on a throw-away qcow2 overlay, controlled over QMP.

Why it is built this way:
- The user's image is never opened for writing: QEMU only ever sees a qcow2 overlay in the run's private temp dir
  whose backing file is the image (read-only, format probed with `qemu-img info`).
- QEMU connects *to us* for QMP and the serial port (we listen on unix sockets in a 0700 dir), so no early serial
  output is lost and there is no connect-retry loop; a QEMU that dies during start-up is noticed at once.
- Every QEMU we start runs in its own session (so Ctrl-C in the terminal reaches only us, and we decide how it
  stops), is registered in a process-wide table, gets PR_SET_PDEATHSIG=SIGKILL (a SIGKILLed pytest cannot leave it
  behind) and is stopped in `finally`: QMP quit, then SIGTERM, then SIGKILL to its process group.
- Snapshots: after the first cold boot reaches readiness the Guest asks for `save_snapshot()`; the overlay (with an
  internal `savevm` snapshot) is cached, keyed by the image's sha256, the profile, the QEMU version and the device
  command line. Later runs copy it and start with `-loadvm`, skipping the boot.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from qemu.qmp import QMPClient, QMPError

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.core.lifecycle import StartStop
from harness.core.hashing import file_sha256
from harness.core.paths import cache_dir
from harness.vm.profile import GuestProfile

QEMU_SYSTEM = "qemu-system-i386"
QEMU_IMG = "qemu-img"
SNAPSHOT_NAME = "llama98-ready"
GUEST_ADDRESS = "10.0.2.15"
NETDEV_ID = "net0"
# NIC names in profiles -> QEMU device models.
NIC_DEVICES = {"e1000": "e1000", "pcnet": "pcnet", "rtl8139": "rtl8139", "ne2k_pci": "ne2k_pci"}
# Formats qemu-img recognises by content; "raw" is what it answers for anything else, so raw needs a closer look.
STRUCTURED_FORMATS = ("qcow2", "qcow", "vmdk", "vdi", "vpc", "vhdx", "qed", "parallels", "dmg", "cloop", "bochs")


class QemuError(HarnessError):
    """QEMU is missing, refused to start, or stopped answering."""


class QemuLaunchError(QemuError):
    """QEMU exited during start-up. Carries its exit code, command line and stderr for the caller to inspect."""

    def __init__(self, message: str, exit_code: int | None, command: Sequence[str], stderr: str) -> None:
        super().__init__(message)
        self.returncode = exit_code
        self.command = list(command)
        self.stderr = stderr


class ImageError(HarnessError):
    """The guest disk image is missing, unreadable or not a disk image."""


# ---------------------------------------------------------------------------------------------------------------
# Process bookkeeping: every QEMU we start, so nothing outlives us.

_LIVE_PIDS: set[int] = set()
_LIVE_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1


def live_qemu_pids() -> set[int]:
    """PIDs of QEMU processes started by this Python process and not yet reaped (tests assert it empties)."""
    with _LIVE_LOCK:
        return set(_LIVE_PIDS)


def _kill_leftovers() -> None:
    """Last line of defence at interpreter exit: SIGKILL any QEMU still registered."""
    for pid in live_qemu_pids():
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


atexit.register(_kill_leftovers)


def _load_prctl() -> Any:
    """libc's prctl, resolved once in the parent: the forked child must not dlopen (loader locks + threads)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL QEMU when the thread that started it dies (Linux only).

    Note the kernel ties this to the *thread* that forked: start Machines from a thread that outlives them.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# ---------------------------------------------------------------------------------------------------------------
# Tools and images.


def find_tool(name: str, artifacts: ArtifactDir | None = None) -> str:
    """Absolute path of a QEMU tool on PATH, or a one-line error saying how to get it."""
    found = shutil.which(name)
    if found is None:
        where = f"; artifacts: {artifacts}" if artifacts else ""
        raise QemuError(f"QEMU is not installed: {name} not found on PATH (apt-get install qemu-system-x86 "
                        f"qemu-utils){where}")
    return found


def qemu_version(binary: str) -> str:
    """First line of `qemu-system-i386 --version` (part of the snapshot key: savevm state is version-specific)."""
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise QemuError(f"{binary} --version failed (exit {result.returncode}): {result.stderr.strip()[:200]}")
    return lines[0]


@dataclass(frozen=True)
class DiskImage:
    """A user's guest image, checked once: absolute path, probed format, size."""

    path: Path
    format: str
    size: int

    @classmethod
    def probe(cls, image: str | Path, artifacts: ArtifactDir | None = None) -> DiskImage:
        """Check `image` is a readable disk image and learn its format; one-line ImageError otherwise."""
        where = f"; artifacts: {artifacts}" if artifacts else ""
        path = Path(image).expanduser().absolute()
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ImageError(f"guest image {path} does not exist{where}") from None
        except OSError as error:
            raise ImageError(f"guest image {path} is not readable: {error.strerror}{where}") from None
        if not stat.S_ISREG(mode):
            raise ImageError(f"guest image {path} is not a regular file{where}")
        try:
            with path.open("rb") as handle:
                first_sector = handle.read(512)
        except OSError as error:
            raise ImageError(f"guest image {path} is not readable: {error.strerror}{where}") from None
        qemu_img = find_tool(QEMU_IMG, artifacts)
        result = subprocess.run([qemu_img, "info", "--output=json", str(path)], capture_output=True, text=True,
                                timeout=60, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise ImageError(f"guest image {path} is not a disk image qemu-img can read: {detail}{where}")
        info = json.loads(result.stdout)
        fmt = str(info.get("format", ""))
        if fmt not in STRUCTURED_FORMATS:
            # qemu-img calls anything it does not recognise "raw"; a bootable raw disk has an MBR/boot signature.
            if len(first_sector) < 512 or first_sector[510:512] != b"\x55\xaa":
                raise ImageError(f"guest image {path} is not a disk image (no boot sector signature, "
                                 f"qemu-img sees format {fmt or 'unknown'}){where}")
            fmt = "raw"
        return cls(path=path, format=fmt, size=int(info.get("virtual-size", path.stat().st_size)))

    def sha256(self) -> str:
        """sha256 of the image file, cached by (path, size, mtime) so a multi-GB image is hashed once."""
        stat = self.path.stat()
        identity = f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}"
        record = cache_dir("image-hashes") / (hashlib.sha256(identity.encode()).hexdigest()[:32] + ".json")
        try:
            cached = json.loads(record.read_text())
            if cached.get("identity") == identity:
                return str(cached["sha256"])
        except (OSError, ValueError, KeyError):
            pass
        digest = file_sha256(self.path)
        record.write_text(json.dumps({"identity": identity, "sha256": digest}))
        return digest




# ---------------------------------------------------------------------------------------------------------------
# QMP.


class QmpLink:
    """Synchronous, thread-safe facade over qemu.qmp's asyncio QMPClient.

    The client lives on its own event loop in a daemon thread, so the FTP server thread (active-mode forwards) and
    the main thread (screendumps, savevm) can both issue commands without sharing a loop.
    """

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)

    def _call(self, coroutine: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self._loop)
        return future.result(timeout + 1.0)

    def connect(self, sock: socket.socket, timeout: float = 10.0) -> None:
        """Run the QMP greeting and capabilities negotiation on an already connected socket."""
        self._call(self._client.connect(sock), timeout)

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 15.0) -> Any:
        """Execute a QMP command and return its value; raises QemuError on failure or timeout."""
        try:
            return self._call(self._client.execute(command, arguments), timeout)
        except (QMPError, OSError, EOFError, TimeoutError) as error:
            raise QemuError(f"QMP command {command} failed: {type(error).__name__}: {error}") from None

    def hmp(self, command_line: str, timeout: float = 15.0) -> str:
        """Run a human-monitor command (hostfwd_add, info usernet, savevm...) and return its text output."""
        return str(self.execute("human-monitor-command", {"command-line": command_line}, timeout))

    def close(self) -> None:
        """Disconnect (ignoring a peer that already went away) and stop the loop thread."""
        try:
            self._call(self._client.disconnect(), 5.0)
        except BaseException:  # noqa: BLE001 - QEMU may already be gone; closing must not fail
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()


# ---------------------------------------------------------------------------------------------------------------
# Snapshot cache.


@dataclass(frozen=True)
class SnapshotCache:
    """Cached overlays holding a `savevm` snapshot taken when the guest was first ready.

    The key covers everything the saved device state depends on: the image bytes (sha256), the profile file, the
    QEMU version and the device part of the command line (not per-run socket or overlay paths).
    """

    root: Path

    @classmethod
    def default(cls) -> SnapshotCache:
        return cls(cache_dir("snapshots"))

    @staticmethod
    def key(image_sha256: str, profile: GuestProfile, version: str, device_args: Sequence[str]) -> str:
        material = json.dumps([image_sha256, profile.name, profile.digest, version, list(device_args)])
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.root / key / "overlay.qcow2"

    def lookup(self, key: str) -> Path | None:
        candidate = self.path(key)
        return candidate if candidate.is_file() else None

    def store(self, key: str, overlay: Path) -> Path:
        """Copy `overlay` into the cache atomically (a crashed copy never looks like a valid snapshot)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        try:
            shutil.copyfile(overlay, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target


# ---------------------------------------------------------------------------------------------------------------
# The machine.


@dataclass
class MachineOptions:
    """Per-run choices on top of the profile."""

    accel: str = "tcg"  # "kvm" only when asked: the pentium2 model does not work under KVM here
    icount_shift: int | None = None  # deterministic mode: -icount shift=N,sleep=off
    use_snapshot: bool = True  # False forces a cold boot and never saves a snapshot
    memory_mb: int | None = None  # override the profile's RAM
    extra_args: tuple[str, ...] = ()
    start_timeout: float = 20.0  # QEMU must connect QMP and serial within this
    snapshot_cache: SnapshotCache | None = None  # None: the default cache dir


@dataclass
class _Run:
    """Per-run private state (temp dir, sockets, process)."""

    run_dir: Path
    overlay: Path
    qmp_socket_path: Path
    serial_socket_path: Path
    process: subprocess.Popen[bytes] | None = None
    stderr_file: Any = None
    qmp: QmpLink | None = None
    serial: socket.socket | None = None
    listeners: list[socket.socket] = field(default_factory=list)


class Machine(StartStop):
    """A QEMU guest for one run. Use as a context manager; `stop()` is idempotent and always kills QEMU.

    After `start()`: `serial_socket` is the connected serial port (hand it to Console), `loaded_snapshot` says
    whether the guest resumed from a cached snapshot (already ready) or is cold-booting. Methods: `screendump`,
    `hmp`, `qmp`, `add_host_forward`/`remove_host_forward`, `pause`/`resume`, `save_snapshot`, `stop`.
    """

    def __init__(self, profile: GuestProfile, image: str | Path, artifacts: ArtifactDir,
                 options: MachineOptions | None = None) -> None:
        self.profile = profile
        self.image_arg = image
        self.artifacts = artifacts
        self.options = options or MachineOptions()
        self.image: DiskImage | None = None
        self.command: list[str] = []
        self.loaded_snapshot = False
        self.snapshot_key: str | None = None
        self._run: _Run | None = None
        self._qemu_binary = ""
        self.started_at: float | None = None  # time.monotonic() just before QEMU was launched

    # -- lifecycle ------------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._run.process.pid if self._run and self._run.process else None

    @property
    def serial_socket(self) -> socket.socket:
        if self._run is None or self._run.serial is None:
            raise QemuError(f"the machine is not running; artifacts: {self.artifacts}")
        return self._run.serial

    @property
    def overlay(self) -> Path:
        if self._run is None:
            raise QemuError("the machine was never started")
        return self._run.overlay

    @property
    def memory_mb(self) -> int:
        """Guest RAM in MiB for this run (the profile's unless overridden by the options)."""
        return self.options.memory_mb or self.profile.machine.memory_mb

    def wait_exit(self, timeout: float) -> int | None:
        """Wait up to `timeout` s for QEMU to exit by itself (guest power-off); its exit code, or None."""
        if self._run is None or self._run.process is None:
            return None
        try:
            return self._run.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def is_running(self) -> bool:
        return bool(self._run and self._run.process and self._run.process.poll() is None)

    def device_args(self) -> list[str]:
        """The part of the command line that defines the virtual hardware (also the snapshot key)."""
        spec = self.profile.machine
        nic = NIC_DEVICES.get(spec.nic, spec.nic)
        args = [
            "-machine", f"{spec.machine},accel={self.options.accel}",
            "-cpu", spec.cpu,
            "-m", str(self.memory_mb),
            "-rtc", f"base={spec.rtc}",
            "-vga", spec.vga,
            "-display", "none",
            "-monitor", "none",
            "-parallel", "none",
            "-netdev", f"user,id={NETDEV_ID}",
            "-device", f"{nic},netdev={NETDEV_ID}",
        ]
        if self.options.icount_shift is not None:
            args += ["-icount", f"shift={self.options.icount_shift},sleep=off"]
        return args + list(spec.extra_args) + list(self.options.extra_args)

    def start(self) -> None:
        """Probe the image, prepare the overlay (fresh or from the snapshot cache), launch QEMU, connect.

        If QEMU refuses a cached snapshot (e.g. a damaged cache entry), the entry is dropped and the guest is
        cold-booted instead, so a bad cache can never make runs fail.
        """
        try:
            self._start_once(allow_snapshot=True)
        except QemuLaunchError:
            if not self.loaded_snapshot or self.snapshot_key is None:
                raise
            stale = (self.options.snapshot_cache or SnapshotCache.default()).path(self.snapshot_key)
            self.stop()
            stale.unlink(missing_ok=True)
            self.loaded_snapshot = False
            self._start_once(allow_snapshot=False)

    def _start_once(self, allow_snapshot: bool) -> None:
        self._qemu_binary = find_tool(QEMU_SYSTEM, self.artifacts)
        qemu_img = find_tool(QEMU_IMG, self.artifacts)
        self.image = DiskImage.probe(self.image_arg, self.artifacts)
        # mkdtemp: mode 0700, so the QMP and serial sockets are private. Unix socket paths are limited to 107
        # bytes; a long $TMPDIR falls back to /tmp.
        parent = tempfile.gettempdir() if len(tempfile.gettempdir()) < 60 else "/tmp"
        run_dir = Path(tempfile.mkdtemp(prefix="llama98-qemu-", dir=parent))
        os.chmod(run_dir, 0o700)
        run = _Run(run_dir=run_dir, overlay=run_dir / "overlay.qcow2", qmp_socket_path=run_dir / "qmp.sock",
                   serial_socket_path=run_dir / "serial.sock")
        self._run = run
        device_args = self.device_args()
        cache = self.options.snapshot_cache or SnapshotCache.default()
        cached = None
        if self.options.use_snapshot:
            version = qemu_version(self._qemu_binary)
            self.snapshot_key = SnapshotCache.key(self.image.sha256(), self.profile, version, device_args)
            cached = cache.lookup(self.snapshot_key) if allow_snapshot else None
        if cached is not None:
            shutil.copyfile(cached, run.overlay)
            # The copy's backing path is whatever the image was called when cached; point it at today's path.
            self._qemu_img(qemu_img, "rebase", "-u", "-b", str(self.image.path), "-F", self.image.format,
                           str(run.overlay))
            self.loaded_snapshot = True
        else:
            self._qemu_img(qemu_img, "create", "-q", "-f", "qcow2", "-b", str(self.image.path),
                           "-F", self.image.format, str(run.overlay))
        self.command = [self._qemu_binary, "-name", f"llama98-{self.profile.name}"] + device_args + [
            # cache=unsafe: the overlay is thrown away after the run, so host fsyncs buy nothing (savevm still
            # writes qcow2 metadata out to the OS before we copy the file).
            "-drive", f"file={run.overlay},format=qcow2,if=ide,index=0,media=disk,cache=unsafe",
            "-chardev", f"socket,id=serial0,path={run.serial_socket_path}",
            "-serial", "chardev:serial0",
            "-qmp", f"unix:{run.qmp_socket_path}",
        ]
        if self.loaded_snapshot:
            self.command += ["-loadvm", SNAPSHOT_NAME]
        self.artifacts.write_command_line(self.command)
        self._launch(run)

    def _qemu_img(self, qemu_img: str, *args: str) -> None:
        result = subprocess.run([qemu_img, *args], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise QemuError(f"qemu-img {args[0]} failed: {detail}; artifacts: {self.artifacts}")

    def _listen(self, run: _Run, path: Path) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(0.2)
        run.listeners.append(listener)
        return listener

    def _launch(self, run: _Run) -> None:
        qmp_listener = self._listen(run, run.qmp_socket_path)
        serial_listener = self._listen(run, run.serial_socket_path)
        run.stderr_file = self.artifacts.qemu_stderr.open("wb")
        self.started_at = time.monotonic()
        run.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=run.stderr_file,
                                       stderr=run.stderr_file, start_new_session=True,
                                       preexec_fn=_die_with_parent)
        with _LIVE_LOCK:
            _LIVE_PIDS.add(run.process.pid)
        run.serial = self._accept(run, serial_listener, "serial port")
        qmp_socket = self._accept(run, qmp_listener, "QMP")
        run.qmp = QmpLink(f"qemu-{run.process.pid}")
        try:
            run.qmp.connect(qmp_socket, timeout=self.options.start_timeout)
        except Exception as error:  # not BaseException: Ctrl-C must stay Ctrl-C
            self._raise_if_exited(run)
            raise QemuError(f"QMP negotiation with QEMU failed: {error}; artifacts: {self.artifacts}") from None

    def _accept(self, run: _Run, listener: socket.socket, what: str) -> socket.socket:
        deadline = time.monotonic() + self.options.start_timeout
        while time.monotonic() < deadline:
            self._raise_if_exited(run)
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            return connection
        raise QemuError(f"QEMU did not connect its {what} socket within {self.options.start_timeout:.0f}s; "
                        f"stderr: {self.artifacts.qemu_stderr}; artifacts: {self.artifacts}")

    def _raise_if_exited(self, run: _Run) -> None:
        assert run.process is not None
        code = run.process.poll()
        if code is None:
            return
        run.stderr_file.flush()
        stderr = self.artifacts.qemu_stderr.read_text(errors="replace").strip()
        first = stderr.splitlines()[0] if stderr else "(no stderr)"
        raise QemuLaunchError(
            f"QEMU exited with code {code} during start-up: {first}; command line: {self.artifacts.command_line}; "
            f"artifacts: {self.artifacts}", code, self.command, stderr)

    def stop(self) -> None:
        """Stop QEMU for sure: QMP quit, then SIGTERM, then SIGKILL to its process group; release everything."""
        run = self._run
        if run is None:
            return
        try:
            process = run.process
            if process is not None and process.poll() is None:
                if run.qmp is not None:
                    try:
                        run.qmp.execute("quit", timeout=3.0)
                    except QemuError:
                        pass
                for sig, grace in ((None, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
                    if sig is not None:
                        try:
                            os.killpg(process.pid, sig)
                        except ProcessLookupError:
                            pass
                    try:
                        process.wait(grace)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        finally:
            if run.process is not None:
                if run.process.poll() is None:  # pragma: no cover - SIGKILL did not reap within 10 s
                    os.killpg(run.process.pid, signal.SIGKILL)
                    run.process.wait()
                with _LIVE_LOCK:
                    _LIVE_PIDS.discard(run.process.pid)
            if run.qmp is not None:
                run.qmp.close()
            for sock in [run.serial, *run.listeners]:
                if sock is not None:
                    sock.close()
            if run.stderr_file is not None:
                run.stderr_file.close()
            shutil.rmtree(run.run_dir, ignore_errors=True)
            self._run = None

    # -- control --------------------------------------------------------------------------------------------------

    def qmp(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 15.0) -> Any:
        """Execute a QMP command."""
        if self._run is None or self._run.qmp is None:
            raise QemuError(f"the machine is not running; artifacts: {self.artifacts}")
        try:
            return self._run.qmp.execute(command, arguments, timeout)
        except QemuError as error:
            raise QemuError(f"{error}; artifacts: {self.artifacts}") from None

    def hmp(self, command_line: str, timeout: float = 15.0) -> str:
        """Execute a human-monitor command through QMP and return its output."""
        return str(self.qmp("human-monitor-command", {"command-line": command_line}, timeout))

    def send_keys(self, combos: Sequence[str], pause: float = 0.3) -> None:
        """Press key combinations on the guest's keyboard (QMP send-key; "ret", "alt-f4", "ctrl-alt-delete")."""
        for combo in combos:
            keys = [{"type": "qcode", "data": name} for name in combo.split("-")]
            self.qmp("send-key", {"keys": keys})
            time.sleep(pause)

    def pause(self) -> None:
        """Freeze the guest's CPUs (QMP stop)."""
        self.qmp("stop")

    def resume(self) -> None:
        """Let the guest run again (QMP cont)."""
        self.qmp("cont")

    def screendump(self, target: Path | None = None, reason: str = "screen") -> Path:
        """Save the VGA screen as PNG (QEMU writes PPM; pillow converts it). Returns the PNG path."""
        png = target or self.artifacts.next_screendump(reason)
        if self._run is None:
            raise QemuError(f"the machine is not running; artifacts: {self.artifacts}")
        ppm = self._run.run_dir / "screendump.ppm"
        self.qmp("screendump", {"filename": str(ppm)})
        with Image.open(ppm) as picture:
            picture.save(png, format="PNG")
        ppm.unlink(missing_ok=True)
        return png

    def try_screendump(self, reason: str) -> Path | None:
        """Best-effort screendump for error reports: never raises, returns None if QEMU could not make one."""
        try:
            return self.screendump(reason=reason)
        except (HarnessError, OSError, ValueError):
            return None

    def add_host_forward(self, guest_port: int) -> int:
        """Forward a fresh 127.0.0.1 port to GUEST_ADDRESS:guest_port (slirp hostfwd); returns the host port.

        QEMU picks the host port (we ask for port 0) and only `info usernet` tells which it was.
        """
        before = {host for host, guest in self.host_forwards() if guest == guest_port}
        output = self.hmp(f"hostfwd_add {NETDEV_ID} tcp:127.0.0.1:0-{GUEST_ADDRESS}:{guest_port}")
        if output.strip():
            raise QemuError(f"hostfwd_add for guest port {guest_port} failed: {output.strip()}")
        new = {host for host, guest in self.host_forwards() if guest == guest_port} - before
        if len(new) != 1:
            raise QemuError(f"hostfwd for guest port {guest_port} not found in 'info usernet'")
        return new.pop()

    def remove_host_forward(self, host_port: int) -> None:
        """Remove a forward made by add_host_forward."""
        self.hmp(f"hostfwd_remove {NETDEV_ID} tcp:127.0.0.1:{host_port}")

    def host_forwards(self) -> list[tuple[int, int]]:
        """(host port, guest port) of every active host forward."""
        table = self.hmp("info usernet")
        return [(int(m.group(1)), int(m.group(2))) for m in re.finditer(
            r"HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+(\d+)\s", table)]

    def save_snapshot(self) -> Path | None:
        """Save the running guest as the cached snapshot for this image/profile/QEMU/command line.

        Pauses the guest so the overlay is quiescent while it is copied, then resumes. Returns the cached path,
        or None if snapshots are disabled for this run or it already came from the cache.
        """
        if not self.options.use_snapshot or self.loaded_snapshot or self.snapshot_key is None:
            return None
        cache = self.options.snapshot_cache or SnapshotCache.default()
        self.pause()
        try:
            output = self.hmp(f"savevm {SNAPSHOT_NAME}", timeout=120.0).strip()
            if output:
                raise QemuError(f"savevm failed: {output}; artifacts: {self.artifacts}")
            return cache.store(self.snapshot_key, self.overlay)
        finally:
            self.resume()

    def save_state(self, name: str) -> None:
        """Save the running guest's RAM and disk as internal snapshot `name` in this run's overlay only.

        Unlike save_snapshot this touches no cache: it is a point the same run can return to (revert_state), which
        is how the pytest plugin gives every test the same starting guest without rebooting.
        """
        output = self.hmp(f"savevm {name}", timeout=120.0).strip()
        if output:
            raise QemuError(f"savevm {name} failed: {output}; artifacts: {self.artifacts}")

    def revert_state(self, name: str) -> None:
        """Return the running guest to the state saved by save_state(name) (RAM, devices and disk)."""
        output = self.hmp(f"loadvm {name}", timeout=120.0).strip()
        if output:
            raise QemuError(f"loadvm {name} failed: {output}; artifacts: {self.artifacts}")
