"""harness.run.judged without a guest: which command-line style a binary gets (choose_cli/detect_cli on real
builds), and run_and_judge's Outcome for real runs of the native builds.

run_and_judge needs only what a Session hands it: `artifacts.path`, `run_port` and `run_foreign`. HostSession below
provides them by running the native build of the port (or of a llama2.c-style fork of it) on this machine with the
exact command line a guest would get (PortArgs.argv), so the judging, the Outcome and verdict.txt are the real
ones; booting QEMU around the same steps is the e2e suite's job."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.errors import UsageError
from harness.formats.report import split_stdout
from harness.judge.text_check import TextVerdict
from harness.judge.token_check import RunCheck
from harness.models.names import ModelChoice
from harness.run.judged import CLI_STYLES, PORT_MARKER, Outcome, choose_cli, detect_cli, run_and_judge
from harness.run.session import InjectedModel, PortArgs, PortRun, ProgramRun
from tests.support.c_programs import compile_c
from tests.support.foreign_helpers import WRONG_ROPE, fork_binary
from tests.support.port_helpers import GREEDY_STORY_START, built, fixture, run_port


@dataclass
class Artifacts:
    path: Path


class HostSession:
    """The three things run_and_judge uses of a Session, done on the host with a native build."""

    def __init__(self, binary: Path, artifacts: Path) -> None:
        self.binary = binary
        self.artifacts = Artifacts(artifacts)

    def _run(self, injected: InjectedModel, args: PortArgs, cli: str) -> tuple[str, int, bytes, bytes, float]:
        argv = args.argv(injected.checkpoint, injected.tokenizer, cli=cli)
        started = time.monotonic()
        result = run_port(self.binary, argv)
        return " ".join(argv), result.returncode, result.stdout, result.stderr, time.monotonic() - started

    def run_port(self, injected: InjectedModel, args: PortArgs) -> PortRun:
        command, code, stdout, _stderr, seconds = self._run(injected, args, "llama98")
        assert code == 0
        text, report = split_stdout(stdout)
        return PortRun(command, code, text, report, seconds)

    def run_foreign(self, injected: InjectedModel, args: PortArgs) -> ProgramRun:
        command, code, stdout, stderr, seconds = self._run(injected, args, "llama2c")
        return ProgramRun(command, code, stdout + stderr, seconds)


@pytest.fixture
def injected() -> InjectedModel:
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    return InjectedModel(ModelChoice(model, tokenizer, "stories260K"), str(model), str(tokenizer))


# --- which command-line style ------------------------------------------------------------------------------------

def test_our_native_build_is_detected_as_llama98(tmp_path):
    binary = built("native")
    assert PORT_MARKER in binary.read_bytes()
    assert detect_cli(binary) == "llama98"
    assert choose_cli("auto", binary) == "llama98"


def test_any_other_program_is_llama2c(tmp_path):
    other = compile_c('#include <stdio.h>\nint main(void) { puts("llama2.c"); return 0; }\n', tmp_path / "other")
    assert detect_cli(other) == "llama2c"
    assert choose_cli("auto", other) == "llama2c"
    assert detect_cli(fork_binary("native")) == "llama2c"  # our own sources built the way forks behave


def test_the_marker_alone_decides(tmp_path):
    blob = tmp_path / "blob.exe"
    blob.write_bytes(b"MZ" + b"\0" * 100 + PORT_MARKER + b"1\n")
    assert detect_cli(blob) == "llama98"
    blob.write_bytes(b"MZ" + b"\0" * 100 + b"llama98 repor")
    assert detect_cli(blob) == "llama2c"


def test_an_explicit_style_wins_and_auto_without_a_binary_is_ours(tmp_path):
    fork = fork_binary("native")
    assert choose_cli("llama98", fork) == "llama98"
    assert choose_cli("llama2c", built("native")) == "llama2c"
    assert choose_cli("llama2c", tmp_path / "missing") == "llama2c"  # not even read
    assert choose_cli("auto", None) == "llama98"
    assert CLI_STYLES == ("llama98", "llama2c")


@pytest.mark.parametrize("requested", ["LLAMA98", "run.c", ""])
def test_an_unknown_style_is_a_usage_error(requested):
    with pytest.raises(UsageError, match=f"unknown --cli {requested!r}"):
        choose_cli(requested, None)


def test_an_unreadable_binary_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read the binary") as error:
        choose_cli("auto", tmp_path)  # a directory
    assert "\n" not in str(error.value)
    with pytest.raises(UsageError, match="No such file"):
        detect_cli(tmp_path / "missing")


# --- the judged outcome of real runs ---------------------------------------------------------------------------

def test_our_port_gets_a_token_level_outcome(tmp_path, injected):
    session = HostSession(built("native"), tmp_path)
    outcome = run_and_judge(session, injected, PortArgs(temperature=0.0, steps=60), "llama98")  # type: ignore[arg-type]
    assert outcome.ok, outcome.verdict
    assert (outcome.cli, outcome.level) == ("llama98", "token-level")
    assert isinstance(outcome.check, RunCheck) and outcome.verdict == str(outcome.check)
    assert outcome.text.startswith(GREEDY_STORY_START)
    assert outcome.run is not None and outcome.program is None
    assert outcome.report is outcome.run.report and len(outcome.report.tokens) == 60
    assert outcome.output == outcome.run.text == outcome.text
    assert outcome.tok_s == outcome.report.tok_per_s() and outcome.tok_s > 0
    assert outcome.wall_seconds == outcome.run.seconds and outcome.artifacts == tmp_path
    assert (tmp_path / "verdict.txt").read_text() == f"token-level: {outcome.verdict}\n"


def test_a_sampled_run_with_a_prompt_is_ok_at_token_level(tmp_path, injected):
    session = HostSession(built("native"), tmp_path)
    args = PortArgs(temperature=0.8, topp=0.9, seed=7, steps=80, prompt=b"One day")
    outcome = run_and_judge(session, injected, args, "llama98")  # type: ignore[arg-type]
    assert outcome.ok, outcome.verdict
    assert outcome.text.startswith(b"One day")
    assert "T=0.8 seed=7" in outcome.verdict


def test_a_fork_gets_a_text_level_outcome(tmp_path, injected):
    session = HostSession(fork_binary("native"), tmp_path)
    outcome = run_and_judge(session, injected, PortArgs(temperature=0.0, steps=60), "llama2c")  # type: ignore[arg-type]
    assert outcome.ok, outcome.verdict
    assert (outcome.cli, outcome.level) == ("llama2c", "text-level")
    assert isinstance(outcome.check, TextVerdict)
    assert outcome.report is None and outcome.run is None and outcome.program is not None
    assert outcome.output == outcome.program.output != outcome.text  # the chatter around the text
    assert outcome.text.startswith(b"Once upon a time")
    assert outcome.tok_s is not None and outcome.tok_s > 0  # the program's own "achieved tok/s" line
    assert (tmp_path / "verdict.txt").read_text().startswith("text-level: ok: ")


def test_a_wrong_fork_gets_a_failing_outcome_and_verdict_file(tmp_path, injected):
    session = HostSession(fork_binary("native", WRONG_ROPE), tmp_path)
    outcome = run_and_judge(session, injected, PortArgs(temperature=0.0, steps=200), "llama2c")  # type: ignore[arg-type]
    assert not outcome.ok
    assert outcome.verdict.startswith("FAIL: ") and "at byte" in outcome.verdict
    assert (tmp_path / "verdict.txt").read_text() == f"text-level: {outcome.verdict}\n"


def test_outcome_without_a_run_or_program_has_empty_output(tmp_path, injected):
    verdict = TextVerdict(False, "nothing ran")
    outcome = Outcome("llama2c", "text-level", False, str(verdict), b"", None, 0.0, tmp_path, injected, verdict)
    assert outcome.output == b"" and outcome.report is None
