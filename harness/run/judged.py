"""Run a binary in a ready Session and judge it: the one place the CLI, the pytest plugin and bisect share.

Two kinds of binary, one outcome:
- `llama98` (our port): `-r -` gives every token id and the raw timer ticks, so the verdict is token-level
  (harness/judge/token_check.py) and tok/s is recomputed from the ticks;
- `llama2c` (anyone's llama2.c-family build: llama2.c's `run`, Windows 98 forks, DOS ports): only llama2.c's flags,
  the printed text is found among the program's chatter and judged text-level (harness/judge/text_check.py), and
  tok/s is the program's own `achieved tok/s` line.
In both cases the harness also measures the guest wall time around the run.

A fork is often built by its own makefile right before it is judged (`run --binary run --build 'make run'`, and
each step of `bisect --build`): `run_build` runs that command, in the user's environment for make and gcc, or in
OpenWatcom's own (harness/toolchains/openwatcom.py: WATCOM, INCLUDE and PATH for the guest's OS, nothing of the
user's) when the command starts with an OpenWatcom tool (wmake, wcl386, owcc, wcc386) or the toolchain is named.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.proc import run
from harness.formats.report import Report
from harness.judge.text_check import TextVerdict, judge_text, program_tok_s
from harness.judge.token_check import RunCheck, check_run
from harness.models.names import ModelChoice
from harness.oracle.generate import Oracle, clamp_args
from harness.port.build import BUILD_TIMEOUT_S, PortBuildError
from harness.run.session import InjectedModel, PortArgs, PortRun, ProgramRun, Session, port_target
from harness.toolchains.openwatcom import Target, ToolchainMissing, find_openwatcom

CLI_STYLES = ("llama98", "llama2c")
PORT_MARKER = b"llama98 report "  # the report header only our port's binary contains
# The toolchain a build command runs with: `auto` reads the command's first word.
BUILD_TOOLCHAINS = ("auto", "gcc", "openwatcom")
WATCOM_TOOLS = ("wmake", "wcl386", "owcc", "wcc386")
BUILD_OUTPUT_LINES = 6


def detect_cli(binary: Path) -> str:
    """`llama98` when the binary carries our run report's header string, else `llama2c`: cheap and certain,
    because only a build of our port can write that report."""
    try:
        data = binary.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read the binary {binary}: {error.strerror}") from None
    return "llama98" if PORT_MARKER in data else "llama2c"


def choose_cli(requested: str, binary: Path | None) -> str:
    """The CLI style of a run: as asked, or detected from `binary` for `auto` (our own build is `llama98`)."""
    if requested != "auto":
        if requested not in CLI_STYLES:
            raise UsageError(f"unknown --cli {requested!r}: choose llama98, llama2c or auto")
        return requested
    return detect_cli(binary) if binary is not None else "llama98"


@dataclass
class Outcome:
    """A judged run: what a test asserts on and what the CLI prints.

    `ok`, `verdict` (one line) and `level` ("token-level" or "text-level") say whether it was right; `text` is the
    generated text (prompt echo included, as llama2.c prints it); `tok_s` the guest's tokens per second (from raw
    timer ticks for our port, the program's own line otherwise; None when the program printed none);
    `wall_seconds` the guest run time the harness measured around the command; `artifacts` the run's directory.
    `run` and `report` are set for our port; `output` holds everything a foreign program printed.
    """

    cli: str
    level: str
    ok: bool
    verdict: str
    text: bytes
    tok_s: float | None
    wall_seconds: float
    artifacts: Path
    injected: InjectedModel
    check: RunCheck | TextVerdict
    run: PortRun | None = None
    program: ProgramRun | None = None

    @property
    def report(self) -> Report | None:
        return self.run.report if self.run is not None else None

    @property
    def output(self) -> bytes:
        if self.program is not None:
            return self.program.output
        return self.run.text if self.run is not None else b""


def judge_foreign(choice: ModelChoice, args: PortArgs, output: bytes) -> TextVerdict:
    """Judge a llama2c-style program's whole output against the oracle for the same arguments."""
    oracle = Oracle.load(choice.checkpoint, choice.tokenizer)
    run_args = clamp_args(oracle.checkpoint.config.seq_len, args.temperature, args.topp, args.seed, args.steps,
                          args.prompt)
    return judge_text(oracle, run_args, output)


