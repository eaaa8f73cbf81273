"""Checkpoint headers of every version: the types, the constants and the parsing, from bytes to a ModelConfig
(and back, pack_header, for the llama2.c versions the models package writes).

Why here: the port's side of the harness writes checkpoints (harness/models: modelgen, quantize, the L98M
exporter through harness/formats/l98m.py) and the oracle reads them; both must agree on one byte layout without
importing each other, so the layout lives below both. Nothing here touches a file: `parse_header` takes the
first bytes and the logical size, and every way a header can be wrong becomes one CheckpointError line naming the
file, because a broken fixture must never surface as a numpy traceback. Reading the weights is the oracle's
(harness/oracle/checkpoint/); ports/llama98/FORMATS.md is the description the port, the writers and this follow.

Versions (facts from llama2.c export.py / run.c, and FORMATS.md for ours):
- v0: 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len); a negative
  vocab_size means the classifier is stored separately at the end. Weights: embedding, rms_att, wq, wk, wv, wo,
  rms_ffn, w1, w2, w3, rms_final, two unused RoPE tables (seq_len*head_size/2 floats each), optional classifier.
- the "ak42" header (v1, v2, 98): uint32 magic 0x616b3432, int32 version, the same 7 int32 (vocab positive), byte
  36 the shared-classifier flag, zero padding to 256 bytes.
  - v1: float32 rms_att, rms_ffn, rms_final, embedding, wq, wk, wv, wo, w1, w2, w3, optional classifier.
  - v2 (Q8_0): int32 group size at byte 37 (unaligned, as llama2.c's export.py packs it).
  - 98 (ternary): byte 37 weight type (2 = ternary), 38 ffn (0 silu, 1 relu2), 39 sub-norms (0/1), 40 classifier
    type (0 fp32, 1 int8 Q8_0 with one group per row), 41..255 zero.
- v3 ("L98M", the Llama 3 family): magic b"L98M", then L98M_LAYOUT's fields, zero to 256 bytes; one layer's
  weights are contiguous.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace

from harness.core.errors import HarnessError

HEADER_BYTES = 256  # the header of every version but v0
V0_HEADER_BYTES = 28
V1_MAGIC = 0x616B3432  # the ak42 magic of v1, v2 and 98
V1_HEADER_BYTES = HEADER_BYTES
Q8_VERSION = 2
TERNARY_VERSION = 98
QUANTIZED_VERSIONS = (Q8_VERSION, TERNARY_VERSION)
WEIGHT_TYPES = {0: "fp32", 1: "q8_0", 2: "ternary"}  # version 98's weight and classifier type codes
FFN_KINDS = {0: "silu", 1: "relu2"}
# the same codes the other way round, for pack_header
WEIGHT_TYPE_CODES = {kind: code for code, kind in WEIGHT_TYPES.items()}
FFN_CODES = {kind: code for code, kind in FFN_KINDS.items()}
AK42_FIELDS = struct.Struct("<Ii7iB")  # magic, version, the 7 dimensions, the shared-classifier byte (bytes 0..36)

L98M_MAGIC = b"L98M"
L98M_VERSION = 3
L98M_WEIGHT_FLOAT32 = 0
L98M_FLAG_SHARED = 1
SCALING_NONE = 0
SCALING_LLAMA3 = 1
# magic, version, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, weight type, flags,
# rope_theta, norm_eps, rope scaling type, factor, low_freq_factor, high_freq_factor,
# original_max_position_embeddings; reserved zero bytes follow up to HEADER_BYTES.
L98M_LAYOUT = struct.Struct("<4s10i2fi3fi")

# Anything above this is not a model a 1998 PC (or this harness) will ever load; it also keeps arithmetic on
# absurd header fields from producing silly allocations.
MAX_FIELD = 1 << 24


class CheckpointError(HarnessError):
    """A model checkpoint is missing, truncated, or has an impossible header (one line naming the file)."""


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1's "llama3" RoPE frequency scaling: the rope_scaling of a Hugging Face config, as a v3 header
    stores it."""

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
        """Number of float32 values that follow the header for this config in a v0 or v1 file."""
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
class CheckpointHeader:
    """A parsed and validated header: the file's version, how many bytes the header takes, and its config."""

    version: int
    header_bytes: int
    config: ModelConfig


