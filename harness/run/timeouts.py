"""How long the harness waits for the guest, sized from the work to do and from speeds measured on this host.

Why: fixed guesses are either far too short for a 440 MB model (a false timeout after an hour of work) or far
too long for a small one (a hung guest noticed after hours). So every wait is work / speed, with the speed
measured: each fetch records the guest's FTP and checksum rates, each run the wall seconds per multiply-add,
per guest profile and weight type, in cache_dir("calibration"). Until a figure has been measured a pessimistic
floor is used. Formulas (every result is then multiplied by SessionOptions.timeout_scale):

    fetch    = 60 s  + bytes / transfer_rate
    checksum = 30 s  + bytes / checksum_rate
    run      = 120 s + model_bytes / read_rate  +  sum over positions p = 0 .. n-1 of token(p)
    token(p) = MACs(p) * seconds_per_mac  +  (model_bytes / read_rate if the port streams its weights)
    MACs(p)  = dim + layers * (2 dim^2 + 2 kv_dim dim + 3 hidden dim) + vocab dim     (the matmuls)
               + 2 * layers * dim * (p + 1)                                           (attention over p+1 keys)

where n = the steps the port really runs (llama2.c turns 0, negative or > seq_len into seq_len), model_bytes the
checkpoint's logical size (every part of a split file: harness/formats/parts.py), "streams" true when that size
exceeds the guest's free RAM (run.session.Session.streams_model; pessimistic: the whole model per token, though
the port keeps what fits resident), and

    transfer_rate   = slowest of the last measured FTP rates / SAFETY, else 256 KiB/s
    checksum_rate   = slowest of the last measured checksum rates / SAFETY, else 256 KiB/s
    read_rate       = checksum_rate (a checksum reads the whole file, so the port reads at least as fast)
    seconds_per_mac = largest of the last measured wall seconds per MAC for this weight type * SAFETY,
                      else 1 / 2e6 (2 million MACs per second: TCG emulating x87 code on a busy host)

Runs under MIN_RUN_MACS and fetches under MIN_FETCH_BYTES (8 MB) are not recorded (they measure start-up, not
speed). A run's measurement is its harness-side wall time (load included, so it over-estimates) over its MACs;
wall time, not the report's ticks, because with -icount the guest's clock is not the host's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.paths import cache_dir
from harness.formats.checkpoint import ModelConfig

SAFETY = 4.0
KEEP = 5  # measurements kept per figure: the slowest of them is used
MIN_FETCH_BYTES = 8_000_000  # smaller fetches measure connection set-up more than bandwidth: not recorded
MIN_RUN_MACS = 1e8  # shorter runs measure process start-up more than arithmetic: not recorded
MIN_TRANSFER_RATE = 256 * 1024.0  # bytes/s when nothing was measured
MIN_CHECKSUM_RATE = 256 * 1024.0
MIN_GUEST_MACS_PER_SECOND = 2.0e6
FETCH_BASE, CHECKSUM_BASE, RUN_BASE = 60.0, 30.0, 120.0


def matmul_macs(c: ModelConfig) -> int:
    """Multiply-adds of one token's matrix-vector products (every weight matrix once, the classifier included)."""
    d, h, kv = c.dim, c.hidden_dim, c.kv_dim
    return d + c.n_layers * (2 * d * d + 2 * kv * d + 3 * h * d) + c.vocab_size * d


def run_macs(c: ModelConfig, tokens: int) -> int:
    """Multiply-adds of `tokens` forward passes from position 0: matmuls plus attention over the keys so far."""
    return tokens * matmul_macs(c) + c.n_layers * c.dim * tokens * (tokens + 1)


def effective_steps(c: ModelConfig, steps: int) -> int:
    """The forward passes llama2.c (and the port) really run for `-n steps`."""
    return steps if 0 < steps <= c.seq_len else c.seq_len


@dataclass
class Calibration:
    """Measured speeds of one guest profile on this host (the last KEEP of each), persisted as JSON."""

    profile: str
    transfer_rates: list[float] = field(default_factory=list)  # bytes/s of FTP fetches
    checksum_rates: list[float] = field(default_factory=list)  # bytes/s of the guest's checksum command
    seconds_per_mac: dict[str, list[float]] = field(default_factory=dict)  # weight type -> wall s per MAC
    path: Path | None = None

    @classmethod
    def load(cls, profile: str, directory: Path | None = None) -> Calibration:
        """The stored calibration of `profile` (an empty one if none or unreadable)."""
        path = (directory or cache_dir("calibration")) / f"{profile}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(profile, [float(x) for x in data["transfer_rates"]],
                       [float(x) for x in data["checksum_rates"]],
                       {str(k): [float(x) for x in v] for k, v in data["seconds_per_mac"].items()}, path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls(profile, path=path)

    def save(self) -> None:
        if self.path is None:
            return
        temp = self.path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"transfer_rates": self.transfer_rates, "checksum_rates": self.checksum_rates,
                                    "seconds_per_mac": self.seconds_per_mac}), encoding="utf-8")
        os.replace(temp, self.path)

    @staticmethod
    def _push(values: list[float], value: float) -> None:
        values.append(value)
        del values[:-KEEP]

    def record_fetch(self, size: int, transfer_seconds: float, checksum_seconds: float) -> None:
        """Remember the rates of one verified fetch (small files say more about latency than rate)."""
        if size < MIN_FETCH_BYTES:
            return
        if transfer_seconds > 0:
            self._push(self.transfer_rates, size / transfer_seconds)
        if checksum_seconds > 0:
            self._push(self.checksum_rates, size / checksum_seconds)
        self.save()

    def record_run(self, config: ModelConfig, tokens: int, seconds: float) -> None:
        """Remember the wall seconds per MAC of one completed run of `tokens` forward passes."""
        if tokens <= 0 or seconds <= 0 or run_macs(config, tokens) < MIN_RUN_MACS:
            return
        self._push(self.seconds_per_mac.setdefault(config.weight_type, []), seconds / run_macs(config, tokens))
        self.save()

    # -- the figures the formulas use ------------------------------------------------------------------------------

    def transfer_rate(self) -> float:
        return min(self.transfer_rates) / SAFETY if self.transfer_rates else MIN_TRANSFER_RATE

    def checksum_rate(self) -> float:
        return min(self.checksum_rates) / SAFETY if self.checksum_rates else MIN_CHECKSUM_RATE

    def mac_seconds(self, weight_type: str) -> float:
        measured = self.seconds_per_mac.get(weight_type)
        return max(measured) * SAFETY if measured else 1.0 / MIN_GUEST_MACS_PER_SECOND

    # -- timeouts -------------------------------------------------------------------------------------------------

    def fetch_timeout(self, size: int, scale: float = 1.0) -> float:
        return (FETCH_BASE + size / self.transfer_rate()) * scale

    def checksum_timeout(self, size: int, scale: float = 1.0) -> float:
        return (CHECKSUM_BASE + size / self.checksum_rate()) * scale

    def run_timeout(self, config: ModelConfig, model_bytes: int, steps: int, scale: float = 1.0,
                    streamed: bool = False) -> float:
        tokens = effective_steps(config, steps)
        read = model_bytes / self.checksum_rate()
        compute = run_macs(config, max(tokens, 1)) * self.mac_seconds(config.weight_type)
        return (RUN_BASE + read + compute + (tokens * read if streamed else 0.0)) * scale
