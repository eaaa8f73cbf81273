"""`llama98-harness prepare-image`: help, one-line refusals (missing or directory input, existing or misplaced output,
unreadable agent), and one real preparation of a synthetic Windows 98-like FAT32 disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli
from tests.support.diskimages import make_fat32_disk


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    if shutil.which("mformat") is None or shutil.which("qemu-img") is None:
        pytest.skip("mtools and qemu-img are needed: apt-get install mtools qemu-utils")
    image = tmp_path / "win98.img"
    make_fat32_disk(image)
    return image


@pytest.fixture
def agent(tmp_path: Path) -> Path:
    """Stand-in bytes for AGENT98.EXE: prepare-image copies the file, it does not run it."""
    path = tmp_path / "agent98.exe"
    path.write_bytes(b"MZ" + bytes(510))
    return path


def test_help_lists_the_options(capsys):
    assert_help("prepare-image", capsys, "IN", "OUT", "raw", "qcow2")


def test_a_missing_input_is_refused(tmp_path, capsys):
    result = run_cli(["prepare-image", str(tmp_path / "none.img"), "-o", str(tmp_path / "out.img")], capsys)
    assert_one_line_error(result, "input image not found", "none.img")


def test_a_directory_as_input_is_refused(tmp_path, agent, capsys):
    (tmp_path / "dir").mkdir()
    result = run_cli(["prepare-image", str(tmp_path / "dir"), "-o", str(tmp_path / "out.img"), "--agent",
                      str(agent)], capsys)
    assert_one_line_error(result, "is a directory, not a disk image")


def test_a_file_that_is_no_disk_is_refused(tmp_path, agent, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a disk\n")
    result = run_cli(["prepare-image", str(text), "-o", str(tmp_path / "out.img"), "--agent", str(agent)], capsys)
    assert_one_line_error(result, "no MBR partition table")
    assert not (tmp_path / "out.img").exists()


def test_an_existing_output_needs_force(disk, tmp_path, agent, capsys):
    out = tmp_path / "out.img"
    out.write_bytes(b"keep me")
    result = run_cli(["prepare-image", str(disk), "-o", str(out), "--agent", str(agent)], capsys)
    assert_one_line_error(result, "exists (use --force to replace it)")
    assert out.read_bytes() == b"keep me"


def test_the_input_as_output_is_refused(disk, agent, capsys):
    result = run_cli(["prepare-image", str(disk), "-o", str(disk), "--agent", str(agent), "--force"], capsys)
    assert_one_line_error(result, "is the input image")


def test_an_output_in_a_missing_directory_is_refused(disk, tmp_path, agent, capsys):
    result = run_cli(["prepare-image", str(disk), "-o", str(tmp_path / "no" / "out.img"), "--agent", str(agent)],
                     capsys)
    assert_one_line_error(result, "output directory", "does not exist")


def test_an_unreadable_agent_is_refused(disk, tmp_path, capsys):
    result = run_cli(["prepare-image", str(disk), "-o", str(tmp_path / "out.img"), "--agent", str(tmp_path)],
                     capsys)
    assert_one_line_error(result, "cannot read the agent")
    assert not (tmp_path / "out.img").exists()


def test_prepares_a_copy(disk, tmp_path, agent, capsys):
    before = disk.read_bytes()
    out = tmp_path / "prepared.qcow2"
    result = run_cli(["prepare-image", str(disk), "-o", str(out), "--agent", str(agent)], capsys)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[-1].startswith(f"wrote {out} (qcow2, partition ") and "pytest --vm" in lines[-1]
    assert len(lines) > 1  # the changes it made, one per line
    assert out.read_bytes()[:4] == b"QFI\xfb"
    assert disk.read_bytes() == before  # the input is only read
    again = run_cli(["prepare-image", str(out), "-o", str(tmp_path / "again.img"), "--agent", str(agent)], capsys)
    assert again.code == 0 and again.out.splitlines()[0] == "already prepared: nothing to change"
