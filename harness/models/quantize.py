"""`llama98-harness quantize`: convert a float32 llama2.c checkpoint to Q8_0 (llama2.c v2) or ternary (version 98).

Q8_0 is written exactly as llama2.c's export.py `--version 2` writes it (float32 arithmetic, symmetric int8,
scale = max|w| / 127 per group, round half to even), so its files and ours are interchangeable; unlike
export.py, a group size that does not divide hidden_dim is refused (runq would silently compute garbage with
it). Ternary follows BitNet b1.58's absmean recipe (harness/oracle/quant.py); the layout is
ports/llama98/FORMATS.md. Also used by modelgen to make generated quantized models (`15M-shape:q8_0`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError, UsageError
from harness.formats.parts import (
    PART_LIMIT,
    check_part_bytes,
    logical_size,
    write_parts,
)
from harness.oracle.checkpoint import Checkpoint, ModelConfig, Weights, load_checkpoint
from harness.oracle.quant import Q8Tensor, pack_ternary, quantize_q80, quantize_ternary
from harness.oracle.quantized_checkpoint import (
    HEADER_BYTES,
    Q8_VERSION,
    TERNARY_VERSION,
)

MAGIC = 0x616B3432
DEFAULT_MAX_GROUP = 64  # llama2.c export.py's default group size
QUANT_TYPES = ("q8_0", "ternary")
FFN_CODES = {"silu": 0, "relu2": 1}


class QuantizeError(HarnessError):
    """The input cannot be quantized as asked (wrong format, group size, shape)."""


def default_group_size(dim: int, hidden_dim: int) -> int:
    """The largest group size up to llama2.c's default 64 that divides both dim and hidden_dim."""
    common = math.gcd(dim, hidden_dim)
    return max(g for g in range(1, DEFAULT_MAX_GROUP + 1) if common % g == 0)


def check_group_size(config: ModelConfig, group: int) -> None:
    if group <= 0:
        raise QuantizeError(f"group size {group} must be positive")
    for name, size in (("dim", config.dim), ("hidden_dim", config.hidden_dim)):
        if size % group:
            raise QuantizeError(f"group size {group} does not divide {name} {size}")


def _header(version: int, config: ModelConfig, shared: bool, flags: bytes) -> bytes:
    fields = (config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads,
              config.vocab_size, config.seq_len)
    head = struct.pack("<Ii7iB", MAGIC, version, *fields, int(shared)) + flags
    return head + b"\0" * (HEADER_BYTES - len(head))


