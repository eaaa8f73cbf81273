"""The OpenWatcom Win32 builds under Wine, run THROUGH agent98 (built with OpenWatcom too), as on Windows 98.

agent98.exe runs under Wine with COM1 on a pseudo-terminal (harness/guests/win98/wine_lane.py); the harness Console
speaks the win98 profile's framing to it, and each llama98.exe run is a command line sent over that serial line,
exactly as a Windows 98 run is. The port's `-r -` output (text, then the report) comes back over the same line and
gets a token-level verdict (harness/judge/token_check.py) for every model kind of tests/port/test_watcom.py:
float32, Q8_0 with the MMX `_asm` kernel and with the portable C dot products, ternary, and a Llama 3 checkpoint
with its BPE tokenizer. Prompts are ASCII: the win98 console speaks cp437.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.core.artifacts import ArtifactDir
from harness.guests.win98.wine_lane import WineAgent, windows_path, wine_agent, wine_available
from harness.run.session import TOK_S_LINE, quote_argument
from harness.vm.profile import load_profile
from tests.port.test_watcom import KINDS, RUNS, WIN32_TARGETS, Model, judge, make_models
from tests.support.port_helpers import WINE_MISSING, built

pytestmark = pytest.mark.wine

RUN_TIMEOUT_S = 180
# ASCII prompts for the serial line (the Llama 3 run of tests/port/test_watcom.py has a non-ASCII one).
WINE_RUNS = {kind: [run if kind != "llama3" else ["-t", "0", "-n", "40", "-i", "Once upon a time"]
                    for run in RUNS[kind]] for kind in KINDS}
# Which builds run each model: both dot-product builds for Q8_0 (where they differ), the shipped MMX one otherwise.
BUILDS = [(kind, qdot) for kind in KINDS for qdot in (("mmx", "c") if kind == "q8_0" else ("mmx",))]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WineAgent]:
    """agent98.exe, OpenWatcom's build, under Wine; ends with `!exit` as a Windows 98 session does."""
    if not wine_available():
        pytest.skip(WINE_MISSING)
    exe = built("watcom-win32", program="agent98")
    artifacts = ArtifactDir(tmp_path_factory.mktemp("watcom-agent"))
    with wine_agent(exe, artifacts) as running:
        running.console.sync(30)
        assert running.console.run(f"!timeout {RUN_TIMEOUT_S}", 20).exit_code == 0
        yield running
        running.console.send_line("@bye1 !exit")
        running.console.expect(re.compile(r"@@END-bye1-0@@"), 20, "the answer to !exit")
        assert running.process.wait(timeout=30) == 0, "agent98 did not exit with code 0 after !exit"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Model]:
    return make_models(tmp_path_factory.mktemp("watcom-wine-models"))


def _run_through_agent(agent: WineAgent, exe: Path, model: Model, run: list[str]) -> bytes:
    """One llama98.exe run sent over COM1 with `-r -`; the bytes it printed (stdout and stderr, as the serial
    line carries them), the tok/s line removed as harness.run.session does for a Windows 98 guest."""
    profile = load_profile("win98")
    argv = [windows_path(exe), windows_path(model.checkpoint), "-z", windows_path(model.tokenizer), *run, "-r", "-"]
    result = agent.console.run(" ".join(quote_argument(profile, part) for part in argv), RUN_TIMEOUT_S)
    assert result.exit_code == 0, result.output[-500:]
    raw = result.output.encode(profile.console.encoding, errors="surrogateescape")
    raw = raw if raw.endswith(b"\n") else raw + b"\n"
    start = raw.rfind(b"llama98 report ")
    assert start > 0, "no report in the output"
    text = raw[:start]
    match = TOK_S_LINE.search(text)
    assert match is not None, "no `achieved tok/s` line: did the run finish?"
    return text[:match.start() + (1 if match.group(0).startswith(b"\n") else 0)] + raw[start:]


@pytest.mark.parametrize(("kind", "qdot"), BUILDS, ids=[f"{kind}-{qdot}" for kind, qdot in BUILDS])
def test_openwatcom_exe_through_openwatcom_agent98_gets_ok_verdicts(kind: str, qdot: str, agent: WineAgent,
                                                                    models: dict[str, Model]) -> None:
    model = models[kind]
    exe = built(WIN32_TARGETS[qdot])
    for run in WINE_RUNS[kind]:
        _text, report, check = judge(model, _run_through_agent(agent, exe, model, run))
        assert check.ok and check.transport_ok, f"{kind} {run}: {check}"
        assert report.tokens, "no token lines in the report"


def test_the_agent_is_openwatcoms_and_reports_the_files_crc(agent: WineAgent, models: dict[str, Model]) -> None:
    """The agent answering is the OpenWatcom agent98.exe (its console log names it), and its !crc32 agrees with
    what the OpenWatcom llama98.exe reported reading."""
    command = (agent.agent_log.parent / "agent98-command.txt").read_text()
    assert str(built("watcom-win32", program="agent98")) in command
    model = models["fp32"]
    _text, report, _check = judge(model, _run_through_agent(agent, built("watcom-win32"), model, ["-t", "0",
                                                                                                  "-n", "8"]))
    crc = agent.console.run(f"!crc32 {windows_path(model.checkpoint)}", 30).output.split()[0]
    assert report.model.crc32 == int(crc, 16)
