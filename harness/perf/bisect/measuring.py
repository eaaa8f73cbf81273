"""Measuring one commit: build the port at a checkout, take the metric (cached per build for the deterministic ones,
sampled against --good for tok/s), and decide good, bad or skip.
"""


from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path

from harness.core.hashing import file_sha256
from harness.core.logs import quiet
from harness.core.paths import cache_dir
from harness.core.proc import first_line
from harness.perf.bisect.git import git, subject_of
from harness.perf.bisect.state import (
    TOK_S_FIRST_SAMPLES,
    TOK_S_MAX_SAMPLES,
    BisectError,
    BisectState,
    Measurement,
)
from harness.perf.measure import (
    HOST_BUILD,
    WALL_STEPS,
    MeasureError,
    Workload,
    guest_build,
    host_ipt,
    run_in_guest,
    toolchain_build,
)
from harness.perf.measure import workload as named_workload
from harness.port.build import PortBuildError, build_key, build_port
from harness.run.judged import run_build, watcom_os
from harness.run.session import SessionError

# --- measuring one commit ----------------------------------------------------------------------------------------

def slower_by(metric: str, baseline: float, value: float) -> float:
    """How much slower `value` is than `baseline` as a fraction (negative: faster); tok_s is inverted."""
    return baseline / value - 1.0 if metric == "tok_s" else value / baseline - 1.0


def _cache_key(state: BisectState, key: str, load: Workload) -> str:
    from harness.models.downloads import sha256_of

    parts = [state.metric, key, load.name, sha256_of(load.model), sha256_of(load.tokenizer),
             str(load.short_steps), str(load.long_steps)]
    if state.metric == "guest-ipt":
        parts += [str(state.vm), str(state.icount_shift), str(first_line(["qemu-system-i386", "--version"]))]
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
        value = host_ipt(binary, load, build=build_target(state)).per_token
    else:
        with quiet():  # session progress is too chatty inside a bisection; the step prints its own line
            runs = run_in_guest(binary, load, vm=state.vm, icount_shift=state.icount_shift)
        value = runs[0].guest_ipt(load.short_steps, load.long_steps)
    staging = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
    staging.write_text(json.dumps({"value": value, "metric": state.metric}))
    os.replace(staging, cache_file)
    return value, False


def _tok_s_samples(state: BisectState, binary: Path, load: Workload, runs: int) -> list[float]:
    icount = None if state.wall_clock else state.icount_shift
    with quiet():
        return [run.tok_s for run in run_in_guest(binary, load, vm=state.vm, runs=runs, icount_shift=icount,
                                                  steps=WALL_STEPS[load.name.split(":")[0]], cli=state.cli)]


def first_tok_s_samples(state: BisectState) -> int:
    """Samples taken before deciding: one on the guest's -icount clock (repeat runs agree to 0.1%), several on
    the wall clock."""
    return TOK_S_FIRST_SAMPLES if state.wall_clock else 1


def tok_s_decision(good: list[float], samples: list[float], threshold: float) -> str | None:
    """bad when every sample of the commit is slower than --good's median by more than the threshold, good when
    none is, None while the commit's range straddles that line (more samples needed)."""
    line = statistics.median(good) / (1 + threshold)
    if max(samples) < line:
        return "bad"
    if min(samples) >= line:
        return "good"
    return None


