"""Guest: the verbs a run needs (wait_ready, fetch, checksum, run, shutdown), driven entirely by the profile.

The Guest composes a running Machine, a Console on its serial port and a FileServer; it knows nothing about any
particular guest beyond the profile, so tiny686 (busybox shell) and win98 (agent98) share this code. Every file
fetched is verified by a checksum computed inside the guest, and a binary sent in ASCII mode is named as such.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.vm.console import CommandResult, Console, ConsoleError, ConsoleTimeout
from harness.vm.ftp import FileServer, ServedFile, ascii_mangled_digests
from harness.vm.machine import Machine, MachineOptions
from harness.vm.processes import QemuError
from harness.vm.profile import GuestProfile
from harness.vm.progress import LARGE_FILE_BYTES, TransferProgress

MIN_TRANSFER_RATE = 256 * 1024  # bytes/s assumed when sizing a fetch timeout (generous: targets are 25 MB/s)
MIN_CHECKSUM_RATE = 256 * 1024  # bytes/s assumed when sizing a checksum timeout
# The Session passes timeouts sized from measured speeds instead (harness/run/timeouts.py).


class GuestError(HarnessError):
    """A guest operation failed (bad exit code, unexpected output)."""


class TransferError(GuestError):
    """A fetched file did not arrive intact (corrupted, truncated, or sent in ASCII mode)."""


class GuestMemoryError(GuestError):
    """A file meant to be loaded into RAM cannot fit the guest's memory."""


@dataclass(frozen=True)
class ReadyInfo:
    """How the guest became ready: seconds from QEMU's launch, and whether it resumed from a cached snapshot."""

    seconds: float
    from_snapshot: bool
    snapshot_saved: Path | None
    snapshot_seconds: float = 0.0  # time spent in savevm + caching the overlay (cold boots only)


@dataclass(frozen=True)
class FetchResult:
    """A verified transfer into the guest."""

    guest_path: str
    size: int
    digest: str
    mode: str
    seconds: float  # the guest's FTP client command alone (what MB/s is computed from)
    total_seconds: float  # including client set-up (script writing) and the checksum in the guest
    verified: bool = True
    checksum_seconds: float = 0.0  # the guest's checksum command alone

    @property
    def megabytes_per_second(self) -> float:
        return self.size / (1024 * 1024) / self.seconds if self.seconds > 0 else float("inf")


