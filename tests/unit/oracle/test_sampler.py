"""The sampler (harness.oracle.sampler) against the definitions of llama2.c's sampling, written out here in plain
loops: argmax, softmax(logits / T), the multinomial coin, and top-p with its cutoff, stable order and rescaled
coin, including a 32000-token vocabulary (the size where the sampler sorts only the head of the distribution).
Tests of the RNG's bit pattern and of small hand-made cases live in test_rng.py."""

from __future__ import annotations

import numpy as np
import pytest

from harness.oracle.rng import XorShiftRng
from harness.oracle.sampler import (
    Sampler,
    apply_temperature,
    argmax,
    sample_multinomial,
    softmax,
    top_p_choice,
    top_p_full_order,
    uses_top_p,
)


def reference_top_p(probabilities: np.ndarray, topp: float, coins: list[float]) -> list[int]:
    """llama2.c sample_topp for each coin, with the candidates sorted by probability descending then index
    ascending."""
    p = np.float32(topp)
    n = len(probabilities)
    cutoff = np.float32((np.float32(1.0) - p) / np.float32(n - 1))
    values = probabilities.tolist()
    candidates = [(values[i], i) for i in range(n) if probabilities[i] >= cutoff]
    candidates.sort(key=lambda item: (-item[0], item[1]))
    cumulative = np.float32(0.0)
    last = len(candidates) - 1
    for index, (prob, _) in enumerate(candidates):
        cumulative = np.float32(cumulative + np.float32(prob))
        if cumulative > p:
            last = index
            break
    tokens = []
    for coin in coins:
        r = np.float32(np.float32(coin) * cumulative)
        cdf = np.float32(0.0)
        token = candidates[last][1]
        for index in range(last + 1):
            cdf = np.float32(cdf + np.float32(candidates[index][0]))
            if r < cdf:
                token = candidates[index][1]
                break
        tokens.append(token)
    return tokens


