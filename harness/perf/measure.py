"""Measure the port's speed: exact instructions per token on the host, and guest figures from a run's report.

Speed comparisons between commits need a figure that does not move with host load. Two are (nearly) exact:
- host-ipt: instructions per token of the guest build (tiny686: gcc -m32 -march=pentium2 -O2 -static) counted by
  valgrind callgrind. Two runs that differ only in length are subtracted, so loading, CRC and setup cancel:
  (Ir at -n LONG - Ir at -n SHORT) / (LONG - SHORT). Needs no VM. Repeats agree to ~2e-5 (the port prints its
  timer readings, and their digits vary).
- guest-ipt: under QEMU `-icount shift=N,sleep=off` guest time advances 2^N ns per guest instruction, so the
  port's raw timer ticks convert back to instructions: ticks * (1e9 / hz) / 2^N. The count includes whatever the
  guest kernel runs meanwhile (timer interrupts land at different points of each run), so repeats agree to ~0.1%
  rather than exactly, and it sits within ~1% of host-ipt for the same binary.
Wall-clock tok/s in the guest is the figure users care about but is noisy; it is computed from the same report.

Both figures are taken per build, and a build is one toolchain's: `gcc` (tiny686, win32) or `openwatcom`
(watcom-tiny686, watcom-win32), what the nightly job and the Windows 98 forks compile with. host-ipt measures the
i386 Linux build of either (valgrind runs i386 ELF); the Win32 builds run only in a Windows 98 guest. A figure is
recorded with the build and toolchain it came from, because OpenWatcom's code is another program than gcc's: the
two are compared side by side, never mixed in one history line.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError, UsageError
from harness.core.proc import ToolError, first_line, run
from harness.formats.report import Report, ReportError, read_report

log = logging.getLogger(__name__)

CALLGRIND_TIMEOUT_S = 900
HOST_BUILD = "tiny686"
TOOLCHAINS = ("gcc", "openwatcom")
DEFAULT_TOOLCHAIN = "gcc"
# The build each toolchain makes for each kind of guest (keyed by the gcc build the guest runs, which
# harness/port/build.py maps from the guest's console): the same sources and guest OS, another compiler.
TOOLCHAIN_BUILDS: dict[str, dict[str, str]] = {
    "tiny686": {"gcc": "tiny686", "openwatcom": "watcom-tiny686"},
    "win32": {"gcc": "win32", "openwatcom": "watcom-win32"},
}
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


class MeasureError(HarnessError):
    """A measurement could not be taken: the tool is missing, the port crashed, or the run ended early."""


class NotMeasurable(MeasureError):
    """This figure cannot be taken of this build on this host, for a known reason that is no defect of the port
    (a capability the host lacks). Its own type so `bench` says so in one line and measures the rest."""


# valgrind gives a static binary a brk heap of at most 8 MB. glibc's malloc then takes memory with mmap; the
# Linux runtime of OpenWatcom grows its heap with brk only, so its build runs out of memory under valgrind on
# any model of more than a few MB (stories260K fits, 15M-shape does not); in the guest it has the guest's RAM.
BRK_OVERFLOW = "brk segment overflow"


@dataclass(frozen=True)
class Workload:
    """A model, its tokenizer and the positions measured: tokens SHORT..LONG of a greedy (-t 0) run."""

    name: str
    model: Path
    tokenizer: Path
    short_steps: int
    long_steps: int

    @property
    def measured_tokens(self) -> int:
        return self.long_steps - self.short_steps

    def port_args(self, steps: int) -> list[str]:
        return [str(self.model), "-z", str(self.tokenizer), "-t", "0", "-s", "42", "-n", str(steps)]


# Positions measured per model: late enough that attention over the context shows, short enough to be quick.
WORKLOAD_POSITIONS: dict[str, tuple[int, int]] = {"260K": (20, 40), "15M-shape": (4, 8),
                                                  # bigger than a 128 MB guest's RAM: streamed, seconds per token
                                                  "110M-shape": (1, 3), "1B-shape": (1, 3)}
# Guest runs for wall-clock tok/s are longer: the figure is per token, and more tokens average the host's noise.
WALL_STEPS: dict[str, int] = {"260K": 200, "15M-shape": 32, "110M-shape": 4, "1B-shape": 3}
# The model name (as `run --model` takes it) each workload measures.
WORKLOAD_MODELS: dict[str, str] = {"260K": "stories260K", "15M-shape": "15M-shape", "110M-shape": "110M-shape",
                                   "1B-shape": "1B-shape"}
WORKLOAD_ALIASES: dict[str, str] = {"stories260K": "260K", "stories260k": "260K", "260k": "260K",
                                    "15M": "15M-shape", "15m-shape": "15M-shape"}


def _canonical(raw: str) -> str:
    """A workload name with aliases resolved; a `:q8_0` / `:ternary` suffix (quantized weights) is kept."""
    from harness.models.names import split_quant

    base, quant = split_quant(raw)
    name = WORKLOAD_ALIASES.get(base, base)
    if name not in WORKLOAD_POSITIONS:
        raise UsageError(f"unknown model {raw!r}: choose from {', '.join(WORKLOAD_POSITIONS)} "
                         f"(each may take :q8_0 or :ternary)")
    return f"{name}:{quant}" if quant else name


def workload_names(text: str) -> list[str]:
    """Parse a comma-separated --models value into canonical names; unknown names are a usage error."""
    names: list[str] = []
    for raw in (item.strip() for item in text.split(",")):
        if not raw:
            continue
        name = _canonical(raw)
        if name not in names:
            names.append(name)
    if not names:
        raise UsageError("--models is empty: name at least one of " + ", ".join(WORKLOAD_POSITIONS))
    return names


def workload(name: str, short_steps: int | None = None, long_steps: int | None = None) -> Workload:
    """The files and positions of a named workload; fixtures are local only (never downloaded here)."""
    from harness.models.names import choose_model, split_quant

    name = _canonical(name)
    base, quant = split_quant(name)
    short_default, long_default = WORKLOAD_POSITIONS[base]
    short = short_default if short_steps is None else short_steps
    long = long_default if long_steps is None else long_steps
    if not 1 <= short < long:
        raise UsageError(f"positions must satisfy 1 <= short < long, got {short} and {long}")
    # The same resolution as `run`: a real fixture when it is here, else its generated stand-in, said in one line.
    choice = choose_model(WORKLOAD_MODELS[base], allow_download=False)
    log.info("%s: %s", name, choice.label)
    model = choice.checkpoint
    if quant:
        from harness.models.quantize import cached_quantized

        model = cached_quantized(model, quant)
    return Workload(name, model, choice.tokenizer, short, long)


def toolchain_names(text: str) -> list[str]:
    """Parse a comma-separated --toolchain value (gcc, openwatcom) in the order given; unknown names are a usage
    error."""
    names: list[str] = []
    for raw in (item.strip().lower() for item in text.split(",")):
        if not raw:
            continue
        if raw not in TOOLCHAINS:
            raise UsageError(f"unknown toolchain {raw!r}: choose from {', '.join(TOOLCHAINS)}")
        if raw not in names:
            names.append(raw)
    if not names:
        raise UsageError("--toolchain is empty: name gcc, openwatcom or both (gcc,openwatcom)")
    return names


def toolchain_of(build: str) -> str:
    """The toolchain a build target is compiled with: openwatcom for the targets harness/port/build.py builds
    with wmake (watcom-*), gcc for the GNU make ones (gcc, gcc -m32, MinGW)."""
    from harness.port.build import TARGETS

    spec = TARGETS.get(build)
    if spec is None:
        raise UsageError(f"unknown build target {build!r}: choose from {', '.join(TARGETS)}")
    return "openwatcom" if spec.toolchain == "openwatcom" else "gcc"


def toolchain_build(toolchain: str, guest_build: str = HOST_BUILD) -> str:
    """The build `toolchain` makes for a guest that runs `guest_build` (tiny686 or win32)."""
    if toolchain not in TOOLCHAINS:
        raise UsageError(f"unknown toolchain {toolchain!r}: choose from {', '.join(TOOLCHAINS)}")
    try:
        return TOOLCHAIN_BUILDS[guest_build][toolchain]
    except KeyError:
        raise UsageError(f"no {toolchain} build for a guest that runs the {guest_build} build") from None


def guest_build(vm: str | None, profile: str = "auto") -> str:
    """The gcc build a guest runs (tiny686 or win32; harness/run/judged.py reads the profile, booting nothing)."""
    from harness.run.judged import guest_build as judged_guest_build

    return judged_guest_build(vm, profile)


def weight_bytes(load: Workload) -> float:
    """Bytes of weights one token reads with this workload's model (harness/models/traffic.py)."""
    from harness.models.traffic import weight_bytes_per_token
    from harness.oracle.checkpoint import load_checkpoint

    return weight_bytes_per_token(load_checkpoint(load.model).config)


