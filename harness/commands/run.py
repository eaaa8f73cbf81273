"""`llama98-harness run`: the main job, end to end, in one command.

Boot the guest (tiny686 unless --vm names an image), inject the binary (our port unless --binary names one),
model and tokenizer over FTP with checksum verification, run it, and judge the run with the oracle: token-level
for our port (`-r -` report), text-level for a llama2.c-style binary (`--cli llama2c`, detected by default).
Prints the text, tok/s, the guest wall time, the verdict and the artifact directory; exits 0 only when the
verdict is ok. `--build CMD` first runs a fork's own build in the current directory (make in your environment;
wmake, wcl386 or owcc in OpenWatcom's), then runs the --binary it left.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from harness.core.errors import UsageError
from harness.formats.report import describe_memory
from harness.models.names import DEFAULT_MODEL, choose_model
from harness.port.build import PortBuildError, build_port
from harness.run.judged import (
    BUILD_TOOLCHAINS,
    CLI_STYLES,
    choose_cli,
    guest_build,
    run_and_judge,
    run_build,
    watcom_os,
)
from harness.run.session import PortArgs, Session, SessionOptions

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="boot a guest, inject a llama2.c-family binary + model over FTP, generate, judge with the oracle",
        description=__doc__)
    parser.add_argument("--vm", metavar="IMAGE", default=None,
                        help="disk image (default: the built-in tiny686 stand-in guest, built on first use)")
    parser.add_argument("--profile", default="auto", help="guest profile: tiny686, win98 or auto (default)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="stories260K (default), stories15M, a generated shape such as 15M-shape, or a path")
    parser.add_argument("--tokenizer", default=None, help="tokenizer file (default: the model's own)")
    parser.add_argument("-i", dest="prompt", default=None, help="prompt")
    parser.add_argument("-n", dest="steps", type=int, default=200, help="steps (default 200)")
    parser.add_argument("-t", dest="temperature", type=float, default=0.0, help="temperature (default 0)")
    parser.add_argument("-p", dest="topp", type=float, default=0.9, help="top-p (default 0.9)")
    parser.add_argument("-s", dest="seed", type=int, default=42, help="RNG seed (default 42)")
    parser.add_argument("--binary", type=Path, default=None,
                        help="a prebuilt binary for the guest: our port, or any llama2.c-style program")
    parser.add_argument("--build", metavar="CMD", default=None,
                        help="with --binary: a fork's own build command, run by sh in the current directory before "
                             "the run (e.g. 'make run', or 'wmake -f fork.mk' for an OpenWatcom build)")
    parser.add_argument("--toolchain", choices=BUILD_TOOLCHAINS, default="auto",
                        help="what --build runs with: openwatcom (OpenWatcom's environment for the guest's OS: "
                             "WATCOM, INCLUDE, its tools on PATH), gcc (your environment as it is), or auto "
                             "(default: openwatcom when CMD starts with wmake, wcl386, owcc or wcc386). Without "
                             "--binary, openwatcom runs OpenWatcom's build of our port (watcom-tiny686, "
                             "watcom-win32)")
    parser.add_argument("--cli", choices=("auto", *CLI_STYLES), default="auto",
                        help="command-line style of --binary: llama98 (our port, -r report, token-level verdict), "
                             "llama2c (llama2.c's flags only, text-level verdict), or auto (default: detected)")
    parser.add_argument("--icount", nargs="?", type=int, const=1, default=None, metavar="SHIFT",
                        help="deterministic guest time: -icount shift=SHIFT,sleep=off (default shift 1)")
    parser.add_argument("--ftp-mode", choices=("passive", "active"), default=None,
                        help="FTP mode for the transfers (default: the profile's)")
    parser.add_argument("--memory", type=_memory_mb, default=None, metavar="MB",
                        help="guest RAM in MiB (default: the profile's, 128); e.g. 1024 for a resident reference run")
    parser.add_argument("--budget", type=_positive, default=None, metavar="MB",
                        help="our port's memory budget (-M, MiB): weights beyond it are read from the checkpoint "
                             "for every token (default: what the guest says is free)")
    parser.add_argument("--no-snapshot", action="store_true", help="cold-boot instead of loading the snapshot")
    parser.add_argument("--artifacts", type=Path, default=None, help="artifact directory (default: a new temp dir)")
    parser.add_argument("--timeout-scale", type=_positive, default=1.0, help="multiply guest timeouts (slow hosts)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    parser.set_defaults(func=run_main)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _memory_mb(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of MiB, not {text}") from None
    if not 16 <= value <= 3072:
        raise argparse.ArgumentTypeError(f"must be between 16 and 3072 MiB (a 32-bit guest), not {text}")
    return value


def _binary(args: argparse.Namespace) -> Path | None:
    """The binary to run: --binary after its --build, OpenWatcom's build of our port for `--toolchain
    openwatcom` alone, else None (the Session builds ours with gcc)."""
    if args.build is not None:
        if args.binary is None:
            raise UsageError("--build needs --binary: the path of the binary the build command leaves")
        guest = guest_build(args.vm, args.profile)
        toolchain = run_build(args.build, Path.cwd(), toolchain=args.toolchain, target=watcom_os(guest))
        if not args.binary.is_file():
            raise PortBuildError(f"the build command {args.build!r} left no binary at {args.binary}")
        log.info(f"built {args.binary} with {args.build!r} ({toolchain})")
        return Path(args.binary)
    if args.toolchain == "openwatcom":
        if args.binary is not None:
            raise UsageError("--toolchain openwatcom with --binary applies to --build; a prebuilt binary runs as it is")
        from harness.perf.measure import toolchain_build

        return build_port(toolchain_build("openwatcom", guest_build(args.vm, args.profile)))
    return args.binary


def run_main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.json and not args.json.parent.is_dir():
        raise UsageError(f"--json: directory {args.json.parent} does not exist")
    binary = _binary(args)
    cli = choose_cli(args.cli, binary)
    choice = choose_model(args.model, args.tokenizer)
    log.info(f"model: {choice.label}")
    if binary is not None:
        log.info(f"binary: {binary} (command line style: {cli})")
    options = SessionOptions(vm=args.vm, profile=args.profile, binary=binary, icount_shift=args.icount,
                             use_snapshot=not args.no_snapshot, artifacts=args.artifacts,
                             timeout_scale=args.timeout_scale, ftp_mode=args.ftp_mode,
                             inputs=(choice.checkpoint, choice.tokenizer), memory_mb=args.memory)
    if args.budget is not None and cli != "llama98":
        raise UsageError("--budget is our port's -M; a llama2c-style binary has no memory budget")
    port_args = PortArgs(args.temperature, args.topp, args.seed, args.steps,
                         os.fsencode(args.prompt) if args.prompt else None,  # the bytes the shell gave us
                         budget_mb=args.budget)
    with Session(options) as session:
        injected = session.inject_model(choice)
        log.info("running and checking against the numpy oracle")
        outcome = run_and_judge(session, injected, port_args, cli)
    sys.stdout.buffer.write(outcome.text)
    sys.stdout.flush()
    print(f"model: {choice.label}")
    print(f"guest: {session.profile.name} ({session.image})")
    if outcome.report is not None:
        report = outcome.report
        tok_s = f"{outcome.tok_s:.2f}" if outcome.tok_s else "n/a (fewer than 2 tokens)"
        print(f"tokens: {len(report.tokens)}; guest tok/s (from raw timer ticks, {report.timer.source} at "
              f"{report.timer.hz} Hz): {tok_s}")
        memory_line = describe_memory(report)
        if memory_line:
            print(memory_line)
    else:
        print(f"program tok/s (its own 'achieved tok/s' line): "
              f"{outcome.tok_s:.2f}" if outcome.tok_s is not None else "program tok/s: n/a (it printed no tok/s line)")
    print(f"guest wall time of the run: {outcome.wall_seconds:.2f} s")
    print(f"verdict ({outcome.level}): {outcome.verdict}")
    print(f"artifacts: {outcome.artifacts}")
    print(f"wall time: {time.monotonic() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "ok": outcome.ok, "verdict": outcome.verdict, "level": outcome.level, "cli": outcome.cli,
            "model": choice.label, "profile": session.profile.name,
            "tokens": len(outcome.report.tokens) if outcome.report is not None else None,
            "tok_s": outcome.tok_s, "guest_wall_seconds": outcome.wall_seconds, "artifacts": str(outcome.artifacts),
            "text": outcome.text.decode("utf-8", errors="replace")}, indent=2) + "\n", encoding="utf-8")
    return 0 if outcome.ok else 1
