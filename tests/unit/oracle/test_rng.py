"""RNG and sampler: known values computed independently, and llama2.c's sampling rules."""

from __future__ import annotations

import numpy as np
import pytest

from harness.oracle.rng import XorShiftRng
from harness.oracle.sampler import Sampler, argmax, sample_multinomial, softmax, top_p_choice


def reference_u32(seed: int, count: int) -> list[int]:
    """xorshift64* with numpy uint64 wrap-around arithmetic (not the oracle's Python ints)."""
    state = np.array([seed], dtype=np.uint64)
    out = []
    with np.errstate(over="ignore"):
        for _ in range(count):
            state ^= state >> np.uint64(12)
            state ^= state << np.uint64(25)
            state ^= state >> np.uint64(27)
            out.append(int((state * np.uint64(0x2545F4914F6CDD1D))[0] >> np.uint64(32)))
    return out


@pytest.mark.parametrize("seed", [1, 42, 1234567, (1 << 64) - 5, 0xDEADBEEFCAFEBABE])
def test_u32_sequence_matches_independent_arithmetic(seed):
    rng = XorShiftRng(seed)
    assert [rng.next_u32() for _ in range(50)] == reference_u32(seed, 50)


def test_first_values_for_seed_42():
    # worked by hand with Python ints: state=42 -> 42^(42>>12)=42 -> 42^(42<<25 mod 2^64) -> ^>>27
    s = 42
    s ^= s >> 12
    s ^= (s << 25) & 0xFFFFFFFFFFFFFFFF
    s ^= s >> 27
    expected = ((s * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF) >> 32
    assert XorShiftRng(42).next_u32() == expected


def test_f32_is_top_24_bits_over_2_pow_24():
    a, b = XorShiftRng(7), XorShiftRng(7)
    for _ in range(100):
        value = a.next_f32()
        assert value.dtype == np.float32
        assert float(value) == (b.next_u32() >> 8) / 16777216.0
        assert 0.0 <= value < 1.0


def test_argmax_takes_first_of_equal_maxima():
    assert argmax(np.array([0.1, 0.7, 0.7, 0.2], dtype=np.float32)) == 1


def test_softmax_sums_sequentially_in_float32():
    logits = np.array([1.0, 2.0, 3.0, -1.0], dtype=np.float32)
    probs = softmax(logits)
    exps = [np.float32(np.exp(np.float64(np.float32(x - 3.0)))) for x in logits]
    total = np.float32(0.0)
    for e in exps:
        total = np.float32(total + e)
    assert probs.dtype == np.float32
    assert list(probs) == [np.float32(e / total) for e in exps]


def test_multinomial_picks_first_cdf_above_coin():
    probs = np.array([0.25, 0.25, 0.5], dtype=np.float32)
    assert sample_multinomial(probs, np.float32(0.0)) == 0
    assert sample_multinomial(probs, np.float32(0.2499)) == 0
    assert sample_multinomial(probs, np.float32(0.25)) == 1  # coin < cdf is strict
    assert sample_multinomial(probs, np.float32(0.9999)) == 2
    short = np.array([0.3, 0.3], dtype=np.float32)  # rounding gap: the last index
    assert sample_multinomial(short, np.float32(0.9)) == 1


def test_top_p_orders_ties_by_index_and_truncates():
    probs = np.array([0.1, 0.3, 0.3, 0.25, 0.05], dtype=np.float32)
    choice = top_p_choice(probs, np.float32(0.5), np.float32(0.0))
    # cutoff (1 - 0.5) / 4 = 0.125 drops tokens 0 and 4; the equal 0.3s go lower index first
    assert list(choice.order) == [1, 2, 3]
    assert choice.last == 1  # 0.3 + 0.3 > 0.5
    assert choice.token == 1
    # coin 0.75 of the nucleus mass 0.6 -> 0.45 falls in token 2's slice [0.3, 0.6)
    assert top_p_choice(probs, np.float32(0.5), np.float32(0.75)).token == 2


def test_top_p_cutoff_drops_tiny_probabilities():
    probs = np.array([0.9, 0.0999, 0.0001], dtype=np.float32)
    choice = top_p_choice(probs, np.float32(0.9), np.float32(0.5))
    # cutoff (1 - 0.9) / 2 = 0.05: token 2 is never a candidate
    assert 2 not in choice.order


def test_sampler_uses_one_coin_per_sample_only_when_hot():
    logits = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    cold = Sampler.create(0.0, 0.9, 5)
    assert cold.sample(logits) == 1
    assert cold.rng.state == 5  # argmax draws no coin
    hot = Sampler.create(1.0, 0.0, 5)
    hot.sample(logits)
    assert hot.rng.state != 5
