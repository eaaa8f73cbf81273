"""The Llama-2 forward pass of llama2.c in numpy float32.

One implementation serves both uses: `step()` feeds one token at a time through a KV cache (generate, which
must follow the port token by token), and `logits_for_sequence()` feeds a whole teacher-forced sequence at once
under a causal mask (verify, where batching turns hundreds of matrix-vector products into a few matrix
products and keeps the oracle from ever being the slow part of a run).

Element-wise steps follow llama2.c's float32 operation order (RMSnorm eps 1e-5 or the v3 header's, RoPE angles from
powf/cosf/sinf rounded to float32, theta and llama3 scaling from a v3 header, SiLU as x * (1 / (1 + exp(-x)))).
Matrix products use BLAS, whose summation order differs from a scalar loop in the last bits; verify's tolerance
exists for exactly that (and for x87 vs SSE).
Quantized weights (Q8_0, ternary) go through quant.linear(), whose integer sums are exact and whose float
scaling follows runq's order. Their activations are quantized, so a last-bit difference anywhere can flip an int8
rounding and change a token: for them every float step is exact too (`exact`): attention scores and weighted
sums accumulate strictly in the port's order instead of through BLAS, and exp/cos/sin/pow are the C library's
float functions (floatlib), so the oracle's logits are the native port's (and runq's) bit for bit.
"""

from __future__ import annotations

import numpy as np

from harness.formats.checkpoint import ModelConfig
from harness.oracle import floatlib
from harness.oracle.checkpoint import Checkpoint
from harness.oracle.quant import linear

RMS_EPS = np.float32(1e-5)
ROPE_TABLE_START = 4096  # positions of RoPE tables made up front; more are made when a run needs them
_blas_limited = False


def limit_blas_threads() -> None:
    """Run BLAS single-threaded, once per process.

    The oracle runs beside QEMU on small (2-core) CI machines. Multi-threaded OpenBLAS spins waiting for busy
    cores there and a 256-token verify of the 15M shape went from 0.12 s to over 1 s; one thread is both
    faster under load and leaves the other core to the guest. threadpoolctl is optional: without it BLAS
    keeps its default (set OPENBLAS_NUM_THREADS=1 yourself).
    """
    global _blas_limited
    if _blas_limited:
        return
    _blas_limited = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


def rope_frequencies(config: ModelConfig) -> np.ndarray:
    """The float32 frequency of every pair, (head_size / 2,).

    llama2.c: freq = 1.0f / powf(theta, head_dim / (float)head_size) with theta = 10000 (v3 files: rope_theta
    from the header, as a float). With llama3 scaling each frequency is then adjusted in double and rounded to
    float (ports/llama98/FORMATS.md): wavelengths 2*pi/freq below original/high_freq_factor keep their
    frequency, those above original/low_freq_factor are divided by factor, and in between
    smooth = (original / wavelength - low) / (high - low) blends (1 - smooth) * freq / factor + smooth * freq.
    """
    head_size = config.head_size
    pair_dims = np.arange(0, head_size, 2, dtype=np.float32)
    exponents = pair_dims / np.float32(head_size)
    theta = np.float64(np.float32(config.rope_theta))
    powers = np.power(theta, exponents.astype(np.float64)).astype(np.float32)
    freqs = np.float32(1.0) / powers
    scaling = config.rope_scaling
    if scaling is None:
        return freqs
    factor = np.float64(np.float32(scaling.factor))
    low = np.float64(np.float32(scaling.low_freq_factor))
    high = np.float64(np.float32(scaling.high_freq_factor))
    original = np.float64(scaling.original_max_position_embeddings)
    f64 = freqs.astype(np.float64)
    wavelength = 2.0 * np.pi / f64
    smooth = (original / wavelength - low) / (high - low)
    blended = (1.0 - smooth) * f64 / factor + smooth * f64
    scaled = np.where(wavelength < original / high, f64, np.where(wavelength > original / low, f64 / factor,
                                                                  blended))
    return scaled.astype(np.float32)


