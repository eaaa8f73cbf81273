"""Machine: one QEMU process for one guest run, on a throw-away qcow2 overlay, controlled over QMP.

Why it is built this way:
- The user's image is never opened for writing (harness/vm/disk.py): QEMU only sees a qcow2 overlay in the
  run's private temp dir whose backing file is the image.
- QEMU connects *to us* for QMP and the serial port (we listen on unix sockets in a 0700 dir), so no early serial
  output is lost and there is no connect-retry loop; a QEMU that dies during start-up is noticed at once.
- Every QEMU is launched through harness/vm/processes.py (own session, PDEATHSIG, live table) and stopped in
  `finally`: QMP quit, then SIGTERM, then SIGKILL to its process group.
- Snapshots (harness/vm/snapshots.py): after the first cold boot reaches readiness the Guest asks for
  `save_snapshot()`; later runs copy the cached overlay and start with `-loadvm`, skipping the boot.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from PIL import Image

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.core.lifecycle import StartStop
from harness.vm.disk import DiskImage, create_overlay, rebase_overlay
from harness.vm.network import GUEST_ADDRESS, NETDEV_ID
from harness.vm.processes import (
    QEMU_SYSTEM,
    QemuError,
    QemuLaunchError,
    die_with_parent,
    find_tool,
    qemu_version,
    register,
    unregister,
)
from harness.vm.profile import GuestProfile
from harness.vm.qmp import QmpLink
from harness.vm.snapshots import SNAPSHOT_NAME, SnapshotCache

# NIC names in profiles -> QEMU device models.
NIC_DEVICES = {"e1000": "e1000", "pcnet": "pcnet", "rtl8139": "rtl8139", "ne2k_pci": "ne2k_pci"}


@dataclass
class MachineOptions:
    """Per-run choices on top of the profile."""

    accel: str = "tcg"  # "kvm" only when asked: the pentium2 model does not work under KVM here
    icount_shift: int | None = None  # deterministic mode: -icount shift=N,sleep=off
    use_snapshot: bool = True  # False forces a cold boot and never saves a snapshot
    memory_mb: int | None = None  # override the profile's RAM
    extra_args: tuple[str, ...] = ()
    # More qcow2 disks (IDE index 1, 2...), e.g. tiny686's work disk. A snapshot cannot be loaded into a machine
    # with a disk it was not saved with, so a machine with extra disks always cold-boots and saves none.
    extra_disks: tuple[Path, ...] = ()
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
    stderr_file: IO[bytes] | None = None
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
            raise QemuError("the machine is not running", artifacts=self.artifacts)
        return self._run.serial

    @property
    def overlay(self) -> Path:
        if self._run is None:
            raise QemuError("the machine was never started")
        return self._run.overlay

    @property
    def snapshots_enabled(self) -> bool:
        """Whether this run may load and save the cached snapshot (never with extra disks)."""
        return self.options.use_snapshot and not self.options.extra_disks

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
        try:
            self._qemu_binary = find_tool(QEMU_SYSTEM)
            self.image = DiskImage.probe(self.image_arg)
            self.image.require_bootable()
        except HarnessError as error:
            raise error.with_evidence(artifacts=self.artifacts) from None
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
        if self.snapshots_enabled:
            version = qemu_version(self._qemu_binary)
            self.snapshot_key = SnapshotCache.key(self.image.sha256(), self.profile, version, device_args)
            cached = cache.lookup(self.snapshot_key) if allow_snapshot else None
        try:
            if cached is not None:
                shutil.copyfile(cached, run.overlay)
                rebase_overlay(run.overlay, self.image)
                self.loaded_snapshot = True
            else:
                create_overlay(self.image, run.overlay)
        except HarnessError as error:
            raise error.with_evidence(artifacts=self.artifacts) from None
        self.command = [self._qemu_binary, "-name", f"llama98-{self.profile.name}"] + device_args + [
            # cache=unsafe: the overlay is thrown away after the run, so host fsyncs buy nothing (savevm still
            # writes qcow2 metadata out to the OS before we copy the file).
            "-drive", f"file={run.overlay},format=qcow2,if=ide,index=0,media=disk,cache=unsafe",
            *[part for index, disk in enumerate(self.options.extra_disks, start=1) for part in (
                "-drive", f"file={disk},format=qcow2,if=ide,index={index},media=disk,cache=unsafe")],
            "-chardev", f"socket,id=serial0,path={run.serial_socket_path}",
            "-serial", "chardev:serial0",
            "-qmp", f"unix:{run.qmp_socket_path}",
        ]
        if self.loaded_snapshot:
            self.command += ["-loadvm", SNAPSHOT_NAME]
        self.artifacts.write_command_line(self.command)
        self._launch(run)

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
                                       preexec_fn=die_with_parent)
        register(run.process.pid)
        run.serial = self._accept(run, serial_listener, "serial port")
        qmp_socket = self._accept(run, qmp_listener, "QMP")
        run.qmp = QmpLink(f"qemu-{run.process.pid}")
        try:
            run.qmp.connect(qmp_socket, timeout=self.options.start_timeout)
        except Exception as error:  # noqa: BLE001 - any failure of the handshake; Ctrl-C stays Ctrl-C
            # A QEMU that refuses its command line (e.g. a -loadvm snapshot that is not there) closes QMP as it
            # exits: give it a moment to be reaped, so that start() sees a QemuLaunchError and can fall back.
            try:
                run.process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass
            self._raise_if_exited(run)
            raise QemuError(f"QMP negotiation with QEMU failed: {error}", artifacts=self.artifacts) from None

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
                        f"stderr: {self.artifacts.qemu_stderr}", artifacts=self.artifacts)

    def _raise_if_exited(self, run: _Run) -> None:
        assert run.process is not None
        code = run.process.poll()
        if code is None:
            return
        if run.stderr_file is not None:
            run.stderr_file.flush()
        stderr = self.artifacts.qemu_stderr.read_text(errors="replace").strip()
        first = stderr.splitlines()[0] if stderr else "(no stderr)"
        raise QemuLaunchError(
            f"QEMU exited with code {code} during start-up: {first}; command line: {self.artifacts.command_line}",
            code, self.command, stderr, artifacts=self.artifacts)

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
                unregister(run.process.pid)
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
            raise QemuError("the machine is not running", artifacts=self.artifacts)
        try:
            return self._run.qmp.execute(command, arguments, timeout)
        except QemuError as error:
            raise error.with_evidence(artifacts=self.artifacts) from None

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
            raise QemuError("the machine is not running", artifacts=self.artifacts)
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
        if not self.snapshots_enabled or self.loaded_snapshot or self.snapshot_key is None:
            return None
        cache = self.options.snapshot_cache or SnapshotCache.default()
        self.pause()
        try:
            output = self.hmp(f"savevm {SNAPSHOT_NAME}", timeout=120.0).strip()
            if output:
                raise QemuError(f"savevm failed: {output}", artifacts=self.artifacts)
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
            raise QemuError(f"savevm {name} failed: {output}", artifacts=self.artifacts)

    def revert_state(self, name: str) -> None:
        """Return the running guest to the state saved by save_state(name) (RAM, devices and disk)."""
        output = self.hmp(f"loadvm {name}", timeout=120.0).strip()
        if output:
            raise QemuError(f"loadvm {name} failed: {output}", artifacts=self.artifacts)