@dataclass(frozen=True)
class HostIpt:
    """Instructions per token of one build under callgrind, with the raw counts it came from."""

    per_token: float
    ir_short: int
    ir_long: int
    short_steps: int
    long_steps: int
    build: str = HOST_BUILD


def _valgrind() -> str:
    path = shutil.which("valgrind")
    if path is None:
        raise MeasureError("valgrind not found: apt-get install valgrind")
    return path


def callgrind_instructions(binary: Path, load: Workload, steps: int, timeout: float = CALLGRIND_TIMEOUT_S) -> int:
    """Total instructions (Ir) of one run of `binary` under callgrind; the run must produce all `steps` tokens."""
    with tempfile.TemporaryDirectory(prefix="llama98-ipt-") as tmp:
        report_path = Path(tmp) / "run.rep"
        command = [_valgrind(), "--tool=callgrind", "--callgrind-out-file=/dev/null", str(binary),
                   *load.port_args(steps), "-r", str(report_path)]
        result = run(command, what=f"callgrind run of {binary} (-n {steps})", timeout=timeout, check=False,
                     error=MeasureError)
        if result.returncode != 0 and BRK_OVERFLOW in result.stderr:
            raise NotMeasurable(f"{load.name} does not fit the 8 MB brk heap valgrind gives a static binary, and "
                                f"this build's C runtime takes memory with brk only (OpenWatcom's Linux runtime; "
                                f"glibc's falls back to mmap): measure it in the guest with --mode icount")
        if result.returncode != 0:
            last = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("==")]
            why = last[-1] if last else f"exit code {result.returncode}"
            raise MeasureError(f"the port failed under callgrind (-n {steps}, exit {result.returncode}): {why}")
        match = _COLLECTED.search(result.stderr)
        if match is None:
            raise MeasureError(f"callgrind printed no 'Collected' count for {binary} (-n {steps})")
        try:
            produced = len(read_report(report_path).tokens)
        except ReportError as error:
            raise MeasureError(f"the port's report is unusable: {error}") from None
        if produced != steps:
            raise MeasureError(f"the run stopped after {produced} of {steps} tokens; the difference would be wrong")
        return int(match.group(1))


