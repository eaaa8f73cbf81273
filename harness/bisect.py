"""Find the commit that made the port slower: `git bisect run` driven by a measuring step command.

Git does the bisection (no engine of our own); we supply the step (`llama98-harness bisect-step`), which builds
the port at the checked-out commit, measures it and exits 0 (good), 1 (bad) or 125 (skip: does not build, or
the port crashes), comparing with the measurement at --good.

The user's repository is never touched: everything happens in a temporary `git clone --shared --no-checkout`
(it borrows the repository's objects read-only through alternates, so it costs no copy), which has its own HEAD,
index, working tree and bisect state. Nothing is written into the user's .git (a `git worktree` would add an
entry there, and one left behind by a killed run would show in `git worktree list`). The clone is deleted on
success, failure and Ctrl-C, and the `git bisect run` process group is stopped first.

Deterministic metrics (host-ipt, guest-ipt) are measured once per build and cached by the build's key (sources,
makefile, compiler) plus what was measured, so commits that do not change the port cost nothing. `tok_s` is
noisy: a commit is sampled alongside --good until the ranges separate, or skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError, UsageError
from harness.measure import (
    DEFAULT_ICOUNT_SHIFT,
    WALL_STEPS,
    MeasureError,
    Workload,
    environment,
    host_ipt,
    run_in_guest,
)
from harness.measure import workload as named_workload
from harness.paths import cache_dir
from harness.port_build import PortBuildError, build_key, build_port

METRICS = ("host-ipt", "guest-ipt", "tok_s")
EXIT_GOOD, EXIT_BAD, EXIT_SKIP, EXIT_ABORT = 0, 1, 125, 128
GIT_TIMEOUT_S = 120
STEP_TIMEOUT_S = 3600  # one build + measurement; a hang guard, not an expectation
TOK_S_FIRST_SAMPLES, TOK_S_MAX_SAMPLES = 3, 9
DEFAULT_PORT_DIR = "ports/llama98"
STATE_VERSION = 1
# Variables that would point git at the user's repository instead of the clone (set when run from a hook).
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")


class BisectError(HarnessError):
    """The bisection cannot start or did not name a single culprit."""


# --- git ---------------------------------------------------------------------------------------------------------

def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def git(repo: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT_S) -> str:
    """Run git in `repo` and return stdout (stripped); a failure is a one-line BisectError."""
    try:
        result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout,
                                check=False, env=_git_env(), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BisectError("git not found: apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise BisectError(f"git {' '.join(args)} timed out after {timeout:g} s in {repo}") from None
    if check and result.returncode != 0:
        why = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise BisectError(f"git {' '.join(args)} failed in {repo}: {why}")
    return result.stdout.strip()


def resolve_commit(repo: Path, rev: str, what: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False, env=_git_env())
    if result.returncode != 0 or not result.stdout.strip():
        raise UsageError(f"{what} {rev!r} is not a commit in {repo}")
    return result.stdout.strip()


def repo_toplevel(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(f"--repo {path} is not a directory")
    result = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                            text=True, timeout=GIT_TIMEOUT_S, check=False, env=_git_env())
    if result.returncode != 0:
        raise UsageError(f"--repo {path} is not inside a git repository")
    return Path(result.stdout.strip())


def subject_of(repo: Path, sha: str) -> str:
    return git(repo, "log", "-1", "--format=%s", sha)


# --- the state shared by `bisect` and its steps ------------------------------------------------------------------

@dataclass
class Measurement:
    """The outcome of one step: the metric (or why there is none) and the verdict given to git."""

    sha: str
    subject: str
    verdict: str  # good | bad | skip | baseline
    value: float | None = None
    samples: list[float] = field(default_factory=list)
    cached: bool = False
    error: str | None = None
    role: str = "step"  # baseline | step | culprit-check


@dataclass
class BisectState:
    """Everything a step needs, written by `bisect` as JSON into the run directory."""

    metric: str
    threshold: float
    workload: str
    short_steps: int
    long_steps: int
    port_dir: str
    log_path: str
    candidates: int
    vm: str | None = None
    icount_shift: int = DEFAULT_ICOUNT_SHIFT
    baseline: float | None = None
    baseline_samples: list[float] = field(default_factory=list)
    good_binary: str | None = None
    use_cache: bool = True
    version: int = STATE_VERSION

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> BisectState:
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise BisectError(f"{path}: not a bisect state file: {error}") from None


def read_log(path: Path) -> list[Measurement]:
    if not path.is_file():
        return []
    return [Measurement(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def append_log(path: Path, record: Measurement) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(asdict(record)) + "\n")


def max_steps(candidates: int, skipped: int) -> int:
    """Measurements git bisect needs at most: the baseline, then halving `candidates`, plus one per skip."""
    return 1 + math.ceil(math.log2(candidates + 1)) + skipped


# --- measuring one commit ----------------------------------------------------------------------------------------

def slower_by(metric: str, baseline: float, value: float) -> float:
    """How much slower `value` is than `baseline` as a fraction (negative: faster); tok_s is inverted."""
    return baseline / value - 1.0 if metric == "tok_s" else value / baseline - 1.0


def _cache_key(state: BisectState, key: str, load: Workload) -> str:
    from harness.fixtures import sha256_of

    parts = [state.metric, key, load.name, sha256_of(load.model), sha256_of(load.tokenizer),
             str(load.short_steps), str(load.long_steps)]
    if state.metric == "guest-ipt":
        env = environment(profile=state.vm)
        parts += [str(state.vm), str(state.icount_shift), str(env["qemu"])]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _deterministic(state: BisectState, binary: Path, key: str, load: Workload) -> tuple[float, bool]:
    """host-ipt or guest-ipt of one build, from the measurement cache when this build was measured before."""
    cache_file = cache_dir("measurements", state.metric) / f"{_cache_key(state, key, load)}.json"
    if state.use_cache and cache_file.is_file():
        try:
            return float(json.loads(cache_file.read_text())["value"]), True
        except (OSError, ValueError, KeyError):
            cache_file.unlink(missing_ok=True)
    if state.metric == "host-ipt":
        value = host_ipt(binary, load).per_token
    else:
        runs = run_in_guest(binary, load, vm=state.vm, icount_shift=state.icount_shift, progress=_quiet)
        value = runs[0].guest_ipt(load.short_steps, load.long_steps)
    staging = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
    staging.write_text(json.dumps({"value": value, "metric": state.metric}))
    os.replace(staging, cache_file)
    return value, False


def _quiet(message: str) -> None:
    """Session progress is too chatty inside a bisection; the step prints its own line."""


def _tok_s_samples(state: BisectState, binary: Path, load: Workload, runs: int) -> list[float]:
    return [run.tok_s for run in run_in_guest(binary, load, vm=state.vm, runs=runs, steps=WALL_STEPS[load.name.split(":")[0]],
                                              progress=_quiet)]


def tok_s_decision(good: list[float], samples: list[float], threshold: float) -> str | None:
    """bad when every sample of the commit is slower than --good's median by more than the threshold, good when
    none is, None while the commit's range straddles that line (more samples needed)."""
    line = statistics.median(good) / (1 + threshold)
    if max(samples) < line:
        return "bad"
    if min(samples) >= line:
        return "good"
    return None


