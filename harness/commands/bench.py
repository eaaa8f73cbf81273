"""`llama98-harness bench`: measure models on a guest (or the host) and write one results JSON per commit."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import UsageError
from harness.core.paths import project_root
from harness.perf.bench import DEFAULT_REPEAT, HEADLINE, MODES, _line, bench_model, log, run_key, side_by_side
from harness.perf.measure import (
    DEFAULT_ICOUNT_SHIFT,
    DEFAULT_TOOLCHAIN,
    HOST_BUILD,
    environment,
    git_commit,
    guest_build,
    toolchain_build,
    toolchain_names,
    workload_names,
)
from harness.perf.plot import default_results_dir
from harness.perf.results import read_result, record_run, write_json
from harness.run.judged import choose_cli


def _builds(args: argparse.Namespace, binary: Path | None) -> dict[str, str | None]:
    """The build each --toolchain measures (None: the --binary given): i386 Linux builds in host mode, otherwise
    the build the guest runs, made by that toolchain."""
    toolchains = toolchain_names(args.toolchain)
    if binary is not None:
        if toolchains != [DEFAULT_TOOLCHAIN]:
            raise UsageError("--binary measures that binary as it is; --toolchain builds this checkout's port with "
                             "each toolchain: give one or the other")
        return {DEFAULT_TOOLCHAIN: None}
    base = HOST_BUILD if args.mode == "host" else guest_build(args.vm, args.profile)
    return {toolchain: toolchain_build(toolchain, base) for toolchain in toolchains}


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.repeat < 1:
        raise UsageError(f"--repeat must be at least 1, got {args.repeat}")
    if args.mode != "wall" and args.repeat != DEFAULT_REPEAT and args.repeat != 1:
        log.info(f"--repeat applies to wall mode; {args.mode} mode is deterministic and runs once")
    names = workload_names(args.models)
    binary = Path(args.binary) if args.binary else None
    if binary is not None and not binary.is_file():
        raise UsageError(f"--binary {binary} {'is a directory, not a binary' if binary.is_dir() else 'does not exist'}")
    builds = _builds(args, binary)
    cli = choose_cli(args.cli, binary)
    commit = git_commit(project_root()) or {"sha": "0" * 40, "subject": "(not a git checkout)", "date": "",
                                             "dirty": True}
    models: dict[str, dict[str, dict[str, object]]] = {toolchain: {} for toolchain in builds}
    profile_used: str | None = None
    for name in names:
        for toolchain, build in builds.items():
            log.info(f"{name}: measuring in {args.mode} mode" + (f" ({build} build)" if build else ""))
            figures, profile_used = bench_model(name, args.mode, vm=args.vm, profile=args.profile, binary=binary,
                                                repeat=args.repeat if args.mode == "wall" else 1,
                                                icount_shift=args.icount_shift, timeout_scale=args.timeout_scale,
                                                cli=cli, build=build)
            models[toolchain][name] = figures
            print(_line(name, args.mode, figures), flush=True)
        if len(builds) > 1:
            print(side_by_side(name, args.mode, {toolchain: models[toolchain][name] for toolchain in builds}),
                  flush=True)
    results_dir = Path(args.results) if args.results else default_results_dir()
    qemu = None if args.mode == "host" else "qemu-system-i386"
    path = results_dir
    for toolchain, build in builds.items():
        env = environment(profile=profile_used, qemu_binary=qemu, build=build)
        if binary is not None:
            env["binary"] = str(binary)
        path = record_run(results_dir, commit, run_key(args.mode, toolchain), env, models[toolchain])
    print(f"results: {path} (commit {str(commit['sha'])[:12]}{', dirty' if commit.get('dirty') else ''})")
    if args.json:
        print(f"json: {write_json(Path(args.json), read_result(path).to_json())}")
    if args.plot:
        from harness.perf.plot import plot_history
        from harness.perf.results import load_history

        keys = [run_key(args.mode, toolchain) for toolchain in builds]
        drawn = plot_history(load_history(results_dir), Path(args.plot), HEADLINE[args.mode], keys[0], also=keys[1:])
        print(f"plot: {drawn}")
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
    parser.add_argument("--toolchain", default=DEFAULT_TOOLCHAIN, metavar="gcc,openwatcom",
                        help="build this checkout's port with each of these toolchains and measure every build: "
                             "gcc (default; tiny686 or win32), openwatcom (watcom-tiny686 or watcom-win32, the "
                             "nightly's compiler), or both, printed side by side per model; the guest decides the "
                             "OS (host mode: i386 Linux)")
    parser.add_argument("--binary", metavar="PATH", help="measure this prebuilt binary instead of building one")
    parser.add_argument("--cli", choices=("auto", "llama98", "llama2c"), default="auto",
                        help="command-line style of --binary (default: detected); llama2c-style binaries are "
                             "measured in wall mode from their own 'achieved tok/s' line")
    parser.add_argument("--results", metavar="DIR", help="results directory (default: the harness cache's results/)")
    parser.add_argument("--json", metavar="OUT", help="also write this commit's results file here")
    parser.add_argument("--plot", metavar="OUT.png", help="draw the metric per commit from the results directory")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply guest timeouts (slow hosts)")
    parser.set_defaults(func=_cmd_bench)
