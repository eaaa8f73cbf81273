"""Read model checkpoints (llama2.c legacy v0, v1 and v2 Q8_0; llama98 version 98 ternary) into numpy.

The port reads the same files with fread; the oracle maps them (np.memmap) so that a 60 MB model costs nothing
to open. Every way a file can be wrong (missing, too short, too long, impossible header) becomes one
CheckpointError line naming the file, because a broken fixture must never surface as a numpy traceback.

Layouts (facts from llama2.c export.py / run.c):
- v0: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len); a negative
  vocab_size means the classifier is stored separately at the end. Weights follow in the order embedding,
  rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, two unused RoPE tables (seq_len*head_size/2 floats
  each), then the optional classifier.
- v1: uint32 magic 0x616b3432, int32 version 1, the same 7 int32 (vocab positive), one byte "shared classifier",
  zero padding to 256 bytes. Weights: rms_att, rms_ffn, rms_final, embedding, wq, wk, wv, wo, w1, w2, w3,
  optional classifier; no RoPE tables.
- v3: our Llama 3 format (magic "L98M"), read by harness/oracle/checkpoint_v3.py; ports/llama98/FORMATS.md.
- v2 (Q8_0) and 98 (ternary): read by harness/oracle/quantized_checkpoint.py, layouts in ports/llama98/FORMATS.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.formats.parts import describe, logical_size, read_head, read_logical
from harness.oracle.errors import CheckpointError, describe_read_error

V1_MAGIC = 0x616B3432
V1_HEADER_BYTES = 256
V0_HEADER_BYTES = 28
QUANTIZED_VERSIONS = (2, 98)
# Anything above this is not a model a 1998 PC (or this harness) will ever load; it also keeps arithmetic on
# absurd header fields from producing silly allocations.
MAX_FIELD = 1 << 24


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's "llama3" RoPE frequency scaling (ports/llama98/FORMATS.md)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class ModelConfig:
    """The header fields of a checkpoint, with the classifier flag made explicit."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool
    weight_type: str = "fp32"  # fp32, q8_0 or ternary: the type of wq..w3
    group_size: int = 0  # Q8_0 group size (v2)
    ffn: str = "silu"  # silu (Llama) or relu2 (squared ReLU, BitNet b1.58 2B4T); both gated by w3
    sub_norms: bool = False  # BitNet's extra RMSNorms before wo and before w2
    classifier_type: str = "fp32"  # fp32 or q8_0
    # Llama 3 (v3 files); llama2.c's fixed values otherwise
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    rope_scaling: RopeScaling | None = None

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    def weight_floats(self, version: int) -> int:
        """Number of float32 values that follow the header for this config in the given file version."""
        d, h, l, v = self.dim, self.hidden_dim, self.n_layers, self.vocab_size
        kv = self.kv_dim
        count = v * d + 2 * l * d + l * d * d * 2 + 2 * l * d * kv + 3 * l * d * h + d
        if version == 0:
            count += 2 * (self.seq_len * self.head_size // 2)
        if not self.shared_classifier:
            count += v * d
        return count

    def describe(self) -> str:
        return (
            f"dim={self.dim} hidden={self.hidden_dim} layers={self.n_layers} heads={self.n_heads} "
            f"kv_heads={self.n_kv_heads} vocab={self.vocab_size} seq_len={self.seq_len} "
            f"shared={int(self.shared_classifier)}"
        )


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


def validate_config(path: Path, config: ModelConfig) -> None:
    fields = {
        "dim": config.dim,
        "hidden_dim": config.hidden_dim,
        "n_layers": config.n_layers,
        "n_heads": config.n_heads,
        "n_kv_heads": config.n_kv_heads,
        "vocab_size": config.vocab_size,
        "seq_len": config.seq_len,
    }
    for name, value in fields.items():
        if value <= 0 or value > MAX_FIELD:
            raise CheckpointError(f"{path}: impossible checkpoint header field {name}={value}")
    if config.dim % config.n_heads:
        raise CheckpointError(f"{path}: dim={config.dim} is not divisible by n_heads={config.n_heads}")
    if config.n_heads % config.n_kv_heads:
        raise CheckpointError(
            f"{path}: n_heads={config.n_heads} is not divisible by n_kv_heads={config.n_kv_heads}"
        )
    if config.head_size % 2:
        raise CheckpointError(f"{path}: head size {config.head_size} is odd; RoPE needs pairs")


def _read_header(path: Path, head: bytes, file_size: int) -> tuple[int, int, ModelConfig]:
    """Return (version, header_bytes, config) or raise CheckpointError."""
    if len(head) < V0_HEADER_BYTES:
        raise CheckpointError(f"{path}: {file_size} bytes is too short for a llama2.c checkpoint header")
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic == V1_MAGIC:
        if len(head) < V1_HEADER_BYTES:
            raise CheckpointError(f"{path}: v1 checkpoint is {file_size} bytes, shorter than its 256-byte header")
        (version,) = struct.unpack_from("<i", head, 4)
        if version in QUANTIZED_VERSIONS:
            d, h, l, nh, kv, v, s = struct.unpack_from("<7i", head, 8)
            return version, V1_HEADER_BYTES, ModelConfig(d, h, l, nh, kv, v, s, True)
        if version != 1:
            raise CheckpointError(
                f"{path}: llama2.c checkpoint version {version} is not supported "
                f"(only legacy v0, v1, v2 Q8_0 and 98 ternary)"
            )
        fields = struct.unpack_from("<7i", head, 8)
        shared_flag = head[36]
        if shared_flag not in (0, 1):
            raise CheckpointError(f"{path}: v1 shared-classifier flag is {shared_flag}, expected 0 or 1")
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = fields
        config = ModelConfig(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared_classifier=bool(shared_flag))
        return 1, V1_HEADER_BYTES, config
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", head, 0)
    # llama2.c's legacy format: a negative vocab_size means the classifier is stored separately.
    return 0, V0_HEADER_BYTES, ModelConfig(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len,
                                           shared_classifier=vocab > 0)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Open a checkpoint of any supported version; `path` is its first part (harness/formats/parts.py). The weights
    of a one-part file are memory-mapped, not copied; a split file's parts are read into one array."""
    path = Path(path)
    try:
        file_size = logical_size(path)
        head = read_head(path, V1_HEADER_BYTES)
    except OSError as error:
        raise CheckpointError(describe_read_error(path, "checkpoint", error)) from None
    if head[:4] == b"L98M":
        from harness.oracle.checkpoint_v3 import load_v3

        return load_v3(path, head, file_size)
    version, header_bytes, config = _read_header(path, head, file_size)
    validate_config(path, config)
    if version in QUANTIZED_VERSIONS:
        from harness.oracle.quantized_checkpoint import load_quantized

        return load_quantized(path, head, file_size, config)
    expected = header_bytes + 4 * config.weight_floats(version)
    if file_size != expected:
        relation = "shorter" if file_size < expected else "longer"
        raise CheckpointError(
            f"{describe(path)}: checkpoint is {file_size} bytes, {relation} than the {expected} its v{version} "
            f"header ({config.describe()}) implies"
        )
    data = read_logical(path)[header_bytes:expected].view("<f4")
    return Checkpoint(path, version, file_size, config, _slice_weights(data, config, version))


class _Cursor:
    """Hands out consecutive reshaped views of the flat weight array."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.offset = 0

    def take(self, *shape: int) -> np.ndarray:
        count = int(np.prod(shape))
        view = self.data[self.offset : self.offset + count].reshape(shape)
        self.offset += count
        return view

    def skip(self, count: int) -> None:
        self.offset += count


def _slice_weights(data: np.ndarray, c: ModelConfig, version: int) -> Weights:
    cur = _Cursor(data)
    d, h, l, v, kv = c.dim, c.hidden_dim, c.n_layers, c.vocab_size, c.kv_dim
    if version == 0:
        emb = cur.take(v, d)
        rms_att = cur.take(l, d)
        wq, wk, wv, wo = cur.take(l, d, d), cur.take(l, kv, d), cur.take(l, kv, d), cur.take(l, d, d)
        rms_ffn = cur.take(l, d)
        w1, w2, w3 = cur.take(l, h, d), cur.take(l, d, h), cur.take(l, h, d)
        rms_final = cur.take(d)
        cur.skip(2 * (c.seq_len * c.head_size // 2))
    else:
        rms_att = cur.take(l, d)
        rms_ffn = cur.take(l, d)
        rms_final = cur.take(d)
        emb = cur.take(v, d)
        wq, wk, wv, wo = cur.take(l, d, d), cur.take(l, kv, d), cur.take(l, kv, d), cur.take(l, d, d)
        w1, w2, w3 = cur.take(l, h, d), cur.take(l, d, h), cur.take(l, h, d)
    classifier = emb if c.shared_classifier else cur.take(v, d)
    return Weights(emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, classifier)