def _tok_s_verdict(state: BisectState, binary: Path, load: Workload) -> tuple[str, list[float]]:
    """Sample the commit (and --good again) until its range is clear of the threshold line, or give up (skip)."""
    if state.good_binary is None:
        raise BisectError("the bisect state has no --good binary to re-sample")
    good_binary = Path(state.good_binary)
    samples = _tok_s_samples(state, binary, load, TOK_S_FIRST_SAMPLES)
    while True:
        verdict = tok_s_decision(state.baseline_samples, samples, state.threshold)
        if verdict is not None:
            return verdict, samples
        if len(samples) >= TOK_S_MAX_SAMPLES:
            return "skip", samples
        samples += _tok_s_samples(state, binary, load, 1)
        state.baseline_samples = state.baseline_samples + _tok_s_samples(state, good_binary, load, 1)
        state.baseline = statistics.median(state.baseline_samples)


def build_target(state: BisectState) -> str:
    """The build measured: tiny686 for host-ipt and the stand-in guest, the guest's own build for an image."""
    if state.metric == "host-ipt" or state.vm in (None, "tiny686"):
        return "tiny686"
    from harness.image_detect import detect_profile
    from harness.profile import load_profile
    from harness.session import port_target

    return port_target(load_profile(detect_profile(Path(state.vm))))


