"""`llama98-harness prepare-image IN -o OUT`: a copy of a Windows 98 image that starts AGENT98.EXE at logon.

Windows 98 has no serial console, so the harness needs its agent (ports/agent98) inside the image. This writes
only a copy: IN is read with `qemu-img convert` (raw or qcow2, probed), the copy is edited as a raw file with
mtools' offset addressing (`-i copy@@OFFSET`), then moved to OUT (raw) or converted to qcow2. On any failure no
OUT is left behind, and IN is never opened for writing.

What changes on the FAT partition that holds WINDOWS\\WIN.COM (drive C: of that Windows):
- C:\\HARNESS\\AGENT98.EXE: the agent (built from this checkout for win32 unless --agent names one);
- C:\\RUN: the work directory the win98 profile fetches files into;
- WINDOWS\\WIN.INI: C:\\HARNESS\\AGENT98.EXE added to the `run=` line of the [windows] section, keeping any
  programs already there. Why `run=` rather than a StartUp-folder file: the StartUp folder's path depends on the
  language of the Windows install ("Autostart" in German, "Démarrage" in French) and on whether user profiles
  are enabled (C:\\WINDOWS\\Profiles\\<user>\\...), while WIN.INI is always WINDOWS\\WIN.INI; and `run=` starts the
  Win32 program directly, without a COMMAND.COM DOS box around it. agent98's defaults (COM1, 115200 8N1, no flow
  control) are what the profile needs, so `run=` not taking arguments costs nothing.
Every step first checks whether it is already done (same bytes, directory present, entry present), so a second
run changes nothing and gives the same image content.
Reproducible: mtools stamps what it writes (directory entries' creation and write times) with the clock, so two
preparations of the same input would differ in those bytes, give the image a new sha256 and so throw away its
cached snapshot. Every stamp is therefore the input's own time, WIN.INI's write time (WIN.COM's if there is no
WIN.INI), or SOURCE_DATE_EPOCH when set, with TZ=UTC0 so the host's time zone cannot shift it either.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.proc import require, run, tool_env
from harness.guests.detect import Partition, read_partitions
from harness.vm.disk import DiskImage

AGENT_DIR = "HARNESS"
AGENT_NAME = "AGENT98.EXE"
WORK_DIR = "RUN"
WINDOWS_DIR = "WINDOWS"
AGENT_DOS_PATH = "C:\\HARNESS\\AGENT98.EXE"
OUTPUT_FORMATS = ("raw", "qcow2")
CLUSTER_SLACK = 64 * 1024  # room for directory clusters and rounding up to whole clusters
MTOOLS_TIMEOUT_S = 120
CONVERT_TIMEOUT_S = 1800


class PrepareError(HarnessError):
    """The image cannot be prepared (not a disk, no FAT partition, no Windows, disk full, output exists...)."""


@dataclass
class PrepareResult:
    """What prepare_image did: the output, its format, the partition used and each change made (empty = none)."""

    output: Path
    output_format: str
    partition: Partition
    changes: list[str] = field(default_factory=list)


def _mtools_env(epoch: int | None = None) -> dict[str, str]:
    # MTOOLS_SKIP_CHECK: images made by other tools may have FAT quirks mtools would otherwise refuse.
    # TZ=UTC0: FAT times have no zone; mtools converts with the local one, which must not depend on the host.
    # tool_env: nothing else of the user's environment (SOURCE_DATE_EPOCH only as `epoch` says, no MTOOLSRC).
    env = tool_env(MTOOLS_SKIP_CHECK="1", MTOOLS_NO_VFAT="0", TZ="UTC0")
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)  # mtools stamps new entries with this instead of the clock
    return env


def _env_epoch() -> int | None:
    """SOURCE_DATE_EPOCH from the environment (the reproducible-builds convention), or None when unset."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise PrepareError(f"SOURCE_DATE_EPOCH must be a number of seconds since 1970, not {text!r}")
    return int(text)


