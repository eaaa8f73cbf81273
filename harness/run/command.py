"""`llama98-harness run`: the main job, end to end, in one command.

Boot the guest (tiny686 unless --vm names an image), inject the port, model and tokenizer over FTP with checksum
verification, run the port with `-r -`, and judge the run with the oracle. Prints the text, the guest's tok/s
recomputed from raw timer ticks, the verdict and the artifact directory; exits 0 only when the verdict is ok.
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
from harness.port.check import check_run
from harness.port.models import DEFAULT_MODEL, choose_model
from harness.run.session import PortArgs, Session, SessionOptions

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="boot a guest, inject llama98 + model over FTP, generate, verify with the oracle",
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
    parser.add_argument("--binary", type=Path, default=None, help="prebuilt llama98 for the guest")
    parser.add_argument("--icount", nargs="?", type=int, const=1, default=None, metavar="SHIFT",
                        help="deterministic guest time: -icount shift=SHIFT,sleep=off (default shift 1)")
    parser.add_argument("--ftp-mode", choices=("passive", "active"), default=None,
                        help="FTP mode for the transfers (default: the profile's)")
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


def run_main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.json and not args.json.parent.is_dir():
        raise UsageError(f"--json: directory {args.json.parent} does not exist")
    choice = choose_model(args.model, args.tokenizer)
    log.info(f"model: {choice.label}")
    options = SessionOptions(vm=args.vm, profile=args.profile, binary=args.binary, icount_shift=args.icount,
                             use_snapshot=not args.no_snapshot, artifacts=args.artifacts,
                             timeout_scale=args.timeout_scale, ftp_mode=args.ftp_mode)
    port_args = PortArgs(args.temperature, args.topp, args.seed, args.steps,
                         os.fsencode(args.prompt) if args.prompt else None)  # the bytes the shell gave us
    with Session(options) as session:
        injected = session.inject_model(choice)
        run = session.run_port(injected, port_args)
        artifacts = session.artifacts
    log.info("checking the run against the numpy oracle")
    check = check_run(choice, run.text, run.report)
    (artifacts.path / "verdict.txt").write_text(str(check) + "\n", encoding="utf-8")
    tok_s = run.report.tok_per_s()
    sys.stdout.buffer.write(run.text)
    sys.stdout.flush()
    print(f"model: {choice.label}")
    print(f"guest: {session.profile.name} ({session.image})")
    print(f"tokens: {len(run.report.tokens)}; guest tok/s (from raw timer ticks, {run.report.timer.source} at "
          f"{run.report.timer.hz} Hz): {tok_s:.2f}" if tok_s else "guest tok/s: n/a (fewer than 2 tokens)")
    print(f"verdict: {check}")
    print(f"artifacts: {artifacts}")
    print(f"wall time: {time.monotonic() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "ok": check.ok, "verdict": str(check), "model": choice.label, "profile": session.profile.name,
            "tokens": len(run.report.tokens), "tok_s": tok_s, "artifacts": str(artifacts),
            "text": run.text.decode("utf-8", errors="replace")}, indent=2) + "\n", encoding="utf-8")
    return 0 if check.ok else 1