def validate_config(source: object, config: ModelConfig) -> None:
    """Refuse dimensions no forward pass can use (`source` names the file in the message)."""
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
            raise CheckpointError(f"{source}: impossible checkpoint header field {name}={value}")
    if config.dim % config.n_heads:
        raise CheckpointError(f"{source}: dim={config.dim} is not divisible by n_heads={config.n_heads}")
    if config.n_heads % config.n_kv_heads:
        raise CheckpointError(
            f"{source}: n_heads={config.n_heads} is not divisible by n_kv_heads={config.n_kv_heads}"
        )
    if config.head_size % 2:
        raise CheckpointError(f"{source}: head size {config.head_size} is odd; RoPE needs pairs")


def parse_header(head: bytes, file_size: int, source: object) -> CheckpointHeader:
    """The header of a checkpoint of any version, from its first HEADER_BYTES bytes (fewer when the file is
    shorter) and its logical size (harness/formats/parts.py); `source` names the file in error messages."""
    if head[:4] == L98M_MAGIC:
        config = _l98m_config(head, file_size, source)
        validate_config(source, config)
        return CheckpointHeader(L98M_VERSION, HEADER_BYTES, config)
    version, header_bytes, config = _ak42_or_v0(head, file_size, source)
    validate_config(source, config)
    if version in QUANTIZED_VERSIONS:
        config = _quantized_flags(head, version, config, source)
    return CheckpointHeader(version, header_bytes, config)


def pack_header(version: int, config: ModelConfig) -> bytes:
    """The header of a v0, v1, v2 or 98 file for `config`: the inverse of parse_header. Each version stores only
    its own fields (v0 and v1: the dimensions and the classifier flag; v2: also group_size; 98: also ffn,
    sub_norms and classifier_type, its weight type being ternary); the config's other fields are not written."""
    dims = (config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads, config.vocab_size,
            config.seq_len)
    if version == 0:
        return struct.pack("<7i", *dims[:5], dims[5] if config.shared_classifier else -dims[5], dims[6])
    if version == 1:
        flags = b""
    elif version == Q8_VERSION:
        flags = struct.pack("<i", config.group_size)
    elif version == TERNARY_VERSION:
        if config.ffn not in FFN_CODES or config.classifier_type not in ("fp32", "q8_0"):
            raise CheckpointError(f"a version 98 header has no code for ffn={config.ffn} "
                                  f"classifier_type={config.classifier_type}")
        flags = bytes([WEIGHT_TYPE_CODES["ternary"], FFN_CODES[config.ffn], int(config.sub_norms),
                       WEIGHT_TYPE_CODES[config.classifier_type]])
    else:
        raise CheckpointError(f"checkpoint version {version} has no ak42 or v0 header to write (0, 1, 2 or 98)")
    head = AK42_FIELDS.pack(V1_MAGIC, version, *dims, int(config.shared_classifier)) + flags
    return head + b"\0" * (HEADER_BYTES - len(head))


