"""The QEMU process table and the promises around it: every QEMU started through harness.vm.processes is counted
until reaped, kill_leftovers() takes down whatever is still counted (also at interpreter exit), and a QEMU dies
with the thread that launched it even when that process is SIGKILLed.

kill_leftovers() kills every QEMU of the calling process, which in a `--vm` run includes this worker's session
guest, so it is only ever called in a child Python process here. The QEMU used is `-machine none -S`: it starts
in a few milliseconds and idles until killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.vm.processes import (
    QEMU_INSTALL_HINT,
    QEMU_SYSTEM,
    QemuError,
    find_tool,
    live_qemu_pids,
    qemu_version,
    register,
    unregister,
)
from tests.support.child_signals import take_sigint
from tests.support.idle_qemu import IDLE_QEMU, idle_qemu_process, process_gone


def _is_qemu(pid: int, within: float = 2.0) -> bool:
    """Whether `pid` is running QEMU; its command line is read again for up to `within` seconds, since a just
    started process can briefly show an empty one (seen in about one run in five of this file)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if QEMU_SYSTEM in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return True
        except OSError:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@pytest.fixture()
def idle_qemu() -> Iterator[subprocess.Popen[bytes]]:
    """A QEMU launched the way the Machine launches it (own session, PDEATHSIG), killed and reaped after."""
    with idle_qemu_process() as process:
        yield process


def test_the_live_table_counts_a_qemu_from_register_to_unregister(idle_qemu: subprocess.Popen[bytes]) -> None:
    assert idle_qemu.pid not in live_qemu_pids()
    register(idle_qemu.pid)
    snapshot = live_qemu_pids()
    assert idle_qemu.pid in snapshot
    snapshot.clear()  # a copy: the caller cannot edit the table
    assert idle_qemu.pid in live_qemu_pids()
    unregister(idle_qemu.pid)
    unregister(idle_qemu.pid)  # forgetting twice is harmless
    assert idle_qemu.pid not in live_qemu_pids()


def test_a_launched_qemu_runs_in_its_own_session(idle_qemu: subprocess.Popen[bytes]) -> None:
    """Its own session and process group: a terminal's Ctrl-C reaches only us, and killpg takes only QEMU."""
    assert os.getsid(idle_qemu.pid) == idle_qemu.pid and os.getpgid(idle_qemu.pid) == idle_qemu.pid
    assert os.getpgid(idle_qemu.pid) != os.getpgid(0)
    assert _is_qemu(idle_qemu.pid)


_CHILD = textwrap.dedent("""
    import subprocess, sys, time
    from harness.vm import processes
    mode, pdeathsig = sys.argv[1], sys.argv[2] == "pdeathsig"
    qemu = subprocess.Popen({argv!r}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=processes.die_with_parent if pdeathsig else None)
    processes.register(qemu.pid)
    print(qemu.pid, flush=True)
    if mode == "kill_leftovers":
        found = processes.kill_leftovers()
        qemu.wait(10)
        print(sorted(found), qemu.returncode, flush=True)
    elif mode == "exit":
        pass  # leave it running and registered: the atexit hook must kill it
    else:
        time.sleep(120)  # wait to be killed
""")


@pytest.fixture()
def started() -> Iterator[list[int]]:
    """QEMU pids started by children; any still running after the test (a failed promise) are killed."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _is_qemu(pid):  # a zombie has an empty cmdline; a reused pid is someone else's
            os.kill(pid, signal.SIGKILL)


def _child(mode: str, started: list[int], pdeathsig: bool = True) -> tuple[subprocess.Popen[str], int]:
    """A Python child that launches and registers a QEMU (with PDEATHSIG, or without it so that only the table
    can stop it), then does `mode`; returns the child and the QEMU's pid."""
    argv = [sys.executable, "-c", _CHILD.format(argv=IDLE_QEMU), mode, "pdeathsig" if pdeathsig else "plain"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=take_sigint)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.strip().isdigit():
        child.kill()
        pytest.fail(f"the child did not start QEMU: {line!r} {child.communicate(timeout=30)[1][-2000:]}")
    started.append(int(line))
    return child, int(line)


def test_kill_leftovers_kills_every_registered_qemu_and_names_it(started: list[int]) -> None:
    child, qemu_pid = _child("kill_leftovers", started, pdeathsig=False)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr[-2000:]
    assert stdout.split() == [f"[{qemu_pid}]", str(-signal.SIGKILL)]  # found it, and it died of SIGKILL
    assert process_gone(qemu_pid)


def test_a_registered_qemu_is_killed_when_python_exits(started: list[int]) -> None:
    child, qemu_pid = _child("exit", started, pdeathsig=False)  # only the atexit hook can stop it
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr[-2000:]
    assert process_gone(qemu_pid), "the atexit hook left the registered QEMU running"


def test_a_sigkilled_parent_takes_its_qemu_with_it(started: list[int]) -> None:
    child, qemu_pid = _child("sleep", started)
    assert _is_qemu(qemu_pid)
    child.kill()  # no atexit, no finally: only PR_SET_PDEATHSIG can stop QEMU now
    child.wait(30)
    assert process_gone(qemu_pid), "QEMU outlived its SIGKILLed parent"


def test_ctrl_c_of_the_parent_does_not_reach_qemu_but_exit_still_kills_it(started: list[int]) -> None:
    child, qemu_pid = _child("sleep", started, pdeathsig=False)
    child.send_signal(signal.SIGINT)  # KeyboardInterrupt in the child; QEMU, in its own session, gets nothing
    _, stderr = child.communicate(timeout=60)
    assert "KeyboardInterrupt" in stderr
    assert process_gone(qemu_pid), "the interrupted parent's atexit hook left QEMU running"


def test_find_tool_and_a_missing_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path(find_tool(QEMU_SYSTEM)).is_absolute()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(QemuError) as info:
        find_tool(QEMU_SYSTEM)
    assert str(info.value) == f"QEMU is not installed: {QEMU_SYSTEM} not found on PATH: {QEMU_INSTALL_HINT}"


def test_qemu_version_is_the_first_line_of_version(tmp_path: Path) -> None:
    real = qemu_version(find_tool(QEMU_SYSTEM))
    assert real.startswith("QEMU emulator version ") and "\n" not in real
    silent = tmp_path / "silent-qemu"
    silent.write_text("#!/bin/sh\nexit 0\n")
    silent.chmod(0o755)
    with pytest.raises(QemuError, match="--version printed nothing"):
        qemu_version(str(silent))
    broken = tmp_path / "broken-qemu"
    broken.write_text("#!/bin/sh\necho 'cannot load libfoo.so' >&2\nexit 127\n")
    broken.chmod(0o755)
    with pytest.raises(QemuError) as info:
        qemu_version(str(broken))
    assert "exit code 127" in str(info.value) and "cannot load libfoo.so" in str(info.value)
    assert "\n" not in str(info.value)
