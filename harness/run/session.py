"""A Session is one guest, ready, with the llama98 binary inside: the unit the CLI, the pytest plugin and the
benchmarks share.

It owns the run's artifact directory and wires the layers of ARCHITECTURE.md together: it picks the guest profile and
image, builds (or takes) the binary for that guest, opens the guest (Machine + FileServer + Guest, torn down on
any exit), injects files by FTP with checksum verification, runs the port with `-r -` and parses its report.
Checking a run against the oracle lives in harness/judge/token_check.py, so nothing here knows about numpy.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.artifacts import ArtifactDir
from harness.core.errors import HarnessError
from harness.core.lifecycle import StartStop
from harness.core.logs import quiet
from harness.formats.parts import MAX_PART_INDEX, check_port_readable, logical_size, part_name, part_paths
from harness.formats.report import Report, ReportError, split_stdout
from harness.guests.resolve import resolve_guest
from harness.models.names import ModelChoice
from harness.oracle.checkpoint import load_checkpoint
from harness.run.timeouts import Calibration
from harness.run.workspace import (
    WorkSpaceError,
    WorkSpacePlan,
    plan_for_volume,
    plan_work_space,
    run_files,
    work_volume,
)
from harness.vm.disk import DiskImage
from harness.vm.guest import FetchResult, Guest, open_guest
from harness.vm.machine import MachineOptions
from harness.vm.profile import GuestProfile

CLEAN_STATE = "harness-clean"
TOK_S_LINE = re.compile(rb"(?:^|\n)achieved tok/s: [^\n]*\n\Z")
log = logging.getLogger(__name__)
SIGNALS = {4: "SIGILL, illegal instruction", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL (out of memory?)",
           11: "SIGSEGV, segmentation fault"}


class SessionError(HarnessError):
    """A guest run could not be set up or the port did not run to completion."""


@dataclass
class SessionOptions:
    """How the guest is chosen and started; every field has the default a user would expect."""

    vm: str | None = None  # None or "tiny686": the built-in stand-in; else a disk image path
    profile: str = "auto"  # "auto": detect from the image
    binary: Path | None = None  # a prebuilt llama98 for the guest instead of building one
    icount_shift: int | None = None  # deterministic guest time: -icount shift=N,sleep=off
    use_snapshot: bool = True
    artifacts: Path | None = None
    timeout_scale: float = 1.0
    ftp_mode: str | None = None  # passive | active | None (profile default)
    # Files the run will inject besides the binary (model, tokenizer): checked against the guest's free disk
    # before QEMU starts, and the reason tiny686 gets a second work disk when they do not fit its image.
    inputs: tuple[Path, ...] = ()
    memory_mb: int | None = None  # guest RAM instead of the profile's (e.g. -m 1024 for a resident reference run)


@dataclass(frozen=True)
class PortArgs:
    """The llama2.c-style arguments of one port run (the same values feed the oracle)."""

    temperature: float = 0.0
    topp: float = 0.9
    seed: int = 42
    steps: int = 200
    prompt: bytes | None = None
    budget_mb: float | None = None  # our port's -M: the memory budget in MiB (None: what the guest says is free)

    def argv(self, model: str, tokenizer: str, encoding: str = "utf-8", cli: str = "llama98") -> list[str]:
        """The command line; the prompt is decoded with the console's encoding so that its exact bytes are what
        reach the guest (the console encodes the line with the same codec). Only our port (`cli="llama98"`)
        gets `-r -` (and `-M` when a budget is set); a llama2c-style binary gets llama2.c's flags and nothing
        else."""
        args = [model, "-z", tokenizer, "-t", f"{self.temperature:g}", "-p", f"{self.topp:g}",
                "-s", str(self.seed), "-n", str(self.steps)]
        if self.prompt:
            args += ["-i", self.prompt.decode(encoding, errors="surrogateescape")]
        if cli != "llama98":
            return args
        return args + (["-M", f"{self.budget_mb:g}"] if self.budget_mb is not None else []) + ["-r", "-"]


@dataclass
class PortRun:
    """What one run of the port in the guest produced."""

    command: str
    exit_code: int
    text: bytes
    report: Report
    seconds: float
    guest_tok_s_line: str | None = None


@dataclass
class ProgramRun:
    """What a llama2.c-style program printed in the guest (stdout and stderr as the console saw them)."""

    command: str
    exit_code: int
    output: bytes
    seconds: float  # guest wall time of the command, measured by the harness around it


@dataclass
class InjectedModel:
    """A model and tokenizer inside the guest, with the transfers that put them there. `checkpoint` is the
    first part's guest path (what the port is given); `model_parts` every part's, in order
    (harness/formats/parts.py)."""

    choice: ModelChoice
    checkpoint: str
    tokenizer: str
    fetches: list[FetchResult] = field(default_factory=list)
    model_parts: list[str] = field(default_factory=list)


def port_target(profile: GuestProfile) -> str:
    """The build target of the port for a guest profile."""
    from harness.port.build import target_for_console

    return target_for_console(profile.console.kind)


def quote_argument(profile: GuestProfile, argument: str) -> str:
    """Quote one argument for the guest's command line (POSIX shell, or Windows' CreateProcess rules)."""
    if profile.console.kind == "posix-shell":
        return shlex.quote(argument)
    if argument and not re.search(r'[\s"]', argument):
        return argument
    escaped = re.sub(r'(\\*)"', lambda m: m.group(1) * 2 + '\\"', argument)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f'"{escaped}"'


def describe_exit(exit_code: int) -> str:
    """An exit code in words, naming the signal when a POSIX shell reports 128+N."""
    if exit_code > 128 and exit_code - 128 in SIGNALS:
        return f"exit code {exit_code} (killed by signal {exit_code - 128}: {SIGNALS[exit_code - 128]})"
    return f"exit code {exit_code}"


def run_timeout(choice: ModelChoice, steps: int, scale: float, calibration: Calibration | None = None,
                streamed: bool = False) -> float:
    """How long a port run may take: harness/run/timeouts.py's formula with this profile's measured speeds (or
    the pessimistic floors when none were measured), for the logical size of a checkpoint split in parts;
    `streamed`: the port reads its weights from disk every token (a model bigger than the guest's RAM)."""
    config = load_checkpoint(choice.checkpoint).config
    return (calibration or Calibration("none")).run_timeout(config, logical_size(choice.checkpoint), steps, scale,
                                                            streamed)


class Session(StartStop):
    """A ready guest with the port binary injected. Use as a context manager (everything is stopped on exit)."""

    def __init__(self, options: SessionOptions | None = None) -> None:
        self.options = options or SessionOptions()
        self.profile, self.image = resolve_guest(self.options.vm, self.options.profile)
        self.artifacts = ArtifactDir(self.options.artifacts)  # only once the guest is known to be usable
        self.binary = self.options.binary
        self.guest: Guest | None = None
        self.binary_path = ""
        self.binary_fetch: FetchResult | None = None
        self._stack = contextlib.ExitStack()
        self._has_clean_state = False
        self.work_space: WorkSpacePlan | None = None  # set by start()
        self.work_disk: Path | None = None  # the second work disk, when one was attached
        self.calibration = Calibration.load(self.profile.name)  # measured speeds that size the timeouts

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the image, build the binary, boot (or resume) the guest, inject the binary.

        The image's work volume is read first: a truncated image is a one-line error before minutes of building.
        """
        disk = DiskImage.probe(self.image)
        volume = work_volume(disk)
        if self.binary is None:
            from harness.port.build import build_port

            target = port_target(self.profile)
            log.info(f"building llama98 for {self.profile.name} (target {target})")
            self.binary = build_port(target)
        elif not self.binary.is_file():
            raise SessionError(f"llama98 binary not found: {self.binary}")
        self.work_space = plan_for_volume(self.profile, disk, run_files(self.profile, self.binary,
                                                                        self.options.inputs), volume)
        if self.work_space.work_disk_bytes:
            from harness.guests.tiny686.workdisk import create_work_disk

            scratch = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="llama98-work-")))
            self.work_disk = create_work_disk(scratch / "work.qcow2", self.work_space.work_disk_bytes)
        machine_options = MachineOptions(icount_shift=self.options.icount_shift,
                                         use_snapshot=self.options.use_snapshot,
                                         memory_mb=self.options.memory_mb,
                                         extra_disks=(self.work_disk,) if self.work_disk else ())
        log.info(f"starting guest {self.profile.name} from {self.image} (artifacts: {self.artifacts})")
        ready_timeout = self.profile.console.boot_timeout * self.options.timeout_scale
        self.guest = self._stack.enter_context(
            open_guest(self.profile, self.image, self.artifacts, machine_options, ready_timeout=ready_timeout))
        ready = self.guest.ready
        if ready is not None:
            how = "resumed from snapshot" if ready.from_snapshot else "cold boot"
            log.info(f"guest ready in {ready.seconds:.1f} s ({how})")
        if self.work_disk is not None:
            assert self.profile.files.work_disk_mount is not None
            self.guest.run_checked(self.profile.files.work_disk_mount.replace("{dir}", self.profile.files.work_dir),
                                   30)
        self.binary_fetch = self.fetch(self.binary, self.profile.files.names["binary"])
        self.binary_path = self.binary_fetch.guest_path
        if self.profile.console.kind == "posix-shell":
            self.guest.run_checked(f"chmod +x {shlex.quote(self.binary_path)}", 20)

    def save_clean_state(self) -> None:
        """Remember the guest as it is now (binary injected, nothing else) so tests can return to it."""
        self._require_guest().machine.save_state(CLEAN_STATE)
        self._has_clean_state = True

    def revert_to_clean_state(self) -> None:
        """Put the guest back to the saved clean state, then resync the console and the guest clock."""
        guest = self._require_guest()
        if not self._has_clean_state:
            raise SessionError("no clean state saved in this session")
        guest.machine.revert_state(CLEAN_STATE)
        guest.console.sync()
        guest.set_clock()

    def stop(self) -> None:
        """Stop the guest, the FTP server and QEMU (idempotent)."""
        self._stack.close()
        self.guest = None

    # -- work -----------------------------------------------------------------------------------------------------

    def _require_guest(self) -> Guest:
        if self.guest is None:
            raise SessionError("the session is not started")
        return self.guest

    def fetch(self, host_file: Path, guest_name: str, must_fit_in_memory: bool = False,
              mode: str | None = None) -> FetchResult:
        """Inject one file by FTP (`mode`, else the session's, else the profile's) and verify it in the guest."""
        guest = self._require_guest()
        size_mb = host_file.stat().st_size / 1e6
        mode = mode or self.options.ftp_mode or self.profile.ftp.default_mode
        log.info(f"injecting {host_file.name} ({size_mb:.1f} MB) as {guest_name} over {mode} FTP")
        size, scale = host_file.stat().st_size, self.options.timeout_scale
        result = guest.fetch(host_file, guest_name, mode=mode, must_fit_in_memory=must_fit_in_memory,
                             timeout=self.calibration.fetch_timeout(size, scale),
                             checksum_timeout=self.calibration.checksum_timeout(size, scale))
        self.calibration.record_fetch(result.size, result.seconds, result.checksum_seconds)
        log.info(f"  {result.size / 1e6:.1f} MB in {result.seconds:.2f} s ({result.megabytes_per_second:.1f} MiB/s), "
                  f"{self.profile.files.checksum.algorithm} verified in the guest")
        return result

    def inject_model(self, choice: ModelChoice, mode: str | None = None) -> InjectedModel:
        """Put a checkpoint (every part, named by the profile's model name and harness/formats/parts.py's rule) and
        its tokenizer into the guest, each verified by checksum. A model bigger than the guest's RAM is fine:
        the port streams it; a part of 2 GiB or more is refused before any transfer (the port cannot seek in it).
        """
        check_port_readable(choice.checkpoint)
        self._check_undeclared_inputs([choice.checkpoint, choice.tokenizer])
        names = self.profile.files.names
        parts = part_paths(choice.checkpoint)
        fetches = [self.fetch(path, part_name(names["model"], index), mode=mode) for index, path in enumerate(parts)]
        if len(parts) <= MAX_PART_INDEX:  # a part left from an earlier, longer model would be read as this one's
            self._remove_guest_file(part_name(names["model"], len(parts)))
        tokenizer = self.fetch(choice.tokenizer, names["tokenizer"], mode=mode)
        return InjectedModel(choice, fetches[0].guest_path, tokenizer.guest_path, [*fetches, tokenizer],
                             [fetch.guest_path for fetch in fetches])

    def _remove_guest_file(self, name: str) -> None:
        """Delete `name` from the guest's work dir (a missing file is fine)."""
        guest = self._require_guest()
        path = guest.guest_path(name)
        if self.profile.console.kind == "posix-shell":
            guest.run_checked(f"rm -f {shlex.quote(path)}", 20)
        else:
            guest.run_checked(f"!delete {path}", 20)

    def streams_model(self, injected: InjectedModel, budget_bytes: int | None = None) -> bool:
        """Will the port stream this model's weights from disk: is its logical size above the guest's free RAM, or
        above `budget_bytes` (the port's -M) when one is given?"""
        guest = self._require_guest()
        usable = (guest.machine.memory_mb - self.profile.machine.os_reserved_mb) * 1024 * 1024
        if budget_bytes is not None:
            usable = min(usable, budget_bytes)
        return logical_size(injected.choice.checkpoint) > usable

    def fits(self, files: list[Path]) -> bool:
        """Whether this started session's work disk can take `files` (a model and its tokenizer) as they are:
        declared in SessionOptions.inputs, or fitting the attached work disk (sized for the declared inputs), or,
        without one, the image's free space.

        False means a session started with these files as its inputs can (it attaches a work disk of their
        size); a WorkSpaceError means no session can (a file of 4 GiB or more, a guest without a second disk).
        """
        if all(path in self.options.inputs for path in files):
            return True
        if self.binary is None:
            raise SessionError("the session is not started")
        with quiet():  # a question, not a plan: no "attaching a work disk" line
            plan = plan_work_space(self.profile, DiskImage.probe(self.image), run_files(self.profile, self.binary,
                                                                                         tuple(files)))
        if self.work_disk is not None and self.work_space is not None:  # mounted over the work dir: it counts
            return plan.needed_bytes <= self.work_space.needed_bytes
        return not plan.work_disk_bytes

    def _check_undeclared_inputs(self, files: list[Path]) -> None:
        """Refuse, before any transfer, files not declared in SessionOptions.inputs that would not fit."""
        if self.fits(files):
            return
        assert self.binary is not None
        plan = plan_work_space(self.profile, DiskImage.probe(self.image), run_files(self.profile, self.binary,
                                                                                     tuple(files)))
        raise WorkSpaceError(f"the run's files ({plan.needed_bytes / 1e6:.1f} MB) do not fit the guest's work "
                             f"disk ({(plan.free_bytes or 0) / 1e6:.1f} MB free); declare them in "
                             f"SessionOptions.inputs so that a work disk is attached at start")

    def _run_program(self, injected: InjectedModel, args: PortArgs, cli: str, timeout: float | None,
                     what: str) -> ProgramRun:
        """Run the injected binary with the model's files and `args` in the guest; refuse a non-zero exit."""
        guest = self._require_guest()
        argv = [self.binary_path,
                *args.argv(injected.checkpoint, injected.tokenizer, self.profile.console.encoding, cli)]
        command = " ".join(quote_argument(self.profile, part) for part in argv)
        limit = timeout or run_timeout(injected.choice, args.steps, self.options.timeout_scale, self.calibration,
                                       self.streams_model(injected, None if args.budget_mb is None
                                                          else int(args.budget_mb * 1024 * 1024)))
        log.info(f"running {what} in the guest ({args.steps} steps, timeout {limit:.0f} s)")
        if self.profile.console.kind == "agent98":
            # agent98 kills a program after its own per-command timeout (3600 s by default): align it with ours.
            guest.run_checked(f"!timeout {int(limit) + 60}", 20)
        result = guest.run(command, limit)
        raw = result.output.encode(self.profile.console.encoding, errors="surrogateescape")
        if result.exit_code != 0:
            last = (result.output.strip().splitlines() or ["no output"])[-3:]
            raise SessionError(f"{what} failed in the guest with {describe_exit(result.exit_code)}: "
                               f"{' | '.join(last)}", transcript=self.artifacts.serial_transcript,
                               artifacts=self.artifacts)
        return ProgramRun(command, result.exit_code, raw, result.seconds)

    def run_foreign(self, injected: InjectedModel, args: PortArgs, timeout: float | None = None) -> ProgramRun:
        """Run a llama2.c-style binary (llama2.c's flags only) and keep everything it printed for the judge."""
        run = self._run_program(injected, args, "llama2c", timeout, "the program")
        (self.artifacts.path / "output.txt").write_bytes(run.output)
        if not run.output.strip():
            raise SessionError("the program exited 0 but printed nothing", transcript=self.artifacts.serial_transcript,
                               artifacts=self.artifacts)
        return run

    def run_port(self, injected: InjectedModel, args: PortArgs, timeout: float | None = None) -> PortRun:
        """Run llama98 in the guest with `-r -` and parse what it printed."""
        run = self._run_program(injected, args, "llama98", timeout, "llama98")
        raw = run.output if run.output.endswith(b"\n") else run.output + b"\n"
        try:
            text, report = split_stdout(raw, source=f"guest output ({self.artifacts.serial_transcript})")
        except ReportError as error:
            raise SessionError(error.message, artifacts=self.artifacts) from None
        tok_s_line = None
        match = TOK_S_LINE.search(text)
        if match:
            tok_s_line = match.group(0).strip().decode("ascii", errors="replace")
            text = text[: match.start() + (1 if match.group(0).startswith(b"\n") else 0)]
        (self.artifacts.path / "report.txt").write_bytes(raw[raw.rfind(b"llama98 report "):])
        (self.artifacts.path / "text.txt").write_bytes(text)
        if report.tokens:
            passes = max(record.pos for record in report.tokens) + 1
            self.calibration.record_run(load_checkpoint(injected.choice.checkpoint).config, passes, run.seconds)
        return PortRun(run.command, run.exit_code, text, report, run.seconds, tok_s_line)