def _ak42_or_v0(head: bytes, file_size: int, source: object) -> tuple[int, int, ModelConfig]:
    if len(head) < V0_HEADER_BYTES:
        raise CheckpointError(f"{source}: {file_size} bytes is too short for a llama2.c checkpoint header")
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic == V1_MAGIC:
        if len(head) < V1_HEADER_BYTES:
            raise CheckpointError(f"{source}: v1 checkpoint is {file_size} bytes, shorter than its 256-byte header")
        (version,) = struct.unpack_from("<i", head, 4)
        dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", head, 8)
        if version in QUANTIZED_VERSIONS:  # the shared byte is checked with the version's other flags
            return version, V1_HEADER_BYTES, ModelConfig(dim, hidden, layers, heads, kv_heads, vocab, seq_len, True)
        if version != 1:
            raise CheckpointError(
                f"{source}: llama2.c checkpoint version {version} is not supported "
                f"(only legacy v0, v1, v2 Q8_0 and 98 ternary)"
            )
        shared_flag = head[36]
        if shared_flag not in (0, 1):
            raise CheckpointError(f"{source}: v1 shared-classifier flag is {shared_flag}, expected 0 or 1")
        config = ModelConfig(dim, hidden, layers, heads, kv_heads, vocab, seq_len, shared_classifier=bool(shared_flag))
        return 1, V1_HEADER_BYTES, config
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", head, 0)
    # llama2.c's legacy format: a negative vocab_size means the classifier is stored separately.
    return 0, V0_HEADER_BYTES, ModelConfig(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len,
                                           shared_classifier=vocab > 0)


def _quantized_flags(head: bytes, version: int, config: ModelConfig, source: object) -> ModelConfig:
    """The v2 / version 98 bytes after the dimensions (bytes 36..255), on top of the dimensions' config."""
    shared = head[36]
    if shared not in (0, 1):
        raise CheckpointError(f"{source}: shared-classifier byte is {shared}, expected 0 or 1")
    if version == Q8_VERSION:
        (group,) = struct.unpack_from("<i", head, 37)
        if group <= 0:
            raise CheckpointError(f"{source}: group size {group} must be positive")
        for name, size in (("dim", config.dim), ("hidden_dim", config.hidden_dim)):
            if size % group:
                raise CheckpointError(f"{source}: group size {group} does not divide {name} {size}")
        return replace(config, shared_classifier=bool(shared), weight_type="q8_0", group_size=group,
                       classifier_type="q8_0")
    weight_type, ffn, sub_norms, classifier = head[37], head[38], head[39], head[40]
    if weight_type != 2:
        raise CheckpointError(f"{source}: weight type {weight_type} is not supported in version 98 (2 = ternary)")
    if ffn not in FFN_KINDS or sub_norms > 1 or classifier > 1:
        raise CheckpointError(f"{source}: bad version 98 flags ffn={ffn} sub_norms={sub_norms} "
                              f"classifier={classifier}")
    if classifier == 1 and shared:
        raise CheckpointError(f"{source}: an int8 classifier is stored on its own, the shared byte must be 0")
    if any(head[41:HEADER_BYTES]):
        raise CheckpointError(f"{source}: reserved header bytes 41..255 must be zero")
    if config.dim % 4 or config.hidden_dim % 4:
        raise CheckpointError(f"{source}: ternary rows pack 4 weights per byte: dim {config.dim} and hidden_dim "
                              f"{config.hidden_dim} must be multiples of 4")
    return replace(config, shared_classifier=bool(shared), weight_type="ternary", group_size=config.dim,
                   ffn=FFN_KINDS[ffn], sub_norms=bool(sub_norms), classifier_type=WEIGHT_TYPES[classifier])