def peaked_logits(vocab: int, seed: int) -> np.ndarray:
    """Logits shaped like a language model's: a few likely tokens, a long tail."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, vocab).astype(np.float32)
    logits[rng.choice(vocab, 5, replace=False)] += np.float32(8.0)
    return logits


def test_argmax_matches_a_strict_scan():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.integers(0, 6, 40).astype(np.float32)  # many ties
        best, index = values[0], 0
        for i, value in enumerate(values):
            if value > best:
                best, index = value, i
        assert argmax(values) == index


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0, 1.7])
def test_temperature_is_softmax_of_scaled_logits(temperature):
    logits = peaked_logits(512, seed=3)
    probabilities = apply_temperature(logits, np.float32(temperature))
    scaled = logits.astype(np.float64) / temperature
    expected = np.exp(scaled - scaled.max())
    expected /= expected.sum()
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-9)
    assert abs(float(np.sum(probabilities, dtype=np.float64)) - 1.0) < 1e-5


def test_lower_temperature_concentrates_the_distribution():
    logits = peaked_logits(512, seed=4)
    best = argmax(logits)
    top = [float(apply_temperature(logits, np.float32(t))[best]) for t in (2.0, 1.0, 0.5, 0.1)]
    assert top == sorted(top) and top[-1] > 0.99
    entropy = [-float(np.sum(p * np.log(np.maximum(p, 1e-30))))
               for p in (apply_temperature(logits, np.float32(t)) for t in (2.0, 1.0, 0.5))]
    assert entropy == sorted(entropy, reverse=True)


def test_softmax_of_large_logits_does_not_overflow():
    probabilities = softmax(np.array([1000.0, 999.0, -1000.0], dtype=np.float32))
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities[:2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))], rtol=1e-6)
    assert probabilities[2] == 0.0


def test_multinomial_frequencies_follow_the_probabilities():
    probabilities = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    coins = (np.arange(10_000, dtype=np.float32) + np.float32(0.5)) / np.float32(10_000)
    counts = np.bincount([sample_multinomial(probabilities, c) for c in coins], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), probabilities, atol=1e-3)


@pytest.mark.parametrize("vocab, topp", [(512, 0.9), (512, 0.5), (32000, 0.9), (32000, 0.99), (32000, 0.3)])
def test_top_p_equals_llama2c_definition(vocab, topp):
    rng = XorShiftRng(vocab + int(topp * 100))
    for seed in range(4):
        probabilities = apply_temperature(peaked_logits(vocab, seed), np.float32(1.0))
        coins = [rng.next_f32() for _ in range(15)]
        got = [top_p_choice(probabilities, np.float32(topp), coin).token for coin in coins]
        assert got == reference_top_p(probabilities, topp, [float(coin) for coin in coins]), seed


def test_top_p_head_covers_the_nucleus_of_a_flat_32000_token_distribution():
    """A flat tail makes the nucleus longer than the first 64 candidates the sampler sorts: it must grow."""
    rng = np.random.default_rng(12)
    probabilities = apply_temperature(rng.normal(0.0, 0.5, 32000).astype(np.float32), np.float32(1.0))
    topp = np.float32(0.9)
    choice = top_p_choice(probabilities, topp, np.float32(0.999))
    order, cdf = top_p_full_order(probabilities, topp)
    nucleus = int(np.flatnonzero(cdf > topp)[0]) + 1
    assert nucleus > 64
    assert choice.last == nucleus - 1
    assert np.array_equal(choice.order[:nucleus], order[:nucleus])
    assert [choice.token] == reference_top_p(probabilities, 0.9, [0.999])


def test_top_p_samples_only_inside_the_nucleus():
    probabilities = apply_temperature(peaked_logits(512, seed=9), np.float32(4.0))
    topp = np.float32(0.8)
    order, cdf = top_p_full_order(probabilities, topp)
    size = int(np.flatnonzero(cdf > topp)[0]) + 1
    nucleus = order[:size]
    assert 1 < size < 512
    coins = (np.arange(5000, dtype=np.float32) + np.float32(0.5)) / np.float32(5000)
    counts = np.bincount([top_p_choice(probabilities, topp, c).token for c in coins], minlength=512)
    assert set(np.flatnonzero(counts).tolist()) <= set(nucleus.tolist())
    # within the nucleus, each token's share is its probability renormalised over the nucleus
    share = probabilities[nucleus].astype(np.float64) / float(cdf[size - 1])
    np.testing.assert_allclose(counts[nucleus] / 5000, share, atol=5e-4)


def test_uses_top_p_only_strictly_between_zero_and_one():
    assert [uses_top_p(np.float32(p)) for p in (-0.1, 0.0, 0.5, 0.999, 1.0, 1.5)] == [
        False, False, True, True, False, False]


def test_sampler_replays_the_same_tokens_from_the_same_seed():
    logits = [peaked_logits(512, seed) for seed in range(30)]

    def run(temperature: float, topp: float, seed: int) -> list[int]:
        sampler = Sampler.create(temperature, topp, seed)
        return [sampler.sample(row) for row in logits]

    for temperature, topp in ((1.0, 0.9), (0.8, 1.0), (1.2, 0.0)):
        first = run(temperature, topp, 42)
        assert first == run(temperature, topp, 42)
        assert first != run(temperature, topp, 43)


def test_sampler_draws_one_coin_per_token_in_order():
    """Token k of a hot run is decided by the k-th coin of the seed's stream, whatever the sampling rule."""
    logits = [peaked_logits(512, seed) for seed in range(20)]
    for temperature, topp in ((1.0, 0.9), (0.7, 1.0)):
        sampler = Sampler.create(temperature, topp, 7)
        coins = XorShiftRng(7)
        for row in logits:
            coin = coins.next_f32()
            probabilities = apply_temperature(row, np.float32(temperature))
            expected = (top_p_choice(probabilities, np.float32(topp), coin).token if uses_top_p(np.float32(topp))
                        else sample_multinomial(probabilities, coin))
            assert sampler.sample(row) == expected
        assert sampler.rng.state == coins.state


def test_temperature_zero_is_argmax_and_draws_no_coin():
    sampler = Sampler.create(0.0, 0.9, 99)
    for seed in range(10):
        row = peaked_logits(512, seed)
        assert sampler.sample(row) == argmax(row)
    assert sampler.rng.state == 99
