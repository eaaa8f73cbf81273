"""`llama98-harness quantize`: a float32 checkpoint -> Q8_0 or ternary."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.formats.parts import (
    add_part_mb_option,
    part_bytes_from_mb,
    part_paths,
)
from harness.models.quantize import QUANT_TYPES, quantize_file


def _cmd_quantize(args: argparse.Namespace) -> int:
    out = quantize_file(Path(args.input), Path(args.output), args.to, args.group_size,
                        args.classifier == "int8", part_bytes_from_mb(args.part_mb))
    print("\n".join(str(path) for path in part_paths(out)))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness quantize`."""
    parser = subparsers.add_parser(
        "quantize",
        help="convert a float32 checkpoint to Q8_0 (llama2.c v2) or ternary (BitNet b1.58, version 98)",
        description="Convert a float32 llama2.c checkpoint (v0 or v1) to Q8_0 or ternary.",
    )
    parser.add_argument("input", help="float32 llama2.c checkpoint (v0 or v1)")
    parser.add_argument("output", help="file to write")
    parser.add_argument("--to", choices=QUANT_TYPES, required=True, help="the weight format")
    parser.add_argument("--group-size", type=int, default=None, metavar="N",
                        help="Q8_0 group size, positive and dividing dim and hidden_dim (default: the largest up "
                             "to 64 that does; 0 is refused like any other impossible size, not taken as default)")
    parser.add_argument("--classifier", choices=("fp32", "int8"), default="int8",
                        help="ternary: store the classifier int8, one scale per row (default), or keep it float32")
    add_part_mb_option(parser)
    parser.set_defaults(func=_cmd_quantize)
