"""Read model checkpoints of every version into numpy: llama2.c legacy v0 and v1, v2 Q8_0, llama98's version 98
ternary and version 3 (L98M, the Llama 3 family).

The header is parsed and checked by harness/formats/checkpoint.py (shared with the writers); this package maps
the file (np.memmap, split files through harness/formats/parts.py) and slices the weights, one module per layout:
legacy (v0, v1), quantized (v2, 98), l98m (v3), over the shared types of weights.py. Every way a file can be wrong
(missing, too short, too long, impossible header, impossible tensor) is one CheckpointError line naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.formats.checkpoint import (
    HEADER_BYTES,
    L98M_VERSION,
    Q8_VERSION,
    TERNARY_VERSION,
    CheckpointError,
    ModelConfig,
    check_file_size,
    parse_header,
)
from harness.formats.parts import describe, logical_size, read_head, read_logical
from harness.oracle.checkpoint.l98m import read_l98m
from harness.oracle.checkpoint.legacy import read_legacy
from harness.oracle.checkpoint.quantized import read_quantized
from harness.oracle.checkpoint.weights import Checkpoint, Weights
from harness.oracle.errors import describe_read_error

__all__ = ["Checkpoint", "Weights", "load_checkpoint"]

# body (the bytes after the header), config, version, the file's name for messages -> weights
Reader = Callable[[np.ndarray, ModelConfig, int, object], Weights]
READERS: dict[int, Reader] = {
    0: read_legacy,
    1: read_legacy,
    Q8_VERSION: read_quantized,
    TERNARY_VERSION: read_quantized,
    L98M_VERSION: read_l98m,
}


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Open a checkpoint of any supported version; `path` is its first part (harness/formats/parts.py). The weights
    of a one-part file are memory-mapped, not copied; a split file's parts are mapped or read into one array."""
    path = Path(path)
    try:
        file_size = logical_size(path)
        head = read_head(path, HEADER_BYTES)
    except OSError as error:
        raise CheckpointError(describe_read_error(path, "checkpoint", error)) from None
    header = parse_header(head, file_size, path)
    expected = check_file_size(header, file_size, describe(path))
    body = read_logical(path)[header.header_bytes:expected]
    weights = READERS[header.version](body, header.config, header.version, path)
    return Checkpoint(path, header.version, file_size, header.config, weights)
