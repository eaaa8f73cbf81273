"""The `bisect` and `bisect-step` sub-commands: argument parsing and dispatch only."""


from __future__ import annotations

import argparse
from pathlib import Path

from harness.perf.bisect.report import print_outcome
from harness.perf.bisect.runner import bisect
from harness.perf.bisect.state import DEFAULT_PORT_DIR, METRICS
from harness.perf.bisect.step import run_step
from harness.perf.measure import (
    DEFAULT_ICOUNT_SHIFT,
)

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
    if args.cli is None:
        args.cli = "llama2c" if args.build else "llama98"
    outcome = bisect(Path(args.repo), args.good, args.bad, metric=args.metric, threshold=args.threshold,
                     model=args.model, out_dir=Path(args.out) if args.out else None, port_dir=args.port_dir,
                     vm=args.vm, icount_shift=args.icount_shift, plot=not args.no_plot, use_cache=not args.fresh,
                     build_command=args.build, binary=args.binary, cli=args.cli, wall_clock=args.wall_clock,
                     toolchain=args.toolchain)
    print_outcome(outcome, args.metric)
    return 0


def _cmd_step(args: argparse.Namespace) -> int:
    return run_step(Path(args.state))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness bisect` and the internal `bisect-step`."""
    parser = subparsers.add_parser(
        "bisect", help="find the commit that made the port slower (git bisect run + a measurement per step)",
        description="Bisect --good..--bad with `git bisect run` in a temporary clone; each step builds the port "
                    "and measures it. The repository (branch, HEAD, working tree) is left exactly as it was.")
    parser.add_argument("--good", required=True, metavar="REV", help="a commit that is fast enough")
    parser.add_argument("--bad", required=True, metavar="REV", help="a later commit that is slower")
    parser.add_argument("--metric", choices=METRICS, default="host-ipt",
                        help="host-ipt: callgrind instructions/token of the i386 Linux build (tiny686, or "
                             "watcom-tiny686 with --toolchain openwatcom; no VM, exact; default); "
                             "guest-ipt: guest instructions/token under QEMU -icount; "
                             "tok_s: the program's own tok/s on the guest's -icount clock")
    parser.add_argument("--threshold", type=parse_threshold, default=0.05, metavar="PCT",
                        help="slower by more than this is bad (default 5%%; with --wall-clock pick more than "
                             "the run-to-run noise of plain emulation, e.g. 20%%)")
    parser.add_argument("--repo", default=".", metavar="PATH", help="the repository (default: the current one)")
    parser.add_argument("--model", default="260K", help="260K (default) or 15M-shape")
    parser.add_argument("--port-dir", default=DEFAULT_PORT_DIR, help="the port's directory inside the repository")
    parser.add_argument("--build", metavar="CMD", default=None,
                        help="a fork's own build command, run by sh at the top of each checkout (e.g. 'make run')")
    parser.add_argument("--binary", metavar="PATH", default=None,
                        help="with --build: the binary it produces, relative to the checkout (e.g. run)")
    parser.add_argument("--toolchain", choices=("gcc", "openwatcom", "auto"), default=None,
                        help="build each commit of the port with gcc (default: the tiny686 build, or the guest's) or "
                             "openwatcom (watcom-tiny686, or watcom-win32 for a Windows 98 image); with --build, "
                             "what the command runs with (default auto: OpenWatcom's environment when it starts "
                             "with wmake, wcl386, owcc or wcc386, else yours)")
    parser.add_argument("--cli", choices=("llama98", "llama2c"), default=None,
                        help="command-line style of the measured binary (default: llama2c with --build, else "
                             "llama98)")
    parser.add_argument("--out", metavar="DIR", help="run directory for bisect.json, bisect.png and logs "
                                                     "(default: a new directory in the harness cache)")
    parser.add_argument("--vm", metavar="IMAGE", default=None, help="guest for guest-ipt/tok_s (default tiny686)")
    parser.add_argument("--icount-shift", type=int, default=DEFAULT_ICOUNT_SHIFT, metavar="N",
                        help=f"-icount shift for guest-ipt and tok_s (default {DEFAULT_ICOUNT_SHIFT})")
    parser.add_argument("--wall-clock", action="store_true",
                        help="tok_s on plain emulation (the host's wall clock) instead of the guest's -icount "
                             "clock: noisy, each commit is sampled against --good until the ranges separate")
    parser.add_argument("--no-plot", action="store_true", help="do not draw bisect.png")
    parser.add_argument("--fresh", action="store_true",
                        help="measure every commit again instead of reusing cached host-ipt/guest-ipt figures")
    parser.set_defaults(func=_cmd_bisect)

    step = subparsers.add_parser(
        "bisect-step", help="(internal) one step of `bisect`: exit 0 good, 1 bad, 125 skip",
        description="Run by `git bisect run` inside the temporary clone made by `bisect`.")
    step.add_argument("--state", required=True, metavar="FILE", help="state.json written by `bisect`")
    step.set_defaults(func=_cmd_step)
