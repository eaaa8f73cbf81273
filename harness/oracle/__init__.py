"""The numpy oracle: llama2.c's model, tokenizer and sampler, used to check what the llama98 port printed.

Nothing here knows about QEMU or pytest; it reads a checkpoint, a tokenizer and (for verify) a `-r` report.
"""

from __future__ import annotations

from harness.oracle.checkpoint import Checkpoint, ModelConfig, load_checkpoint
from harness.oracle.errors import CheckpointError, OracleError, TokenizerError
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
    "CheckpointError",
    "Generation",
    "ModelConfig",
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
