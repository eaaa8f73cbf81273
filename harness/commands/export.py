"""`llama98-harness export`: a Hugging Face Llama 3.x directory -> checkpoint + tokenizer files."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.formats.parts import (
    add_part_mb_option,
    part_bytes_from_mb,
    part_paths,
)
from harness.models.export_hf import export


def _cmd_export(args: argparse.Namespace) -> int:
    header = export(Path(args.hf_dir), Path(args.output), Path(args.tokenizer), part_bytes_from_mb(args.part_mb))
    split = len(part_paths(Path(args.output)))
    parts = f" in {split} parts" if split > 1 else ""
    print(f"wrote {args.output}{parts} (dim={header.dim} layers={header.n_layers} heads={header.n_heads}/"
          f"{header.n_kv_heads} vocab={header.vocab_size}) and {args.tokenizer}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `llama98-harness export`."""
    parser = subparsers.add_parser(
        "export", help="convert a Hugging Face Llama directory to the port's checkpoint and tokenizer",
        description="Convert a Hugging Face Llama (3.x) directory: config.json, *.safetensors, tokenizer.json or "
                    "original/tokenizer.model.")
    parser.add_argument("hf_dir", metavar="HF_DIR")
    parser.add_argument("-o", dest="output", metavar="MODEL.bin", required=True)
    parser.add_argument("-z", dest="tokenizer", metavar="TOKENIZER.bin", required=True)
    add_part_mb_option(parser)
    parser.set_defaults(func=_cmd_export)
