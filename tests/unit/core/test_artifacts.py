"""ArtifactDir: one directory per run with fixed file names, a command line that can be pasted back into a shell,
numbered screendump names, and a one-line error when the directory cannot be made."""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError


def test_a_given_path_is_created_with_its_parents_and_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    artifacts = ArtifactDir(Path("runs") / "deep" / ".." / "one")
    assert artifacts.path == tmp_path / "runs" / "one" and artifacts.path.is_dir()
    assert str(artifacts) == str(tmp_path / "runs" / "one")
    again = ArtifactDir(str(tmp_path / "runs" / "one"))  # an existing directory is fine
    assert again.path == artifacts.path


def test_without_a_path_a_fresh_directory_under_the_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first, second = ArtifactDir(), ArtifactDir(prefix="custom-")
    assert first.path.parent == tmp_path and first.path.name.startswith("llama98-run-")
    assert second.path.name.startswith("custom-") and first.path != second.path
    assert first.path.is_dir() and (first.path.stat().st_mode & 0o777) == 0o700


def test_fixed_file_names(tmp_path: Path) -> None:
    artifacts = ArtifactDir(tmp_path / "a")
    assert (artifacts.command_line.name, artifacts.qemu_stderr.name, artifacts.serial_transcript.name,
            artifacts.ftp_log.name) == ("qemu-cmdline.txt", "qemu-stderr.log", "serial.log", "ftp.log")
    assert artifacts.file("verdict.txt") == artifacts.path / "verdict.txt"
    assert not artifacts.file("verdict.txt").exists()  # named, not created
    for path in (artifacts.command_line, artifacts.qemu_stderr, artifacts.serial_transcript, artifacts.ftp_log):
        assert path.parent == artifacts.path


def test_the_command_line_can_be_pasted_back_into_a_shell(tmp_path: Path) -> None:
    artifacts = ArtifactDir(tmp_path / "a")
    argv = ["printf", "%s|", "-drive", f"file={tmp_path}/my disk.qcow2,format=qcow2", "it's", "$HOME", "a;b"]
    written = artifacts.write_command_line(argv)
    assert written == artifacts.command_line
    text = written.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == 1 and shlex.split(text) == argv
    echoed = subprocess.run(["sh", "-c", text], capture_output=True, text=True, check=True).stdout
    assert echoed == "".join(f"{arg}|" for arg in argv[2:])  # the shell sees exactly the original arguments


def test_screendumps_are_numbered_and_named_safely(tmp_path: Path) -> None:
    artifacts = ArtifactDir(tmp_path / "a")
    first = artifacts.next_screendump("timeout")
    second = artifacts.next_screendump("failed-test_x[param/../..]: a very long reason that goes on and on")
    assert re.fullmatch(r"screendump-01-\d{6}-timeout\.png", first.name)
    assert second.name.startswith("screendump-02-") and second.suffix == ".png"
    assert second.parent == artifacts.path and "/" not in second.name.removesuffix(".png")
    reason_part = second.name.split("-", 3)[3].removesuffix(".png")
    assert len(reason_part) <= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", reason_part)
    assert not first.exists()  # a path for the caller to write


def test_an_uncreatable_directory_is_a_one_line_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(HarnessError) as info:
        ArtifactDir(blocker / "artifacts")
    message = str(info.value)
    assert message.startswith(f"cannot create artifact directory {blocker / 'artifacts'}: ")
    assert "\n" not in message and info.value.exit_code == 1
