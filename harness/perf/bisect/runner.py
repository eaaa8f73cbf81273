"""The bisection itself: `git bisect run` in a temporary shared clone, its process group stopped on any exit, and the
outcome collected and written out.
"""


from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.paths import cache_dir, project_root
from harness.perf.bisect.git import (
    _git_env,
    git,
    repo_toplevel,
    resolve_commit,
    subject_of,
    succeeds,
)
from harness.perf.bisect.measuring import measure_checkout
from harness.perf.bisect.output import (
    _say,
    format_value,
    progress_line,
    result_line,
)
from harness.perf.bisect.report import _write_outputs
from harness.perf.bisect.state import (
    DEFAULT_PORT_DIR,
    METRICS,
    STEP_TIMEOUT_S,
    TOOLCHAINS,
    BisectError,
    BisectOutcome,
    BisectState,
    Measurement,
    append_log,
    max_steps,
    read_log,
)
from harness.perf.bisect.step import _raise_interrupt
from harness.perf.measure import (
    DEFAULT_ICOUNT_SHIFT,
)
from harness.perf.measure import workload as named_workload

# --- the bisection -------------------------------------------------------------------------------------------------

def _built_with(state: BisectState) -> str:
    """', the watcom-tiny686 build' or ', built by CMD (openwatcom)': what each commit's measured binary is."""
    if state.build_command is not None:
        return f", built by {state.build_command!r}" + (f" ({state.toolchain})" if state.toolchain != "auto" else "")
    from harness.perf.bisect.measuring import build_target

    return f", the {build_target(state)} build"


def _step_command(state_path: Path) -> list[str]:
    """This harness, run by the current interpreter with the clone's directory kept off sys.path.

    `git bisect run` runs the step in the clone's top directory; if the repository is this project, that holds
    an older harness/ which must not shadow the one running the bisection (hence -P and an explicit path).
    """
    return [sys.executable, "-P", "-m", "harness.cli", "bisect-step", "--state", str(state_path)]