def host_ipt(binary: Path, load: Workload, timeout: float = CALLGRIND_TIMEOUT_S, build: str = HOST_BUILD) -> HostIpt:
    """Instructions per token of `binary` (the i386 Linux `build` it came from, recorded with the figure) on
    `load`: the two callgrind runs go in parallel (they are independent)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        short = pool.submit(callgrind_instructions, binary, load, load.short_steps, timeout)
        long = pool.submit(callgrind_instructions, binary, load, load.long_steps, timeout)
        ir_short, ir_long = short.result(), long.result()
    per_token = (ir_long - ir_short) / load.measured_tokens
    if per_token <= 0:
        raise MeasureError(f"instruction counts do not grow with length ({ir_short} at -n {load.short_steps}, "
                           f"{ir_long} at -n {load.long_steps})")
    return HostIpt(per_token, ir_short, ir_long, load.short_steps, load.long_steps, build)


def guest_instructions(ticks: int, hz: int, shift: int) -> float:
    """Guest instructions behind `ticks` of a timer at `hz` when QEMU runs with -icount shift=`shift`."""
    if hz <= 0:
        raise MeasureError(f"the report's timer has hz={hz}; cannot convert ticks to time")
    return ticks * (1e9 / hz) / float(1 << shift)


def guest_ipt(report: Report, shift: int, short_steps: int, long_steps: int) -> float:
    """Guest instructions per token over token lines SHORT..LONG of one run (same positions as host-ipt).

    The ticks a step spent reading streamed weights (`io=`) are left out: they hold the emulated disk's time,
    which under -icount is QEMU's I/O and idle warps, not guest instructions."""
    if len(report.tokens) < long_steps:
        raise MeasureError(f"the guest run produced {len(report.tokens)} tokens, fewer than the {long_steps} needed")
    ticks = sum(record.ticks - (record.io_ticks or 0) for record in report.tokens[short_steps:long_steps])
    return guest_instructions(ticks, report.timer.hz, shift) / (long_steps - short_steps)


