"""The Wine lane: agent98.exe under Wine, its COM1 a pseudo-terminal, driven by the harness Console.

No Windows 98 image exists on our machines, so this is how the agent98 half of the win98 profile is proven in CI:
the same Win32 binary, the same COM-port code path (CreateFile("\\\\.\\COM1"), SetCommState, SetCommTimeouts,
ReadFile/WriteFile), the same Console and profile framing as on Windows 98; only the UART is a pty.

How Wine's COM1 reaches the pty: Wine's mount manager maps COMn to the Unix device named by the value `COMn` of
`HKLM\\Software\\Wine\\Ports` (it writes the `dosdevices/comN` symlink from it when the prefix's wineserver
starts). The value is set once, when the prefix is created, to a stable symlink inside the prefix
(`agent98-com1`); each run only re-points that symlink at its fresh /dev/pts/N, so no registry write (and no extra
Wine start) is needed per run. The pty is put in raw mode and its slave end is kept open by us for the whole run,
so reads on the master never see a hang-up while Wine opens and closes the port.

Isolation: one prefix per pytest-xdist worker (`cache_dir("wine", "agent98-<worker>")`), and an exclusive lock
file held while a prefix is created or used, because COM1's mapping is per prefix. Clean-up always runs, also on
errors and Ctrl-C: `wineserver -k` for the prefix, then the agent's process group is killed.
"""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import signal
import subprocess
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import IO

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.core.paths import cache_dir
from harness.core.proc import run, tool_env
from harness.core.worker import worker_id
from harness.vm.console import Console
from harness.vm.profile import ConsoleSpec, load_profile

PREFIX_READY_MARK = ".llama98-agent98-ready"
COM_LINK_NAME = "agent98-com1"
PREFIX_CREATE_TIMEOUT_S = 180.0
LOCK_TIMEOUT_S = 600.0
BANNER_TIMEOUT_S = 90.0
WINE_INSTALL_HINT = ("install Wine with `dpkg --add-architecture i386 && apt-get update && "
                     "apt-get install wine wine32:i386`")


class WineLaneError(HarnessError):
    """Wine is missing, the prefix could not be prepared, or agent98 did not come up under Wine."""


def wine_available() -> bool:
    """Whether `wine` and `wineserver` are on PATH."""
    return shutil.which("wine") is not None and shutil.which("wineserver") is not None


def windows_path(path: str | Path) -> str:
    """A host path as Wine shows it to Windows programs: the Unix root is drive Z:."""
    return str(PureWindowsPath("Z:\\", *Path(path).resolve().parts[1:]))


def wine_env(prefix: Path) -> dict[str, str]:
    """Headless, quiet Wine on `prefix`: no X display, no debug channels, no Mono/Gecko install dialogs; nothing
    else of the user's environment (core.proc.tool_env), where a WINEARCH, WINEDLLOVERRIDES or LANG would change
    what the agent does."""
    return tool_env(WINEPREFIX=str(prefix), WINEDEBUG="-all", DISPLAY="", WINEARCH="win32",
                    WINEDLLOVERRIDES="mscoree,mshtml=")


