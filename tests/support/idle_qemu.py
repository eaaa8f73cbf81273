"""An idle QEMU started the way the Machine starts one (its own session, PR_SET_PDEATHSIG), for tests of the
process bookkeeping: cheap (`-machine none -S`), and always killed and reaped afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.vm.processes import QEMU_SYSTEM, die_with_parent, register, unregister

IDLE_QEMU = [QEMU_SYSTEM, "-machine", "none", "-S", "-nodefaults", "-display", "none", "-monitor", "none",
             "-serial", "none"]


@contextmanager
def idle_qemu_process(registered: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """An idle QEMU (counted in the live table when `registered`), killed and reaped on exit."""
    process = subprocess.Popen(IDLE_QEMU, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
    if registered:
        register(process.pid)
    try:
        yield process
    finally:
        unregister(process.pid)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def process_gone(pid: int, within: float = 10.0) -> bool:
    """Whether `pid` has exited (or is a zombie nobody reaped yet) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False