def report_ticks(report: Report) -> int:
    """Total raw ticks of the token lines: equal in two icount runs of one binary (the determinism proof)."""
    return sum(record.ticks for record in report.tokens)


# --- the environment a figure was measured in -----------------------------------------------------------------

def host_cpu() -> str:
    """The host CPU's model name from /proc/cpuinfo (or what the platform module knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path) -> dict[str, object] | None:
    """sha, subject, commit date and dirtiness of the checkout at `repo` (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            result = run(["git", "-C", str(repo), *args], what="git", timeout=30, check=False)
        except ToolError:
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    sha = git("rev-parse", "--verify", "HEAD")
    if not sha:
        return None
    subject = git("log", "-1", "--format=%s", sha) or ""
    date = git("log", "-1", "--format=%cI", sha) or ""
    status = git("status", "--porcelain", "--untracked-files=no", "--", "ports/llama98")
    return {"sha": sha, "subject": subject, "date": date, "dirty": bool(status)}


def compiler_version(build: str) -> str | None:
    """The compiler's version line for `build`: `CC --version` for gcc's builds, wcc386's banner for OpenWatcom's
    (taken from the toolchain in use; None when it is not there, which the figure's record then says)."""
    from harness.port.build import TARGETS

    if toolchain_of(build) == "gcc":
        return first_line([TARGETS[build].compiler, "--version"])
    from harness.toolchains.openwatcom import ToolchainError, find_openwatcom

    try:
        watcom = find_openwatcom()
        result = run([str(watcom.tool("wcc386")), "-?"], what="wcc386 -?", env=watcom.env("linux"), timeout=30,
                     check=False, error=ToolchainError)
    except ToolchainError:
        return None
    lines = [line.strip() for line in (result.stdout or result.stderr).splitlines() if line.strip()]
    ends = next((index for index, line in enumerate(lines) if "version" in line.lower()), None)
    return " ".join(lines[:ends + 1]) if ends is not None else None  # "Open Watcom C x86 ... Version 2.0 beta ..."


def environment(profile: str | None = None, qemu_binary: str | None = "qemu-system-i386",
                build: str | None = None) -> dict[str, object]:
    """Everything a figure depends on besides the port: host CPU and cores, QEMU, the build (target, toolchain,
    compiler and flags) and the profile. `build` names the build measured; by default the gcc build the profile's
    guest runs (tiny686 without a profile)."""
    from harness.port.build import compile_flags, target_for_console
    from harness.vm.profile import load_profile

    if build is None:
        build = target_for_console(load_profile(profile).console.kind) if profile else HOST_BUILD
    return {
        "host_cpu": host_cpu(),
        "host_cores": os.cpu_count(),
        "host_os": platform.platform(),
        "qemu": first_line([qemu_binary, "--version"]) if qemu_binary else None,
        "valgrind": first_line(["valgrind", "--version"]),
        "compiler": compiler_version(build),
        "build": build,
        "toolchain": toolchain_of(build),
        "cflags": compile_flags(build),
        "profile": profile,
    }


# --- guest runs (through harness.run.session) ------------------------------------------------------------------------

DEFAULT_ICOUNT_SHIFT = 1  # 2 ns of guest time per instruction; the same shift `pytest --vm-icount` uses


@dataclass(frozen=True)
class GuestRun:
    """One run in the guest: our port's parsed report (None for a foreign program) and how long the host waited."""

    report: Report | None
    host_seconds: float
    profile: str
    icount_shift: int | None
    program_tok_s: float | None = None  # a llama2c-style program's own `achieved tok/s` figure

    @property
    def tok_s(self) -> float:
        """Tokens per second: from the report's raw timer ticks (our port) or the program's own line."""
        value = self.report.tok_per_s() if self.report is not None else self.program_tok_s
        if value is None:
            raise MeasureError("the guest run gave no tok/s (fewer than 2 tokens, or no 'achieved tok/s' line)")
        return value

    def guest_ipt(self, short_steps: int, long_steps: int) -> float:
        if self.report is None:
            raise MeasureError("guest instructions per token need our port's run report")
        if self.icount_shift is None:
            raise MeasureError("guest instructions per token need an -icount run")
        return guest_ipt(self.report, self.icount_shift, short_steps, long_steps)


def run_in_guest(binary: Path | None, load: Workload, *, vm: str | None = None, profile: str = "auto",
                 icount_shift: int | None = None, runs: int = 1, steps: int | None = None,
                 artifacts: Path | None = None, timeout_scale: float = 1.0, cli: str = "llama98") -> list[GuestRun]:
    """Boot the guest once, inject `binary` (None: build for the guest) and the workload, run it `runs` times.

    Each run is greedy (-t 0) for `steps` (default LONG) steps, so host-ipt and guest-ipt cover the same positions.
    """
    steps = steps or load.long_steps
    if steps < load.long_steps:
        raise UsageError(f"a guest run needs at least {load.long_steps} steps for {load.name}, got {steps}")
    from harness.judge.text_check import program_tok_s
    from harness.models.names import ModelChoice
    from harness.run.session import PortArgs, Session, SessionOptions

    options = SessionOptions(vm=vm, profile=profile, binary=binary, icount_shift=icount_shift,
                             artifacts=artifacts, timeout_scale=timeout_scale, inputs=(load.model, load.tokenizer))
    results: list[GuestRun] = []
    with Session(options) as session:
        injected = session.inject_model(ModelChoice(load.model, load.tokenizer, load.name))
        for _ in range(runs):
            if cli == "llama2c":  # a foreign program: only its own tok/s line and the harness's wall time
                program = session.run_foreign(injected, PortArgs(temperature=0.0, steps=steps))
                results.append(GuestRun(None, program.seconds, session.profile.name, icount_shift,
                                        program_tok_s(program.output)))
                continue
            run = session.run_port(injected, PortArgs(temperature=0.0, steps=steps))
            if len(run.report.tokens) < load.long_steps:  # the positions guest-ipt is measured over
                raise MeasureError(f"the guest run stopped after {len(run.report.tokens)} of {steps} tokens",
                                   artifacts=session.artifacts)
            results.append(GuestRun(run.report, run.seconds, session.profile.name, icount_shift))
    return results
