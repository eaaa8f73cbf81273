"""Draw speed per commit (PNG, matplotlib's Agg backend so it works without a display, in CI and over ssh).

A regression is easiest to see as a step in a line over commits; ranges from repeated wall-clock runs are drawn
as error bars so noise is not mistaken for a step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.atomic import output_problem, temp_beside
from harness.core.errors import HarnessError, UsageError
from harness.core.paths import cache_dir
from harness.perf.results import CommitResult, range_of, value_of

METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    # metric -> (axis label, modes it is found in, preferred first)
    "tok_s": ("guest tokens/s", ("wall", "icount")),
    "guest_ipt": ("guest instructions/token", ("icount",)),
    "host_ipt": ("host instructions/token (callgrind, i386 Linux build)", ("host-ipt",)),
}


class PlotError(HarnessError):
    """Nothing to plot, matplotlib is missing, or the plot cannot be written where asked."""


def png_path(out: Path) -> Path:
    """The file a plot asked for as `out` goes to, or a one-line PlotError before anything is drawn.

    `out` itself when it ends in .png; `out` + ".png" when it has no extension (matplotlib's own rule, so the
    path callers print is the file written); refused when it is a directory (matplotlib would write DIR.png
    beside it) or has another extension (matplotlib would silently write a JPEG, PDF or SVG under a name the
    option calls OUT.png, or fail with a traceback for one it does not know)."""
    problem = output_problem(out)
    if problem is None and not out.suffix:
        out = out.with_name(out.name + ".png")
        problem = output_problem(out)
    if problem is not None:
        raise PlotError(f"cannot write {out}: {problem}")
    if out.suffix.lower() != ".png":
        raise PlotError(f"{out}: plots are PNG files, name the output *.png")
    return out


def _save(figure: Any, out: Path) -> None:
    """Write `figure` as a PNG to `out` whole or not at all (core.atomic's temporary file, renamed when
    complete): a failed write leaves no truncated PNG, and its OSError is one PlotError line."""
    temp: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = temp_beside(out)
        with handle:
            figure.savefig(handle, format="png", dpi=100)
        os.replace(temp, out)
    except OSError as error:
        raise PlotError(f"cannot write {out}: {error.strerror or error}") from None
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotError("matplotlib is not installed: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_series(labels: Sequence[str], series: dict[str, list[float | None]], out: Path, *, ylabel: str,
                title: str, ranges: dict[str, list[tuple[float, float] | None]] | None = None,
                highlight: int | None = None) -> Path:
    """One line per series over commits `labels` (oldest first); `highlight` marks one commit (a culprit).
    Returns the file written: `out`, with .png added when it has no extension (png_path)."""
    out = png_path(out)
    if not labels or not any(v is not None for values in series.values() for v in values):
        raise PlotError(f"nothing to plot for {out.name}: no measured values")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.5 * len(labels) + 3.0), 4.0))
    positions = list(range(len(labels)))
    for name, values in series.items():
        xs = [x for x, v in zip(positions, values) if v is not None]
        ys = [v for v in values if v is not None]
        if not ys:
            continue
        span = (ranges or {}).get(name)
        if span:
            lows = [v - r[0] if r else 0.0 for v, r in zip(values, span) if v is not None]
            highs = [r[1] - v if r else 0.0 for v, r in zip(values, span) if v is not None]
            axes.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=name)
        else:
            axes.plot(xs, ys, marker="o", label=name)
    if highlight is not None:
        axes.axvline(highlight, color="red", linestyle="--", linewidth=1, label=f"culprit {labels[highlight]}")
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    axes.set_xlabel("commit (oldest first)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    try:
        _save(figure, out)
    finally:
        plt.close(figure)
    return out


def _mode_for(history: list[CommitResult], metric: str, mode: str | None) -> str:
    if mode:
        return mode
    for candidate in METRICS[metric][1]:
        if any(candidate in result.runs for result in history):
            return candidate
    raise PlotError(f"no results hold {metric} (looked for modes {', '.join(METRICS[metric][1])})")


def _models_of(result: CommitResult, mode: str) -> list[str]:
    models = result.runs.get(mode, {}).get("models", {})
    return list(models) if isinstance(models, dict) else []


def plot_history(history: list[CommitResult], out: Path, metric: str = "tok_s", mode: str | None = None, *,
                 also: Sequence[str] = ()) -> Path:
    """Plot `metric` per commit for every model found in a results history; `also` adds the same metric from other
    runs of each commit (another toolchain's build: `host-ipt@openwatcom`), one line per model and run."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    if not history:
        raise PlotError("the results directory holds no results")
    chosen = _mode_for(history, metric, mode)
    runs = [chosen, *(key for key in also if key != chosen)]
    labels = [r.sha[:7] for r in history]
    series: dict[str, list[float | None]] = {}
    ranges: dict[str, list[tuple[float, float] | None]] = {}
    for key in runs:
        for model in sorted({name for r in history for name in _models_of(r, key)}):
            label = model if len(runs) == 1 else f"{model} ({_toolchain_label(key)})"
            series[label] = [value_of(r.metric(key, model, metric)) for r in history]
            ranges[label] = [range_of(r.metric(key, model, metric)) for r in history]
    mode_name = chosen.split("@")[0]
    builds = "" if len(runs) == 1 else f"; {', '.join(_toolchain_label(key) for key in runs)}"
    return plot_series(labels, series, out, ylabel=METRICS[metric][0],
                       title=f"{metric} per commit ({mode_name} mode{builds})", ranges=ranges)


def _toolchain_label(key: str) -> str:
    """The toolchain of a run key: `host-ipt@openwatcom` -> openwatcom, a plain mode -> gcc (results.py)."""
    return key.split("@", 1)[1] if "@" in key else "gcc"


def default_results_dir() -> Path:
    """Where `bench` keeps its per-commit files unless told otherwise."""
    return cache_dir("results")