class Guest:
    """Profile-driven guest verbs on top of a started Machine and FileServer. Close it (or use `with`)."""

    def __init__(self, machine: Machine, file_server: FileServer, artifacts: ArtifactDir) -> None:
        self.machine = machine
        self.profile: GuestProfile = machine.profile
        self.file_server = file_server
        self.artifacts = artifacts
        self.console = Console(machine.serial_socket, self.profile.console, artifacts.serial_transcript,
                               screendump=machine.try_screendump, artifacts=artifacts.path)
        self._started = machine.started_at or time.monotonic()
        self.ready: ReadyInfo | None = None  # set by open_guest
        # Progress of large fetches (harness/vm/progress.py): size threshold and seconds between reports
        # (None: the module's defaults, a live line on a terminal, a log line every 10 s elsewhere).
        self.progress_min_bytes = LARGE_FILE_BYTES
        self.progress_interval: float | None = None
        self.last_progress: list[str] = []  # the progress lines of the last fetch

    def close(self) -> None:
        """Release the console (the Machine and FileServer are closed by their owner)."""
        self.console.close()

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- readiness ------------------------------------------------------------------------------------------------

    def wait_ready(self, timeout: float | None = None) -> ReadyInfo:
        """Wait until the guest answers commands.

        Cold boot: wait for the banner and prompt, run the profile's setup commands, then save the snapshot (unless
        disabled). From a snapshot: just sync the console. Either way the guest clock is then set from the host
        (a loaded snapshot's clock is stuck at the time it was saved).
        """
        saved = None
        snapshot_seconds = 0.0
        if self.machine.loaded_snapshot:
            self.console.sync(timeout or 30.0)
        else:
            self._wait_for_banner(timeout)
            self.console.setup()
            before_save = time.monotonic()
            try:
                saved = self.machine.save_snapshot()
            except (QemuError, OSError) as error:
                # The snapshot only saves later runs a boot; failing to cache it (disk full...) must not fail this
                # run. The reason is kept with the artifacts.
                (self.artifacts.path / "snapshot-not-saved.txt").write_text(f"{error}\n", encoding="utf-8")
                saved = None
            snapshot_seconds = time.monotonic() - before_save if saved else 0.0
        self.set_clock()
        return ReadyInfo(time.monotonic() - self._started, self.machine.loaded_snapshot, saved, snapshot_seconds)

    def _wait_for_banner(self, timeout: float | None) -> None:
        """Wait for the banner; with the profile's logon keys, press them once if it is late, then keep waiting."""
        spec = self.profile.console
        limit = timeout if timeout is not None else spec.boot_timeout
        if not spec.logon_keys or spec.logon_keys_after >= limit:
            self.console.wait_for_banner(limit)
            return
        start = time.monotonic()
        try:
            self.console.wait_for_banner(spec.logon_keys_after)
            return
        except ConsoleTimeout:
            pass  # its screendump shows what was on the screen before the keys
        self.machine.send_keys(spec.logon_keys)
        self.console.wait_for_banner(max(limit - (time.monotonic() - start), 1.0))

    def set_clock(self, epoch: int | None = None) -> None:
        """Set the guest's clock to the host's (UTC seconds)."""
        stamp = int(time.time()) if epoch is None else epoch
        self.run_checked(self.profile.console.clock_command.replace("{epoch}", str(stamp)), timeout=20)

    # -- commands -------------------------------------------------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run a command line in the guest; returns (output, exit_code) as a CommandResult."""
        return self.console.run(command, timeout)

    def run_checked(self, command: str, timeout: float) -> CommandResult:
        """Run a command and raise GuestError naming it if its exit code is not 0."""
        result = self.console.run(command, timeout)
        if result.exit_code != 0:
            last = (result.output.strip().splitlines() or ["no output"])[-1]
            raise GuestError(f"guest command {command!r} exited with code {result.exit_code}: {last}",
                             transcript=self.console.transcript, artifacts=self.artifacts)
        return result

    def guest_path(self, name: str) -> str:
        """Where `name` lives in the guest's work directory."""
        return self.profile.files.guest_path(name)

    def checksum(self, guest_path: str, timeout: float = 120.0) -> str:
        """Digest of a guest file computed by the guest itself (profile's checksum command), lower-case hex."""
        spec = self.profile.files.checksum
        result = self.run_checked(spec.command.replace("{path}", guest_path), timeout)
        match = re.search(spec.pattern, result.output, re.MULTILINE)
        if match is None:
            raise GuestError(f"could not read a {spec.algorithm} digest for {guest_path} from the guest's output "
                             f"{result.output.strip()[:120]!r}", artifacts=self.artifacts)
        return match.group("digest").lower()

    # -- files ----------------------------------------------------------------------------------------------------

    def check_fits_in_memory(self, host_file: str | Path) -> None:
        """Refuse, before any transfer, a file the guest could not hold in RAM (instead of an OOM hang later)."""
        size = Path(host_file).stat().st_size
        mib = 1024 * 1024
        usable = (self.machine.memory_mb - self.profile.machine.os_reserved_mb) * mib
        if size > usable:
            raise GuestMemoryError(
                f"{Path(host_file).name} is {size / mib:.1f} MiB but guest {self.profile.name} has "
                f"{self.machine.memory_mb} MiB RAM of which about {usable / mib:.0f} MiB is free for a "
                f"model; use a smaller model or raise machine.memory_mb", artifacts=self.artifacts)

    def fetch(self, host_file: str | Path, guest_name: str, mode: str | None = None,
              transfer_type: str = "binary", must_fit_in_memory: bool = False, timeout: float | None = None,
              checksum_timeout: float | None = None) -> FetchResult:
        """Make the guest download `host_file` as `guest_name` in its work dir, then verify it by checksum.

        `mode` is "passive" or "active" (default: the profile's). `transfer_type="ascii"` exists to prove that a
        wrong-mode transfer is caught: it always ends in TransferError. Returns a FetchResult (verified=True).
        `timeout` and `checksum_timeout` default to the file's size at the floor rates above.
        """
        if must_fit_in_memory:
            self.check_fits_in_memory(host_file)
        chosen = mode or self.profile.ftp.default_mode
        if chosen not in ("passive", "active"):
            raise GuestError(f"unknown FTP mode {chosen!r} (passive or active)")
        if not self.profile.ftp.supports(chosen):
            raise GuestError(f"guest {self.profile.name} has no {chosen}-mode FTP client")
        if chosen == "passive" and transfer_type != "binary":
            raise GuestError("the passive-mode client of this guest only does binary transfers")
        served = self.file_server.add_file(host_file, guest_name)
        guest_path = self.guest_path(guest_name)
        timeout = timeout or 60.0 + served.size / MIN_TRANSFER_RATE
        checksum_timeout = checksum_timeout or 30.0 + served.size / MIN_CHECKSUM_RATE
        if self.profile.console.kind == "posix-shell":
            self.run(f"rm -f {guest_path}", 20)  # a stale copy must not pass verification
        transfers_before = len(self.file_server.transfers_of(served.name))
        start = time.monotonic()
        progress = TransferProgress(served.name, served.size,
                                    lambda: self.file_server.bytes_sent(served.name, transfers_before),
                                    interval=self.progress_interval, min_bytes=self.progress_min_bytes)
        if chosen == "passive":
            result = self._fetch_passive(served, guest_path, timeout, progress)
        else:
            result = self._fetch_active(served, guest_path, transfer_type, timeout, progress)
        self.last_progress = progress.lines
        before_checksum = time.monotonic()
        digest = self._verify(served, guest_path, result, transfers_before, checksum_timeout)
        now = time.monotonic()
        return FetchResult(guest_path, served.size, digest, chosen, result.seconds, now - start,
                           checksum_seconds=now - before_checksum)

    def _substitutions(self, served: ServedFile, guest_path: str) -> dict[str, str]:
        return {"user": self.file_server.user, "password": self.file_server.password,
                "port": str(self.file_server.port), "host": self.file_server.guest_host,
                "source": served.name, "dest": guest_path}

    @staticmethod
    def _fill(template: str, values: dict[str, str]) -> str:
        for key, value in values.items():
            template = template.replace("{" + key + "}", value)
        return template

    def _fetch_passive(self, served: ServedFile, guest_path: str, timeout: float,
                       progress: TransferProgress) -> CommandResult:
        assert self.profile.ftp.passive_command is not None
        command = self._fill(self.profile.ftp.passive_command, self._substitutions(served, guest_path))
        with progress:
            return self.run(command, timeout)

    def _fetch_active(self, served: ServedFile, guest_path: str, transfer_type: str,
                      timeout: float, progress: TransferProgress) -> CommandResult:
        spec = self.profile.ftp.active
        assert spec is not None
        values = self._substitutions(served, guest_path)
        values["transfer_type"] = self.profile.ftp.binary_word if transfer_type == "binary" \
            else self.profile.ftp.ascii_word
        script = spec.script_path
        self.run(self._fill(spec.reset_script, {"script": script}), 20)
        for template in spec.script:
            line = self._fill(template, values)
            self.run_checked(self._fill(spec.write_line, {"script": script, "line": line}), 20)
        with progress:
            result = self.run(self._fill(spec.command, {"script": script}), timeout)
        self.run(self._fill(spec.reset_script, {"script": script}), 20)  # the script holds the password
        return result

    def _verify(self, served: ServedFile, guest_path: str, client: CommandResult, transfers_before: int,
                checksum_timeout: float) -> str:
        """Prove the fetch: a new, complete binary transfer of this file (the clients' exit codes mean nothing:
        inetutils ftp and Windows' ftp.exe exit 0 on failure), then the guest's checksum equal to the host's."""
        algorithm = self.profile.files.checksum.algorithm
        records = self.file_server.transfers_of(served.name)[transfers_before:]  # only this fetch's
        where = f"ftp log: {self.artifacts.ftp_log}"
        if records and records[-1].transfer_type == "ascii":
            raise TransferError(f"{served.name} was sent in ASCII mode (TYPE A), which rewrites line ends in a "
                                f"binary file; it must be fetched in binary mode (TYPE I); {where}",
                                artifacts=self.artifacts)
        if client.exit_code != 0 or not records or not records[-1].complete:
            last = (client.output.strip().splitlines() or ["no output"])[-1]
            raise TransferError(f"FTP fetch of {served.name} into {guest_path} failed (client exit code "
                                f"{client.exit_code}: {last}); {where}", artifacts=self.artifacts)
        try:
            guest_digest = self.checksum(guest_path, checksum_timeout)
        except GuestError as error:
            raise TransferError(f"{served.name} did not arrive at {guest_path}: {error.message}",
                                transcript=error.transcript, artifacts=self.artifacts) from None
        expected = served.digest(algorithm)
        if guest_digest == expected:
            return guest_digest
        if guest_digest in ascii_mangled_digests(served.path, algorithm):
            raise TransferError(f"{served.name} arrived with its line ends rewritten: it was transferred in ASCII "
                                f"mode; it must be fetched in binary mode; {where}", artifacts=self.artifacts)
        raise TransferError(f"{served.name} arrived corrupted: guest {algorithm} {guest_digest} != host {expected}; "
                            f"{where}", artifacts=self.artifacts)

    # -- the end --------------------------------------------------------------------------------------------------

    def shutdown(self, timeout: float = 20.0) -> bool:
        """Ask the guest to power off; returns True if QEMU exited by itself in time (the Machine is stopped by
        its owner either way)."""
        try:
            self.console.send_line(self.profile.console.shutdown_command)
        except ConsoleError:
            return not self.machine.is_running()
        return self.machine.wait_exit(timeout) is not None


@contextmanager
def open_guest(profile: GuestProfile, image: str | Path, artifacts: ArtifactDir,
               options: MachineOptions | None = None, ftp_port: int = 0,
               ready_timeout: float | None = None) -> Iterator[Guest]:
    """Boot (or resume) a guest and yield it ready: Machine + FileServer (bridged for active mode) + Guest.

    Everything is torn down on exit, including on errors and Ctrl-C: the Guest's console, the FTP server, QEMU.
    The ReadyInfo of the boot is available as `guest.ready`.
    """
    with Machine(profile, image, artifacts, options) as machine, \
            FileServer(artifacts, bridge=machine, port=ftp_port) as server, \
            Guest(machine, server, artifacts) as guest:
        guest.ready = guest.wait_ready(ready_timeout)
        yield guest
