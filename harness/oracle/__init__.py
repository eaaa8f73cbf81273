"""The numpy oracle: llama2.c's model, tokenizer and sampler, used to check what the llama98 port printed.

Nothing here knows about QEMU, pytest or the port's `-r` report: it reads a checkpoint and a tokenizer and computes
(logits, generations); judging a port's run against it is harness/judge's job. Checkpoint headers, ModelConfig and
CheckpointError are harness/formats/checkpoint.py's.
"""

from __future__ import annotations

from harness.oracle.checkpoint import Checkpoint, load_checkpoint
from harness.oracle.errors import OracleError, TokenizerError
from harness.oracle.generate import (
    Generation,
    Oracle,
    RunArgs,
    clamp_args,
    generate,
    generate_text,
)
from harness.oracle.tokenizer import Tokenizer, load_tokenizer

__all__ = [
    "Checkpoint",
    "Generation",
    "Oracle",
    "OracleError",
    "RunArgs",
    "Tokenizer",
    "TokenizerError",
    "clamp_args",
    "generate",
    "generate_text",
    "load_checkpoint",
    "load_tokenizer",
]
