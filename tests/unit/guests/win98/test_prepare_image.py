"""`prepare-image` on synthetic Windows 98-like FAT32 disks: a copy only, idempotent, clear refusals.

Real mtools, real qemu-img, real MBRs (tests/support/diskimages.py); the disks are small and sparse, so this is fast.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.guests.detect import detect_profile, read_partitions
from harness.guests.win98.prepare_image import _add_to_run_line, prepare_image
from tests.support.diskimages import MTOOLS_ENV, make_fat32_disk, write_mbr


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def disk(tmp_path: Path) -> Path:
    image = tmp_path / "win98.img"
    make_fat32_disk(image)
    return image


def _target(image: Path) -> str:
    return f"{image}@@{read_partitions(image)[0].offset}"


def _mtools(tool: str, image: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tool, "-i", _target(image), *args], capture_output=True, env=MTOOLS_ENV, check=True)


def _listing(image: Path) -> list[str]:
    """Every path on the FAT partition (recursive, bare)."""
    return sorted(line for line in _mtools("mdir", image, "-/", "-b", "::/").stdout.decode().splitlines() if line)


def _read(image: Path, dos_path: str) -> bytes:
    return _mtools("mtype", image, f"::/{dos_path}").stdout


def _contents(image: Path) -> dict[str, bytes]:
    return {path: _read(image, path[3:]) for path in _listing(image) if not path.endswith("/")}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["prepare-image", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_prepares_a_copy_and_never_writes_the_input(disk: Path, agent_exe: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = _sha256(disk)
    out = tmp_path / "prepared.img"
    code, stdout, stderr = _cli(capsys, str(disk), "-o", str(out), "--agent", str(agent_exe))
    assert (code, stderr) == (0, "")
    assert _sha256(disk) == before, "the input image was modified"
    assert "copied AGENT98.EXE" in stdout and "run=" in stdout
    assert _read(out, "HARNESS/AGENT98.EXE") == agent_exe.read_bytes()
    assert "::/RUN/" in _listing(out)
    assert _read(out, "WINDOWS/WIN.INI") == b"[windows]\r\nload=\r\nrun=C:\\HARNESS\\AGENT98.EXE\r\n"
    assert _listing(disk) == [p for p in _listing(out) if "HARNESS" not in p and "::/RUN/" != p]
    assert detect_profile(out) == "win98"
    assert out.stat().st_size == disk.stat().st_size


def test_running_twice_changes_nothing(disk: Path, agent_exe: Path, tmp_path: Path) -> None:
    first = prepare_image(disk, tmp_path / "once.img", agent_exe=agent_exe)
    second = prepare_image(first.output, tmp_path / "twice.img", agent_exe=agent_exe)
    assert first.changes and second.changes == []
    assert _listing(first.output) == _listing(second.output)
    assert _contents(first.output) == _contents(second.output)
    assert _sha256(first.output) == _sha256(second.output), "an unchanged image must stay byte-identical"


def test_qcow2_in_and_out(disk: Path, agent_exe: Path, tmp_path: Path) -> None:
    qcow2_in = tmp_path / "win98.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(disk), str(qcow2_in)], check=True)
    before = _sha256(qcow2_in)
    result = prepare_image(qcow2_in, tmp_path / "prepared.qcow2", agent_exe=agent_exe)
    assert result.output_format == "qcow2" and _sha256(qcow2_in) == before
    info = subprocess.run(["qemu-img", "info", str(result.output)], capture_output=True, text=True, check=True)
    assert "file format: qcow2" in info.stdout
    raw_back = tmp_path / "back.img"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(result.output), str(raw_back)], check=True)
    assert _read(raw_back, "HARNESS/AGENT98.EXE") == agent_exe.read_bytes()
    as_raw = prepare_image(qcow2_in, tmp_path / "from-qcow2.img", output_format="raw", agent_exe=agent_exe)
    assert _contents(as_raw.output) == _contents(raw_back)


def test_existing_run_entries_and_other_lines_are_kept(disk: Path, agent_exe: Path, tmp_path: Path) -> None:
    ini = (b"; user's own\r\n[Windows]\r\nload=TSR.EXE\r\nRun=C:\\TOOLS\\CLOCK.EXE,C:\\X.EXE\r\n"
           b"Beep=yes\r\n[Desktop]\r\nrun=C:\\NOT-HERE.EXE\r\n")
    (tmp_path / "WIN.INI").write_bytes(ini)
    subprocess.run(["mcopy", "-o", "-i", _target(disk), str(tmp_path / "WIN.INI"), "::/WINDOWS/WIN.INI"],
                   check=True, env=MTOOLS_ENV, capture_output=True)
    out = prepare_image(disk, tmp_path / "out.img", agent_exe=agent_exe).output
    assert _read(out, "WINDOWS/WIN.INI") == ini.replace(
        b"Run=C:\\TOOLS\\CLOCK.EXE,C:\\X.EXE\r\n", b"Run=C:\\TOOLS\\CLOCK.EXE C:\\X.EXE C:\\HARNESS\\AGENT98.EXE\r\n")


@pytest.mark.parametrize(("before", "after"), [
    (b"", b"[windows]\r\nrun=P\r\n"),
    (b"[fonts]\r\nA=1", b"[fonts]\r\nA=1\r\n[windows]\r\nrun=P\r\n"),
    (b"[windows]\r\nload=\r\n[x]\r\n", b"[windows]\r\nrun=P\r\nload=\r\n[x]\r\n"),
    (b"[windows]\nrun = p  \n", b"[windows]\nrun = p  \n"),  # already there (case-insensitive)
    (b"[windows]\nrun=a b\n", b"[windows]\nrun=a b P\n"),
])
def test_run_line_edit(before: bytes, after: bytes) -> None:
    assert _add_to_run_line(before, "P") == after


def test_refusals_are_one_line_errors(disk: Path, agent_exe: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    agent = ["--agent", str(agent_exe)]
    no_mbr = tmp_path / "zeros.img"
    no_mbr.write_bytes(bytes(1024 * 1024))
    linux = tmp_path / "linux.img"
    write_mbr(linux, 8, partition_type=0x83)
    bare = tmp_path / "bare.img"
    make_fat32_disk(bare, windows_tree=False)
    taken = tmp_path / "taken.img"
    taken.write_bytes(b"keep me")
    cases = [
        ([str(tmp_path / "missing.img"), "-o", str(tmp_path / "o1.img")], "input image not found"),
        ([str(no_mbr), "-o", str(tmp_path / "o2.img")], "has no MBR partition table"),
        ([str(linux), "-o", str(tmp_path / "o3.img")], "has no FAT partition (partition types: 0x83)"),
        ([str(bare), "-o", str(tmp_path / "o4.img")], "no WINDOWS directory"),
        ([str(disk), "-o", str(taken)], "exists (use --force to replace it)"),
        ([str(disk), "-o", str(disk), "--force"], "is the input image"),
        ([str(disk), "-o", str(tmp_path / "nodir" / "o.img")], "does not exist"),
    ]
    for args, message in cases:
        code, _, stderr = _cli(capsys, *args, *agent)
        assert code != 0, args
        assert stderr.startswith("llama98-harness: error: ") and message in stderr, (args, stderr)
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert taken.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".prepare-")) == [], "scratch left over"
    code, _, stderr = _cli(capsys, str(disk), "-o", str(taken), "--force", *agent)
    assert code == 0 and _read(taken, "HARNESS/AGENT98.EXE") == agent_exe.read_bytes()


def test_a_full_disk_is_refused_and_leaves_no_output(disk: Path, agent_exe: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    free = int(_mtools("mdir", disk, "::/").stdout.decode().split("bytes free")[0].split("\n")[-1].replace(" ", ""))
    filler = tmp_path / "FILLER.BIN"
    with filler.open("wb") as handle:
        handle.truncate(free - 8 * 1024)
    _mtools("mcopy", disk, str(filler), "::/FILLER.BIN")
    out = tmp_path / "full-out.img"
    code, _, stderr = _cli(capsys, str(disk), "-o", str(out), "--agent", str(agent_exe))
    assert code != 0 and "the Windows partition is full" in stderr and stderr.count("\n") == 1
    assert not out.exists()



def test_a_fat16_windows_partition_is_prepared_too(agent_exe: Path, tmp_path: Path) -> None:
    """Windows 98 also installs on FAT16 (type 0x06 here): the same steps work through mtools."""
    image = tmp_path / "fat16.img"
    offset = write_mbr(image, 64, partition_type=0x06)
    target = f"{image}@@{offset}"
    subprocess.run(["mformat", "-i", target, "-v", "WIN98", "::"], check=True, env=MTOOLS_ENV, capture_output=True)
    subprocess.run(["mmd", "-i", target, "::/WINDOWS"], check=True, env=MTOOLS_ENV, capture_output=True)
    (tmp_path / "WIN.COM").write_bytes(b"\xe9\x00\x00")
    subprocess.run(["mcopy", "-i", target, str(tmp_path / "WIN.COM"), "::/WINDOWS/WIN.COM"], check=True,
                   env=MTOOLS_ENV, capture_output=True)
    assert "FAT16" in subprocess.run(["minfo", "-i", target, "::"], capture_output=True, text=True, env=MTOOLS_ENV,
                                     check=True).stdout
    result = prepare_image(image, tmp_path / "out.img", agent_exe=agent_exe)
    assert result.partition.type_id == 0x06
    assert _read(result.output, "HARNESS/AGENT98.EXE") == agent_exe.read_bytes()
    assert _read(result.output, "WINDOWS/WIN.INI") == b"[windows]\r\nrun=C:\\HARNESS\\AGENT98.EXE\r\n"
