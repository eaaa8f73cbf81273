"""The session-end QEMU check kills what its own session started, and nothing else: a pytest session run inside
another one (pytester's in-process runs) once killed the outer worker's guest, and every later guest test of that
worker failed with "QMPClient is disconnecting"."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from harness.vm.processes import live_qemu_pids, unregister
from tests.support.idle_qemu import IDLE_QEMU, idle_qemu_process

pytest_plugins = ["pytester"]

@pytest.fixture()
def outer_qemu() -> Iterator[subprocess.Popen[bytes]]:
    """A QEMU counted as started by this (the outer) process, as a worker's session guest is."""
    with idle_qemu_process(registered=True) as process:
        yield process


def test_an_inner_session_leaves_the_outer_sessions_qemu_running(pytester: pytest.Pytester,
                                                                  outer_qemu: subprocess.Popen[bytes]) -> None:
    pytester.makepyfile(test_inner="def test_plain():\n    pass\n")
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    with pytest.raises(subprocess.TimeoutExpired):  # a killed QEMU would exit within this second
        outer_qemu.wait(timeout=1.0)
    assert outer_qemu.pid in live_qemu_pids()


def test_an_inner_session_still_kills_and_reports_what_it_started(pytester: pytest.Pytester,
                                                                    outer_qemu: subprocess.Popen[bytes]) -> None:
    pytester.makepyfile(test_inner=f"""
        import subprocess
        from harness.vm.processes import die_with_parent, register

        def test_leaks_a_qemu():
            process = subprocess.Popen({IDLE_QEMU!r}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)
            register(process.pid)
            open("leaked.pid", "w").write(str(process.pid))
        """)
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:xdist")
    leaked = int((pytester.path / "leaked.pid").read_text())
    try:
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.stderr.fnmatch_lines([f"*QEMU processes [[]{leaked}[]] were still running*"])
        with pytest.raises(subprocess.TimeoutExpired):
            outer_qemu.wait(timeout=1.0)
    finally:
        unregister(leaked)
        try:
            os.killpg(leaked, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(leaked, 0)
        except ChildProcessError:
            pass
