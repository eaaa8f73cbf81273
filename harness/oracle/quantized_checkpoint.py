"""Read quantized checkpoints: llama2.c's v2 (Q8_0) export and llama98's version 98 (ternary) format.

Layouts (ports/llama98/FORMATS.md, the single description the port, this reader and the quantizer follow):
- both start with the 256-byte ak42 header: uint32 magic, int32 version, the 7 int32 dimensions (vocab positive),
  byte 36 the shared-classifier flag;
- v2: int32 group size at byte 37 (unaligned, as llama2.c's export.py packs it); body: fp32 rms_att, rms_ffn,
  rms_final; then Q8_0 tensors (int8 values, then one fp32 scale per group) for the embedding, wq[0..L-1], wk,
  wv, wo, w1, w2, w3, and the classifier unless shared;
- 98: byte 37 weight type (2 = ternary), 38 ffn (0 silu, 1 relu2), 39 sub-norms (0/1), 40 classifier type
  (0 fp32, 1 int8 Q8_0 with one group per row), 41..255 zero; body: fp32 rms_att, rms_ffn, rms_final, [sub_att
  (L, dim), sub_ffn (L, hidden)], the fp32 embedding, then ternary tensors (fp32 scale, then 2-bit codes, 4 per
  byte) for wq.., w3 per layer, then the classifier unless shared (fp32, or int8 values + one scale per row).
Every inconsistency becomes one CheckpointError naming the file, like the float reader.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.formats.parts import describe, read_logical
from harness.oracle.checkpoint import Checkpoint, ModelConfig, Weights
from harness.oracle.errors import CheckpointError
from harness.oracle.quant import Q8Tensor, TernaryTensor, unpack_ternary

HEADER_BYTES = 256
Q8_VERSION = 2
TERNARY_VERSION = 98
WEIGHT_TYPES = {0: "fp32", 1: "q8_0", 2: "ternary"}
FFN_KINDS = {0: "silu", 1: "relu2"}


def _flags(path: Path, head: bytes, version: int, config: ModelConfig) -> ModelConfig:
    shared = head[36]
    if shared not in (0, 1):
        raise CheckpointError(f"{path}: shared-classifier byte is {shared}, expected 0 or 1")
    if version == Q8_VERSION:
        (group,) = struct.unpack_from("<i", head, 37)
        if group <= 0:
            raise CheckpointError(f"{path}: group size {group} must be positive")
        for name, size in (("dim", config.dim), ("hidden_dim", config.hidden_dim)):
            if size % group:
                raise CheckpointError(f"{path}: group size {group} does not divide {name} {size}")
        return replace(config, shared_classifier=bool(shared), weight_type="q8_0", group_size=group,
                       classifier_type="q8_0")
    weight_type, ffn, sub_norms, classifier = head[37], head[38], head[39], head[40]
    if weight_type != 2:
        raise CheckpointError(f"{path}: weight type {weight_type} is not supported in version 98 (2 = ternary)")
    if ffn not in FFN_KINDS or sub_norms > 1 or classifier > 1:
        raise CheckpointError(f"{path}: bad version 98 flags ffn={ffn} sub_norms={sub_norms} classifier={classifier}")
    if classifier == 1 and shared:
        raise CheckpointError(f"{path}: an int8 classifier is stored on its own, the shared byte must be 0")
    if any(head[41:HEADER_BYTES]):
        raise CheckpointError(f"{path}: reserved header bytes 41..255 must be zero")
    if config.dim % 4 or config.hidden_dim % 4:
        raise CheckpointError(f"{path}: ternary rows pack 4 weights per byte: dim {config.dim} and hidden_dim "
                              f"{config.hidden_dim} must be multiples of 4")
    return replace(config, shared_classifier=bool(shared), weight_type="ternary", group_size=config.dim,
                   ffn=FFN_KINDS[ffn], sub_norms=bool(sub_norms), classifier_type=WEIGHT_TYPES[classifier])


def tensor_bytes(kind: str, rows: int, cols: int, group: int) -> int:
    """Bytes a (rows, cols) tensor of `kind` takes in a file."""
    if kind == "q8_0":
        return rows * cols + 4 * (rows * cols // group)
    if kind == "ternary":
        return 4 + rows * cols // 4
    return 4 * rows * cols


def layer_shapes(c: ModelConfig) -> list[tuple[str, int, int]]:
    """(name, rows, cols) of wq, wk, wv, wo, w1, w2, w3, in file order."""
    d, h, kv = c.dim, c.hidden_dim, c.kv_dim
    return [("wq", d, d), ("wk", kv, d), ("wv", kv, d), ("wo", d, d), ("w1", h, d), ("w2", d, h), ("w3", h, d)]


def expected_size(c: ModelConfig, version: int) -> int:
    """The file size a v2 / version 98 header implies."""
    l, d, h, v = c.n_layers, c.dim, c.hidden_dim, c.vocab_size
    size = HEADER_BYTES + 4 * (2 * l * d + d)
    if c.sub_norms:
        size += 4 * l * (d + h)
    size += tensor_bytes("q8_0" if version == Q8_VERSION else "fp32", v, d, c.group_size)
    size += l * sum(tensor_bytes(c.weight_type, rows, cols, c.group_size) for _, rows, cols in layer_shapes(c))
    if not c.shared_classifier:
        size += tensor_bytes(c.classifier_type, v, d, c.group_size if c.classifier_type == c.weight_type else d)
    return size


class _Bytes:
    """Consecutive typed views of the file body."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.offset = 0

    def take(self, count: int, dtype: str) -> np.ndarray:
        size = count * np.dtype(dtype).itemsize
        view = self.data[self.offset : self.offset + size].view(dtype)
        self.offset += size
        return view


