"""What a streamed run measured in the emulator means for a real Pentium II 350 with 128 MB: a per-token time from
three costs, each from a figure we measured and one stated property of 1998 hardware, and which of them limits.

The emulator's own seconds say nothing about 1998 hardware (QEMU's disk is the host's page cache, its CPU a JIT),
so the projection takes only counts from the run: guest instructions per token for the arithmetic (under -icount,
with the time spent reading weights taken out), checkpoint bytes read per token for the disk, and the bytes of
weights a token touches for the memory bus. The hardware figures are assumptions, printed next to the result:

- arithmetic: 350 MHz at 1 instruction per cycle (the P6 core sustains about that on this x87/MMX code; 0.5 would
  double the time);
- memory bus: 100 MHz SDRAM on a 440BX board moves about 250 MB/s in practice; a streamed weight crosses it
  twice (DMA from the disk into the page cache, then the copy into the port's buffer) and is read once more by
  the arithmetic, a resident one only that once;
- disk: an IDE disk of 1998 (UDMA/33) reads about 15 MB/s sustained.

Published figure for comparison: EXO Labs' Llama 3.2 1B at 0.0093 tok/s (about 107.5 s per token) on such a machine.
"""

from __future__ import annotations

from dataclasses import dataclass

PII_HZ = 350e6
PII_IPC = 1.0
SDRAM_BYTES_PER_S = 250e6
DISK_BYTES_PER_S = 15e6
PUBLISHED_1B_TOK_S = 0.0093


@dataclass(frozen=True)
class TokenCosts:
    """Per-token counts measured in one run."""

    instructions: float  # guest instructions of arithmetic (io ticks excluded)
    bytes_read: float  # checkpoint bytes read from disk (streamed weights)
    weight_bytes: float  # bytes of weights one forward pass touches (resident + streamed)


@dataclass(frozen=True)
class Projection:
    """Seconds per token on a Pentium II 350 for each cost, and their sum (the stages do not overlap: the port
    reads a chunk, then multiplies it)."""

    arithmetic_s: float
    memory_s: float
    disk_s: float

    @property
    def seconds_per_token(self) -> float:
        return self.arithmetic_s + self.memory_s + self.disk_s

    @property
    def tok_s(self) -> float:
        return 1.0 / self.seconds_per_token

    @property
    def limit(self) -> str:
        """The cost that dominates: disk, memory bus or arithmetic."""
        costs = {"disk": self.disk_s, "memory bus": self.memory_s, "arithmetic": self.arithmetic_s}
        return max(costs, key=lambda name: costs[name])


def project(costs: TokenCosts) -> Projection:
    memory_bytes = costs.weight_bytes + 2 * costs.bytes_read
    return Projection(arithmetic_s=costs.instructions / (PII_HZ * PII_IPC),
                      memory_s=memory_bytes / SDRAM_BYTES_PER_S,
                      disk_s=costs.bytes_read / DISK_BYTES_PER_S)


def describe(name: str, costs: TokenCosts) -> list[str]:
    """The projection as printed lines: the three costs, the total, the comparison and what limits it."""
    p = project(costs)
    published_s = 1.0 / PUBLISHED_1B_TOK_S
    return [
        f"{name}: projected on a Pentium II 350 / 128 MB: {p.seconds_per_token:.1f} s/token ({p.tok_s:.4f} tok/s); "
        f"limited by {p.limit}",
        f"    arithmetic {p.arithmetic_s:7.1f} s  ({costs.instructions / 1e9:.2f} G instructions at "
        f"{PII_HZ / 1e6:.0f} MHz x {PII_IPC:g} per cycle)",
        f"    memory bus {p.memory_s:7.1f} s  ({(costs.weight_bytes + 2 * costs.bytes_read) / 1e9:.2f} GB over "
        f"{SDRAM_BYTES_PER_S / 1e6:.0f} MB/s SDRAM)",
        f"    disk       {p.disk_s:7.1f} s  ({costs.bytes_read / 1e9:.2f} GB read at {DISK_BYTES_PER_S / 1e6:.0f} MB/s "
        f"IDE)",
        f"    published: Llama 3.2 1B at {PUBLISHED_1B_TOK_S} tok/s ({published_s:.1f} s/token); projection / "
        f"published time = {p.seconds_per_token / published_s:.2f}",
    ]
