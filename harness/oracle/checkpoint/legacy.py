"""The weights of llama2.c's float32 checkpoints, legacy v0 and v1 (layouts: harness/formats/checkpoint.py).

The two versions hold the same tensors in a different order; v0 also carries two RoPE tables nobody reads.
"""

from __future__ import annotations

import numpy as np

from harness.formats.checkpoint import ModelConfig
from harness.oracle.checkpoint.weights import Cursor, Weights


def read_legacy(body: np.ndarray, c: ModelConfig, version: int, source: object) -> Weights:
    """Views of a v0 or v1 body (the bytes after the header, exactly as many as the header implies)."""
    cur = Cursor(body)
    d, h, l, v, kv = c.dim, c.hidden_dim, c.n_layers, c.vocab_size, c.kv_dim
    if version == 0:
        emb = cur.floats(v, d)
        rms_att = cur.floats(l, d)
        wq, wk, wv, wo = cur.floats(l, d, d), cur.floats(l, kv, d), cur.floats(l, kv, d), cur.floats(l, d, d)
        rms_ffn = cur.floats(l, d)
        w1, w2, w3 = cur.floats(l, h, d), cur.floats(l, d, h), cur.floats(l, h, d)
        rms_final = cur.floats(d)
        cur.skip_floats(2 * (c.seq_len * c.head_size // 2))
    else:
        rms_att = cur.floats(l, d)
        rms_ffn = cur.floats(l, d)
        rms_final = cur.floats(d)
        emb = cur.floats(v, d)
        wq, wk, wv, wo = cur.floats(l, d, d), cur.floats(l, kv, d), cur.floats(l, kv, d), cur.floats(l, d, d)
        w1, w2, w3 = cur.floats(l, h, d), cur.floats(l, d, h), cur.floats(l, h, d)
    classifier = emb if c.shared_classifier else cur.floats(v, d)
    return Weights(emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, classifier)
