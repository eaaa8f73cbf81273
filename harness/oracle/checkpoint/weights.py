"""What every checkpoint reader produces (Weights, Checkpoint) and the cursor they read a file body with.

A leaf: the per-version readers and the package's load_checkpoint all import it, and it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.formats.checkpoint import ModelConfig


@dataclass(frozen=True)
class Weights:
    """Weight matrices in PyTorch layout (out_features, in_features), float32 read-only views of the file, or
    per-layer lists of quantized tensors (harness/oracle/quant.py) for v2 and version 98 files."""

    token_embedding: np.ndarray  # (vocab, dim)
    rms_att: np.ndarray  # (layers, dim)
    wq: Any  # (layers, dim, dim)
    wk: Any  # (layers, kv_dim, dim)
    wv: Any  # (layers, kv_dim, dim)
    wo: Any  # (layers, dim, dim)
    rms_ffn: np.ndarray  # (layers, dim)
    w1: Any  # (layers, hidden, dim)
    w2: Any  # (layers, dim, hidden)
    w3: Any  # (layers, hidden, dim)
    rms_final: np.ndarray  # (dim,)
    classifier: Any  # (vocab, dim); the embedding itself when shared; a Q8Tensor in quantized files
    sub_att: np.ndarray | None = None  # (layers, dim), BitNet sub-norm before wo
    sub_ffn: np.ndarray | None = None  # (layers, hidden), BitNet sub-norm before w2


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: where it came from, its format version, header and weights."""

    path: Path
    version: int
    file_size: int
    config: ModelConfig
    weights: Weights


class Cursor:
    """Hands out consecutive typed, reshaped views of a file body (a uint8 array); nothing is copied, so a memory
    mapped 60 MB model costs nothing to open."""

    def __init__(self, body: np.ndarray) -> None:
        self.body = body
        self.offset = 0

    def take(self, dtype: str, *shape: int) -> np.ndarray:
        """The next tensor of `shape` stored as `dtype` (a little-endian numpy type string)."""
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        view = self.body[self.offset : self.offset + size].view(dtype).reshape(shape)
        self.offset += size
        return view

    def floats(self, *shape: int) -> np.ndarray:
        """The next float32 tensor of `shape`."""
        return self.take("<f4", *shape)

    def skip_floats(self, count: int) -> None:
        self.offset += 4 * count
