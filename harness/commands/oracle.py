"""`llama98-harness oracle`: llama2.c's `run` command line on the numpy oracle, plus `--verify REPORT`.

It reads a checkpoint of every version the port reads (llama2.c legacy v0 and v1, v2 Q8_0, llama98's version 98
ternary, version 3 L98M); a BPE tokenizer file selects Llama 3's token rules (harness/oracle/llama3.py).
Generating prints exactly what llama2.c prints on stdout (the text and a final newline, nothing else), so a
port's output can be compared byte for byte; flag values are parsed with C's atof/atoi and clamped as run.c
does. `-r` also writes the run as a port's `-r` report (llama2.c tokenizers only). `--verify` checks a port's
`-r` report instead and prints one verdict line (exit 0 ok, 1 failure).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from harness.core.errors import UsageError
from harness.judge.verify import DEFAULT_TOL, oracle_report_text, verify
from harness.oracle.generate import Oracle, c_atof, c_atoi, clamp_args
from harness.oracle.llama3 import Llama3Oracle, is_bpe_tokenizer, run_positions


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "oracle",
        help="run the numpy oracle like llama2.c `run`, or verify a port's report",
        description="Generate text exactly as llama2.c `run` would, or verify a llama98 -r report.",
    )
    parser.add_argument("checkpoint", help="checkpoint: llama2.c v0, v1 or v2 (Q8_0), llama98 98 (ternary) or 3 (L98M)")
    parser.add_argument("-t", dest="temperature", default="1.0", help="temperature, default 1.0 (0 = argmax)")
    parser.add_argument("-p", dest="topp", default="0.9", help="top-p, default 0.9 (outside [0,1] -> 0.9)")
    parser.add_argument("-s", dest="seed", default="0", help="RNG seed, default 0 = time(NULL)")
    parser.add_argument("-n", dest="steps", default="256", help="steps, default 256 (0 = seq_len)")
    parser.add_argument("-i", dest="prompt", default=None, help="prompt")
    parser.add_argument("-z", dest="tokenizer", default="tokenizer.bin",
                        help="tokenizer, llama2.c's or a BPE file (Llama 3), default tokenizer.bin")
    parser.add_argument("-m", dest="mode", default="generate", help="mode: only generate is supported")
    parser.add_argument("-r", dest="report", default=None, help="also write a llama98 report (path or -)")
    parser.add_argument("--verify", metavar="REPORT", default=None, help="verify a port's report instead")
    parser.add_argument("-c", dest="context", default="0",
                        help="Llama 3 (BPE tokenizer): most positions a run may use, default 0 = seq_len")
    parser.add_argument("--tol", type=float, default=DEFAULT_TOL, help="logit tolerance for --verify")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.verify is not None:  # llama2.c or Llama 3 rules, from the tokenizer file (verify.load_oracle)
        verdict = verify(args.checkpoint, args.tokenizer, Path(args.verify), tol=args.tol)
        print(verdict)
        return 0 if verdict.ok else 1
    if args.mode != "generate":
        raise UsageError(f"oracle mode {args.mode!r} is not supported (only -m generate)")
    if is_bpe_tokenizer(args.tokenizer):
        return _run_llama3(args)
    oracle = Oracle.load(args.checkpoint, args.tokenizer)
    prompt = os.fsencode(args.prompt) if args.prompt is not None else None
    run_args = clamp_args(
        oracle.checkpoint.config.seq_len,
        temperature=c_atof(args.temperature),
        topp=c_atof(args.topp),
        seed=c_atoi(args.seed),
        steps=c_atoi(args.steps),
        prompt=prompt,
    )
    result = oracle.generate(run_args)
    out = sys.stdout.buffer
    out.write(result.text)
    out.flush()
    if args.report is not None:
        text = oracle_report_text(oracle, result)
        if args.report == "-":
            out.write(text.encode())
            out.flush()
        else:
            try:
                Path(args.report).write_text(text)
            except OSError as error:  # a directory, a missing parent: the user's path, one line
                raise UsageError(f"{args.report}: cannot write the report: {error.strerror}") from None
    return 0


def _run_llama3(args: argparse.Namespace) -> int:
    """A v3 checkpoint with a BPE tokenizer: the Llama 3 token rules (harness/oracle/llama3.py)."""
    if args.report is not None:
        raise UsageError("-r is not supported with a BPE tokenizer yet")
    oracle = Llama3Oracle.load(args.checkpoint, args.tokenizer)
    seq_len = oracle.checkpoint.config.seq_len
    clamped = clamp_args(seq_len, temperature=c_atof(args.temperature), topp=c_atof(args.topp),
                         seed=c_atoi(args.seed), steps=1,
                         prompt=os.fsencode(args.prompt) if args.prompt is not None else None)
    context = c_atoi(args.context)
    steps = run_positions(seq_len, c_atoi(args.steps), context)
    prompt_tokens = len(oracle.encode_prompt(clamped.prompt))
    if context > 0 and prompt_tokens > context:  # the port refuses this too
        raise UsageError(f"the prompt is {prompt_tokens} tokens, more than the context -c {context}")
    result = oracle.generate(replace(clamped, steps=steps))
    sys.stdout.buffer.write(result.text)
    sys.stdout.buffer.flush()
    return 0
