"""The weights of version-3 ("L98M") checkpoints: the Llama 3 family's layer-contiguous layout.

The layout keeps one layer's weights together so the port can stream layers; the oracle still wants
(layers, rows, cols) stacks, which are strided views of the memory map here (nothing is copied).
Format: ports/llama98/FORMATS.md, "Checkpoint version 3"; header and sizes: harness/formats/checkpoint.py, whose
layout harness/formats/l98m.py writes.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from harness.formats.checkpoint import ModelConfig, l98m_layer_floats
from harness.oracle.checkpoint.weights import Weights


def read_l98m(body: np.ndarray, c: ModelConfig, version: int, source: object) -> Weights:
    """Views of a v3 body (the bytes after the header, exactly as many as the header implies)."""
    data = body.view("<f4")
    d, h, kv, v, n = c.dim, c.hidden_dim, c.kv_dim, c.vocab_size, c.n_layers
    stride = l98m_layer_floats(c)
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