def _f32(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _q8(tensor: Q8Tensor) -> list[bytes]:
    return [np.ascontiguousarray(tensor.q, dtype="i1").tobytes(), _f32(tensor.s)]


def _layers(w: Weights) -> Iterable[np.ndarray]:
    """wq[0..L-1], wk.., wv.., wo.., w1.., w2.., w3.. as (rows, cols) float32 matrices, in file order."""
    for stack in (w.wq, w.wk, w.wv, w.wo, w.w1, w.w2, w.w3):
        yield from (np.asarray(m, dtype=np.float32) for m in stack)


def q8_0_chunks(config: ModelConfig, w: Weights, group: int) -> Iterable[bytes]:
    """The bytes of a llama2.c v2 file for these float32 weights."""
    check_group_size(config, group)
    shared = config.shared_classifier
    yield _header(Q8_VERSION, config, shared, struct.pack("<i", group))
    yield _f32(w.rms_att)
    yield _f32(w.rms_ffn)
    yield _f32(w.rms_final)
    yield from _q8(quantize_q80(w.token_embedding, group))
    for matrix in _layers(w):
        yield from _q8(quantize_q80(matrix, group))
    if not shared:
        yield from _q8(quantize_q80(w.classifier, group))


def ternary_chunks(config: ModelConfig, w: Weights, ffn: str = "silu", int8_classifier: bool = False,
                   sub_att: np.ndarray | None = None, sub_ffn: np.ndarray | None = None) -> Iterable[bytes]:
    """The bytes of a version 98 ternary file: float32 norms and embedding, ternary wq..w3, the classifier in
    float32 or (int8_classifier) Q8_0 with one group per row, stored on its own."""
    if config.dim % 4 or config.hidden_dim % 4:
        raise QuantizeError(f"ternary rows pack 4 weights per byte: dim {config.dim} and hidden_dim "
                            f"{config.hidden_dim} must be multiples of 4")
    sub_norms = sub_att is not None and sub_ffn is not None
    shared = config.shared_classifier and not int8_classifier
    flags = bytes([2, FFN_CODES[ffn], int(sub_norms), int(int8_classifier)])
    yield _header(TERNARY_VERSION, config, shared, flags)
    yield _f32(w.rms_att)
    yield _f32(w.rms_ffn)
    yield _f32(w.rms_final)
    if sub_att is not None and sub_ffn is not None:
        yield _f32(sub_att)
        yield _f32(sub_ffn)
    yield _f32(w.token_embedding)
    for matrix in _layers(w):
        tensor = quantize_ternary(matrix)
        yield struct.pack("<f", float(tensor.scale)) + pack_ternary(tensor.t)
    if int8_classifier:
        yield from _q8(quantize_q80(w.classifier, config.dim))
    elif not shared:
        yield _f32(w.classifier)


def load_float_checkpoint(path: Path) -> Checkpoint:
    """A v0 or v1 float32 checkpoint; anything else is a one-line QuantizeError."""
    checkpoint = load_checkpoint(path)
    if checkpoint.config.weight_type != "fp32":
        raise QuantizeError(f"{path} is already quantized ({checkpoint.config.weight_type}); "
                            f"quantize reads float32 (v0 or v1) checkpoints")
    return checkpoint


def quantize_file(src: Path, out: Path, to: str, group_size: int | None = None,
                  int8_classifier: bool = False, part_bytes: int | None = None, limit: int = PART_LIMIT) -> Path:
    """Convert float32 checkpoint `src` (its first part) into `out` (Q8_0 or ternary), split into parts of
    `part_bytes` or automatically from `limit` bytes (harness/formats/parts.py); returns `out`, the first part."""
    checkpoint = load_float_checkpoint(src)
    config, weights = checkpoint.config, checkpoint.weights
    if part_bytes is not None:
        check_part_bytes(part_bytes, limit)  # before any work
    if to == "q8_0":
        group = group_size or default_group_size(config.dim, config.hidden_dim)
        write_parts(out, q8_0_chunks(config, weights, group), part_bytes, limit)
        return out
    if to == "ternary":
        if group_size is not None:
            raise UsageError("--group-size applies to q8_0 only (ternary has one scale per tensor)")
        write_parts(out, ternary_chunks(config, weights, int8_classifier=int8_classifier), part_bytes, limit)
        return out
    raise UsageError(f"unknown quantization {to!r}: choose one of {', '.join(QUANT_TYPES)}")




def cached_quantized(src: Path, to: str, int8_classifier: bool = True) -> Path:
    """`src` (a float32 checkpoint) quantized to `to` (ternary with the int8 classifier unless told otherwise),
    built once into cache_dir("models") beside the generated models; the name carries the source's size and
    mtime, so a changed source is quantized again."""
    from harness.core.paths import cache_dir

    if to not in QUANT_TYPES:
        raise UsageError(f"unknown quantization {to!r}: choose one of {', '.join(QUANT_TYPES)}")
    stat = src.stat()
    int8_classifier = int8_classifier and to == "ternary"
    suffix = "-cls8" if int8_classifier else ""
    path = cache_dir("models") / f"{src.stem}-{logical_size(src)}-{int(stat.st_mtime)}-{to}{suffix}.bin"
    if not path.is_file():
        quantize_file(src, path, to, int8_classifier=int8_classifier)
    return path


def write_ternary_model(path: Path, shape: ModelConfig, seed: int = 0, ffn: str = "silu", sub_norms: bool = False,
                        int8_classifier: bool = False) -> Path:
    """A generated ternary model: modelgen's seeded float32 weights, ternarized; with sub_norms, BitNet's extra
    RMSNorm weights (~1, seeded) before wo and w2; ffn "relu2" for the squared-ReLU variant."""
    from harness.models.modelgen import ModelShape, random_weights

    gen_shape = shape if isinstance(shape, ModelShape) else ModelShape(
        shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.vocab_size,
        shape.seq_len, shape.shared_classifier)
    raw = random_weights(gen_shape, seed)
    weights = Weights(raw["embedding"], raw["rms_att"], raw["wq"], raw["wk"], raw["wv"], raw["wo"], raw["rms_ffn"],
                      raw["w1"], raw["w2"], raw["w3"], raw["rms_final"], raw.get("classifier", raw["embedding"]))
    sub_att = sub_ffn = None
    if sub_norms:
        rng = np.random.default_rng(seed + 1)
        sub_att = np.float32(1.0) + rng.standard_normal((shape.n_layers, shape.dim), dtype=np.float32) * 0.1
        sub_ffn = np.float32(1.0) + rng.standard_normal((shape.n_layers, shape.hidden_dim), dtype=np.float32) * 0.1
    write_parts(Path(path), ternary_chunks(gen_shape, weights, ffn, int8_classifier, sub_att, sub_ffn))
    return Path(path)
