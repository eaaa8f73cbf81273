"""How a bisection reads on a terminal: values with units, progress lines, the result line."""


from __future__ import annotations

import sys

from harness.perf.bisect.measuring import slower_by
from harness.perf.bisect.state import BisectState, Measurement, max_steps

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


