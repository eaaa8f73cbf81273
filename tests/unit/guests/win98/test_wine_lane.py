"""agent98 under Wine, its COM1 a pseudo-terminal, driven by the harness Console with the win98 profile's framing.

This is the real agent98 code path (CreateFile on COM1, SetCommState, polling ReadFile, CreateProcess with a pipe,
TerminateProcess) talking the exact protocol the win98 profile describes; only the UART is a pty. It ends with the
MinGW llama98.exe run through agent98 on stories260K and checked by the oracle, as a Windows 98 run would be.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.formats.report import parse_report, split_stdout
from harness.guests.win98.wine_lane import WineAgent, live_agent_pids, windows_path, wine_agent, wine_available
from harness.judge.verify import verify
from harness.oracle import generate_text
from harness.vm.console import Console
from tests.support.port_helpers import WINE_MISSING, fixture, win32_program

pytestmark = pytest.mark.wine

# A program that runs until it is stopped: cmd.exe counting (Wine's cmd has FOR /L; no sleep command exists).
BUSY = 'cmd.exe /c "for /L %i in (1,1,2000000000) do rem"'


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WineAgent]:
    if not wine_available():
        pytest.skip(WINE_MISSING)
    artifacts = ArtifactDir(tmp_path_factory.mktemp("wine-agent"))
    with wine_agent(win32_program("agent98"), artifacts) as running:
        running.console.sync(30)
        yield running
        # `!exit` answers, then ends the agent by itself (checked here: a second agent on this worker's prefix
        # would have to wait for this one's lock).
        running.console.send_line("@bye1 !exit")
        running.console.expect(re.compile(r"@@END-bye1-0@@"), 20, "the answer to !exit")
        assert running.process.wait(timeout=30) == 0, "agent98 did not exit with code 0 after !exit"
    assert "agent98: exiting" in running.agent_log.read_text(errors="replace")
    assert not live_agent_pids(running.prefix), "a Wine process of the lane's prefix outlived it"


@pytest.fixture()
def console(agent: WineAgent) -> Console:
    agent.console.run("!timeout 120", 20)
    return agent.console


def test_banner_names_version_port_and_line_settings(agent: WineAgent) -> None:
    transcript = agent.console.transcript.read_text(encoding="utf-8")
    assert re.search(r"agent98 \d+\.\d+ on COM1 115200 8N1: AGENT98 READY", transcript)
    assert agent.banner_seconds < 60


def test_programs_report_their_exit_codes_and_output(console: Console) -> None:
    assert console.run("cmd.exe /c exit 7", 30).exit_code == 7
    assert console.run("cmd.exe /c exit 0", 30).exit_code == 0
    result = console.run("cmd.exe /c echo out & echo err 1>&2", 30)
    assert (result.output, result.exit_code) == ("out \nerr ", 0)  # cmd keeps the blank before 1>&2
    missing = console.run("nosuch98.exe", 30)
    assert missing.exit_code == -1 and "cannot run nosuch98.exe: Windows error 2" in missing.output


def test_echo_and_cd_are_built_in(console: Console, tmp_path: Path) -> None:
    assert console.run("echo hello  world", 10).output == "hello  world"
    moved = console.run(f"cd {windows_path(tmp_path)}", 10)
    assert (moved.output, moved.exit_code) == (windows_path(tmp_path), 0)
    assert console.run("!cd", 10).output == windows_path(tmp_path)
    failed = console.run(f"cd {windows_path(tmp_path / 'nowhere')}", 10)
    assert failed.exit_code == 1 and "cannot change directory" in failed.output


def test_crc32_prints_digest_and_size_of_the_file(console: Console, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 1000 + b"\r\n\x1a tail"
    (tmp_path / "BLOB.BIN").write_bytes(payload)
    result = console.run(f"!crc32 {windows_path(tmp_path / 'BLOB.BIN')}", 30)
    digest, size, _ = result.output.split(" ", 2)
    assert (digest, int(size), result.exit_code) == (f"{zlib.crc32(payload):08x}", len(payload), 0)
    missing = console.run(f"!crc32 {windows_path(tmp_path / 'NONE.BIN')}", 30)
    assert missing.exit_code == 1 and "cannot open" in missing.output


def test_append_delete_mkdir_and_type_write_real_files(console: Console, tmp_path: Path) -> None:
    folder = tmp_path / "RUN"
    assert console.run(f"!mkdir {windows_path(folder)}", 10).exit_code == 0
    assert console.run(f"!mkdir {windows_path(folder)}", 10).exit_code == 0, "mkdir of an existing dir is ok"
    script = windows_path(folder / "FTP.SCR")
    for line in ("open 10.0.2.2 2121", "user u p4ss", "binary"):
        assert console.run(f"!append {script} {line}", 10).exit_code == 0
    assert (folder / "FTP.SCR").read_bytes() == b"open 10.0.2.2 2121\r\nuser u p4ss\r\nbinary\r\n"
    assert console.run(f"!type {script}", 10).output == "open 10.0.2.2 2121\nuser u p4ss\nbinary"
    assert console.run(f"!delete {script}", 10).exit_code == 0
    assert not (folder / "FTP.SCR").exists()
    assert console.run(f"!delete {script}", 10).exit_code == 0, "deleting a missing file is what was wanted"


def test_settime_accepts_the_host_clock_and_never_touches_it_under_wine(console: Console) -> None:
    result = console.run(f"!settime {int(time.time())}", 10)
    assert (result.output, result.exit_code) == ("clock already within 2 s", 0)
    far = console.run("!settime 915148800", 10)  # 1999-01-01: refused by -n, the host clock stays
    assert far.exit_code == 0 and "left alone" in far.output
    assert abs(time.time() - time.time()) < 1 and time.gmtime().tm_year > 2000


def test_bad_lines_get_a_usage_answer(console: Console) -> None:
    assert console.run("!frobnicate", 10).exit_code == 2
    assert "unknown built-in !frobnicate" in console.run("!frobnicate x", 10).output
    assert console.run("!crc32", 10).exit_code == 2
    assert console.run("!timeout nope", 10).exit_code == 2
    console.send_line("@bad!id echo x")
    console.expect(re.compile(r"@@END-0-2@@"), 10, "the answer to a malformed command id")
    console.send_line("@longline echo " + "x" * 3000)
    console.expect(re.compile(r"command line too long.*?@@END-0-2@@", re.DOTALL), 10, "the answer to a too-long line")
    assert console.run("echo still here", 10).output == "still here"


def test_output_streams_while_the_program_runs_and_timeout_terminates_it(console: Console) -> None:
    assert console.run("!timeout 4", 10).exit_code == 0
    start = time.monotonic()
    console.send_line('@stream1 cmd.exe /c "echo first & for /L %i in (1,1,2000000000) do rem"')
    console.expect(re.compile("first"), 10, "the first line of a still-running program")
    first_seen = time.monotonic() - start
    match = console.expect(re.compile(r"@@END-stream1-(?P<code>-?\d+)@@"), 20, "the timed-out program's sentinel")
    ended = time.monotonic() - start
    assert int(match.group("code")) == -2
    assert "timed out after 4 s" in (console._child.before or "")
    assert first_seen < 3.5 < ended, (first_seen, ended)
    assert console.run("echo alive", 10).output == "alive"


def test_ctrl_c_interrupts_a_running_program(console: Console) -> None:
    console.send_line(f"@intr1 {BUSY}")
    time.sleep(1.5)
    console.send_line("\x03")
    match = console.expect(re.compile(r"@@END-intr1-(?P<code>-?\d+)@@"), 20, "the interrupted program's sentinel")
    assert int(match.group("code")) == -3
    assert console.run("echo alive", 10).exit_code == 0


STORY_RUNS = {
    "greedy": ["-t", "0", "-n", "120"],
    "sampled-prompt": ["-t", "0.8", "-p", "0.9", "-s", "42", "-n", "150", "-i", "Once upon a time, Tom"],
}


@pytest.mark.parametrize("run", sorted(STORY_RUNS))
def test_llama98_exe_runs_through_agent98_and_the_oracle_agrees(run: str, console: Console,
                                                                 tmp_path: Path) -> None:
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    exe = win32_program("llama98")
    args = STORY_RUNS[run]
    report_path = tmp_path / "RUN.REP"
    quoted = [f'"{a}"' if " " in a else a for a in args]
    command = (f"{windows_path(exe)} {windows_path(model)} -z {windows_path(tokenizer)} {' '.join(quoted)} "
               f"-r {windows_path(report_path)}")
    result = console.run(command, 120)
    assert result.exit_code == 0, result.output[-300:]
    flag = dict(zip(args[::2], args[1::2]))
    expected = generate_text(model, tokenizer, temperature=float(flag["-t"]), topp=float(flag.get("-p", "0.9")),
                             seed=int(flag.get("-s", "0")), steps=int(flag["-n"]),
                             prompt=flag.get("-i", "").encode())
    text = result.output.encode("cp437")
    assert text.startswith(expected), "the text streamed over COM1 differs from the oracle's"
    assert re.fullmatch(rb"achieved tok/s: [0-9.]+", text[len(expected):]), text[len(expected):]
    # The report read back over the serial line, exactly as it would be from Windows 98.
    typed = console.run(f"!type {windows_path(report_path)}", 30)
    assert typed.exit_code == 0
    assert typed.output == report_path.read_text().rstrip("\n")
    verdict = verify(model, tokenizer, parse_report(typed.output + "\n"))
    assert verdict.ok, str(verdict)
    crc = console.run(f"!crc32 {windows_path(model)}", 30).output.split()[0]
    assert parse_report(typed.output + "\n").model.crc32 == int(crc, 16)


@pytest.mark.parametrize("run", sorted(STORY_RUNS))
def test_a_fork_style_exe_through_agent98_is_judged_text_level(run: str, console: Console) -> None:
    """The Win32 path of a foreign binary: a fork-style build (llama2.c's flags, chatter, no report) run by agent98
    over COM1 exactly as on Windows 98, its whole output judged by the text-level judge."""
    from harness.models.names import choose_model
    from harness.run.judged import detect_cli, judge_foreign
    from harness.run.session import PortArgs
    from tests.support.foreign_helpers import fork_binary

    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    exe = fork_binary("win32")
    assert detect_cli(exe) == "llama2c"
    flag = dict(zip(STORY_RUNS[run][::2], STORY_RUNS[run][1::2]))
    args = PortArgs(float(flag["-t"]), float(flag.get("-p", "0.9")), int(flag.get("-s", "42")), int(flag["-n"]),
                    flag["-i"].encode() if "-i" in flag else None)
    argv = [windows_path(exe), *args.argv(windows_path(model), windows_path(tokenizer), "cp437", cli="llama2c")]
    result = console.run(" ".join(f'"{a}"' if " " in a else a for a in argv), 120)
    assert result.exit_code == 0, result.output[-300:]
    output = result.output.encode("cp437")
    assert output.startswith(b"llama2.c for Windows 98 (test fork)")
    choice = choose_model(str(model), str(tokenizer), allow_download=False)
    verdict = judge_foreign(choice, args, output)
    assert verdict.ok, verdict.message


CONFORMANCE_SCRIPT = [
    "echo hi  there", "echo", "!ver", "!crc32 BLOB.BIN", "!crc32 NONE.BIN", "!crc32",
    "!append OUT.TXT hello world", "!append OUT.TXT second line", "!type OUT.TXT", "!delete OUT.TXT",
    "!delete OUT.TXT", "!type OUT.TXT", "!mkdir SUB", "!mkdir SUB", "!mkdir NOPE\\SUB", "!delete", "!frob x",
    "!timeout 0", "!timeout 99", "nosuch98.exe", "!append NOPE\\X.TXT y",
]


def test_the_scripted_windows98_stand_in_answers_like_the_real_agent(console: Console, tmp_path: Path) -> None:
    """tests/support/fake_agent98.py (the stand-in the win98 profile tests use) against agent98.exe: same bytes back."""
    from harness.vm.profile import load_profile
    from tests.support.fake_agent98 import FakeWin98Machine

    blob = bytes(range(256)) * 40
    real_dir, fake_root = tmp_path / "real", tmp_path / "fake"
    real_dir.mkdir()
    (fake_root / "C").mkdir(parents=True)
    for folder in (real_dir, fake_root / "C"):
        (folder / "BLOB.BIN").write_bytes(blob)
    console.run(f"cd {windows_path(real_dir)}", 10)
    profile = load_profile("win98")
    machine = FakeWin98Machine(profile, fake_root, Path("/bin/false"))
    fake = Console(machine.serial_socket, profile.console, tmp_path / "fake-serial.log")
    try:
        fake.wait_for_banner(20)
        for command in CONFORMANCE_SCRIPT:
            real_result, fake_result = console.run(command, 30), fake.run(command, 30)
            assert (fake_result.output, fake_result.exit_code) == (real_result.output, real_result.exit_code), \
                command
    finally:
        fake.close()
        machine.close()


def test_report_to_stdout_comes_after_the_tok_s_line_as_the_session_expects(console: Console) -> None:
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    result = console.run(f"{windows_path(win32_program('llama98'))} {windows_path(model)} -z {windows_path(tokenizer)} "
                         f"-t 0 -n 40 -r -", 120)
    raw = result.output.encode("cp437") + b"\n"
    assert result.exit_code == 0
    assert raw.index(b"achieved tok/s: ") < raw.index(b"llama98 report 1")
    _, report = split_stdout(raw)
    assert report.done is not None and len(report.tokens) == 40


LLAMA3_PROMPT = "Grüße aus Köln"


def test_exported_llama3_model_runs_through_agent98_and_verifies(console: Console, tmp_path: Path) -> None:
    """A Llama-3-style export (v3 checkpoint, BPE tokenizer) run by llama98.exe through agent98, as on Windows 98:
    the streamed text is the bytes of the reported ids, the report read back over COM1 verifies token by token,
    and the prompt ids are Hugging Face tokenizers' encoding of the bytes the program received."""
    from harness.judge.token_check import check_run
    from harness.models.export_hf import export
    from harness.models.names import ModelChoice
    from tests.support.bpe_vocab import build
    from tests.support.hf_llama import make_hf_dir

    vocab = build(tmp_path / "vocab", vocab_size=500)
    make_hf_dir(tmp_path / "hf", vocab, dtype="BF16", seed=6)
    model, tokenizer = tmp_path / "MODEL.BIN", tmp_path / "TOK.BIN"
    export(tmp_path / "hf", model, tokenizer)
    report_path = tmp_path / "RUN.REP"
    command = (f"{windows_path(win32_program('llama98'))} {windows_path(model)} -z {windows_path(tokenizer)} "
               f"-t 0.9 -s 5 -n 40 -i \"{LLAMA3_PROMPT}\" -r {windows_path(report_path)}")
    result = console.run(command, 120)
    assert result.exit_code == 0, result.output[-300:]
    typed = console.run(f"!type {windows_path(report_path)}", 30)
    report = parse_report(typed.output + "\n")
    streamed = result.output.encode("cp437")
    text = streamed[:streamed.rindex(b"achieved tok/s: ")]
    check = check_run(ModelChoice(model, tokenizer, "export"), text, report)
    assert check.ok and check.transport_ok, str(check)
    # The serial console speaks the DOS code page, so the program gets the prompt in cp437 (not UTF-8): the
    # invalid UTF-8 becomes U+FFFD in the port, the oracle and here alike.
    assert report.args.prompt == LLAMA3_PROMPT.encode("cp437")
    received = (report.args.prompt or b"").decode("utf-8", errors="replace")
    assert report.prompt_ids == [vocab.specials["<|begin_of_text|>"],
                                 *vocab.hf.encode(received, add_special_tokens=False).ids]
    assert report.tokenizer.fields["format"] == "bpe" and report.model.fields["version"] == "3"