def rope_tables(config: ModelConfig, positions: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of every (position, pair) angle, each (positions, head_size / 2), float32.

    val = pos * freq in float32; cosf(val), sinf(val): each libm call is done in float64 and rounded to float32.
    `positions` defaults to seq_len.
    """
    freqs = rope_frequencies(config)
    count = config.seq_len if positions is None else positions
    angles = np.arange(count, dtype=np.float32)[:, None] * freqs[None, :]
    angles64 = angles.astype(np.float64)
    return np.cos(angles64).astype(np.float32), np.sin(angles64).astype(np.float32)


def exact_rope_tables(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """rope_tables() with the C library's powf, cosf and sinf (the port's native build calls them)."""
    head_size = config.head_size
    exponents = np.arange(0, head_size, 2, dtype=np.float32) / np.float32(head_size)
    freqs = np.float32(1.0) / floatlib.powf(np.float32(10000.0), exponents)
    angles = np.arange(config.seq_len, dtype=np.float32)[:, None] * freqs[None, :]
    return floatlib.cosf(angles), floatlib.sinf(angles)


def exact_softmax_rows(scores: np.ndarray) -> np.ndarray:
    """softmax_rows() in llama2.c's order: C expf, a strictly sequential float32 sum, then division."""
    exps = floatlib.expf(scores - scores.max(axis=-1, keepdims=True))
    total = np.add.accumulate(exps, axis=-1, dtype=np.float32)[..., -1:]
    return exps / total


def exact_attention(q: np.ndarray, keys: np.ndarray, values: np.ndarray, masked: np.ndarray,
                    sqrt_head_size: np.float32) -> np.ndarray:
    """Attention of q (H, T, hs) over keys (H, hs, S) and values (H, S, hs), summed in the port's order:
    each score over head dimensions one by one, each output over positions one by one."""
    scores = np.zeros((q.shape[0], q.shape[1], keys.shape[2]), dtype=np.float32)
    for i in range(q.shape[2]):
        scores = scores + q[:, :, i, None] * keys[:, i, None, :]
    scores = scores / sqrt_head_size
    scores[:, masked] = -np.inf
    attention = exact_softmax_rows(scores)
    heads = np.zeros(q.shape, dtype=np.float32)
    for t in range(keys.shape[2]):
        heads = heads + attention[:, :, t, None] * values[:, None, t, :]
    return heads


def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: np.float32 = RMS_EPS) -> np.ndarray:
    """Row-wise RMSnorm of (T, D) with a sequential float32 sum of squares."""
    sum_sq = np.add.accumulate(x * x, axis=-1, dtype=np.float32)[..., -1]
    mean_sq = sum_sq / np.float32(x.shape[-1]) + eps
    scale = np.float32(1.0) / np.sqrt(mean_sq)
    return weight * (scale[..., None] * x)


