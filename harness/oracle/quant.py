"""Quantized weights and the arithmetic of quantized matmuls: Q8_0 (llama2.c runq) and ternary (BitNet b1.58).

Both the oracle and the quantizer use these functions, so a file written by `llama98-harness quantize` and the
oracle's forward pass agree on every rounding. The integer part of each product is computed exactly (float64
BLAS on small integers is exact below 2^53), and the float part follows runq's order: per row,
`val += ((float)isum * w_scale) * x_scale` group after group, each step rounded to float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Q_MAX = np.float32(127.0)


@dataclass(frozen=True)
class Q8Tensor:
    """(rows, cols) int8 values with one float32 scale per `group` consecutive values of a row."""

    q: np.ndarray  # (rows, cols) int8
    s: np.ndarray  # (rows, cols // group) float32
    group: int

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.q.shape[0]), int(self.q.shape[1]))

    def dequantize(self) -> np.ndarray:
        """float32 q * s, as runq builds its embedding table."""
        scales = np.repeat(self.s, self.group, axis=1)
        return (self.q.astype(np.float32) * scales).astype(np.float32)


@dataclass(frozen=True)
class TernaryTensor:
    """(rows, cols) weights in {-1, 0, +1} (int8) with one float32 scale (mean |W|) for the whole tensor."""

    t: np.ndarray
    scale: np.float32

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.t.shape[0]), int(self.t.shape[1]))


def round_half_away(values: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero (the port and runq), computed in float64 like `round((double)v)`."""
    v = values.astype(np.float64)
    return np.where(v >= 0, np.floor(v + 0.5), -np.floor(-v + 0.5))


def quantize_activations(x: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """runq's quantize() of each row of x (T, n): int8 values (T, n) as float64, float32 scales (T, n // group)."""
    count, n = x.shape
    grouped = x.astype(np.float32).reshape(count, n // group, group)
    wmax = np.abs(grouped).max(axis=2)
    scale = (wmax / Q_MAX).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1.0), scale)
    quotient = (grouped / safe[:, :, None]).astype(np.float32)
    q = np.where(scale[:, :, None] == 0, 0.0, round_half_away(quotient))
    return q.reshape(count, n), scale


def quantize_q80(w: np.ndarray, group: int) -> Q8Tensor:
    """llama2.c export.py's Q8_0 of a (rows, cols) float tensor: float32 scale = max|w| / 127 per group,
    values round(w / scale) with halves to even (torch.round); an all-zero group gets scale 0 and values 0."""
    w = np.asarray(w, dtype=np.float32)
    rows, cols = w.shape
    grouped = w.reshape(-1, group)
    scale = (np.abs(grouped).max(axis=1) / Q_MAX).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1.0), scale)
    quotient = (grouped / safe[:, None]).astype(np.float32)
    q = np.where(scale[:, None] == 0, 0, np.rint(quotient)).astype(np.int8)
    return Q8Tensor(q.reshape(rows, cols), scale.reshape(rows, cols // group), group)


def quantize_ternary(w: np.ndarray) -> TernaryTensor:
    """BitNet b1.58 absmean: scale = mean |W| (float32), weights clip(round(W / scale), -1, 1), halves to even."""
    w = np.asarray(w, dtype=np.float32)
    scale = np.float32(np.mean(np.abs(w), dtype=np.float64))
    if scale == 0:
        return TernaryTensor(np.zeros(w.shape, dtype=np.int8), np.float32(0.0))
    t = np.clip(np.rint((w / scale).astype(np.float32)), -1, 1).astype(np.int8)
    return TernaryTensor(t, scale)


def pack_ternary(t: np.ndarray) -> bytes:
    """Four weights per byte, weight e (row-major) in bits 2*(e % 4): 0 -> 00, +1 -> 01, -1 -> 10 (FORMATS.md)."""
    flat = t.reshape(-1)
    if flat.size % 4:
        raise ValueError(f"ternary tensors pack 4 weights per byte: {flat.size} weights")
    codes = np.where(flat == 1, 1, np.where(flat == -1, 2, 0)).astype(np.uint8).reshape(-1, 4)
    packed = codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)
    return packed.astype(np.uint8).tobytes()


def unpack_ternary(data: np.ndarray, rows: int, cols: int) -> np.ndarray | None:
    """The inverse of pack_ternary; None when a code 3 (no weight) appears."""
    raw = np.asarray(data, dtype=np.uint8)
    codes = np.stack([(raw >> shift) & 3 for shift in (0, 2, 4, 6)], axis=1).reshape(-1)
    if np.any(codes == 3):
        return None
    values = np.where(codes == 1, 1, np.where(codes == 2, -1, 0)).astype(np.int8)
    return values.reshape(rows, cols)


def linear(x: np.ndarray, w: np.ndarray | Q8Tensor | TernaryTensor) -> np.ndarray:
    """x (T, n) @ W.T in W's type, as the port's linear(): float32 BLAS, runq's Q8_0, or ternary."""
    if isinstance(w, np.ndarray):
        return x @ w.T
    if isinstance(w, Q8Tensor):
        group = w.group
        xq, xs = quantize_activations(x, group)
        wq = w.q.astype(np.float64)
        val = np.zeros((x.shape[0], w.q.shape[0]), dtype=np.float32)
        for g in range(x.shape[1] // group):
            cols = slice(g * group, (g + 1) * group)
            isum = (xq[:, cols] @ wq[:, cols].T).astype(np.float32)
            val = (val + (isum * w.s[None, :, g]) * xs[:, g, None]).astype(np.float32)
        return val
    xq, xs = quantize_activations(x, x.shape[1])
    isum = (xq @ w.t.astype(np.float64).T).astype(np.float32)
    return ((isum * w.scale).astype(np.float32) * xs[:, 0, None]).astype(np.float32)
