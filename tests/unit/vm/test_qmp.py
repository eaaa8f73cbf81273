"""QmpLink against a real QEMU: commands, QEMU's errors as QemuError in one line, concurrent callers, and a QEMU
that stops answering or goes away (the next call fails at once or within its timeout, never hangs).

The QEMU here is `-machine none -S`: no CPU, no disk, nothing to boot; it only answers QMP (and HMP through
`human-monitor-command`, whose `p N` echoes a number back, which is how each caller recognises its own answer).
It connects to our unix socket as the Machine's QEMU does, so the link is given an already connected socket.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.vm.processes import QemuError
from harness.vm.qmp import QmpLink


@dataclass
class Qemu:
    process: subprocess.Popen[bytes]
    link: QmpLink
    closed: bool = False

    def close(self) -> None:
        """Close the link once (the fixture does it unless the test already did)."""
        self.closed = True
        self.link.close()

    def hmp(self, command_line: str, timeout: float = 15.0) -> str:
        return str(self.link.execute("human-monitor-command", {"command-line": command_line}, timeout))


@pytest.fixture()
def qemu() -> Iterator[Qemu]:
    # A short socket path: unix socket paths are limited to 107 bytes and tmp_path can be long.
    run_dir = Path(tempfile.mkdtemp(prefix="llama98-qmptest-", dir="/tmp"))
    path = run_dir / "qmp.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(20)
    process = subprocess.Popen(
        ["qemu-system-i386", "-machine", "none", "-S", "-nodefaults", "-display", "none", "-monitor", "none",
         "-serial", "none", "-qmp", f"unix:{path}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    qemu = Qemu(process, QmpLink(f"test-{process.pid}"))
    try:
        connection, _ = listener.accept()
        qemu.link.connect(connection, timeout=10)
        yield qemu
    finally:
        try:
            if not qemu.closed:
                qemu.close()
        finally:  # QEMU goes whatever closing the link did
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            if process.stderr is not None:
                process.stderr.close()
            listener.close()
            shutil.rmtree(run_dir, ignore_errors=True)


def _one_line(error: QemuError) -> str:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    return text


def test_commands_return_qemus_answers(qemu: Qemu) -> None:
    status = qemu.link.execute("query-status")
    assert status["running"] is False and status["status"] == "prelaunch"  # started with -S
    version = qemu.link.execute("query-version")["qemu"]
    first_line = subprocess.run(["qemu-system-i386", "--version"], capture_output=True, text=True,
                                check=True).stdout.splitlines()[0]
    assert f"{version['major']}.{version['minor']}.{version['micro']}" in first_line
    assert qemu.hmp("p 42").strip() == "0x2a"


@pytest.mark.parametrize(("command", "arguments", "expected"), [
    ("no-such-command", None, "QMP command no-such-command failed: ExecuteError: The command no-such-command has "
                              "not been found"),
    ("query-status", {"bogus": 1}, "QMP command query-status failed: ExecuteError: Parameter 'bogus' is unexpected"),
    ("screendump", {"filename": "/nonexistent-dir/x.ppm"}, "QMP command screendump failed: ExecuteError: "),
])
def test_qemus_errors_are_one_line_qemu_errors(qemu: Qemu, command: str, arguments: dict[str, object] | None,
                                               expected: str) -> None:
    with pytest.raises(QemuError) as info:
        qemu.link.execute(command, arguments)
    assert _one_line(info.value).startswith(expected)
    assert qemu.link.execute("query-status")["status"] == "prelaunch"  # the link survives a refused command


def test_concurrent_callers_each_get_their_own_answer(qemu: Qemu) -> None:
    mismatches: list[tuple[int, str]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(6)

    def caller(index: int) -> None:
        try:
            start.wait(10)
            for step in range(40):
                value = 1000 * (index + 1) + step
                answer = qemu.hmp(f"p {value}").strip()
                if answer != hex(value):
                    mismatches.append((value, answer))
                if step % 10 == 0:
                    assert qemu.link.execute("query-status")["status"] == "prelaunch"
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a QMP caller hung"
    assert not failures, failures
    assert not mismatches, f"answers went to the wrong caller: {mismatches[:5]}"


def test_a_frozen_qemu_times_out_and_the_link_stays_in_step(qemu: Qemu) -> None:
    os.kill(qemu.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(QemuError) as info:
            qemu.hmp("p 1", timeout=1.0)
        assert time.monotonic() - started < 3.0
        assert _one_line(info.value).startswith("QMP command human-monitor-command failed: TimeoutError")
    finally:
        os.kill(qemu.process.pid, signal.SIGCONT)
    # The late answer to the abandoned command must not be handed to the next caller.
    assert qemu.hmp("p 2").strip() == "0x2"
    assert qemu.hmp("p 3").strip() == "0x3"


def test_a_killed_qemu_fails_the_next_call_at_once(qemu: Qemu) -> None:
    qemu.process.kill()
    qemu.process.wait(10)
    for _ in range(2):  # the first call may meet the EOF, the second the disconnected client: both fail fast
        started = time.monotonic()
        with pytest.raises(QemuError) as info:
            qemu.link.execute("query-status", timeout=5.0)
        assert time.monotonic() - started < 6.0
        assert _one_line(info.value).startswith("QMP command query-status failed: ")


def test_a_qemu_that_quit_fails_the_next_call_and_closes_quickly(qemu: Qemu) -> None:
    assert qemu.link.execute("quit") == {}
    assert qemu.process.wait(10) == 0
    started = time.monotonic()
    with pytest.raises(QemuError, match="QMP command query-status failed: "):
        qemu.link.execute("query-status", timeout=5.0)
    qemu.close()
    assert time.monotonic() - started < 6.0
    assert not [t for t in threading.enumerate() if t.name == f"qmp-test-{qemu.process.pid}"], \
        "the link's event-loop thread outlived close()"


def test_a_closed_link_refuses_with_a_qemu_error(qemu: Qemu) -> None:
    """execute() promises QemuError on failure; a call after close() must not leak asyncio's RuntimeError."""
    qemu.close()
    started = time.monotonic()
    with pytest.raises(QemuError, match="QMP command query-status failed"):
        qemu.link.execute("query-status", timeout=2.0)
    assert time.monotonic() - started < 3.0


def test_close_twice_is_harmless(qemu: Qemu) -> None:
    """Closing is cleanup: the second close (an error path closing again) must not raise."""
    qemu.close()
    qemu.link.close()
