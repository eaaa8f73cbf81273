"""The win98 profile's logic, transcript-driven: Guest + Console + FileServer against agent98's protocol.

Without an image, the far end of COM1 is tests/support/fake_agent98.py on a pseudo-terminal: agent98's framing, CRLF and
cp437, its built-ins, and Windows 98 ftp.exe's script mode in active mode (bridged through the FTP server's
host-forward hook exactly as with QEMU). With `pytest --vm win98-harness.img` the same tests also run against the
real Windows 98 guest (marker `win98`; skipped with the how-to otherwise).
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.formats.report import parse_report
from harness.judge.verify import verify
from harness.oracle import generate_text
from harness.vm.console import ConsoleTimeout
from harness.vm.ftp import FileServer
from harness.vm.guest import Guest, GuestError, TransferError, open_guest
from harness.vm.machine import Machine, MachineOptions
from harness.vm.processes import QemuError
from harness.vm.profile import GuestProfile, ProfileError, load_profile
from tests.support.fake_agent98 import FakeWin98Machine
from tests.support.port_helpers import built, fixture

PROFILE = load_profile("win98")


@dataclass
class Win98:
    guest: Guest
    drive: Path | None  # the fake's drive C: on the host (None for a real image)
    machine: FakeWin98Machine | None


def _built(target: str, program: str = "llama98") -> Path:
    return built(target, program=program)


@pytest.fixture(scope="module", params=["fake", pytest.param("image", marks=pytest.mark.win98)])
def win98(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Win98]:
    artifacts = ArtifactDir(tmp_path_factory.mktemp(f"win98-{request.param}"))
    if request.param == "image":
        image = Path(str(request.config.getoption("--vm")))
        with open_guest(PROFILE, image, artifacts) as guest:
            guest.run_checked(f"!mkdir {PROFILE.files.work_dir}", 30)
            yield Win98(guest, None, None)
        return
    drive = tmp_path_factory.mktemp("fake-drive")
    (drive / "C" / "RUN").mkdir(parents=True)
    machine = FakeWin98Machine(PROFILE, drive, _built("native"))
    try:
        with FileServer(artifacts, bridge=machine) as server, \
                Guest(machine, server, artifacts) as guest:
            guest.ready = guest.wait_ready(30)
            yield Win98(guest, drive, machine)
            assert guest.shutdown(20), "the fake agent did not end on the profile's shutdown command"
    finally:
        machine.close()


def test_ready_sets_the_clock_and_answers_with_exit_codes(win98: Win98) -> None:
    guest = win98.guest
    assert guest.ready is not None
    guest.set_clock()
    assert guest.run("echo hello", 20).output == "hello"
    missing = guest.run("!crc32 C:\\RUN\\NOSUCH.BIN", 20)
    assert missing.exit_code == 1 and "cannot open" in missing.output
    assert guest.run("!nosuchbuiltin", 20).exit_code == 2
    with pytest.raises(GuestError, match=r"exited with code -1"):
        guest.run_checked("C:\\RUN\\NOSUCH98.EXE", 20)
    transcript = guest.console.transcript.read_bytes()
    assert b"AGENT98 READY" in transcript and b"@@END-" in transcript


def test_text_crosses_as_cp437_with_crlf_line_ends(win98: Win98) -> None:
    assert win98.guest.run("echo Grüße ½ ░▒▓", 20).output == "Grüße ½ ░▒▓"
    script = "C:\\RUN\\LINES.TXT"
    win98.guest.run(f"!delete {script}", 20)
    for line in ("first", "zweite Zeile ß"):
        win98.guest.run_checked(f"!append {script} {line}", 20)
    assert win98.guest.run_checked(f"!type {script}", 20).output == "first\nzweite Zeile ß"
    if win98.drive is not None:
        assert (win98.drive / "C" / "RUN" / "LINES.TXT").read_bytes() == b"first\r\nzweite Zeile \xe1\r\n"


def test_fetch_uses_ftp_exe_in_active_mode_and_verifies_by_crc32(win98: Win98, tmp_path: Path) -> None:
    payload = os.urandom(300_000) + b"\n\r\n\x1a" * 100
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    result = win98.guest.fetch(source, "PAYLOAD.BIN")
    assert (result.mode, result.verified, result.size) == ("active", True, len(payload))
    assert result.digest == f"{zlib.crc32(payload) & 0xFFFFFFFF:08x}"
    assert win98.guest.checksum("C:\\RUN\\PAYLOAD.BIN") == result.digest
    # the script held the FTP password: it is gone after the fetch
    assert win98.guest.run("!crc32 C:\\RUN\\FTP.SCR", 20).exit_code == 1
    records = win98.guest.file_server.transfers_of("PAYLOAD.BIN")
    assert records[-1].transfer_type == "binary" and records[-1].complete
    if win98.machine is not None:
        assert win98.machine.forwards and win98.machine.removed == win98.machine.forwards
        assert (win98.drive / "C" / "RUN" / "PAYLOAD.BIN").read_bytes() == payload
    transcript = win98.guest.console.transcript.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"ftp\.exe -n -s:C:\\RUN\\FTP\.SCR", transcript)


def test_ascii_mode_fetch_of_a_binary_is_named_as_such(win98: Win98, tmp_path: Path) -> None:
    source = tmp_path / "lines.bin"
    source.write_bytes(b"line one\nline two\n" * 50 + bytes(range(256)))
    with pytest.raises(TransferError, match="ASCII mode"):
        win98.guest.fetch(source, "LINES.BIN", transfer_type="ascii")


def test_llama98_runs_in_the_guest_and_the_oracle_agrees(win98: Win98) -> None:
    guest = win98.guest
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    names = PROFILE.files.names
    guest.fetch(_built("win32"), names["binary"])
    guest.fetch(model, names["model"], must_fit_in_memory=True)
    guest.fetch(tokenizer, names["tokenizer"])
    exe, model_path, tok_path = (guest.guest_path(names[key]) for key in ("binary", "model", "tokenizer"))
    report = guest.guest_path("RUN.REP")
    result = guest.run(f'{exe} {model_path} -z {tok_path} -t 0.8 -s 5 -n 80 -i "One day" -r {report}', 600)
    assert result.exit_code == 0, result.output[-300:]
    expected = generate_text(model, tokenizer, temperature=0.8, topp=0.9, seed=5, steps=80, prompt=b"One day")
    text = result.output.encode(PROFILE.console.encoding)
    assert text.startswith(expected)
    assert re.fullmatch(rb"achieved tok/s: [0-9.]+", text[len(expected):])
    parsed = parse_report(guest.run_checked(f"!type {report}", 60).output + "\n")
    verdict = verify(model, tokenizer, parsed)
    assert verdict.ok, str(verdict)
    assert parsed.model.crc32 == int(guest.checksum(model_path), 16)


def test_bad_input_to_llama98_is_a_nonzero_exit_with_its_message(win98: Win98) -> None:
    exe = win98.guest.guest_path(PROFILE.files.names["binary"])
    if win98.guest.run(f"!crc32 {exe}", 20).exit_code != 0:
        win98.guest.fetch(_built("win32"), PROFILE.files.names["binary"])
    result = win98.guest.run(f"{exe} C:\\RUN\\ABSENT.BIN", 60)
    assert result.exit_code == 1 and "llama98: error:" in result.output


# --- the logon-dialog keys (console.logon_keys) ---------------------------------------------------------------

def _quick_logon_profile() -> GuestProfile:
    console = dataclasses.replace(PROFILE.console, logon_keys=("ret",), logon_keys_after=1.0, boot_timeout=30)
    return dataclasses.replace(PROFILE, console=console)


@pytest.mark.parametrize("keys", [("ret",), ()], ids=["keys-pressed", "no-keys"])
def test_a_late_banner_gets_the_logon_keys_once(keys: tuple[str, ...], tmp_path: Path) -> None:
    profile = _quick_logon_profile()
    profile = dataclasses.replace(profile, console=dataclasses.replace(profile.console, logon_keys=keys))
    artifacts = ArtifactDir(tmp_path / "artifacts")
    (tmp_path / "drive" / "C").mkdir(parents=True)
    machine = FakeWin98Machine(profile, tmp_path / "drive", Path("/bin/false"), logon_dialog=True)
    try:
        with FileServer(artifacts) as server, Guest(machine, server, artifacts) as guest:
            if keys:
                ready = guest.wait_ready(20)
                assert machine.keys == ["ret"], "the keys are pressed exactly once"
                assert 1.0 <= ready.seconds < 20
            else:
                with pytest.raises(ConsoleTimeout, match="AGENT98 READY"):
                    guest.wait_ready(3)
                assert machine.keys == []
    finally:
        machine.close()


def test_logon_keys_are_validated_by_the_profile_loader(tmp_path: Path) -> None:
    text = PROFILE.source.read_text()
    bad_key = tmp_path / "bad-key.yaml"
    bad_key.write_text(text.replace('logon_keys: ["ret"]', 'logon_keys: ["Enter key"]'))
    with pytest.raises(ProfileError, match="logon_keys"):
        load_profile(bad_key)
    late = tmp_path / "late.yaml"
    late.write_text(text.replace("logon_keys_after: 150", "logon_keys_after: 999"))
    with pytest.raises(ProfileError, match="logon_keys_after"):
        load_profile(late)
    assert PROFILE.console.logon_keys == ("ret",) and 0 < PROFILE.console.logon_keys_after < \
        PROFILE.console.boot_timeout
    assert load_profile("tiny686").console.logon_keys == ()


# A boot sector that echoes each key typed on the PS/2 keyboard to COM1: BIOS int 16h (read key, ASCII in AL),
# then `out 0x3F8, al`, forever.
KEY_ECHO_BOOT_SECTOR = bytes([0x31, 0xC0, 0xCD, 0x16, 0xBA, 0xF8, 0x03, 0xEE, 0xEB, 0xF6])


def test_qemu_send_keys_reach_the_guest_keyboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "keys.img"
    sector = bytearray(512)
    sector[: len(KEY_ECHO_BOOT_SECTOR)] = KEY_ECHO_BOOT_SECTOR
    sector[510:512] = b"\x55\xaa"
    image.write_bytes(bytes(sector) + bytes(1024 * 1024 - 512))
    with Machine(PROFILE, image, ArtifactDir(tmp_path / "artifacts"), MachineOptions(use_snapshot=False)) as machine:
        machine.serial_socket.settimeout(0.5)
        received = b""
        deadline = time.monotonic() + 30
        while b"w98" not in received and time.monotonic() < deadline:
            machine.send_keys(["w", "9", "8"], pause=0.1)  # the BIOS may still be starting: repeat until echoed
            try:
                received += machine.serial_socket.recv(4096)
            except TimeoutError:
                pass
        assert b"w98" in received, received[-200:]
        with pytest.raises(QemuError):
            machine.send_keys(["nosuchkey"])