class _Fat:
    """mtools on one FAT partition of a raw image file (the working copy); `epoch` stamps whatever it writes."""

    def __init__(self, raw_image: Path, partition: Partition, epoch: int | None = None) -> None:
        self.target = f"{raw_image}@@{partition.offset}"
        self.epoch = epoch

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        require(tool, "install the mtools package", PrepareError)
        result = run([tool, "-i", self.target, *args], what=f"{tool} {' '.join(args)}", timeout=MTOOLS_TIMEOUT_S,
                     env=_mtools_env(self.epoch), check=False, error=PrepareError)
        if check and result.returncode != 0:
            message = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[0]
            if "disk full" in (result.stderr + result.stdout).lower():
                raise PrepareError(f"the Windows partition is full ({tool}: {message}); free some space in the "
                                   f"image first")
            raise PrepareError(f"{tool} {' '.join(args)} failed: {message}")
        return result

    def exists(self, dos_path: str) -> bool:
        return self.run("mdir", "-b", f"::/{dos_path}", check=False).returncode == 0

    def is_dir(self, dos_path: str) -> bool:
        listing = self.run("mdir", "-b", f"::/{dos_path}", check=False)
        return listing.returncode == 0 and not _is_single_file_listing(listing.stdout, dos_path)

    def read(self, dos_path: str, scratch: Path) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        if not self.exists(dos_path):
            return None
        out = scratch / "read.tmp"
        if out.exists():
            out.unlink()
        self.run("mcopy", "-n", f"::/{dos_path}", str(out))
        data = out.read_bytes()
        out.unlink()
        return data

    def write(self, dos_path: str, data: bytes, scratch: Path) -> None:
        source = scratch / "write.tmp"
        source.write_bytes(data)
        self.run("mcopy", "-o", str(source), f"::/{dos_path}")
        source.unlink()

    def write_time(self, dos_path: str, scratch: Path) -> int:
        """The file's FAT write time as seconds since 1970 (read in UTC, like every stamp this module writes)."""
        out = scratch / "stamp.tmp"
        out.unlink(missing_ok=True)
        self.run("mcopy", "-n", "-m", f"::/{dos_path}", str(out))
        stamp = int(out.stat().st_mtime)
        out.unlink()
        return stamp

    def free_bytes(self) -> int | None:
        listing = self.run("mdir", "::/", check=False)
        match = re.search(r"([0-9][0-9 ,.]*) bytes free", listing.stdout)
        return int(re.sub(r"[^0-9]", "", match.group(1))) if match else None


def _is_single_file_listing(stdout: str, dos_path: str) -> bool:
    """`mdir -b ::/X` prints `::/X` alone for a file, and the entries (or nothing) for a directory."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines == [f"::/{dos_path}"]


def _add_to_run_line(win_ini: bytes, program: str) -> bytes:
    """WIN.INI with `program` on the [windows] section's `run=` line; unchanged if it is already there.

    Bytes outside that one line are kept exactly (latin-1 round-trips every byte; line ends are preserved).
    """
    text = win_ini.decode("latin-1")
    lines = text.splitlines(keepends=True)
    newline = "\r\n"
    in_windows = False
    header_index = None
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            in_windows = stripped.lower() == "[windows]"
            if in_windows and header_index is None:
                header_index = index
            continue
        if in_windows and re.match(r"\s*run\s*=", line, re.IGNORECASE):
            body = line.rstrip("\r\n")
            ending = line[len(body):] or newline
            key, value = body.split("=", 1)
            entries = [entry for entry in re.split(r"[ ,]+", value.strip()) if entry]
            if any(entry.lower() == program.lower() for entry in entries):
                return win_ini
            lines[index] = f"{key}={' '.join([*entries, program])}{ending}"
            return "".join(lines).encode("latin-1")
    if header_index is not None:
        lines.insert(header_index + 1, f"run={program}{newline}")
        if not lines[header_index].endswith("\n"):
            lines[header_index] += newline
        return "".join(lines).encode("latin-1")
    prefix = text if not text or text.endswith("\n") else text + newline
    return (prefix + f"[windows]{newline}run={program}{newline}").encode("latin-1")


def _convert(source: Path, source_format: str, target: Path, target_format: str) -> None:
    require("qemu-img", "install the qemu-utils package", PrepareError)
    result = run(["qemu-img", "convert", "-f", source_format, "-O", target_format, str(source), str(target)],
                 what=f"qemu-img convert of {source}", timeout=CONVERT_TIMEOUT_S, env=tool_env(), check=False,
                 error=PrepareError)
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["unknown error"])[0]
        raise PrepareError(f"cannot copy {source} ({source_format}) to {target_format}: {first}")


def _windows_partition(raw: Path, source: Path) -> Partition:
    partitions = read_partitions(raw)
    if not partitions:
        raise PrepareError(f"{source} has no MBR partition table (sector 0 lacks the 55AA signature or is "
                           f"empty); expected a Windows 98 hard disk image")
    fat = [partition for partition in partitions if partition.is_fat]
    if not fat:
        kinds = ", ".join(f"0x{partition.type_id:02x}" for partition in partitions)
        raise PrepareError(f"{source} has no FAT partition (partition types: {kinds}); Windows 98 lives on "
                           f"FAT16/FAT32")
    for partition in fat:
        if _Fat(raw, partition).exists(f"{WINDOWS_DIR}/WIN.COM"):
            return partition
    raise PrepareError(f"no WINDOWS directory with WIN.COM on the FAT partition(s) of {source}; is Windows 98 "
                       f"installed in C:\\WINDOWS?")


def _input_epoch(raw: Path, partition: Partition, scratch: Path) -> int:
    """The time every entry written is stamped with: SOURCE_DATE_EPOCH, else the input's WIN.INI (or WIN.COM)."""
    from_env = _env_epoch()
    if from_env is not None:
        return from_env
    fat = _Fat(raw, partition)
    win_ini = f"{WINDOWS_DIR}/WIN.INI"
    return fat.write_time(win_ini if fat.exists(win_ini) else f"{WINDOWS_DIR}/WIN.COM", scratch)


