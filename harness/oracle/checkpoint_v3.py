"""Read version-3 ("L98M") checkpoints: the Llama 3 family's header fields and a layer-contiguous layout.

The layout keeps one layer's weights together so the port can later stream layers; the oracle still wants
(layers, rows, cols) stacks, which are strided views of the memory map here (nothing is copied).
Format: ports/llama98/FORMATS.md, "Checkpoint version 3". The writer (harness/formats/l98m.py) is separate code.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import as_strided

from harness.formats.l98m import (
    FLAG_SHARED,
    HEADER_BYTES,
    SCALING_LLAMA3,
    SCALING_NONE,
    VERSION,
    WEIGHT_FLOAT32,
)
from harness.formats.parts import describe, read_logical
from harness.oracle.checkpoint import (
    Checkpoint,
    ModelConfig,
    RopeScaling,
    Weights,
    validate_config,
)
from harness.oracle.errors import CheckpointError


def layer_floats(c: ModelConfig) -> int:
    """Floats of one layer: rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3."""
    d, h, kv = c.dim, c.hidden_dim, c.kv_dim
    return d + d * d + 2 * kv * d + d * d + d + 3 * h * d


def total_floats(c: ModelConfig) -> int:
    """Floats after the header: embedding, layers, rms_final, optional classifier."""
    v, d = c.vocab_size, c.dim
    return v * d + c.n_layers * layer_floats(c) + d + (0 if c.shared_classifier else v * d)


def _header(path: Path, head: bytes, file_size: int) -> ModelConfig:
    if len(head) < HEADER_BYTES:
        raise CheckpointError(f"{path}: v3 checkpoint is {file_size} bytes, shorter than its 256-byte header")
    version, dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<8i", head, 4)
    if version != VERSION:
        raise CheckpointError(f"{path}: L98M checkpoint version {version} is not supported (only 3)")
    weight_type, flags = struct.unpack_from("<2i", head, 36)
    theta, eps = struct.unpack_from("<2f", head, 44)
    (scaling,) = struct.unpack_from("<i", head, 52)
    factor, low, high = struct.unpack_from("<3f", head, 56)
    (original,) = struct.unpack_from("<i", head, 68)
    if weight_type != WEIGHT_FLOAT32:
        raise CheckpointError(f"{path}: weight type {weight_type} is not supported (only 0 = float32)")
    if flags & ~FLAG_SHARED or any(head[72:HEADER_BYTES]):
        raise CheckpointError(f"{path}: unknown flags or non-zero reserved header bytes")
    if not (math.isfinite(theta) and theta > 1.0 and math.isfinite(eps) and 0.0 < eps < 1.0):
        raise CheckpointError(f"{path}: impossible rope_theta={theta} or norm_eps={eps}")
    rope: RopeScaling | None = None
    if scaling == SCALING_LLAMA3:
        if not (all(math.isfinite(x) for x in (factor, low, high)) and factor >= 1.0 and 0.0 < low < high
                and original > 0):
            raise CheckpointError(f"{path}: impossible llama3 rope scaling factor={factor} low={low} "
                                  f"high={high} original={original}")
        rope = RopeScaling(factor, low, high, original)
    elif scaling != SCALING_NONE or factor or low or high or original:
        raise CheckpointError(f"{path}: rope scaling type {scaling} is not supported (0 none, 1 llama3)")
    return ModelConfig(dim, hidden, layers, heads, kv_heads, vocab, seq_len,
                       shared_classifier=bool(flags & FLAG_SHARED), rope_theta=theta, norm_eps=eps,
                       rope_scaling=rope)


def load_v3(path: Path, head: bytes, file_size: int) -> Checkpoint:
    """Open a v3 checkpoint whose first bytes are `head` (`path`: its first part, `file_size`: the logical size);
    the weights are views of harness/formats/parts.py's read_logical."""
    config = _header(path, head, file_size)
    validate_config(path, config)
    expected = HEADER_BYTES + 4 * total_floats(config)
    if file_size != expected:
        relation = "shorter" if file_size < expected else "longer"
        raise CheckpointError(f"{describe(path)}: checkpoint is {file_size} bytes, {relation} than the {expected} "
                              f"its v3 header ({config.describe()}) implies")
    data = read_logical(path)[HEADER_BYTES:expected].view("<f4")
    return Checkpoint(path, VERSION, file_size, config, _weights(data, config))


def _weights(data: np.ndarray, c: ModelConfig) -> Weights:
    d, h, kv, v, n = c.dim, c.hidden_dim, c.kv_dim, c.vocab_size, c.n_layers
    stride = layer_floats(c)
    base = v * d
    offset = base

    def stacked(*shape: int) -> np.ndarray:
        """The same tensor of every layer, as a (layers, *shape) view."""
        nonlocal offset
        count = int(np.prod(shape))
        first = data[offset:offset + (n - 1) * stride + count]
        inner = [4 * int(np.prod(shape[i + 1:])) for i in range(len(shape))]
        view = as_strided(first, shape=(n, *shape), strides=(4 * stride, *inner), writeable=False)
        offset += count
        return view

    emb = data[:base].reshape(v, d)
    rms_att, wq, wk, wv, wo = stacked(d), stacked(d, d), stacked(kv, d), stacked(kv, d), stacked(d, d)
    rms_ffn, w1, w2, w3 = stacked(d), stacked(h, d), stacked(d, h), stacked(h, d)
    end = base + n * stride
    rms_final = data[end:end + d]
    classifier = emb if c.shared_classifier else data[end + d:end + d + v * d].reshape(v, d)
    return Weights(emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, classifier)
