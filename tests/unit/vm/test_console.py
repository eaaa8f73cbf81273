"""Console against a real shell on the far end of a socket (the same shape as QEMU's serial chardev).

The VM tests drive the real tiny686 serial console; these cover the framing rules fast and without QEMU: exit
codes, output cleaning, the echoed command never matching the sentinel, and timeouts that say what they waited for.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.vm.console import Console, ConsoleError, ConsoleTimeout, clean_output
from harness.vm.profile import load_profile

BANNER_SCRIPT = "sleep 0.2; echo TINY686 READY; exec sh -i {flags}"


def _shell_console(tmp_path: Path, flags: str = "", screendump=None) -> tuple[Console, subprocess.Popen[bytes]]:
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(["sh", "-c", BANNER_SCRIPT.format(flags=flags)], stdin=theirs, stdout=theirs,
                               stderr=theirs, env={"PS1": "tiny686# ", "PATH": os.environ["PATH"]})
    theirs.close()
    spec = dataclasses.replace(load_profile("tiny686").console, setup_commands=())  # no tty here for stty
    console = Console(ours, spec, tmp_path / "serial.log", screendump=screendump, artifacts=tmp_path)
    console._test_socket = ours  # keep the socket alive with the console
    return console, process


@pytest.fixture()
def shell(tmp_path: Path) -> Iterator[Console]:
    console, process = _shell_console(tmp_path)
    try:
        console.wait_for_banner(10)
        console.setup()
        yield console
    finally:
        process.kill()
        process.wait()
        console.close()


def test_clean_output_normalises_serial_line_ends_and_escapes() -> None:
    assert clean_output("a\r\r\nb\r\nc\x1b[6n\x1b[0;32md\x1b[0m\r") == "a\nb\ncd"


def test_run_returns_output_and_exit_code(shell: Console) -> None:
    assert (shell.run("echo hello; echo world", 10).output, shell.run("true", 10).exit_code) == ("hello\nworld", 0)
    assert shell.run("false", 10).exit_code == 1
    assert shell.run("sh -c 'echo partial; exit 42'", 10).output == "partial"
    assert shell.run("sh -c 'exit 42'", 10).exit_code == 42
    assert shell.run("printf 'no newline'", 10).output == "no newline"
    assert shell.run(r"printf 'x\033[6ny\r\n'", 10).output == "xy"


def test_output_that_looks_like_a_sentinel_does_not_end_the_command(shell: Console) -> None:
    result = shell.run('echo "@@END""-deadbeef-0@@"; echo still-running; exit_status() { return 3; }; exit_status', 10)
    assert result.output == "@@END-deadbeef-0@@\nstill-running" and result.exit_code == 3


def test_guest_that_echoes_commands_is_handled(tmp_path: Path) -> None:
    """`sh -v` writes every line it reads back, like a terminal echo: the echo must not end the command."""
    console, process = _shell_console(tmp_path, flags="-v")
    try:
        console.wait_for_banner(10)
        console.setup()
        result = console.run("echo one; echo two", 10)
        assert result.exit_code == 0 and result.output.endswith("one\ntwo")
        assert "@@END-" not in result.output
    finally:
        process.kill()
        process.wait()
        console.close()


def test_timeout_names_what_it_waited_for_the_transcript_and_screendump(tmp_path: Path) -> None:
    shots: list[str] = []

    def screendump(reason: str) -> Path:
        shots.append(reason)
        path = tmp_path / "shot.png"
        path.write_bytes(b"png")
        return path

    console, process = _shell_console(tmp_path, screendump=screendump)
    try:
        console.wait_for_banner(10)
        console.setup()
        with pytest.raises(ConsoleTimeout) as info:
            console.run("sleep 5", timeout=1)
        message = str(info.value)
        assert "waiting for the end of guest command 'sleep 5'" in message
        assert str(tmp_path / "serial.log") in message and str(tmp_path / "shot.png") in message
        assert "\n" not in message and shots
        assert "TINY686 READY" in (tmp_path / "serial.log").read_text()
    finally:
        process.kill()
        process.wait()
        console.close()


def test_wrong_banner_times_out_and_closed_console_is_reported(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    spec = dataclasses.replace(load_profile("tiny686").console, ready_banner="NEVER PRINTED")
    console = Console(ours, spec, tmp_path / "serial.log")
    try:
        theirs.sendall(b"booting...\r\r\n")
        with pytest.raises(ConsoleTimeout, match="waiting for the guest's ready banner 'NEVER PRINTED'"):
            console.wait_for_banner(1)
        theirs.close()
        with pytest.raises(ConsoleError, match="serial console closed"):
            console.run("true", 5)
    finally:
        console.close()
        ours.close()


def test_multiline_commands_are_refused(shell: Console) -> None:
    with pytest.raises(ConsoleError, match="one line"):
        shell.run("echo a\necho b", 5)


def test_drain_is_bounded_when_the_guest_never_stops_printing(shell: Console) -> None:
    import time

    shell.send_line("yes llama98")  # prints forever
    start = time.monotonic()
    drained = shell.drain(quiet=0.3, limit=2.0)
    assert time.monotonic() - start < 2.0 + 8.0  # the limit plus slack for a loaded host; unbounded would hang
    assert "llama98" in drained


def test_sync_leaves_output_still_arriving_out_of_the_next_command(shell: Console) -> None:
    """sync does not wait for a quiet line: output that arrives after it started is consumed by its sentinel."""
    shell.send_line("sleep 0.3; echo stale-a; sleep 0.3; echo stale-b")
    shell.sync(10)
    assert shell.run("echo fresh", 10).output == "fresh"