def _tensor(path: Path, cur: _Bytes, kind: str, rows: int, cols: int, group: int, what: str) -> Any:
    if kind == "fp32":
        return cur.take(rows * cols, "<f4").reshape(rows, cols)
    if kind == "q8_0":
        q = cur.take(rows * cols, "i1").reshape(rows, cols)
        s = cur.take(rows * cols // group, "<f4").reshape(rows, cols // group)
        return Q8Tensor(q, s, group)
    scale = np.float32(cur.take(1, "<f4")[0])
    t = unpack_ternary(cur.take(rows * cols // 4, "u1"), rows, cols)
    if t is None:
        raise CheckpointError(f"{path}: ternary tensor {what} has the invalid 2-bit code 3: wrong packing")
    if not (scale >= 0 and np.isfinite(scale)):
        raise CheckpointError(f"{path}: ternary tensor {what} has the scale {scale}")
    return TernaryTensor(t, scale)


def load_quantized(path: Path, head: bytes, file_size: int, config: ModelConfig) -> Checkpoint:
    """A v2 or version 98 checkpoint (`path`: its first part, `file_size`: the logical size); the header was read
    and its dimensions validated by load_checkpoint."""
    (version,) = struct.unpack_from("<i", head, 4)
    c = _flags(path, head, version, config)
    expected = expected_size(c, version)
    if file_size != expected:
        relation = "shorter (truncated?)" if file_size < expected else "longer"
        raise CheckpointError(f"{describe(path)}: checkpoint is {file_size} bytes, {relation} than the {expected} "
                              f"its v{version} header ({c.describe()}) implies")
    cur = _Bytes(read_logical(path)[HEADER_BYTES:expected])
    l, d, h, v = c.n_layers, c.dim, c.hidden_dim, c.vocab_size
    rms_att = cur.take(l * d, "<f4").reshape(l, d)
    rms_ffn = cur.take(l * d, "<f4").reshape(l, d)
    rms_final = cur.take(d, "<f4")
    sub_att = sub_ffn = None
    if c.sub_norms:
        sub_att = cur.take(l * d, "<f4").reshape(l, d)
        sub_ffn = cur.take(l * h, "<f4").reshape(l, h)
    emb_kind = "q8_0" if version == Q8_VERSION else "fp32"
    emb_tensor = _tensor(path, cur, emb_kind, v, d, c.group_size, "embedding")
    layers: dict[str, list[Any]] = {}
    for name, rows, cols in layer_shapes(c):
        layers[name] = [_tensor(path, cur, c.weight_type, rows, cols, c.group_size, f"{name} of layer {i}")
                        for i in range(l)]
    if c.shared_classifier:
        classifier = emb_tensor
    else:
        group = c.group_size if c.classifier_type == c.weight_type else d
        classifier = _tensor(path, cur, c.classifier_type, v, d, group, "classifier")
    embedding = emb_tensor.dequantize() if isinstance(emb_tensor, Q8Tensor) else emb_tensor
    weights = Weights(embedding, rms_att, layers["wq"], layers["wk"], layers["wv"], layers["wo"], rms_ffn,
                      layers["w1"], layers["w2"], layers["w3"], rms_final, classifier, sub_att, sub_ffn)
    return Checkpoint(path, version, file_size, c, weights)
