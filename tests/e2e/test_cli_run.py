"""The `llama98-harness run` command as a user runs it: the main job, a broken binary, and Ctrl-C. Each checks
that the guest image is untouched and that no QEMU process of the run is left behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.proc import tool_env
from tests.support.child_signals import take_sigint

pytestmark = pytest.mark.vm

CLI = [sys.executable, "-m", "harness.cli"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _qemu_of_run_alive(artifacts: Path) -> bool:
    """Whether the QEMU recorded in this run's artifacts is still running (matched by its private overlay)."""
    command_file = artifacts / "qemu-cmdline.txt"
    if not command_file.exists():
        return False
    overlay = next(part for part in command_file.read_text().split() if "overlay.qcow2" in part)
    overlay_path = overlay.split("file=", 1)[1].split(",", 1)[0]
    found = subprocess.run(["pgrep", "-f", overlay_path], capture_output=True, text=True)
    return found.returncode == 0


def _run_cli(args: list[str], tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "run", "--vm", "tiny686", "--artifacts", str(tmp_path / "art"), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_main_job_prints_text_tok_s_and_ok_verdict(vm_image: tuple[str, Path], tmp_path: Path) -> None:
    image = vm_image[1]
    before = _sha256(image)
    result = _run_cli(["-n", "120"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Once upon a time, there was a little girl named Lily.")
    assert "verdict (token-level): ok:" in result.stdout
    assert "guest tok/s (from raw timer ticks" in result.stdout
    assert "model: stories260K" in result.stdout
    assert (tmp_path / "art" / "serial.log").exists() and (tmp_path / "art" / "verdict.txt").exists()
    assert _sha256(image) == before
    assert not _qemu_of_run_alive(tmp_path / "art")


def test_sse_binary_fails_with_illegal_instruction_not_a_timeout(vm_image: tuple[str, Path], tmp_path: Path) -> None:
    makefile = Path(__file__).resolve().parents[2] / "ports" / "llama98" / "gcc.mk"
    binary = tmp_path / "llama98-pentium3"
    # The guest build with SSE arithmetic: the makefile's own recipe, its ARCH overridden on the command line.
    subprocess.run(["make", "-s", "-f", str(makefile), "TARGET=tiny686", "QDOT=c", f"OUT={binary}",
                    "ARCH=-m32 -march=pentium3 -mfpmath=sse"], check=True, capture_output=True, cwd=tmp_path,
                   env=tool_env())
    start = time.monotonic()
    result = _run_cli(["--binary", str(binary), "-n", "20"], tmp_path)
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("llama98-harness: error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    assert "SIGILL, illegal instruction" in error_lines[0] and "artifacts:" in error_lines[0]
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 120  # a verdict, not a run-timeout
    assert not _qemu_of_run_alive(tmp_path / "art")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_qemu_and_exits_130(stop_signal: signal.Signals, tmp_path: Path) -> None:
    artifacts = tmp_path / "art"
    process = subprocess.Popen([*CLI, "run", "--vm", "tiny686", "--artifacts", str(artifacts), "--model",
                                "15M-shape", "-n", "256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=take_sigint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (artifacts / "qemu-cmdline.txt").exists():
        time.sleep(0.2)
    assert (artifacts / "qemu-cmdline.txt").exists(), "QEMU never started"
    time.sleep(3)  # inside the boot/transfer
    assert _qemu_of_run_alive(artifacts)
    process.send_signal(stop_signal)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert not _qemu_of_run_alive(artifacts)


def test_guest_ram_is_chosen_with_memory_and_the_text_does_not_change(vm_image: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    """The two halves of issue 14's CI check: the same model on the profile's 128 MiB guest and on a larger one
    (the resident reference) print the same text, and the QEMU command line shows which RAM each had."""
    small = _run_cli(["-n", "40"], tmp_path / "small")
    large = _run_cli(["-n", "40", "--memory", "1024"], tmp_path / "large")
    assert small.returncode == 0 and large.returncode == 0, (small.stderr[-1000:], large.stderr[-1000:])
    assert " -m 128 " in (tmp_path / "small" / "art" / "qemu-cmdline.txt").read_text()
    assert " -m 1024 " in (tmp_path / "large" / "art" / "qemu-cmdline.txt").read_text()
    text = (tmp_path / "small" / "art" / "text.txt").read_bytes()
    assert text and text == (tmp_path / "large" / "art" / "text.txt").read_bytes()


def test_impossible_guest_ram_is_a_usage_error(tmp_path: Path) -> None:
    result = _run_cli(["--memory", "8"], tmp_path, timeout=60)
    assert result.returncode == 2 and "--memory: must be between 16 and 3072 MiB" in result.stderr
    assert "Traceback" not in result.stderr
