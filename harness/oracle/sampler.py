"""llama2.c's sampler: argmax at temperature 0, otherwise softmax(logits / T) and a coin, with optional top-p.

All arithmetic is float32 in llama2.c's order: sums are sequential (np.add.accumulate, never np.sum, whose
pairwise summation rounds differently), and exp is computed in float64 and rounded once, which is what a
correctly rounded expf returns. The top-p candidates are ordered by probability descending, then index
ascending (a stable sort), the order the llama98 port uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.oracle.floatlib import expf
from harness.oracle.rng import XorShiftRng


def argmax(values: np.ndarray) -> int:
    """First index of the maximum, like llama2.c's strict `>` scan."""
    return int(np.argmax(values))


def softmax(values: np.ndarray) -> np.ndarray:
    """float32 softmax of a 1-D array with llama2.c's operation order."""
    values = np.asarray(values, dtype=np.float32)
    shifted = values - values.max()
    exps = expf(shifted)
    total = np.add.accumulate(exps, dtype=np.float32)[-1]
    return exps / total


def sample_multinomial(probabilities: np.ndarray, coin: np.float32) -> int:
    """First index whose running float32 cdf exceeds the coin (the last index if rounding leaves a gap)."""
    cdf = np.add.accumulate(probabilities, dtype=np.float32)
    hits = np.flatnonzero(coin < cdf)
    return int(hits[0]) if hits.size else len(probabilities) - 1


@dataclass(frozen=True)
class TopPChoice:
    """What top-p sampling saw, kept so verify can explain a near-boundary disagreement."""

    order: np.ndarray  # the most probable candidate ids, most probable first (at least the whole nucleus)
    cdf: np.ndarray  # float32 running sum over `order`
    last: int  # index into `order` of the last token inside the nucleus
    scaled_coin: np.float32  # coin * cumulative probability of the nucleus
    token: int


def top_p_choice(probabilities: np.ndarray, topp: np.float32, coin: np.float32) -> TopPChoice:
    """Nucleus sampling exactly as llama2.c does it, with a stable candidate order.

    Only the head of the sorted order matters, so instead of sorting every candidate (most of a 32000-token
    vocabulary) it sorts the k most probable ones (all ties of the k-th included, so the stable order of the
    head is exact), growing k until the head's float32 running sum passes topp. `order` and `cdf` then cover
    that head, which always contains the whole nucleus.
    """
    n = len(probabilities)
    cutoff = (np.float32(1.0) - topp) / np.float32(n - 1)
    candidates = np.flatnonzero(probabilities >= cutoff)
    candidate_p = probabilities[candidates]
    k = min(64, len(candidates))
    while True:
        if k < len(candidates):
            kth = np.partition(candidate_p, len(candidate_p) - k)[len(candidate_p) - k]
            head = np.flatnonzero(candidate_p >= kth)
        else:
            head = np.arange(len(candidates))
        head = head[np.argsort(-candidate_p[head], kind="stable")]
        order = candidates[head]
        cdf = np.add.accumulate(probabilities[order], dtype=np.float32)
        over = np.flatnonzero(cdf > topp)
        if over.size or len(head) == len(candidates):
            break
        k *= 4
    last = int(over[0]) if over.size else len(order) - 1
    scaled = np.float32(coin * cdf[last])
    hits = np.flatnonzero(scaled < cdf[: last + 1])
    token = int(order[hits[0]]) if hits.size else int(order[last])
    return TopPChoice(order, cdf, last, scaled, token)


def top_p_full_order(probabilities: np.ndarray, topp: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Every top-p candidate in sampling order with its float32 running sum (slow; for explaining mismatches)."""
    cutoff = (np.float32(1.0) - topp) / np.float32(len(probabilities) - 1)
    candidates = np.flatnonzero(probabilities >= cutoff)
    order = candidates[np.argsort(-probabilities[candidates], kind="stable")]
    return order, np.add.accumulate(probabilities[order], dtype=np.float32)


def apply_temperature(logits: np.ndarray, temperature: np.float32) -> np.ndarray:
    """logits / T in float32, then softmax: the probabilities llama2.c samples from."""
    return softmax(np.asarray(logits, dtype=np.float32) / np.float32(temperature))


def uses_top_p(topp: np.float32) -> bool:
    """llama2.c samples from the full distribution when topp <= 0 or topp >= 1."""
    return not (topp <= 0 or topp >= 1)


@dataclass
class Sampler:
    """Stateful sampler: one coin per sampled token when the temperature is not zero."""

    temperature: np.float32
    topp: np.float32
    rng: XorShiftRng

    @classmethod
    def create(cls, temperature: float, topp: float, seed: int) -> Sampler:
        return cls(np.float32(temperature), np.float32(topp), XorShiftRng(seed))

    def sample(self, logits: np.ndarray) -> int:
        if self.temperature == 0:
            return argmax(logits)
        probabilities = apply_temperature(logits, self.temperature)
        coin = self.rng.next_f32()
        if not uses_top_p(self.topp):
            return sample_multinomial(probabilities, coin)
        return top_p_choice(probabilities, self.topp, coin).token
