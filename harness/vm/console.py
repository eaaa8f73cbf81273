"""Console: the guest's serial port driven with pexpect, one sentinel-framed command at a time.

Why sentinels: a serial line has no notion of "command finished" or "exit code". Each command is wrapped by the
profile's `command_template` so that, when it ends, the guest prints a marker carrying a fresh random id and the
exit code. The template builds the marker from two quoted pieces (`"@@END""-id-$?@@"`), so the guest echoing our
command line back can never match the sentinel pattern; only the real end of the command does.

Serial output is messy (`\\r\\r\\n` line ends, `ESC[6n` cursor queries from busybox ash); `run` returns clean text
while the raw bytes go to the transcript in the artifact directory. Every wait has a timeout whose error names what
was awaited, the transcript and a screendump taken at that moment.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import pexpect
import pexpect.fdpexpect

from harness.core.errors import HarnessError
from harness.vm.profile import ConsoleSpec

# CSI sequences (ESC [ ... final byte), other two-byte ESC sequences, and stray BEL.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|\x07")


class ConsoleError(HarnessError):
    """The serial console failed (closed, or something unexpected arrived)."""


class ConsoleTimeout(ConsoleError):
    """Nothing matching what we waited for arrived in time. The message names it, the transcript and a PNG."""

    def __init__(self, message: str, waited_for: str, transcript: Path, screendump: Path | None,
                 artifacts: object | None = None) -> None:
        super().__init__(message, transcript=transcript, screendump=screendump, artifacts=artifacts)
        self.waited_for = waited_for


@dataclass(frozen=True)
class CommandResult:
    """What one guest command produced: its cleaned output and its exit code."""

    command: str
    output: str
    exit_code: int
    seconds: float


def clean_output(text: str) -> str:
    """Normalise serial text: `\\r\\r\\n` and `\\r\\n` to `\\n`, drop stray `\\r` and terminal escape sequences."""
    text = _ESCAPES.sub("", text)
    text = text.replace("\r\r\n", "\n").replace("\r\n", "\n")
    return text.replace("\r", "")


class SerialEnd(Protocol):
    """What the Console reads and writes: anything with a file descriptor (QEMU's serial socket, a pty master)."""

    def fileno(self) -> int: ...


class Console:
    """Sentinel-framed command execution over a connected serial socket (or a pty master, as in the Wine lane).

    `screendump` is called (with a reason) when a wait times out; it should return a PNG path or None. The
    transcript file receives every byte read from the guest, decoded with the profile's encoding, and every line
    sent to it.
    """

    def __init__(self, serial: SerialEnd, spec: ConsoleSpec, transcript: Path,
                 screendump: Callable[[str], Path | None] | None = None, artifacts: str | Path | None = None) -> None:
        self.spec = spec
        self.transcript = transcript
        self.artifacts = str(artifacts) if artifacts is not None else str(transcript.parent)
        self._screendump = screendump
        self._log: IO[str] = transcript.open("a", encoding="utf-8", errors="backslashreplace", newline="")
        # pexpect closes the fd it is given; give it a duplicate so the Machine's socket stays its own.
        self._fd = os.dup(serial.fileno())
        self._child = pexpect.fdpexpect.fdspawn(self._fd, encoding=spec.encoding, codec_errors="surrogateescape",
                                                maxread=65536, use_poll=True)
        self._child.logfile_read = self._log
        # What we send goes in too (like a terminal's local echo): the guest runs with echo off, and a transcript
        # without the commands would not explain itself.
        self._child.logfile_send = self._log

    def close(self) -> None:
        """Release the duplicate descriptor and the transcript (the socket itself belongs to the Machine)."""
        try:
            if self._child.isalive():
                self._child.close()
        except (OSError, pexpect.ExceptionPexpect):
            pass
        self._log.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- low level --------------------------------------------------------------------------------------------------

    def send_line(self, text: str) -> None:
        """Send one line with the profile's line ending."""
        try:
            self._child.send(text + self.spec.newline)
        except OSError as error:
            raise ConsoleError(f"serial console closed (QEMU exited?) while sending {text[:60]!r}: "
                               f"{error.strerror}", transcript=self.transcript, artifacts=self.artifacts) from None

    def expect(self, pattern: str | re.Pattern[str], timeout: float, what: str) -> re.Match[str]:
        """Wait for `pattern`; raise ConsoleTimeout naming `what` (with transcript and screendump) if it never comes."""
        try:
            self._child.expect([pattern], timeout=timeout)
        except pexpect.TIMEOUT:
            self._log.flush()
            png = self._screendump(f"timeout {what}") if self._screendump else None
            raise ConsoleTimeout(f"timed out after {timeout:g}s waiting for {what}", what, self.transcript, png,
                                 self.artifacts) from None
        except pexpect.EOF:
            self._log.flush()
            raise ConsoleError(f"serial console closed (QEMU exited?) while waiting for {what}",
                               transcript=self.transcript, artifacts=self.artifacts) from None
        match = self._child.match
        assert isinstance(match, re.Match)
        return match

    def drain(self, quiet: float = 0.3, limit: float = 5.0) -> str:
        """Read and return whatever arrives until the line is quiet for `quiet` seconds (used before syncing),
        for at most `limit` seconds: a guest that never stops printing must not hang the harness here."""
        chunks = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                chunks.append(self._child.read_nonblocking(65536, timeout=quiet))
            except pexpect.TIMEOUT:
                return "".join(chunks)
            except pexpect.EOF:
                return "".join(chunks)
        return "".join(chunks)

    # -- readiness ----------------------------------------------------------------------------------------------

    def wait_for_banner(self, timeout: float | None = None) -> float:
        """Wait for the profile's ready banner (cold boot); returns the seconds it took."""
        start = time.monotonic()
        limit = timeout if timeout is not None else self.spec.boot_timeout
        self.expect(re.escape(self.spec.ready_banner), limit, f"the guest's ready banner {self.spec.ready_banner!r}")
        if self.spec.prompt:
            self.expect(re.escape(self.spec.prompt), limit, f"the guest's prompt {self.spec.prompt!r}")
        return time.monotonic() - start

    def setup(self, timeout: float = 20.0) -> None:
        """Run the profile's setup commands (e.g. `stty -echo`) once, then prove the console answers."""
        for command in self.spec.setup_commands:
            self.send_line(command)
            if self.spec.prompt:
                self.expect(re.escape(self.spec.prompt), timeout, f"the prompt after setup command {command!r}")
        self.sync(timeout)

    def sync(self, timeout: float = 20.0) -> None:
        """Drop stale output and run a no-op command so the next read starts clean (also after -loadvm)."""
        # Take only what has already arrived, without waiting for a quiet line: the command's fresh sentinel is what
        # makes the next read start clean (anything older is consumed before it), and a 0.2 s wait for quiet here
        # was spent on every snapshot resume and every revert, before the first FTP connection could start.
        self.drain(quiet=0.0)
        result = self.run("echo sync", timeout=timeout)
        if result.exit_code != 0:
            raise ConsoleError(f"console sync command failed with exit code {result.exit_code}",
                               transcript=self.transcript, artifacts=self.artifacts)

    # -- commands -----------------------------------------------------------------------------------------------

    def run(self, command: str, timeout: float) -> CommandResult:
        """Run one command in the guest; return its cleaned output and exit code.

        Raises ConsoleTimeout if the sentinel does not arrive within `timeout` seconds.
        """
        if "\n" in command or "\r" in command:
            raise ConsoleError(f"guest commands must be one line: {command!r}")
        command_id = secrets.token_hex(5)
        line = self.spec.command_template.replace("{id}", command_id).replace("{command}", command)
        sentinel = re.compile(self.spec.sentinel_pattern.replace("{id}", command_id))
        start = time.monotonic()
        self.send_line(line)
        match = self.expect(sentinel, timeout, f"the end of guest command {command!r}")
        seconds = time.monotonic() - start
        raw_output = self._child.before or ""
        if self.spec.prompt:
            try:
                self._child.expect([re.escape(self.spec.prompt)], timeout=10)
            except (pexpect.TIMEOUT, pexpect.EOF):
                pass
        return CommandResult(command, self._strip_framing(raw_output, line), int(match.group("code")), seconds)

    def _strip_framing(self, raw: str, sent_line: str) -> str:
        """Remove the echo of our own line (if the guest echoes) and the newline before the sentinel."""
        text = clean_output(raw)
        if text.startswith(sent_line):
            text = text[len(sent_line):]
            text = text[1:] if text.startswith("\n") else text
        return text[:-1] if text.endswith("\n") else text