def measure_checkout(state: BisectState, checkout: Path, role: str) -> Measurement:
    """Build the port of the commit checked out at `checkout` and measure it (or say why it is skipped)."""
    sha = git(checkout, "rev-parse", "HEAD")
    subject = subject_of(checkout, sha)
    load = named_workload(state.workload, state.short_steps, state.long_steps)
    src = checkout / state.port_dir
    target = build_target(state)
    try:
        binary = build_port(target, src_dir=src)
        key = build_key(target, src)
    except PortBuildError as error:
        return Measurement(sha, subject, "skip", error=f"does not build: {error}", role=role)
    try:
        if state.metric == "tok_s":
            if role == "baseline":
                samples = _tok_s_samples(state, binary, load, TOK_S_FIRST_SAMPLES)
                return Measurement(sha, subject, "baseline", statistics.median(samples), samples, role=role)
            verdict, samples = _tok_s_verdict(state, binary, load)
            return Measurement(sha, subject, verdict, statistics.median(samples), samples, role=role)
        value, cached = _deterministic(state, binary, key, load)
    except MeasureError as error:
        return Measurement(sha, subject, "skip", error=f"port failed: {error}", role=role)
    if role == "baseline":
        return Measurement(sha, subject, "baseline", value, [value], cached, role=role)
    assert state.baseline is not None
    verdict = "bad" if slower_by(state.metric, state.baseline, value) > state.threshold else "good"
    return Measurement(sha, subject, verdict, value, [value], cached, role=role)


# --- output ------------------------------------------------------------------------------------------------------

UNITS = {"host-ipt": "instr/token", "guest-ipt": "instr/token", "tok_s": "tok/s"}


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "tok_s":
        return f"{value:.2f} tok/s"
    return f"{value / 1e6:.4f} M instr/token"


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100, 1) or 0.0:+.1f}%"  # `or 0.0`: no "-0.0%"


