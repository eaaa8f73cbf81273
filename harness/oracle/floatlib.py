"""llama2.c's float math functions (expf, cosf, sinf, powf) with the C library's exact results, vectorised.

float32(exp(float64 x)) is the correctly rounded expf, and glibc's expf is correctly rounded except when the
true value lies within a hair of the midpoint between two floats (its documented error is 0.502 ulp); glibc's
sinf/cosf differ from the rounded double functions more often. The port calls the C library's float functions
(ports/llama98/fmath.h), and a Q8_0 or ternary model quantizes activations, so one differing last bit can flip
an int8 rounding and change a sampled token. Here: exp is computed in float64 and only the values near a
rounding midpoint are asked of the C library's expf (through ctypes, so the oracle stays fast); the small RoPE
tables come from cosf/sinf/powf directly. Without a C math library (not glibc), the float64 roundings are used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import ArrayLike

MIDPOINT_ULPS = 0.01  # float64 results this close (in float32 ulps) to a rounding midpoint go to the C library


@cache
def _libm_function(name: str, arity: int) -> Callable[..., float] | None:
    path = ctypes.util.find_library("m")
    if path is None:
        return None
    try:
        function = getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_float
    function.argtypes = [ctypes.c_float] * arity
    return function


def _near_midpoint(exact: np.ndarray, rounded: np.ndarray) -> np.ndarray:
    """Where float64 `exact` is within MIDPOINT_ULPS of a rounding midpoint of its float32 `rounded`. An
    overflow (rounded = inf) makes the ulp inf - inf = nan: it is excluded by isfinite, silently (the invalid
    subtraction must not warn on every softmax that meets an inf)."""
    up = np.nextafter(rounded, np.float32(np.inf)).astype(np.float64)
    down = np.nextafter(rounded, np.float32(-np.inf)).astype(np.float64)
    r = rounded.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ulp = up - r
        distance = np.minimum(np.abs(exact - (r + up) / 2), np.abs(exact - (r + down) / 2))
        return np.isfinite(exact) & (distance < MIDPOINT_ULPS * ulp)


def expf(x: ArrayLike) -> np.ndarray:
    """The C library's expf of every float32 element of x."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):
        exact = np.exp(x.astype(np.float64))
        rounded = exact.astype(np.float32)
    libm = _libm_function("expf", 1)
    if libm is not None:
        ambiguous = _near_midpoint(exact, rounded)
        if ambiguous.any():
            rounded = rounded.copy()
            rounded[ambiguous] = [libm(float(value)) for value in x[ambiguous]]
    return rounded


def _elementwise(name: str, fallback: Callable[..., np.ndarray], *args: ArrayLike) -> np.ndarray:
    arrays = [np.asarray(a, dtype=np.float32) for a in np.broadcast_arrays(*args)]
    libm = _libm_function(name, len(arrays))
    if libm is None:
        return fallback(*[a.astype(np.float64) for a in arrays]).astype(np.float32)
    flat = [a.reshape(-1) for a in arrays]
    out = np.array([libm(*(float(a[i]) for a in flat)) for i in range(flat[0].size)], dtype=np.float32)
    return out.reshape(arrays[0].shape)


def cosf(x: ArrayLike) -> np.ndarray:
    return _elementwise("cosf", np.cos, x)


def sinf(x: ArrayLike) -> np.ndarray:
    return _elementwise("sinf", np.sin, x)


def powf(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    return _elementwise("powf", np.power, x, y)