def _stage_changes(raw: Path, partition: Partition, agent_bytes: bytes, scratch: Path) -> list[str]:
    """Apply every missing change to the raw working copy; return what was changed."""
    fat = _Fat(raw, partition, _input_epoch(raw, partition, scratch))
    changes: list[str] = []
    agent_path = f"{AGENT_DIR}/{AGENT_NAME}"
    current_agent = fat.read(agent_path, scratch) if fat.is_dir(AGENT_DIR) else None
    need_agent = current_agent != agent_bytes
    win_ini_path = f"{WINDOWS_DIR}/WIN.INI"
    current_ini = fat.read(win_ini_path, scratch)
    new_ini = _add_to_run_line(current_ini or b"", AGENT_DOS_PATH)
    need_ini = current_ini != new_ini
    need_dirs = [name for name in (AGENT_DIR, WORK_DIR) if not fat.is_dir(name)]

    needed = (len(agent_bytes) if need_agent else 0) + (len(new_ini) if need_ini else 0)
    if need_dirs or needed:
        free = fat.free_bytes()
        if free is not None and free < needed + CLUSTER_SLACK:
            raise PrepareError(f"the Windows partition is full: {free} bytes free, about "
                               f"{needed + CLUSTER_SLACK} needed for {AGENT_NAME} and WIN.INI")
    for name in need_dirs:
        if fat.exists(name):
            raise PrepareError(f"C:\\{name} exists on the image but is a file, not a directory; rename it")
        fat.run("mmd", f"::/{name}")
        changes.append(f"created C:\\{name}")
    if need_agent:
        fat.write(agent_path, agent_bytes, scratch)
        changes.append(f"copied {AGENT_NAME} to C:\\{AGENT_DIR} ({len(agent_bytes)} bytes)")
    if need_ini:
        fat.write(win_ini_path, new_ini, scratch)
        changes.append(f"added {AGENT_DOS_PATH} to run= in C:\\{WINDOWS_DIR}\\WIN.INI")
    return changes


def _default_agent() -> Path:
    from harness.port.build import build_port

    return build_port("win32", program="agent98")


def prepare_image(source: Path, output: Path, output_format: str | None = None, force: bool = False,
                  agent_exe: Path | None = None) -> PrepareResult:
    """Write OUTPUT: a copy of SOURCE (raw or qcow2) whose Windows 98 starts AGENT98.EXE at logon.

    `output_format` defaults to qcow2 for a `.qcow2` output name, else raw. SOURCE is only read.
    """
    source = Path(source)
    output = Path(output)
    if not source.exists():
        raise PrepareError(f"input image not found: {source}")
    chosen_format = output_format or ("qcow2" if output.suffix.lower() == ".qcow2" else "raw")
    if chosen_format not in OUTPUT_FORMATS:
        raise PrepareError(f"unknown output format {chosen_format!r} (raw or qcow2)")
    if output.exists() or output.is_symlink():
        if source.resolve() == output.resolve():
            raise PrepareError(f"output {output} is the input image; prepare-image only writes a copy")
        if not force:
            raise PrepareError(f"output {output} exists (use --force to replace it)")
        if output.is_dir():
            raise PrepareError(f"output {output} is a directory")
    if not output.parent.is_dir():
        raise PrepareError(f"output directory {output.parent} does not exist")
    source_format = DiskImage.probe(source).format
    agent = agent_exe or _default_agent()
    try:
        agent_bytes = Path(agent).read_bytes()
    except OSError as error:
        raise PrepareError(f"cannot read the agent {agent}: {error.strerror}") from None

    with tempfile.TemporaryDirectory(prefix=".prepare-", dir=output.parent) as scratch_name:
        scratch = Path(scratch_name)
        raw = scratch / "work.raw"
        _convert(source, source_format, raw, "raw")
        partition = _windows_partition(raw, source)
        changes = _stage_changes(raw, partition, agent_bytes, scratch)
        if chosen_format == "raw":
            final = raw
        else:
            final = scratch / "work.qcow2"
            _convert(raw, "raw", final, "qcow2")
        os.replace(final, output)
    return PrepareResult(output, chosen_format, partition, changes)