def _step_env() -> dict[str, str]:
    env = _git_env()
    package_root = str(project_root())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def _group_alive(process: subprocess.Popen[bytes]) -> bool:
    process.poll()  # reap the leader, or its zombie would keep the group alive
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop `git bisect run` and everything it started (the step, valgrind, QEMU): INT, then TERM, then KILL,
    each time waiting for the whole group (not just git) to be gone, so a step can finish its own cleanup."""
    for sig, grace in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        if not _group_alive(process):
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _group_alive(process) and time.monotonic() < deadline:
            time.sleep(0.05)
    process.poll()


def _run_git_bisect(clone: Path, state_path: Path, log_file: Path, timeout: float) -> int:
    """`git bisect run STEP` in the clone, in its own process group; git's chatter goes to `log_file`."""
    with log_file.open("ab") as log:
        process = subprocess.Popen(["git", "-C", str(clone), "bisect", "run", *_step_command(state_path)],
                                   stdout=log, stdin=subprocess.DEVNULL,
                                   env=_step_env(), start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BisectError(f"git bisect run did not finish within {timeout:.0f} s; its log: {log_file}") from None
        finally:
            _stop_group(process)  # git and its step if still running, else any straggler of the group


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the bisection runs, so cleanup happens for both."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _first_bad(clone: Path, log_text: str) -> str:
    """The culprit git named, or a one-line error (e.g. only skipped commits left between good and bad)."""
    for line in log_text.splitlines():
        if line.endswith(" is the first bad commit"):
            return line.split()[0]
    for line in log_text.splitlines():
        if "first bad commit could be any of" in line or "only 'skip'ped commits left" in line:
            raise BisectError("git could not single out a commit: the candidates next to the culprit were skipped "
                              "(they do not build or the port crashed)")
    tail = [line for line in log_text.splitlines() if line.strip()][-3:]
    raise BisectError(f"git bisect run named no culprit: {' | '.join(tail) or 'no output'}")


def bisect(repo: Path, good: str, bad: str, *, metric: str = "host-ipt", threshold: float = 0.05,
           model: str = "260K", out_dir: Path | None = None, port_dir: str = DEFAULT_PORT_DIR,
           vm: str | None = None, icount_shift: int = DEFAULT_ICOUNT_SHIFT, plot: bool = True,
           use_cache: bool = True, build_command: str | None = None, binary: str | None = None,
           cli: str = "llama98", wall_clock: bool = False, toolchain: str | None = None) -> BisectOutcome:
    """Bisect good..bad in `repo` for a slowdown of more than `threshold` in `metric` (see the module docstring).

    With `build_command` and `binary` the repository is a fork with its own build (`make run`, producing `run`):
    each step runs that command in the checkout and measures the binary it leaves, run with llama2.c's flags
    when `cli` is llama2c (then only `tok_s`, the program's own figure, can be measured).

    tok_s is the program's own figure on the guest's clock under -icount shift=`icount_shift` (repeat runs agree
    to 0.1%); with `wall_clock` it is taken on plain emulation, sampled until the ranges separate.

    `toolchain` builds every commit of our port with gcc (default) or openwatcom (the watcom-tiny686 build for
    host-ipt and the stand-in, watcom-win32 for a Windows 98 image); with `build_command` it is what the command
    runs with (default auto: OpenWatcom's environment when it starts with wmake, wcl386, owcc or wcc386)."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    if (build_command is None) != (binary is None):
        raise UsageError("--build and --binary go together: the fork's build command and the binary it produces")
    if cli == "llama2c" and metric != "tok_s":
        raise UsageError(f"--metric {metric} needs our port's run report; a llama2c-style binary is bisected "
                         f"with --metric tok_s")
    if not 0 < threshold < 10:
        raise UsageError(f"--threshold must be a positive fraction (e.g. 5%), got {threshold}")
    toolchain = toolchain or ("auto" if build_command is not None else "gcc")
    allowed = ("auto", *TOOLCHAINS) if build_command is not None else TOOLCHAINS
    if toolchain not in allowed:
        raise UsageError(f"unknown toolchain {toolchain!r}: choose from {', '.join(allowed)}")
    makefile = "watcom.mk" if toolchain == "openwatcom" else "gcc.mk"
    repo = repo_toplevel(repo)
    good_sha = resolve_commit(repo, good, "--good")
    bad_sha = resolve_commit(repo, bad, "--bad")
    if good_sha == bad_sha:
        raise UsageError("--good and --bad are the same commit")
    if not succeeds(repo, "merge-base", "--is-ancestor", good_sha, bad_sha):
        raise UsageError(f"--good {good} is not an ancestor of --bad {bad}")
    for sha, what in ((good_sha, "--good"), (bad_sha, "--bad")):
        if build_command is None and not succeeds(repo, "cat-file", "-e", f"{sha}:{port_dir}/{makefile}"):
            raise UsageError(f"{what} {sha[:12]} has no {port_dir}/{makefile}: is --repo the llama98-harness "
                             f"repository?")
    load = named_workload(model)  # fail early on a missing fixture
    lines = git(repo, "log", "--reverse", "--format=%H %s", f"{good_sha}..{bad_sha}").splitlines()
    commits = [(line[:40], line[41:]) for line in lines]

    run_dir = out_dir or cache_dir("bisect", f"{time.strftime('%Y%m%d-%H%M%S')}-{bad_sha[:12]}-{os.getpid()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path, git_log = run_dir / "state.json", run_dir / "measurements.jsonl", run_dir / "git-bisect.log"
    for stale in (log_path, git_log):
        stale.unlink(missing_ok=True)
    state = BisectState(metric, threshold, load.name, load.short_steps, load.long_steps, port_dir, str(log_path),
                        len(commits), vm, icount_shift, use_cache=use_cache, build_command=build_command,
                        binary_path=binary, cli=cli, binaries_dir=str(run_dir / "binaries"),
                        wall_clock=wall_clock, toolchain=toolchain)
    _say(f"bisecting {len(commits)} commits after {good_sha[:7]} up to {bad_sha[:7]} for a slowdown of more than "
         f"{threshold * 100:g}% in {metric} ({load.name}, positions {load.short_steps}-{load.long_steps}"
         f"{_built_with(state)}); "
         f"run directory: {run_dir}")
    with _terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="llama98-bisect-") as tmp:
        clone = Path(tmp) / "clone"
        git(repo, "clone", "--quiet", "--shared", "--no-checkout", str(repo), str(clone))
        git(clone, "checkout", "--quiet", "--detach", good_sha)
        _say(progress_line(state, [], good_sha, subject_of(clone, good_sha) + ", --good"))
        baseline = measure_checkout(state, clone, "baseline")
        append_log(log_path, baseline)
        if baseline.value is None:
            raise BisectError(f"cannot measure --good {good_sha[:12]}: {baseline.error}")
        _say(result_line(state, baseline))
        state.baseline, state.baseline_samples = baseline.value, list(baseline.samples)
        state.save(state_path)  # measure_checkout kept --good's binary for re-sampling tok/s
        git(clone, "bisect", "start", bad_sha, good_sha)
        step_budget = STEP_TIMEOUT_S * (max_steps(len(commits), 3) + 2)
        code = _run_git_bisect(clone, state_path, git_log, step_budget)
        log_text = git_log.read_text(errors="replace")
        if code != 0:
            tail = [line for line in log_text.splitlines() if line.strip()][-2:]
            raise BisectError(f"git bisect run failed (exit {code}): {' | '.join(tail)}; log: {git_log}")
        culprit = _first_bad(clone, log_text)
        state = BisectState.load(state_path)
        records = read_log(log_path)
        culprit_record = _measurement_of(state, clone, culprit, records, log_path)
        if culprit_record.verdict != "bad":
            raise BisectError(f"--bad {bad_sha[:12]} is not slower than --good by more than {threshold * 100:g}% "
                              f"({format_value(metric, culprit_record.value)} vs "
                              f"{format_value(metric, state.baseline)}): nothing to bisect")
        parent = git(clone, "rev-parse", f"{culprit}^")
        parent_record = baseline if parent == good_sha else _measurement_of(state, clone, parent, records, log_path)
    records = read_log(log_path)
    outcome = BisectOutcome(culprit, culprit_record.subject, parent, baseline, culprit_record, parent_record, records,
                            len(commits), commits, run_dir / "bisect.json", None)
    _write_outputs(outcome, state, run_dir, plot)
    return outcome


def _measurement_of(state: BisectState, clone: Path, sha: str, records: list[Measurement],
                    log_path: Path) -> Measurement:
    """A commit's measurement from this run's log, or measured now (the culprit when it is --bad itself)."""
    for record in records:
        if record.sha == sha and record.value is not None:
            return record
    git(clone, "checkout", "--quiet", "--detach", sha)
    _say(progress_line(state, records, sha, subject_of(clone, sha)))
    record = measure_checkout(state, clone, "culprit-check")
    append_log(log_path, record)
    records.append(record)
    _say(result_line(state, record))
    if record.value is None:
        raise BisectError(f"cannot measure {sha[:12]}: {record.error}")
    return record


