"""`llama98-harness bench`: measure models on a guest (or the host) and write one results JSON per commit."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.paths import project_root
from harness.perf.bench import DEFAULT_REPEAT, MODES, _line, bench_model, log
from harness.perf.measure import (
    DEFAULT_ICOUNT_SHIFT,
    environment,
    git_commit,
    workload_names,
)
from harness.perf.plot import default_results_dir
from harness.perf.results import read_result, record_run, write_json
from harness.run.judged import choose_cli


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}")
    if args.mode != "wall" and args.repeat != DEFAULT_REPEAT and args.repeat != 1:
        log.info(f"--repeat applies to wall mode; {args.mode} mode is deterministic and runs once")
    names = workload_names(args.models)
    binary = Path(args.binary) if args.binary else None
    if binary is not None and not binary.is_file():
        raise UsageError(f"--binary {binary} does not exist")
    cli = choose_cli(args.cli, binary)
    commit = git_commit(project_root()) or {"sha": "0" * 40, "subject": "(not a git checkout)", "date": "",
                                             "dirty": True}
    models: dict[str, dict[str, object]] = {}
    profile_used: str | None = None
    for name in names:
        log.info(f"{name}: measuring in {args.mode} mode")
        figures, profile_used = bench_model(name, args.mode, vm=args.vm, profile=args.profile, binary=binary,
                                            repeat=args.repeat if args.mode == "wall" else 1,
                                            icount_shift=args.icount_shift, timeout_scale=args.timeout_scale,
                                            cli=cli)
        models[name] = figures
        print(_line(name, args.mode, figures), flush=True)
    mode = "host-ipt" if args.mode == "host" else args.mode
    env = environment(profile=profile_used, qemu_binary=None if args.mode == "host" else "qemu-system-i386")
    if binary is not None:
        env["binary"] = str(binary)
    results_dir = Path(args.results) if args.results else default_results_dir()
    path = record_run(results_dir, commit, mode, env, models)
    print(f"results: {path} (commit {str(commit['sha'])[:12]}{', dirty' if commit.get('dirty') else ''})")
    if args.json:
        print(f"json: {write_json(Path(args.json), read_result(path).to_json())}")
    if args.plot:
        from harness.perf.plot import plot_history
        from harness.perf.results import load_history

        metric = {"host": "host_ipt", "icount": "guest_ipt", "wall": "tok_s"}[args.mode]
        print(f"plot: {plot_history(load_history(results_dir), Path(args.plot), metric, mode)}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness bench`."""
    parser = subparsers.add_parser(
        "bench", help="measure the port's speed per model (host callgrind, guest icount or wall clock)",
        description="Build this checkout's port, measure it per model, and record the figures in a results "
                    "file named after the commit (asv-like history; see harness/perf/results.py).")
    parser.add_argument("--vm", metavar="IMAGE", default=None, help="guest image (default: the built-in tiny686)")
    parser.add_argument("--profile", default="auto", help="guest profile: tiny686, win98 or auto (default)")
    parser.add_argument("--models", default="260K",
                        help="comma-separated: 260K, 15M-shape, 110M-shape, 1B-shape, each optionally :q8_0 or "
                             ":ternary (default 260K); the last two stream from disk in a 128 MB guest")
    parser.add_argument("--mode", choices=MODES, default="icount",
                        help="icount (deterministic guest instructions/token; default), wall (tok/s, repeated) "
                             "or host (callgrind, no VM)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, metavar="N",
                        help=f"wall mode: runs per model, median and range reported (default {DEFAULT_REPEAT})")
    parser.add_argument("--icount-shift", type=int, default=DEFAULT_ICOUNT_SHIFT, metavar="N",
                        help="icount mode: guest time advances 2^N ns per instruction "
                             f"(default {DEFAULT_ICOUNT_SHIFT})")
    parser.add_argument("--binary", metavar="PATH", help="measure this prebuilt binary instead of building one")
    parser.add_argument("--cli", choices=("auto", "llama98", "llama2c"), default="auto",
                        help="command-line style of --binary (default: detected); llama2c-style binaries are "
                             "measured in wall mode from their own 'achieved tok/s' line")
    parser.add_argument("--results", metavar="DIR", help="results directory (default: the harness cache's results/)")
    parser.add_argument("--json", metavar="OUT", help="also write this commit's results file here")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the metric per commit from the results directory")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply guest timeouts (slow hosts)")
    parser.set_defaults(func=_cmd_bench)
