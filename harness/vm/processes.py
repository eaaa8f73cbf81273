"""Every QEMU process the harness starts: how it is found, launched so that it cannot outlive us, and counted.

Why: a leaked QEMU keeps a CPU busy and a disk overlay open long after a failing test. So each QEMU runs in its
own session (Ctrl-C reaches only us, and we decide how it stops), gets PR_SET_PDEATHSIG=SIGKILL (a SIGKILLed
pytest cannot leave it behind), and is registered in a process-wide table until it is reaped; an atexit hook
kills whatever is still registered.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from harness.core.errors import HarnessError
from harness.core.proc import ToolError, require, run

QEMU_SYSTEM = "qemu-system-i386"
QEMU_IMG = "qemu-img"
QEMU_INSTALL_HINT = "apt-get install qemu-system-x86 qemu-utils"


class QemuError(HarnessError):
    """QEMU is missing, refused to start, or stopped answering."""


class QemuLaunchError(QemuError):
    """QEMU exited during start-up. Carries its exit code, command line and stderr for the caller to inspect."""

    def __init__(self, message: str, exit_code: int | None, command: Sequence[str], stderr: str,
                 artifacts: object | None = None) -> None:
        super().__init__(message, artifacts=artifacts)
        self.returncode = exit_code
        self.command = list(command)
        self.stderr = stderr


_LIVE_PIDS: set[int] = set()
_LIVE_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1


def live_qemu_pids() -> set[int]:
    """PIDs of QEMU processes started by this Python process and not yet reaped (the session-end check)."""
    with _LIVE_LOCK:
        return set(_LIVE_PIDS)


def register(pid: int) -> None:
    """Count a QEMU we just launched."""
    with _LIVE_LOCK:
        _LIVE_PIDS.add(pid)


def unregister(pid: int) -> None:
    """Forget a QEMU that has been reaped."""
    with _LIVE_LOCK:
        _LIVE_PIDS.discard(pid)


def kill_leftovers(keep: frozenset[int] = frozenset()) -> set[int]:
    """SIGKILL every QEMU still registered except those in `keep` (last line of defence); returns the pids killed.

    `keep` lets a caller that did not start everything in this process (a pytest session run inside another one,
    as pytester does) stop only what it started itself."""
    leftovers = live_qemu_pids() - keep
    for pid in leftovers:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    return leftovers


atexit.register(kill_leftovers)


def _load_prctl() -> Any:
    """libc's prctl, resolved once in the parent: the forked child must not dlopen (loader locks + threads)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGKILL QEMU when the thread that started it dies (Linux only).

    Note the kernel ties this to the *thread* that forked: start Machines from a thread that outlives them.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def find_tool(name: str) -> str:
    """Absolute path of a QEMU tool on PATH, or a one-line error saying how to get it."""
    try:
        return require(name, QEMU_INSTALL_HINT, QemuError)
    except QemuError as error:
        raise QemuError(f"QEMU is not installed: {error.message}") from None


def qemu_version(binary: str) -> str:
    """First line of `qemu-system-i386 --version` (part of the snapshot key: savevm state is version-specific)."""
    try:
        result = run([binary, "--version"], what=f"{binary} --version", timeout=30, error=QemuError)
    except ToolError as error:  # pragma: no cover - run raises QemuError as asked
        raise QemuError(error.message) from None
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise QemuError(f"{binary} --version printed nothing")
    return lines[0]