def _bar(done: int, total: int, width: int = 12) -> str:
    filled = min(width, round(width * done / max(total, 1)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def progress_line(state: BisectState, log: list[Measurement], sha: str, subject: str) -> str:
    """'[##....] commit i of at most k: measuring METRIC of abc1234 (subject) ...'."""
    skipped = sum(1 for m in log if m.verdict == "skip")
    done = len(log)
    total = max(max_steps(state.candidates, skipped), done + 1)
    return (f"{_bar(done, total)} commit {done + 1} of at most {total}: measuring {state.metric} of {sha[:7]} "
            f"({subject[:50]}) ...")


def result_line(state: BisectState, record: Measurement) -> str:
    if record.verdict == "skip":
        return f"    {record.sha[:7]}: skip ({record.error})"
    change = ""
    if state.baseline is not None and record.value is not None and record.role != "baseline":
        change = f", slowdown {_percent(slower_by(state.metric, state.baseline, record.value))} vs good"
    cached = " (cached)" if record.cached else ""
    return f"    {record.sha[:7]}: {format_value(state.metric, record.value)}{cached}{change} -> {record.verdict}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the step command ----------------------------------------------------------------------------------------------

def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_step(state_path: Path) -> int:
    """One `git bisect run` step in the current directory (the temporary clone): 0 good, 1 bad, 125 skip.

    Any other failure exits 128 so `git bisect run` aborts instead of taking it as "bad".
    """
    # git may start us with SIGINT ignored (inherited); the bisection stops its steps with SIGINT, so take it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        state = BisectState.load(state_path)
        checkout = Path.cwd()
        log_path = Path(state.log_path)
        log = read_log(log_path)
        sha = git(checkout, "rev-parse", "HEAD")
        _say(progress_line(state, log, sha, subject_of(checkout, sha)))
        record = measure_checkout(state, checkout, "step")
        append_log(log_path, record)
        if state.metric == "tok_s":
            state.save(state_path)  # the --good samples grow as they are re-sampled
        _say(result_line(state, record))
        return {"good": EXIT_GOOD, "bad": EXIT_BAD}.get(record.verdict, EXIT_SKIP)
    except KeyboardInterrupt:
        _say("bisect-step: interrupted")
        return 130
    except HarnessError as error:
        _say(f"bisect-step: error: {error}")
        return EXIT_ABORT
    except Exception as error:  # noqa: BLE001 - anything else must abort git bisect run, never count as "bad"
        _say(f"bisect-step: internal error: {type(error).__name__}: {error}")
        return EXIT_ABORT


# --- the bisection -------------------------------------------------------------------------------------------------

@dataclass
class BisectOutcome:
    culprit: str
    subject: str
    parent: str
    good: Measurement
    culprit_measurement: Measurement
    parent_measurement: Measurement
    measurements: list[Measurement]
    candidates: int
    commits: list[tuple[str, str]]  # (sha, subject), oldest first, good excluded
    json_path: Path
    plot_path: Path | None

    @property
    def measured(self) -> list[Measurement]:
        """Distinct commits that were measured (skips and repeated look-ups excluded)."""
        seen: dict[str, Measurement] = {}
        for record in self.measurements:
            if record.value is not None and record.sha not in seen:
                seen[record.sha] = record
        return list(seen.values())


def _step_command(state_path: Path) -> list[str]:
    """This harness, run by the current interpreter with the clone's directory kept off sys.path.

    `git bisect run` runs the step in the clone's top directory; if the repository is this project, that holds
    an older harness/ which must not shadow the one running the bisection (hence -P and an explicit path).
    """
    return [sys.executable, "-P", "-m", "harness.cli", "bisect-step", "--state", str(state_path)]


def _step_env() -> dict[str, str]:
    env = _git_env()
    package_root = str(Path(__file__).resolve().parent.parent)
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
           use_cache: bool = True) -> BisectOutcome:
    """Bisect good..bad in `repo` for a slowdown of more than `threshold` in `metric` (see the module docstring)."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    if not 0 < threshold < 10:
        raise UsageError(f"--threshold must be a positive fraction (e.g. 5%), got {threshold}")
    repo = repo_toplevel(repo)
    good_sha = resolve_commit(repo, good, "--good")
    bad_sha = resolve_commit(repo, bad, "--bad")
    if good_sha == bad_sha:
        raise UsageError("--good and --bad are the same commit")
    if subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", good_sha, bad_sha],
                      capture_output=True, timeout=GIT_TIMEOUT_S, check=False, env=_git_env()).returncode != 0:
        raise UsageError(f"--good {good} is not an ancestor of --bad {bad}")
    for sha, what in ((good_sha, "--good"), (bad_sha, "--bad")):
        if subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{sha}:{port_dir}/gcc.mk"],
                          capture_output=True, timeout=GIT_TIMEOUT_S, check=False, env=_git_env()).returncode:
            raise UsageError(f"{what} {sha[:12]} has no {port_dir}/gcc.mk: is --repo the llama98-harness repository?")
    load = named_workload(model)  # fail early on a missing fixture
    lines = git(repo, "log", "--reverse", "--format=%H %s", f"{good_sha}..{bad_sha}").splitlines()
    commits = [(line[:40], line[41:]) for line in lines]

    run_dir = out_dir or cache_dir("bisect", f"{time.strftime('%Y%m%d-%H%M%S')}-{bad_sha[:12]}-{os.getpid()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path, git_log = run_dir / "state.json", run_dir / "measurements.jsonl", run_dir / "git-bisect.log"
    for stale in (log_path, git_log):
        stale.unlink(missing_ok=True)
    state = BisectState(metric, threshold, load.name, load.short_steps, load.long_steps, port_dir, str(log_path),
                        len(commits), vm, icount_shift, use_cache=use_cache)
    _say(f"bisecting {len(commits)} commits after {good_sha[:7]} up to {bad_sha[:7]} for a slowdown of more than "
         f"{threshold * 100:g}% in {metric} ({load.name}, positions {load.short_steps}-{load.long_steps}); "
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
        if metric == "tok_s":
            state.good_binary = str(build_port(build_target(state), src_dir=clone / port_dir))
        state.save(state_path)
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


def by_commit(measurements: list[Measurement]) -> dict[str, Measurement]:
    """One record per commit: the one with a value if there is one (a commit is measured once)."""
    chosen: dict[str, Measurement] = {}
    for record in measurements:
        if record.sha not in chosen or record.value is not None:
            chosen[record.sha] = record
    return chosen


def _write_outputs(outcome: BisectOutcome, state: BisectState, run_dir: Path, plot: bool) -> None:
    from harness.results import write_json

    by_sha = by_commit(outcome.measurements)
    ordered = [(outcome.good.sha, outcome.good.subject)] + outcome.commits
    write_json(outcome.json_path, {
        "schema": "llama98-bisect/1",
        "metric": state.metric, "threshold": state.threshold, "model": state.workload,
        "positions": [state.short_steps, state.long_steps],
        "good": asdict(outcome.good), "culprit": asdict(outcome.culprit_measurement),
        "culprit_parent": asdict(outcome.parent_measurement),
        "measurements_taken": len(outcome.measured), "candidates": outcome.candidates,
        "commits": [{"sha": sha, "subject": subject, **({"verdict": by_sha[sha].verdict, "value": by_sha[sha].value}
                                                        if sha in by_sha else {"verdict": "untested"})}
                    for sha, subject in ordered],
        "environment": environment(profile=state.vm),
    })
    if not plot:
        return
    from harness.plot import PlotError, plot_series

    labels = [sha[:7] for sha, _ in ordered]
    values = [by_sha[sha].value if sha in by_sha else None for sha, _ in ordered]
    culprit_index = next(i for i, (sha, _) in enumerate(ordered) if sha == outcome.culprit)
    try:
        outcome.plot_path = plot_series(labels, {state.metric: values}, run_dir / "bisect.png",
                                        ylabel=f"{state.metric} ({UNITS[state.metric]})",
                                        title=f"bisect: {state.metric} per commit (measured ones)",
                                        highlight=culprit_index)
    except PlotError as error:
        _say(f"no plot: {error}")


def print_outcome(outcome: BisectOutcome, metric: str) -> None:
    """The final table (every commit in the range, oldest first) and the culprit summary."""
    by_sha = by_commit(outcome.measurements)
    rows = [(outcome.good.sha, outcome.good.subject)] + outcome.commits
    print(f"{'commit':8} {'verdict':9} {metric:>24}  subject")
    for sha, subject in rows:
        row = by_sha.get(sha)
        verdict = "good*" if sha == outcome.good.sha else (row.verdict if row else "-")
        marker = "  <== culprit" if sha == outcome.culprit else ""
        value = format_value(metric, row.value) if row else ""
        print(f"{sha[:7]:8} {verdict:9} {value:>24}  {subject[:60]}{marker}")
    print()
    print(f"culprit: {outcome.culprit} {outcome.subject}")
    print(f"{metric} at good {outcome.good.sha[:7]}: {format_value(metric, outcome.good.value)}")
    print(f"{metric} at culprit's parent {outcome.parent[:7]}: {format_value(metric, outcome.parent_measurement.value)}")
    change = slower_by(metric, outcome.parent_measurement.value or 1.0, outcome.culprit_measurement.value or 1.0)
    print(f"{metric} at culprit {outcome.culprit[:7]}: {format_value(metric, outcome.culprit_measurement.value)} "
          f"(slowdown {_percent(change)} vs its parent)")
    skipped = sorted({r.sha[:7] for r in outcome.measurements if r.verdict == "skip"})
    cached = sum(1 for r in outcome.measured if r.cached)
    print(f"measurements: {len(outcome.measured)} ({cached} from cache) for {outcome.candidates} commits; "
          f"skipped: {', '.join(skipped) if skipped else 'none'}")
    print(f"json: {outcome.json_path}")
    print(f"plot: {outcome.plot_path if outcome.plot_path else 'none'}")


# --- command line --------------------------------------------------------------------------------------------------

def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage like 5% or a fraction like 0.05") from None
    if not 0 < value < 10:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def _cmd_bisect(args: argparse.Namespace) -> int:
    outcome = bisect(Path(args.repo), args.good, args.bad, metric=args.metric, threshold=args.threshold,
                     model=args.model, out_dir=Path(args.out) if args.out else None, port_dir=args.port_dir,
                     vm=args.vm, icount_shift=args.icount_shift, plot=not args.no_plot, use_cache=not args.fresh)
    print_outcome(outcome, args.metric)
    return 0


def _cmd_step(args: argparse.Namespace) -> int:
    return run_step(Path(args.state))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `llama98-harness bisect` and the internal `bisect-step`."""
    parser = subparsers.add_parser(
        "bisect", help="find the commit that made the port slower (git bisect run + a measurement per step)",
        description="Bisect --good..--bad with `git bisect run` in a temporary clone; each step builds the port "
                    "and measures it. The repository (branch, HEAD, working tree) is left exactly as it was.")
    parser.add_argument("--good", required=True, metavar="REV", help="a commit that is fast enough")
    parser.add_argument("--bad", required=True, metavar="REV", help="a later commit that is slower")
    parser.add_argument("--metric", choices=METRICS, default="host-ipt",
                        help="host-ipt: callgrind instructions/token of the tiny686 build (no VM, exact; default); "
                             "guest-ipt: guest instructions/token under QEMU -icount; tok_s: guest wall-clock tok/s")
    parser.add_argument("--threshold", type=parse_threshold, default=0.05, metavar="PCT",
                        help="slower by more than this is bad (default 5%%; for tok_s pick more than the "
                             "run-to-run noise of plain emulation, e.g. 20%%)")
    parser.add_argument("--repo", default=".", metavar="PATH", help="the repository (default: the current one)")
    parser.add_argument("--model", default="260K", help="260K (default) or 15M-shape")
    parser.add_argument("--port-dir", default=DEFAULT_PORT_DIR, help="the port's directory inside the repository")
    parser.add_argument("--out", metavar="DIR", help="run directory for bisect.json, bisect.png and logs "
                                                     "(default: a new directory in the harness cache)")
    parser.add_argument("--vm", metavar="IMAGE", default=None, help="guest for guest-ipt/tok_s (default tiny686)")
    parser.add_argument("--icount-shift", type=int, default=DEFAULT_ICOUNT_SHIFT, metavar="N",
                        help=f"-icount shift for guest-ipt (default {DEFAULT_ICOUNT_SHIFT})")
    parser.add_argument("--no-plot", action="store_true", help="do not draw bisect.png")
    parser.add_argument("--fresh", action="store_true",
                        help="measure every commit again instead of reusing cached host-ipt/guest-ipt figures")
    parser.set_defaults(func=_cmd_bisect)

    step = subparsers.add_parser(
        "bisect-step", help="(internal) one step of `bisect`: exit 0 good, 1 bad, 125 skip",
        description="Run by `git bisect run` inside the temporary clone made by `bisect`.")
    step.add_argument("--state", required=True, metavar="FILE", help="state.json written by `bisect`")
    step.set_defaults(func=_cmd_step)
