"""A scripted stand-in for Windows 98 running AGENT98.EXE, on the slave end of a pseudo-terminal.

Run as `python -m tests.support.fake_agent98 --tty /dev/pts/N --root DIR --llama98 NATIVE_BINARY`. It speaks agent98's
serial protocol byte for byte (banner, `@ID COMMAND` lines, output, `@@END-ID-CODE@@` with no line end after it,
CRLF and cp437), keeps drive C: in DIR, implements agent98's built-ins, and answers the two programs the win98
profile runs:
- `ftp.exe -n -s:SCRIPT`: executes the script like Windows 98's ftp.exe (open/user/binary|ascii/get/bye, active
  mode only: it listens on 127.0.0.1 and sends `PORT 10,0,2,15,p1,p2`, which the test's machine stand-in
  "forwards" to that same port, as QEMU's hostfwd would), echoing ftp.exe's style of output, exit code 0 even
  when a transfer failed (as the real one does);
- `...\\LLAMA98.EXE ARGS`: the native llama98 build with the Windows paths mapped into DIR (the bytes fetched into
  C:\\RUN\\LLAMA98.EXE are the Win32 build, which cannot run here).
Why a separate process on a pty: the Console then reads a real serial-like device with the same framing as with
QEMU, and nothing of the harness is bypassed.
"""

from __future__ import annotations

import argparse
import os
import pty
import socket
import subprocess
import sys
import time
import tty
import zlib
from ftplib import FTP, all_errors
from pathlib import Path

from harness.core.paths import project_root
from harness.vm.profile import GuestProfile

ENCODING = "cp437"
GUEST_ADDRESS = "10.0.2.15"
HOST_ALIASES = {"10.0.2.2": "127.0.0.1"}


