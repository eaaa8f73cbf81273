"""llama2.c's random number generator (xorshift64*), bit for bit.

The sampled text depends on every coin, so the oracle replays the exact sequence from the seed the port used.
"""

from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1
_MULTIPLIER = 0x2545F4914F6CDD1D
_TWO_TO_24 = np.float32(16777216.0)


class XorShiftRng:
    """The generator state is an unsigned 64-bit integer, kept as a Python int."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK64

    def next_u32(self) -> int:
        state = self.state
        state ^= state >> 12
        state ^= (state << 25) & _MASK64
        state ^= state >> 27
        self.state = state
        return ((state * _MULTIPLIER) & _MASK64) >> 32

    def next_f32(self) -> np.float32:
        """A float32 in [0, 1): the top 24 bits of a u32 over 2**24 (exact in float32)."""
        return np.float32(self.next_u32() >> 8) / _TWO_TO_24