def apply_rope(vectors: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate each (even, odd) pair of every head; vectors (T, heads, head_size), cos/sin (T, head_size/2)."""
    even = vectors[..., 0::2]
    odd = vectors[..., 1::2]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = np.empty_like(vectors)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out


def softmax_rows(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (masked entries are -inf and come out 0)."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / exps.sum(axis=-1, keepdims=True, dtype=np.float32)


class KVCache:
    """Keys and values of every position seen so far, per layer: (layers, capacity, kv_dim) float32.

    The capacity is what the run needs, at most seq_len: Llama 3 configs say 131072 positions, far more than a
    run uses or a 128 MB machine holds."""

    def __init__(self, config: ModelConfig, capacity: int | None = None) -> None:
        self.capacity = config.seq_len if capacity is None else min(capacity, config.seq_len)
        shape = (config.n_layers, self.capacity, config.kv_dim)
        self.keys = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)


class Transformer:
    """A checkpoint's weights plus the precomputed RoPE tables."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.weights = checkpoint.weights
        self.eps = np.float32(self.config.norm_eps)
        self.exact = self.config.weight_type != "fp32"
        if self.exact:
            self.rope_cos, self.rope_sin = exact_rope_tables(self.config)
        else:
            self.rope_cos, self.rope_sin = rope_tables(self.config, min(self.config.seq_len, ROPE_TABLE_START))
        limit_blas_threads()

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """A cache for `capacity` positions (default: all seq_len)."""
        return KVCache(self.config, capacity)

    def _rope(self, end: int) -> tuple[np.ndarray, np.ndarray]:
        """The RoPE tables for positions 0..end-1, grown on demand (seq_len may be 131072)."""
        if end > len(self.rope_cos):
            self.rope_cos, self.rope_sin = rope_tables(self.config, min(self.config.seq_len,
                                                                        max(end, 2 * len(self.rope_cos))))
        return self.rope_cos, self.rope_sin

    def step(self, token: int, pos: int, cache: KVCache) -> np.ndarray:
        """Logits (vocab,) for the token at `pos`, after positions 0..pos-1 were fed into `cache`."""
        return self.forward(np.array([token]), pos, cache)[0]

    def logits_for_sequence(self, tokens: list[int] | np.ndarray) -> np.ndarray:
        """Logits (len(tokens), vocab): row p is what the model predicts after tokens[0..p]."""
        tokens = np.asarray(tokens, dtype=np.int64)
        return self.forward(tokens, 0, self.new_cache(len(tokens)))

    def forward(self, tokens: np.ndarray, start: int, cache: KVCache) -> np.ndarray:
        """Feed tokens at positions start.. start+len-1, appending to the cache; return their logits."""
        c, w = self.config, self.weights
        count = len(tokens)
        end = start + count
        if end > c.seq_len or end > cache.capacity:
            raise ValueError(f"positions up to {end - 1} exceed seq_len {c.seq_len} or the cache's "
                             f"{cache.capacity}")
        head_size, n_heads, n_kv = c.head_size, c.n_heads, c.n_kv_heads
        kv_mul = n_heads // n_kv
        rope_cos, rope_sin = self._rope(end)
        cos = rope_cos[start:end]
        sin = rope_sin[start:end]
        inv_sqrt = np.float32(np.sqrt(np.float32(head_size)))
        # causal mask: query at start+t sees keys 0..start+t
        key_pos = np.arange(end)
        query_pos = np.arange(start, end)
        masked = key_pos[None, :] > query_pos[:, None]

        x = np.array(w.token_embedding[tokens], dtype=np.float32)
        for layer in range(c.n_layers):
            xb = rmsnorm(x, w.rms_att[layer], self.eps)
            q = linear(xb, w.wq[layer]).reshape(count, n_heads, head_size)
            k = linear(xb, w.wk[layer]).reshape(count, n_kv, head_size)
            v = linear(xb, w.wv[layer])
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
            cache.keys[layer, start:end] = k.reshape(count, c.kv_dim)
            cache.values[layer, start:end] = v

            # contiguous stacks, so numpy hands each batched product to BLAS instead of a strided loop
            keys = cache.keys[layer, :end].reshape(end, n_kv, head_size).transpose(1, 2, 0)  # (kv, hs, S)
            values = cache.values[layer, :end].reshape(end, n_kv, head_size).transpose(1, 0, 2)  # (kv, S, hs)
            if kv_mul > 1:
                keys = np.repeat(keys, kv_mul, axis=0)
                values = np.repeat(values, kv_mul, axis=0)
            keys, values = np.ascontiguousarray(keys), np.ascontiguousarray(values)
            if self.exact:
                heads = exact_attention(np.ascontiguousarray(q.transpose(1, 0, 2)), keys, values, masked, inv_sqrt)
            else:
                scores = (np.ascontiguousarray(q.transpose(1, 0, 2)) @ keys) / inv_sqrt  # (H, T, S)
                scores[:, masked] = -np.inf
                attention = softmax_rows(scores)
                heads = attention @ values  # (H, T, hs)
            xb = heads.transpose(1, 0, 2).reshape(count, c.dim)
            if w.sub_att is not None:
                xb = rmsnorm(xb, w.sub_att[layer])
            x = x + linear(xb, w.wo[layer])

            xb = rmsnorm(x, w.rms_ffn[layer], self.eps)
            hb = linear(xb, w.w1[layer])
            hb2 = linear(xb, w.w3[layer])
            if c.ffn == "relu2":
                hb = np.maximum(hb, np.float32(0.0))
                hb = hb * hb
            elif self.exact:
                hb = hb * (np.float32(1.0) / (np.float32(1.0) + floatlib.expf(-hb)))
            else:
                hb = hb * (np.float32(1.0) / (np.float32(1.0) + np.exp(-hb)))
            hb = hb * hb2
            if w.sub_ffn is not None:
                hb = rmsnorm(hb, w.sub_ffn[layer])
            x = x + linear(hb, w.w2[layer])

        x = rmsnorm(x, w.rms_final, self.eps)
        return linear(x, w.classifier)
