"""What a finished bisection leaves: the JSON of every measurement, a plot, and the summary it prints."""


from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from harness.perf.bisect.measuring import slower_by
from harness.perf.bisect.output import (
    UNITS,
    _percent,
    _say,
    format_value,
)
from harness.perf.bisect.state import (
    BisectOutcome,
    BisectState,
    Measurement,
)
from harness.perf.measure import (
    environment,
)


def by_commit(measurements: list[Measurement]) -> dict[str, Measurement]:
    """One record per commit: the one with a value if there is one (a commit is measured once)."""
    chosen: dict[str, Measurement] = {}
    for record in measurements:
        if record.sha not in chosen or record.value is not None:
            chosen[record.sha] = record
    return chosen


def _environment(state: BisectState) -> dict[str, object]:
    """Where the figures were taken: the guest's profile (none for host-ipt) and the build of our port measured
    (target, toolchain, compiler, flags); for a fork's own build, the command and its toolchain say it."""
    from harness.perf.bisect.measuring import build_target

    profile: str | None = None
    if state.metric != "host-ipt":
        if state.vm in (None, "tiny686"):
            profile = "tiny686"
        else:
            from harness.guests.detect import detect_profile

            profile = detect_profile(Path(state.vm))
    build = build_target(state) if state.build_command is None else None
    return environment(profile=profile, qemu_binary=None if state.metric == "host-ipt" else "qemu-system-i386",
                       build=build)


def _write_outputs(outcome: BisectOutcome, state: BisectState, run_dir: Path, plot: bool) -> None:
    from harness.perf.results import write_json

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
        "toolchain": state.toolchain, "build_command": state.build_command,
        "environment": _environment(state),
    })
    if not plot:
        return
    from harness.perf.plot import PlotError, plot_series

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
    parent_value = format_value(metric, outcome.parent_measurement.value)
    print(f"{metric} at culprit's parent {outcome.parent[:7]}: {parent_value}")
    change = slower_by(metric, outcome.parent_measurement.value or 1.0, outcome.culprit_measurement.value or 1.0)
    print(f"{metric} at culprit {outcome.culprit[:7]}: {format_value(metric, outcome.culprit_measurement.value)} "
          f"(slowdown {_percent(change)} vs its parent)")
    skipped = sorted({r.sha[:7] for r in outcome.measurements if r.verdict == "skip"})
    cached = sum(1 for r in outcome.measured if r.cached)
    print(f"measurements: {len(outcome.measured)} ({cached} from cache) for {outcome.candidates} commits; "
          f"skipped: {', '.join(skipped) if skipped else 'none'}")
    print(f"json: {outcome.json_path}")
    print(f"plot: {outcome.plot_path if outcome.plot_path else 'none'}")


