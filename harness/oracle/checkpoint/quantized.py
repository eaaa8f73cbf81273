"""The weights of quantized checkpoints: llama2.c's v2 (Q8_0) export and llama98's version 98 (ternary) format.

Bodies (ports/llama98/FORMATS.md; the header is harness/formats/checkpoint.py's):
- v2: fp32 rms_att, rms_ffn, rms_final; then Q8_0 tensors (int8 values, then one fp32 scale per group) for the
  embedding, wq[0..L-1], wk, wv, wo, w1, w2, w3, and the classifier unless shared;
- 98: fp32 rms_att, rms_ffn, rms_final, [sub_att (L, dim), sub_ffn (L, hidden)], the fp32 embedding, then ternary
  tensors (fp32 scale, then 2-bit codes, 4 per byte) for wq.., w3 per layer, then the classifier unless shared
  (fp32, or int8 values + one scale per row).
A tensor whose bytes cannot be ternary weights becomes one CheckpointError naming the file, like a bad header.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.formats.checkpoint import Q8_VERSION, CheckpointError, ModelConfig, layer_shapes
from harness.oracle.checkpoint.weights import Cursor, Weights
from harness.oracle.quant import Q8Tensor, TernaryTensor, unpack_ternary


def _tensor(source: object, cur: Cursor, kind: str, rows: int, cols: int, group: int, what: str) -> Any:
    if kind == "fp32":
        return cur.floats(rows, cols)
    if kind == "q8_0":
        q = cur.take("i1", rows, cols)
        s = cur.floats(rows, cols // group)
        return Q8Tensor(q, s, group)
    scale = np.float32(cur.floats(1)[0])
    t = unpack_ternary(cur.take("u1", rows * cols // 4), rows, cols)
    if t is None:
        raise CheckpointError(f"{source}: ternary tensor {what} has the invalid 2-bit code 3: wrong packing")
    if not (scale >= 0 and np.isfinite(scale)):
        raise CheckpointError(f"{source}: ternary tensor {what} has the scale {scale}")
    return TernaryTensor(t, scale)


def read_quantized(body: np.ndarray, c: ModelConfig, version: int, source: object) -> Weights:
    """The tensors of a v2 or version 98 body (the bytes after the header, exactly as many as it implies)."""
    cur = Cursor(body)
    l, d, h, v = c.n_layers, c.dim, c.hidden_dim, c.vocab_size
    rms_att = cur.floats(l, d)
    rms_ffn = cur.floats(l, d)
    rms_final = cur.floats(d)
    sub_att = sub_ffn = None
    if c.sub_norms:
        sub_att = cur.floats(l, d)
        sub_ffn = cur.floats(l, h)
    emb_kind = "q8_0" if version == Q8_VERSION else "fp32"
    emb_tensor = _tensor(source, cur, emb_kind, v, d, c.group_size, "embedding")
    layers: dict[str, list[Any]] = {}
    for name, rows, cols in layer_shapes(c):
        layers[name] = [_tensor(source, cur, c.weight_type, rows, cols, c.group_size, f"{name} of layer {i}")
                        for i in range(l)]
    if c.shared_classifier:
        classifier = emb_tensor
    else:
        group = c.group_size if c.classifier_type == c.weight_type else d
        classifier = _tensor(source, cur, c.classifier_type, v, d, group, "classifier")
    embedding = emb_tensor.dequantize() if isinstance(emb_tensor, Q8Tensor) else emb_tensor
    return Weights(embedding, rms_att, layers["wq"], layers["wk"], layers["wv"], layers["wo"], rms_ffn,
                   layers["w1"], layers["w2"], layers["w3"], rms_final, classifier, sub_att, sub_ffn)
