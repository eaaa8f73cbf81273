"""The run's artifact directory: one place holding everything needed to understand a run after the fact.

Every part writes its evidence here under a fixed name (QEMU command line and stderr, serial transcript, FTP log,
screendumps), so an error message only has to name the directory, and CI can upload it whole.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness.core.errors import HarnessError


class ArtifactDir:
    """A directory for one run's artifacts, created on construction.

    Fixed file names: `qemu-cmdline.txt`, `qemu-stderr.log`, `serial.log`, `ftp.log`, `screendump-*.png`.
    """

    COMMAND_LINE = "qemu-cmdline.txt"
    QEMU_STDERR = "qemu-stderr.log"
    SERIAL_TRANSCRIPT = "serial.log"
    FTP_LOG = "ftp.log"

    def __init__(self, path: str | Path | None = None, prefix: str = "llama98-run-") -> None:
        """Use `path` (created if needed) or make a fresh directory under the system temp dir."""
        if path is None:
            self.path = Path(tempfile.mkdtemp(prefix=prefix))
        else:
            self.path = Path(path).resolve()
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise HarnessError(f"cannot create artifact directory {self.path}: {error.strerror}") from None
        self._screendumps = 0

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        """Path of an artifact file called `name` (not created)."""
        return self.path / name

    @property
    def command_line(self) -> Path:
        return self.path / self.COMMAND_LINE

    @property
    def qemu_stderr(self) -> Path:
        return self.path / self.QEMU_STDERR

    @property
    def serial_transcript(self) -> Path:
        return self.path / self.SERIAL_TRANSCRIPT

    @property
    def ftp_log(self) -> Path:
        return self.path / self.FTP_LOG

    def write_command_line(self, argv: Sequence[str]) -> Path:
        """Record a command line in a form that can be pasted back into a shell."""
        self.command_line.write_text(shlex.join(argv) + "\n", encoding="utf-8")
        return self.command_line

    def next_screendump(self, reason: str) -> Path:
        """A fresh PNG path for a screendump taken for `reason` (e.g. "timeout")."""
        self._screendumps += 1
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in reason)[:40]
        stamp = time.strftime("%H%M%S")
        return self.path / f"screendump-{self._screendumps:02d}-{stamp}-{safe}.png"