def _l98m_config(head: bytes, file_size: int, source: object) -> ModelConfig:
    if len(head) < HEADER_BYTES:
        raise CheckpointError(f"{source}: v3 checkpoint is {file_size} bytes, shorter than its 256-byte header")
    (_magic, version, dim, hidden, layers, heads, kv_heads, vocab, seq_len, weight_type, flags, theta, eps, scaling,
     factor, low, high, original) = L98M_LAYOUT.unpack_from(head, 0)
    if version != L98M_VERSION:
        raise CheckpointError(f"{source}: L98M checkpoint version {version} is not supported (only 3)")
    if weight_type != L98M_WEIGHT_FLOAT32:
        raise CheckpointError(f"{source}: weight type {weight_type} is not supported (only 0 = float32)")
    if flags & ~L98M_FLAG_SHARED or any(head[L98M_LAYOUT.size:HEADER_BYTES]):
        raise CheckpointError(f"{source}: unknown flags or non-zero reserved header bytes")
    if not (math.isfinite(theta) and theta > 1.0 and math.isfinite(eps) and 0.0 < eps < 1.0):
        raise CheckpointError(f"{source}: impossible rope_theta={theta} or norm_eps={eps}")
    rope: RopeScaling | None = None
    if scaling == SCALING_LLAMA3:
        if not (all(math.isfinite(x) for x in (factor, low, high)) and factor >= 1.0 and 0.0 < low < high
                and original > 0):
            raise CheckpointError(f"{source}: impossible llama3 rope scaling factor={factor} low={low} "
                                  f"high={high} original={original}")
        rope = RopeScaling(factor, low, high, original)
    elif scaling != SCALING_NONE or factor or low or high or original:
        raise CheckpointError(f"{source}: rope scaling type {scaling} is not supported (0 none, 1 llama3)")
    return ModelConfig(dim, hidden, layers, heads, kv_heads, vocab, seq_len,
                       shared_classifier=bool(flags & L98M_FLAG_SHARED), rope_theta=theta, norm_eps=eps,
                       rope_scaling=rope)


def l98m_layer_floats(c: ModelConfig) -> int:
    """Floats of one v3 layer, stored together: rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3."""
    d, h, kv = c.dim, c.hidden_dim, c.kv_dim
    return d + d * d + 2 * kv * d + d * d + d + 3 * h * d


def tensor_bytes(kind: str, rows: int, cols: int, group: int) -> int:
    """Bytes a (rows, cols) tensor of `kind` (fp32, q8_0, ternary) takes in a v2 / version 98 file."""
    if kind == "q8_0":
        return rows * cols + 4 * (rows * cols // group)
    if kind == "ternary":
        return 4 + rows * cols // 4
    return 4 * rows * cols


def layer_shapes(c: ModelConfig) -> list[tuple[str, int, int]]:
    """(name, rows, cols) of wq, wk, wv, wo, w1, w2, w3, in the order a v2 / version 98 file stores them."""
    d, h, kv = c.dim, c.hidden_dim, c.kv_dim
    return [("wq", d, d), ("wk", kv, d), ("wv", kv, d), ("wo", d, d), ("w1", h, d), ("w2", d, h), ("w3", h, d)]


def expected_file_size(header: CheckpointHeader) -> int:
    """The logical file size the header implies."""
    c, version = header.config, header.version
    if version == L98M_VERSION:
        v, d = c.vocab_size, c.dim
        floats = v * d + c.n_layers * l98m_layer_floats(c) + d + (0 if c.shared_classifier else v * d)
        return HEADER_BYTES + 4 * floats
    if version not in QUANTIZED_VERSIONS:
        return header.header_bytes + 4 * c.weight_floats(version)
    l, d, h, v = c.n_layers, c.dim, c.hidden_dim, c.vocab_size
    size = HEADER_BYTES + 4 * (2 * l * d + d)
    if c.sub_norms:
        size += 4 * l * (d + h)
    size += tensor_bytes("q8_0" if version == Q8_VERSION else "fp32", v, d, c.group_size)
    size += l * sum(tensor_bytes(c.weight_type, rows, cols, c.group_size) for _, rows, cols in layer_shapes(c))
    if not c.shared_classifier:
        size += tensor_bytes(c.classifier_type, v, d, c.group_size if c.classifier_type == c.weight_type else d)
    return size


def check_file_size(header: CheckpointHeader, file_size: int, source: object) -> int:
    """The size the header implies, or a CheckpointError when the file is not exactly that long."""
    expected = expected_file_size(header)
    if file_size != expected:
        short = "shorter (truncated?)" if header.version in QUANTIZED_VERSIONS else "shorter"
        relation = short if file_size < expected else "longer"
        raise CheckpointError(f"{source}: checkpoint is {file_size} bytes, {relation} than the {expected} its "
                              f"v{header.version} header ({header.config.describe()}) implies")
    return expected