def run_and_judge(session: Session, injected: InjectedModel, args: PortArgs, cli: str) -> Outcome:
    """Run the session's binary with `args` in the guest and judge it at the level its kind allows."""
    artifacts = session.artifacts.path
    if cli == "llama98":
        port_run = session.run_port(injected, args)
        check = check_run(injected.choice, port_run.text, port_run.report)
        outcome = Outcome("llama98", "token-level", check.ok, str(check), port_run.text,
                          port_run.report.tok_per_s(), port_run.seconds, artifacts, injected, check, run=port_run)
    else:
        program = session.run_foreign(injected, args)
        verdict = judge_foreign(injected.choice, args, program.output)
        outcome = Outcome("llama2c", "text-level", verdict.ok, str(verdict), verdict.text,
                          program_tok_s(program.output), program.seconds, artifacts, injected, verdict,
                          program=program)
    (artifacts / "verdict.txt").write_text(f"{outcome.level}: {outcome.verdict}\n", encoding="utf-8")
    return outcome


# --- a fork's own build ----------------------------------------------------------------------------------------


def guest_build(vm: str | None, profile: str = "auto") -> str:
    """The gcc build of our port a guest runs (tiny686 or win32): the stand-in's unless `vm` names an image,
    whose profile is detected (read-only, nothing boots) unless `profile` names it."""
    from harness.guests.detect import detect_profile
    from harness.vm.profile import load_profile

    if profile != "auto":
        name = profile
    else:
        name = "tiny686" if vm in (None, "tiny686") else detect_profile(Path(str(vm)))
    return port_target(load_profile(name))


def watcom_os(build: str) -> Target:
    """OpenWatcom's target OS for programs that run where `build` runs: nt for Win32 guests, else linux."""
    return "nt" if build.endswith("win32") else "linux"


def build_toolchain(command: str, requested: str = "auto") -> str:
    """`gcc` or `openwatcom`: as requested, or for `auto` openwatcom when the command starts with one of its tools
    (`wmake -f fork.mk`, `wcl386 ...`, `owcc ...`), else gcc (the user's own environment, as make expects)."""
    if requested not in BUILD_TOOLCHAINS:
        raise UsageError(f"unknown toolchain {requested!r}: choose from {', '.join(BUILD_TOOLCHAINS)}")
    if requested != "auto":
        return requested
    try:
        words = shlex.split(command)
    except ValueError as error:
        raise UsageError(f"cannot parse the build command {command!r}: {error}") from None
    program = next((word for word in words if "=" not in word), "")  # after any VAR=value assignments
    return "openwatcom" if os.path.basename(program) in WATCOM_TOOLS else "gcc"


def build_env(toolchain: str, target: Target = "linux") -> dict[str, str] | None:
    """The environment a build command runs in: OpenWatcom's for `target` (the toolchain is found or built
    first; a machine without one gets ToolchainMissing's one line), None (the user's own) for gcc."""
    if toolchain != "openwatcom":
        return None
    try:
        return find_openwatcom().env(target)
    except ToolchainMissing as error:
        raise ToolchainMissing(f"a build with OpenWatcom needs the toolchain: {error}") from None


def run_build(command: str, cwd: Path, *, toolchain: str = "auto", target: Target = "linux",
              timeout: float = BUILD_TIMEOUT_S) -> str:
    """Run a fork's build command with sh in `cwd` and return the toolchain it ran with; a failure is one
    PortBuildError line with the command's first error lines."""
    if not command.strip():
        raise UsageError("the build command is empty")
    chosen = build_toolchain(command, toolchain)
    env = build_env(chosen, target)
    where = f"OpenWatcom's {target} environment" if env is not None else "your environment"
    result = run(["sh", "-c", command], what=f"the build command {command!r}", cwd=cwd, env=env, timeout=timeout,
                 check=False, error=PortBuildError)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()] or lines[-BUILD_OUTPUT_LINES:]
        detail = " | ".join(errors[:BUILD_OUTPUT_LINES]) or "no output"
        raise PortBuildError(f"the build command {command!r} failed in {cwd} (exit {result.returncode}, {where}): "
                             f"{detail}")
    return chosen
