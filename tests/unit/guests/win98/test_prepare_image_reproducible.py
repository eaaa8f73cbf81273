"""`prepare-image` is reproducible: the same input and the same agent give the same output bytes, whatever the
clock or the time zone says, so a re-prepared image keeps its sha256 and with it its cached snapshot.

Real mtools and qemu-img on a synthetic FAT32 disk (tests/support/diskimages.py) whose WIN.INI carries an old time.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.guests.detect import read_partitions
from harness.guests.win98.prepare_image import prepare_image
from tests.support.diskimages import MTOOLS_ENV, make_fat32_disk

WIN_INI_TIME = calendar.timegm((2001, 5, 22, 10, 0, 0))  # an even second: FAT write times have 2 s steps
UTC_MTOOLS = dict(MTOOLS_ENV, TZ="UTC0")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _target(image: Path) -> str:
    return f"{image}@@{read_partitions(image)[0].offset}"


def _write_time(image: Path, dos_path: str, scratch: Path) -> int:
    """The FAT write time of a file in the image, in seconds since 1970 (read in UTC)."""
    out = scratch / "stamp.out"
    out.unlink(missing_ok=True)
    subprocess.run(["mcopy", "-n", "-m", "-i", _target(image), f"::/{dos_path}", str(out)], check=True,
                   env=UTC_MTOOLS, capture_output=True)
    return int(out.stat().st_mtime)


@pytest.fixture()
def disk(tmp_path: Path) -> Path:
    """A Windows-like FAT32 disk whose WIN.INI was last written on WIN_INI_TIME."""
    image = tmp_path / "win98.img"
    make_fat32_disk(image)
    win_ini = tmp_path / "WIN.INI"
    win_ini.write_bytes(b"[windows]\r\nload=\r\nrun=\r\n")
    os.utime(win_ini, (WIN_INI_TIME, WIN_INI_TIME))
    subprocess.run(["mcopy", "-o", "-m", "-i", _target(image), str(win_ini), "::/WINDOWS/WIN.INI"], check=True,
                   env=UTC_MTOOLS, capture_output=True)
    assert _write_time(image, "WINDOWS/WIN.INI", tmp_path) == WIN_INI_TIME
    return image


def test_preparing_twice_with_different_clocks_gives_the_same_bytes(disk: Path, agent_exe: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setenv("TZ", "UTC0")
    first = prepare_image(disk, tmp_path / "first.img", agent_exe=agent_exe)
    first_qcow2 = prepare_image(disk, tmp_path / "first.qcow2", agent_exe=agent_exe)
    time.sleep(2.1)  # past the 2 s step of FAT write times: the clock now reads differently
    monkeypatch.setenv("TZ", "IST-5:30")  # and another host's time zone
    second = prepare_image(disk, tmp_path / "second.img", agent_exe=agent_exe)
    second_qcow2 = prepare_image(disk, tmp_path / "second.qcow2", agent_exe=agent_exe)
    assert first.changes and first.changes == second.changes
    assert _sha256(first.output) == _sha256(second.output), "same input and agent must give the same raw bytes"
    assert _sha256(first_qcow2.output) == _sha256(second_qcow2.output), "... and the same qcow2 bytes"
    # Everything written carries the input's own time (WIN.INI's), not the time of preparation.
    for path in ("HARNESS/AGENT98.EXE", "WINDOWS/WIN.INI"):
        assert _write_time(second.output, path, tmp_path) == WIN_INI_TIME, path


def test_source_date_epoch_sets_the_stamps(disk: Path, agent_exe: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    epoch = calendar.timegm((2010, 1, 2, 3, 4, 6))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch))
    first = prepare_image(disk, tmp_path / "first.img", agent_exe=agent_exe)
    assert _write_time(first.output, "HARNESS/AGENT98.EXE", tmp_path) == epoch
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(epoch + 3600))
    other = prepare_image(disk, tmp_path / "other.img", agent_exe=agent_exe)
    assert _sha256(first.output) != _sha256(other.output), "the stamps must come from SOURCE_DATE_EPOCH"


def test_a_bad_source_date_epoch_is_a_one_line_error(disk: Path, agent_exe: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    out = tmp_path / "out.img"
    code = main(["prepare-image", str(disk), "-o", str(out), "--agent", str(agent_exe)])
    stderr = capsys.readouterr().err
    assert code != 0 and "SOURCE_DATE_EPOCH must be a number" in stderr and stderr.count("\n") == 1
    assert not out.exists()
