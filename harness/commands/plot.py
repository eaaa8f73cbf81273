"""`llama98-harness plot`: PNG plots of the bench results history."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.perf.plot import METRICS, default_results_dir, plot_history
from harness.perf.results import load_history


def _cmd_plot(args: argparse.Namespace) -> int:
    results_dir = Path(args.results) if args.results else default_results_dir()
    out = plot_history(load_history(results_dir), Path(args.output), args.metric, args.mode)
    print(out)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness plot`."""
    parser = subparsers.add_parser(
        "plot", help="draw a metric per commit from a directory of bench results",
        description="Draw tok/s (or another metric) per commit from bench results (one JSON file per commit).")
    parser.add_argument("results", nargs="?", metavar="RESULTS_DIR",
                        help="bench results directory (default: the harness cache's results/)")
    parser.add_argument("-o", "--output", metavar="OUT.png", required=True,
                        help="the PNG file to write (.png is added to a name without an extension; a directory or "
                             "another extension is refused); the path written is printed")
    parser.add_argument("--metric", choices=sorted(METRICS), default="tok_s", help="what to plot")
    parser.add_argument("--mode", choices=["host-ipt", "icount", "wall"], help="which runs to take it from")
    parser.set_defaults(func=_cmd_plot)