class FakeAgent:
    """agent98's command loop over a tty, with drive C: mapped to a host directory."""

    def __init__(self, fd: int, root: Path, llama98: Path) -> None:
        self.fd = fd
        self.root = root
        self.llama98 = llama98
        self.cwd = "C:\\"
        self.at_line_start = True
        self.pending = b""

    # -- serial ------------------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if data:
            os.write(self.fd, data)
            self.at_line_start = data.endswith(b"\n")

    def line(self, text: str) -> None:
        self.write(text.encode(ENCODING, errors="replace") + b"\r\n")

    def read_line(self) -> str | None:
        while True:
            for index, byte in enumerate(self.pending):
                if byte in (0x0D, 0x0A):
                    line, self.pending = self.pending[:index], self.pending[index + 1:]
                    return line.decode(ENCODING, errors="replace")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return None
            if not chunk:
                return None
            self.pending += chunk.replace(b"\x03", b"")

    def sentinel(self, command_id: str, code: int) -> None:
        if not self.at_line_start:
            self.write(b"\r\n")
        self.write(f"@@END-{command_id}-{code}@@".encode())
        self.at_line_start = True

    # -- drive C: ----------------------------------------------------------------------------------------------
    def host_path(self, windows_path: str) -> Path:
        path = windows_path.strip().strip('"')
        if len(path) < 2 or path[1] != ":":
            path = self.cwd.rstrip("\\") + "\\" + path
        drive, rest = path[0].upper(), path[2:]
        parts = [part.upper() for part in rest.split("\\") if part and part != "."]
        return self.root / drive / Path(*parts) if parts else self.root / drive

    # -- built-ins ---------------------------------------------------------------------------------------------
    def crc32(self, args: str) -> int:
        if not args:
            self.line("agent98: usage: !crc32 PATH")
            return 2
        try:
            data = self.host_path(args).read_bytes()
        except OSError:
            self.line(f"agent98: cannot open {args}: Windows error 2")
            return 1
        self.line(f"{zlib.crc32(data) & 0xFFFFFFFF:08x} {len(data)} {args}")
        return 0

    def append(self, args: str) -> int:
        path, _, text = args.partition(" ")
        if not path:
            self.line("agent98: usage: !append PATH TEXT")
            return 2
        try:
            with self.host_path(path).open("ab") as handle:
                handle.write(text.lstrip(" \t").encode(ENCODING) + b"\r\n")
        except OSError:
            self.line(f"agent98: cannot open {path}: Windows error 3")
            return 1
        return 0

    def builtin(self, name: str, args: str) -> tuple[int, bool]:
        name = name.lower()
        if name in ("delete", "mkdir", "type") and not args:
            self.line(f"agent98: usage: !{name} PATH")
            return 2, False
        if name == "crc32":
            return self.crc32(args), False
        if name == "append":
            return self.append(args), False
        if name == "delete":
            self.host_path(args).unlink(missing_ok=True)
            return 0, False
        if name == "mkdir":
            try:
                self.host_path(args).mkdir(parents=False, exist_ok=True)
            except OSError:
                self.line(f"agent98: cannot create directory {args}: Windows error 3")
                return 1, False
            return 0, False
        if name == "type":
            try:
                self.write(self.host_path(args).read_bytes())
            except OSError:
                self.line(f"agent98: cannot open {args}: Windows error 2")
                return 1, False
            return 0, False
        if name == "cd":
            return self.change_dir(args), False
        if name == "echo":
            self.line(args)
            return 0, False
        if name == "settime":
            if not args.isdigit():
                self.line("agent98: usage: !settime SECONDS-SINCE-1970-UTC")
                return 2, False
            if abs(int(args) - time.time()) < 2:
                self.line("clock already within 2 s")
            else:
                self.line(time.strftime("clock set to %Y-%m-%d %H:%M:%S UTC", time.gmtime(int(args))))
            return 0, False
        if name == "timeout":
            if args.isdigit() and 0 < int(args) <= 4000000:
                return 0, False
            self.line("agent98: usage: !timeout SECONDS (1 to 4000000)")
            return 2, False
        if name == "ver":
            self.line("agent98 1.0")
            return 0, False
        if name in ("exit", "shutdown"):
            return 0, True
        self.line(f"agent98: unknown built-in !{name} (see README.md)")
        return 2, False

    def change_dir(self, args: str) -> int:
        if args:
            target = self.host_path(args)
            if not target.is_dir():
                self.line(f"agent98: cannot change directory to {args}: Windows error 2")
                return 1
            self.cwd = args if args[1:2] == ":" else self.cwd.rstrip("\\") + "\\" + args
        self.line(self.cwd.upper())
        return 0

    # -- programs ----------------------------------------------------------------------------------------------
    def program(self, command: str) -> int:
        words = command.split()
        name = words[0].upper().rsplit("\\", 1)[-1]
        if name in ("FTP.EXE", "FTP") and any(word.lower().startswith("-s:") for word in words):
            script = next(word[3:] for word in words if word.lower().startswith("-s:"))
            return self.ftp(script)
        if name in ("LLAMA98.EXE", "LLAMA98") and self.host_path(words[0]).is_file():
            return self.llama98_run(command)
        self.line(f"agent98: cannot run {command}: Windows error 2")
        return -1

    def llama98_run(self, command: str) -> int:
        words, quoted = [], None
        for piece in command.split(" ")[1:]:  # keeps a quoted prompt together like the C runtime does
            if quoted is not None:
                quoted += " " + piece
                if piece.endswith('"'):
                    words.append(quoted.strip('"'))
                    quoted = None
            elif piece.startswith('"') and not (piece.endswith('"') and len(piece) > 1):
                quoted = piece
            elif piece:
                words.append(piece.strip('"'))
        args = [str(self.host_path(word)) if word[1:3] == ":\\" else word for word in words]
        result = subprocess.run([str(self.llama98), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=300, check=False)
        self.write(result.stdout)
        return result.returncode

    def ftp(self, script_path: str) -> int:
        try:
            lines = self.host_path(script_path).read_text(encoding=ENCODING).splitlines()
        except OSError:
            self.line(f"Error opening script file {script_path}.")
            return 0
        client: FTP | None = None
        for line in lines:
            self.line(f"ftp> {line}")
            verb, *args = line.split()
            try:
                if verb == "open":
                    client = FTP()
                    host = HOST_ALIASES.get(args[0], args[0])
                    welcome = client.connect(host, int(args[1]) if len(args) > 1 else 21, timeout=30)
                    self.line(f"Connected to {args[0]}.")
                    self.line(welcome)
                elif verb == "user" and client is not None:
                    self.line(client.sendcmd(f"USER {args[0]}"))
                    self.line(client.sendcmd(f"PASS {args[1]}"))
                elif verb in ("binary", "ascii") and client is not None:
                    self.line(client.sendcmd("TYPE I" if verb == "binary" else "TYPE A"))
                elif verb == "get" and client is not None:
                    self.get_active(client, args[0], args[1] if len(args) > 1 else args[0])
                elif verb in ("bye", "quit"):
                    if client is not None:
                        self.line(client.sendcmd("QUIT"))
                        client.close()
                    client = None
                else:
                    self.line("Not connected.")
            except all_errors as error:
                self.line(str(error))
        return 0  # Windows 98's ftp.exe exits 0 whatever happened

    def get_active(self, client: FTP, source: str, dest: str) -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(30)
        port = listener.getsockname()[1]
        start = time.monotonic()
        try:
            self.line(client.sendcmd(f"PORT {GUEST_ADDRESS.replace('.', ',')},{port >> 8},{port & 0xFF}"))
            self.line(client.sendcmd(f"RETR {source}"))
            connection, _ = listener.accept()
            with connection, self.host_path(dest).open("wb") as handle:
                received = 0
                while chunk := connection.recv(65536):
                    handle.write(chunk)
                    received += len(chunk)
            self.line(client.voidresp())
            seconds = max(time.monotonic() - start, 0.001)
            self.line(f"ftp: {received} bytes received in {seconds:.2f}Seconds {received / 1024 / seconds:.2f}"
                      f"Kbytes/sec.")
        finally:
            listener.close()

    # -- loop --------------------------------------------------------------------------------------------------
    def serve(self, keyboard: Path | None = None) -> None:
        if keyboard is not None:
            # a logon dialog stands in the way until someone presses a key (the machine writes the keys here)
            deadline = time.monotonic() + 120
            while not keyboard.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        self.write(b"\r\nagent98 1.0 (fake) on COM1 115200 8N1: AGENT98 READY")
        self.at_line_start = True
        while (line := self.read_line()) is not None:
            text = line.strip()
            if not text:
                continue
            command_id = "0"
            if text.startswith("@"):
                command_id, _, text = text[1:].partition(" ")
                text = text.strip()
            if text.startswith("!"):
                name, _, args = text[1:].partition(" ")
                code, leave = self.builtin(name, args.strip())
            elif text.split(" ", 1)[0].lower() in ("echo", "cd"):
                word, _, args = text.partition(" ")
                code, leave = (self.change_dir(args.strip()), False) if word.lower() == "cd" else (0, False)
                if word.lower() == "echo":
                    self.line(args.strip())
            else:
                code, leave = self.program(text), False
            self.sentinel(command_id or "0", code)
            if leave:
                return


# -- the host side: what tests hand to Guest in place of a QEMU Machine ----------------------------------------

class _PtyEnd:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


class FakeWin98Machine:
    """What Guest needs from a Machine, for the fake agent: the serial end, the active-mode bridge, the exit.

    The fake guest listens on 127.0.0.1 itself, so the "host forward" for guest port P is 127.0.0.1:P (QEMU's
    hostfwd would pick a fresh host port and forward it to 10.0.2.15:P).
    """

    def __init__(self, profile: GuestProfile, drive_root: Path, llama98_native: Path,
                 logon_dialog: bool = False) -> None:
        self.profile = profile
        self.keys: list[str] = []
        self.keyboard = drive_root / "keyboard.log"
        hold = ["--keyboard", str(self.keyboard)] if logon_dialog else []
        self.memory_mb = profile.machine.memory_mb
        self.loaded_snapshot = False
        self.forwards: list[int] = []
        self.removed: list[int] = []
        self._master, self._slave = pty.openpty()
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_agent98", "--tty", os.ttyname(self._slave),
             "--root", str(drive_root),
             "--llama98", str(llama98_native), *hold], cwd=project_root(), start_new_session=True)
        self.serial_socket = _PtyEnd(self._master)

    def try_screendump(self, reason: str) -> Path | None:
        return None

    def save_snapshot(self) -> Path | None:
        return None

    def send_keys(self, combos: list[str] | tuple[str, ...]) -> None:
        """Key presses reach the fake's "logon dialog" (a file it waits for) instead of a PS/2 keyboard."""
        self.keys.extend(combos)
        self.keyboard.write_text("\n".join(self.keys) + "\n")

    def add_host_forward(self, guest_port: int) -> int:
        self.forwards.append(guest_port)
        return guest_port

    def remove_host_forward(self, host_port: int) -> None:
        self.removed.append(host_port)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for fd in (self._master, self._slave):
            os.close(fd)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tty", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--llama98", required=True)
    parser.add_argument("--keyboard", default=None, help="hold the banner until this file exists (a logon dialog)")
    args = parser.parse_args()
    fd = os.open(args.tty, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    root = Path(args.root)
    (root / "C").mkdir(parents=True, exist_ok=True)
    FakeAgent(fd, root, Path(args.llama98)).serve(Path(args.keyboard) if args.keyboard else None)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