def _tok_s_verdict(state: BisectState, binary: Path, load: Workload) -> tuple[str, list[float], str | None]:
    """Sample the commit (and --good again) until its range is clear of the threshold line, or give up (skip,
    with the reason)."""
    if state.good_binary is None:
        raise BisectError("the bisect state has no --good binary to re-sample")
    good_binary = Path(state.good_binary)
    samples = _tok_s_samples(state, binary, load, first_tok_s_samples(state))
    while True:
        verdict = tok_s_decision(state.baseline_samples, samples, state.threshold)
        if verdict is not None:
            return verdict, samples, None
        if len(samples) >= TOK_S_MAX_SAMPLES:
            line = statistics.median(state.baseline_samples) / (1 + state.threshold)
            return "skip", samples, (f"{len(samples)} samples of {min(samples):.2f}-{max(samples):.2f} tok/s "
                                     f"straddle the line at {line:.2f} tok/s (--good's median / (1 + threshold)); "
                                     f"the host's load moves wall-clock tok/s: drop --wall-clock or raise "
                                     f"--threshold")
        samples += _tok_s_samples(state, binary, load, 1)
        state.baseline_samples = state.baseline_samples + _tok_s_samples(state, good_binary, load, 1)
        state.baseline = statistics.median(state.baseline_samples)


def build_target(state: BisectState) -> str:
    """The build measured: the i386 Linux build for host-ipt and the stand-in guest, the guest's own build for an
    image; made by the bisection's toolchain (tiny686 or watcom-tiny686, win32 or watcom-win32)."""
    return toolchain_build(state.toolchain, _base_build(state))


def _base_build(state: BisectState) -> str:
    """The gcc build where the measured program runs: i386 Linux on the host for host-ipt, else the guest's."""
    return HOST_BUILD if state.metric == "host-ipt" else guest_build(state.vm)


def build_fork(state: BisectState, checkout: Path, sha: str) -> tuple[Path, str]:
    """Run the fork's own build command in the checkout and keep the binary it leaves (and its sha256 as key)."""
    assert state.build_command is not None and state.binary_path is not None and state.binaries_dir is not None
    # The clone is ours: clear the previous step's build outputs, or a makefile that does not list every input
    # would hand back the last commit's binary as this one's.
    git(checkout, "clean", "-q", "-f", "-f", "-d", "-x")
    run_build(state.build_command, checkout, toolchain=state.toolchain, target=watcom_os(_base_build(state)))
    built = checkout / state.binary_path
    if not built.is_file():
        raise PortBuildError(f"the build command left no binary at {state.binary_path}")
    kept = Path(state.binaries_dir) / f"{sha[:12]}-{built.name}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, kept)
    kept.chmod(0o755)
    return kept, file_sha256(kept)


def build_commit(state: BisectState, checkout: Path, sha: str) -> tuple[Path, str]:
    """The binary measured at this commit and its cache key: the fork's build, or our port's."""
    if state.build_command is not None:
        return build_fork(state, checkout, sha)
    src = checkout / state.port_dir
    target = build_target(state)
    return build_port(target, src_dir=src), build_key(target, src)


def measure_checkout(state: BisectState, checkout: Path, role: str) -> Measurement:
    """Build the commit checked out at `checkout` and measure it (or say why it is skipped)."""
    sha = git(checkout, "rev-parse", "HEAD")
    subject = subject_of(checkout, sha)
    load = named_workload(state.workload, state.short_steps, state.long_steps)
    try:
        binary, key = build_commit(state, checkout, sha)
    except PortBuildError as error:
        return Measurement(sha, subject, "skip", error=f"does not build: {error}", role=role)
    if role == "baseline":
        state.good_binary = str(binary)
    try:
        if state.metric == "tok_s":
            if role == "baseline":
                samples = _tok_s_samples(state, binary, load, first_tok_s_samples(state))
                return Measurement(sha, subject, "baseline", statistics.median(samples), samples, role=role)
            verdict, samples, why = _tok_s_verdict(state, binary, load)
            return Measurement(sha, subject, verdict, statistics.median(samples), samples, error=why, role=role)
        value, cached = _deterministic(state, binary, key, load)
    except (MeasureError, SessionError) as error:
        return Measurement(sha, subject, "skip", error=f"port failed: {error}", role=role)
    if role == "baseline":
        return Measurement(sha, subject, "baseline", value, [value], cached, role=role)
    assert state.baseline is not None
    verdict = "bad" if slower_by(state.metric, state.baseline, value) > state.threshold else "good"
    return Measurement(sha, subject, verdict, value, [value], cached, role=role)