@contextmanager
def prefix_lock(prefix: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on `prefix` (its COM1 mapping is shared by everything using it)."""
    lock_path = prefix.with_name(prefix.name + ".lock")
    with lock_path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WineLaneError(f"timed out after {timeout:g}s waiting for the Wine prefix lock "
                                        f"{lock_path} (another run is using that prefix)") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_wine_tool(command: list[str], prefix: Path, timeout: float, what: str) -> None:
    try:
        run(command, what=f"{what} (Wine prefix {prefix})", env=wine_env(prefix), timeout=timeout,
            error=WineLaneError)
    except WineLaneError:
        stop_wineserver(prefix)  # a hung or failed wine must not leave its wineserver behind
        raise


def ensure_prefix(prefix: Path | None = None) -> Path:
    """Create (once) a Wine prefix whose COM1 is the stable symlink `<prefix>/agent98-com1`; return its path.

    The caller must hold `prefix_lock(prefix)`. A prefix whose creation was interrupted (no ready mark) is
    removed and made again.
    """
    if not wine_available():
        raise WineLaneError(f"wine not found: {WINE_INSTALL_HINT}")
    prefix = prefix or default_prefix()
    if (prefix / PREFIX_READY_MARK).is_file():
        return prefix
    if prefix.exists():
        stop_wineserver(prefix)
        shutil.rmtree(prefix, ignore_errors=True)
    _run_wine_tool(["wineboot", "-i"], prefix, PREFIX_CREATE_TIMEOUT_S, "creating the Wine prefix (wineboot -i)")
    _run_wine_tool(["wine", "reg", "add", r"HKLM\Software\Wine\Ports", "/v", "COM1", "/t", "REG_SZ", "/d",
                    str(prefix / COM_LINK_NAME), "/f"], prefix, 120.0,
                   r"mapping COM1 in the Wine registry (HKLM\Software\Wine\Ports)")
    stop_wineserver(prefix)
    (prefix / PREFIX_READY_MARK).write_text("COM1 -> " + str(prefix / COM_LINK_NAME) + "\n")
    return prefix


def default_prefix() -> Path:
    """This worker's prefix directory (not created)."""
    return cache_dir("wine") / f"agent98-{worker_id()}"


def stop_wineserver(prefix: Path) -> None:
    """`wineserver -k` for one prefix: ends every Wine process using it (never Wine processes of other prefixes)."""
    if shutil.which("wineserver") is None or not prefix.exists():
        return
    try:  # best effort: a wineserver that does not answer in time is left to the prefix lock's next user
        run(["wineserver", "-k"], what="wineserver -k", env=wine_env(prefix), timeout=30, check=False,
            error=WineLaneError)
        run(["wineserver", "-w"], what="wineserver -w", env=wine_env(prefix), timeout=30, check=False,
            error=WineLaneError)
    except WineLaneError:
        pass


def live_agent_pids(prefix: Path) -> list[int]:
    """Processes (wine, wineserver, agent98) whose environment names `prefix`: what must be gone after a run."""
    needle = f"WINEPREFIX={prefix}".encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ + b"\0":
            found.append(int(entry.name))
    return found


@dataclass
class WineAgent:
    """agent98.exe running under Wine with COM1 on a pty; `console` speaks the win98 profile's framing."""

    prefix: Path
    pty_name: str
    process: subprocess.Popen[bytes]
    console: Console
    agent_log: Path
    banner_seconds: float


class _PtyMaster:
    """The pty's master end as the Console wants it: an object with fileno() (the Console dups it)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def _open_raw_pty() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def _point_com1_at(prefix: Path, pty_name: str) -> None:
    link = prefix / COM_LINK_NAME
    staging = prefix / (COM_LINK_NAME + ".new")
    if staging.is_symlink() or staging.exists():
        staging.unlink()
    staging.symlink_to(pty_name)
    os.replace(staging, link)
    # What Wine's mount manager derives from the registry; set it too so the first start sees it at once.
    dos_com1 = prefix / "dosdevices" / "com1"
    if dos_com1.is_symlink() or dos_com1.exists():
        dos_com1.unlink()
    dos_com1.symlink_to(link)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@contextmanager
def wine_agent(agent_exe: Path, artifacts: ArtifactDir, work_dir: Path | None = None,
               spec: ConsoleSpec | None = None, extra_args: tuple[str, ...] = (),
               prefix: Path | None = None, banner_timeout: float = BANNER_TIMEOUT_S) -> Iterator[WineAgent]:
    """Start agent98.exe under Wine on a fresh pty mapped to COM1, wait for its banner, yield it ready.

    `spec` defaults to the win98 profile's console (the exact framing used on Windows 98). agent98 runs with `-n`
    (never touch the clock: under Wine that would be the host's) and starts in `work_dir` (default: the
    artifact directory). The serial transcript is the artifact dir's serial.log; agent98's own console output
    goes to agent98-console.log. On exit everything is stopped, also on errors: `wineserver -k` for the prefix
    and a kill of the agent's process group.
    """
    if not wine_available():
        raise WineLaneError(f"wine not found: {WINE_INSTALL_HINT}")
    if not agent_exe.is_file():
        raise WineLaneError(f"agent98 binary not found: {agent_exe}")
    console_spec = spec or load_profile("win98").console
    chosen_prefix = prefix or default_prefix()
    chosen_prefix.parent.mkdir(parents=True, exist_ok=True)
    start_dir = work_dir or artifacts.path
    agent_log = artifacts.file("agent98-console.log")
    with prefix_lock(chosen_prefix):
        ensure_prefix(chosen_prefix)
        master, slave, pty_name = _open_raw_pty()
        log_handle: IO[bytes] | None = None
        process: subprocess.Popen[bytes] | None = None
        console: Console | None = None
        try:
            _point_com1_at(chosen_prefix, pty_name)
            log_handle = agent_log.open("wb")
            command = ["wine", str(agent_exe), "-p", "COM1", "-n", "-d", windows_path(start_dir), *extra_args]
            artifacts.file("agent98-command.txt").write_text(" ".join(command) + "\n")
            process = subprocess.Popen(command, env=wine_env(chosen_prefix), stdin=subprocess.DEVNULL,
                                       stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True)
            console = Console(_PtyMaster(master), console_spec, artifacts.serial_transcript,
                              artifacts=artifacts.path)
            start = time.monotonic()
            try:
                console.wait_for_banner(banner_timeout)
            except HarnessError as error:
                exit_code = process.poll()
                state = "still running" if exit_code is None else f"exited with code {exit_code}"
                raise WineLaneError(f"agent98 under Wine did not announce itself on COM1 ({pty_name}); agent98 "
                                    f"{state}; its console log: {agent_log}; {error}") from None
            yield WineAgent(chosen_prefix, pty_name, process, console, agent_log, time.monotonic() - start)
        finally:
            stop_wineserver(chosen_prefix)
            if process is not None:
                _kill_group(process)
            if console is not None:
                console.close()
            if log_handle is not None:
                log_handle.close()
            for fd in (master, slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
