"""Bytes of weights one token's forward pass reads, per weight format.

On a Pentium II the 15M model is bound by memory traffic, not arithmetic, so benchmarks report this beside
instructions per token. Every matrix is read once per token (wq..w3 of every layer and the classifier), plus one
embedding row and the norms. (The port reports what it actually read from disk, `read=` per token; this is the
traffic through memory whether the weights are resident or streamed.)
"""

from __future__ import annotations

from harness.formats.checkpoint import ModelConfig


def _matrix_bytes(kind: str, rows: int, cols: int, group: int) -> float:
    if kind == "q8_0":
        return rows * cols * (1.0 + 4.0 / group)
    if kind == "ternary":
        return 4.0 + rows * cols / 4.0
    return 4.0 * rows * cols


def weight_bytes_per_token(c: ModelConfig) -> float:
    """Weight bytes read to produce one token's logits with a checkpoint of this config."""
    d, h, l, kv, v = c.dim, c.hidden_dim, c.n_layers, c.kv_dim, c.vocab_size
    layer_group = c.group_size or d
    embedding = "q8_0" if c.weight_type == "q8_0" else "fp32"
    total = _matrix_bytes(embedding, 1, d, layer_group)
    total += 4.0 * (2 * l * d + d + (l * (d + h) if c.sub_norms else 0))
    total += l * (2 * _matrix_bytes(c.weight_type, d, d, layer_group)
                  + 2 * _matrix_bytes(c.weight_type, kv, d, layer_group)
                  + 3 * _matrix_bytes(c.weight_type, h, d, layer_group))
    classifier_group = layer_group if c.classifier_type == c.weight_type else d
    total += _matrix_bytes(c.classifier_type, v, d, classifier_group)
    return total
