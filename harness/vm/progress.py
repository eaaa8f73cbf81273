"""Progress of one large transfer into the guest, read from the FTP server's bytes-sent counter.

Why: injecting a 440 MB or multi-gigabyte model takes minutes at emulated-NIC speeds, and a silent harness looks
hung. The guest's client gives no progress over the serial console, but the host's FTP server knows every byte
it has sent, so a thread samples that counter while the guest's client runs. On a terminal it redraws one live
line (bytes, MB/s, ETA) on stderr; anywhere else (CI logs, pytest) it logs a plain line every `interval` seconds,
so a log file never fills with carriage returns.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

log = logging.getLogger(__name__)

LARGE_FILE_BYTES = 32 * 1024 * 1024  # smaller files take seconds: no progress shown
TERMINAL_INTERVAL = 0.5  # s between redraws of the live line
LOG_INTERVAL = 10.0  # s between plain log lines
MB = 1e6


def format_progress(name: str, done: int, total: int, seconds: float) -> str:
    """`MODEL.BIN: 123.4 / 440.0 MB (28%), 12.3 MB/s, ETA 0:26` (ETA unknown until bytes have moved)."""
    rate = done / seconds if seconds > 0 else 0.0
    percent = 100.0 * done / total if total else 100.0
    if rate > 0 and total >= done:
        left = int((total - done) / rate + 0.5)
        eta = f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}" if left >= 3600 \
            else f"ETA {left // 60}:{left % 60:02d}"
    else:
        eta = "ETA --:--"
    return f"{name}: {done / MB:.1f} / {total / MB:.1f} MB ({percent:.0f}%), {rate / MB:.1f} MB/s, {eta}"


class TransferProgress:
    """Report a transfer while it runs, from `read_bytes()` (bytes sent so far, or None before it started).

    A context manager: the sampling thread starts on enter and is stopped (with a final line) on exit. Files
    below `min_bytes` report nothing. `terminal` defaults to whether `stream` is a TTY.
    """

    def __init__(self, name: str, total: int, read_bytes: Callable[[], int | None], *,
                 stream: TextIO | None = None, terminal: bool | None = None, interval: float | None = None,
                 min_bytes: int = LARGE_FILE_BYTES) -> None:
        self.name = name
        self.total = total
        self.read_bytes = read_bytes
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.interval = interval or (TERMINAL_INTERVAL if self.terminal else LOG_INTERVAL)
        self.enabled = total >= min_bytes
        self.lines: list[str] = []  # every line reported (what a test or a caller can inspect)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._last: int | None = None  # the last count read (the counter is gone once the transfer ends)

    def __enter__(self) -> TransferProgress:
        if self.enabled:
            self._start = time.monotonic()
            self._thread = threading.Thread(target=self._sample, name=f"progress-{self.name}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5.0)
        self._thread = None
        self._report(final=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._report(final=False)

    def _report(self, final: bool) -> None:
        count = self.read_bytes()
        if count is not None:
            self._last = count
        if self._last is None and final:
            return  # the transfer never started: nothing to report
        done = self._last or 0
        line = format_progress(self.name, done, self.total, time.monotonic() - self._start)
        self.lines.append(line)
        if self.terminal:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
            self.stream.flush()
        else:
            log.info(line)
