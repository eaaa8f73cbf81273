"""Draw speed per commit (PNG, matplotlib's Agg backend so it works without a display, in CI and over ssh).

A regression is easiest to see as a step in a line over commits; ranges from repeated wall-clock runs are drawn
as error bars so noise is not mistaken for a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError, UsageError
from harness.core.paths import cache_dir
from harness.perf.results import CommitResult, range_of, value_of

METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    # metric -> (axis label, modes it is found in, preferred first)
    "tok_s": ("guest tokens/s", ("wall", "icount")),
    "guest_ipt": ("guest instructions/token", ("icount",)),
    "host_ipt": ("host instructions/token (callgrind, tiny686 build)", ("host-ipt",)),
}


class PlotError(HarnessError):
    """Nothing to plot, or matplotlib is missing."""


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
    """One line per series over commits `labels` (oldest first); `highlight` marks one commit (a culprit)."""
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
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
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


def plot_history(history: list[CommitResult], out: Path, metric: str = "tok_s", mode: str | None = None) -> Path:
    """Plot `metric` per commit for every model found in a results history."""
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    if not history:
        raise PlotError("the results directory holds no results")
    chosen = _mode_for(history, metric, mode)
    models = sorted({name for r in history for name in _models_of(r, chosen)})
    labels = [r.sha[:7] for r in history]
    series = {m: [value_of(r.metric(chosen, m, metric)) for r in history] for m in models}
    ranges = {m: [range_of(r.metric(chosen, m, metric)) for r in history] for m in models}
    return plot_series(labels, series, out, ylabel=METRICS[metric][0], title=f"{metric} per commit ({chosen} mode)",
                       ranges=ranges)


def default_results_dir() -> Path:
    """Where `bench` keeps its per-commit files unless told otherwise."""
    return cache_dir("results")
