"""The oracle's forward pass (harness.oracle.model.Transformer) against a float64 numpy transcription of llama2.c's
`forward()` written here from the definitions (RMSNorm, RoPE on (even, odd) pairs, grouped-query attention with a
causal mask, SwiGLU), on the real stories260K model (8 heads sharing 4 KV heads, so GQA is exercised).

The reference reads the weights straight from the file by the v0 layout (not through the oracle's loader) and
shares no code with the oracle. float32 vs float64 leaves differences of ~1e-6 relative; a wrong head mapping, a
RoPE applied to the wrong pairs or a missing norm gives differences of order 1.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from harness.oracle.checkpoint import load_checkpoint
from harness.oracle.model import Transformer
from tests.support.port_helpers import fixture

# A token sequence of stories260K (tok512): BOS, then ids inside its 512-token vocabulary.
TOKENS = [1, 403, 407, 261, 378, 430, 271, 261, 54, 410, 269, 510, 22, 300, 301, 2]
RELATIVE_TOLERANCE = 1e-4


def read_v0_float64(path: Path) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """The v0 checkpoint's header and weights as float64 arrays (llama2.c export.py's legacy layout)."""
    data = path.read_bytes()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    cfg = {"dim": dim, "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads,
           "vocab": abs(vocab), "seq_len": seq_len}
    head = dim // heads
    kv = head * kv_heads
    floats = np.frombuffer(data, dtype="<f4", offset=28).astype(np.float64)
    offset = 0

    def take(*shape: int) -> np.ndarray:
        nonlocal offset
        count = int(np.prod(shape))
        block = floats[offset:offset + count].reshape(shape)
        offset += count
        return block

    w = {"emb": take(abs(vocab), dim), "rms_att": take(layers, dim), "wq": take(layers, dim, dim),
         "wk": take(layers, kv, dim), "wv": take(layers, kv, dim), "wo": take(layers, dim, dim),
         "rms_ffn": take(layers, dim), "w1": take(layers, hidden, dim), "w2": take(layers, dim, hidden),
         "w3": take(layers, hidden, dim), "rms_final": take(dim)}
    offset += seq_len * head  # the two unused RoPE tables, seq_len * head / 2 floats each
    w["cls"] = w["emb"] if vocab > 0 else take(abs(vocab), dim)
    assert offset == floats.size, "the reference's reading of the v0 layout does not cover the file"
    return cfg, w


def reference_logits(cfg: dict[str, int], w: dict[str, np.ndarray], tokens: list[int]) -> np.ndarray:
    """llama2.c forward() for every position of `tokens`, one position at a time, in float64."""
    dim, heads, kv_heads, layers = cfg["dim"], cfg["heads"], cfg["kv_heads"], cfg["layers"]
    head = dim // heads
    group = heads // kv_heads

    def rmsnorm(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return weight * x / np.sqrt(np.mean(x * x) + 1e-5)

    def rope(vector: np.ndarray, pos: int) -> np.ndarray:
        out = vector.copy()
        for i in range(0, vector.size, 2):
            head_dim = i % head
            angle = pos * (1.0 / 10000.0 ** (head_dim / head))
            c, s = np.cos(angle), np.sin(angle)
            out[i] = vector[i] * c - vector[i + 1] * s
            out[i + 1] = vector[i] * s + vector[i + 1] * c
        return out

    keys = [[] for _ in range(layers)]
    values = [[] for _ in range(layers)]
    rows = []
    for pos, token in enumerate(tokens):
        x = w["emb"][token].copy()
        for layer in range(layers):
            xb = rmsnorm(x, w["rms_att"][layer])
            q = rope(w["wq"][layer] @ xb, pos)
            keys[layer].append(rope(w["wk"][layer] @ xb, pos))
            values[layer].append(w["wv"][layer] @ xb)
            out = np.zeros(dim)
            for h in range(heads):
                kv_head = h // group  # query heads h*group.. share one KV head
                qh = q[h * head:(h + 1) * head]
                scores = np.array([qh @ k[kv_head * head:(kv_head + 1) * head] for k in keys[layer]])
                scores /= np.sqrt(head)
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                out[h * head:(h + 1) * head] = sum(a * v[kv_head * head:(kv_head + 1) * head]
                                                   for a, v in zip(weights, values[layer]))
            x = x + w["wo"][layer] @ out
            xb = rmsnorm(x, w["rms_ffn"][layer])
            gate = w["w1"][layer] @ xb
            x = x + w["w2"][layer] @ (gate / (1.0 + np.exp(-gate)) * (w["w3"][layer] @ xb))
        rows.append(w["cls"] @ rmsnorm(x, w["rms_final"]))
    return np.array(rows)


@pytest.fixture(scope="module")
def stories() -> tuple[Transformer, np.ndarray]:
    path = fixture("stories260K.bin")
    cfg, weights = read_v0_float64(path)
    assert cfg["heads"] != cfg["kv_heads"], "stories260K is expected to use grouped-query attention"
    return Transformer(load_checkpoint(path)), reference_logits(cfg, weights, TOKENS)


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - expected)) / np.max(np.abs(expected)))


def test_batched_forward_matches_the_float64_reference(stories):
    model, expected = stories
    got = model.logits_for_sequence(TOKENS)
    assert got.shape == (len(TOKENS), 512) and got.dtype == np.float32
    for pos in range(len(TOKENS)):
        assert relative_error(got[pos], expected[pos]) < RELATIVE_TOLERANCE, f"position {pos}"
    # the same positions' argmax, the token a T=0 run would print
    assert list(np.argmax(got, axis=1)) == list(np.argmax(expected, axis=1))


def test_stepwise_forward_matches_the_float64_reference(stories):
    model, expected = stories
    cache = model.new_cache()
    for pos, token in enumerate(TOKENS):
        logits = model.step(token, pos, cache)
        assert logits.shape == (512,)
        assert relative_error(logits, expected[pos]) < RELATIVE_TOLERANCE, f"position {pos}"


def test_the_reference_is_sensitive_to_what_it_checks(stories):
    """Sanity of the comparison itself: a different history changes later logits by far more than the tolerance,
    so the positions compared above depend on attention over earlier positions."""
    model, expected = stories
    other = list(TOKENS)
    other[3] = 99
    changed = model.logits_for_sequence(other)
    assert relative_error(changed[-1], expected[-1]) > 100 * RELATIVE_TOLERANCE
    assert relative_error(changed[2], expected[2]) < RELATIVE_TOLERANCE  # before the change: causal


def test_step_by_step_equals_batched_and_the_caches_agree(stories):
    model, _ = stories
    batched_cache = model.new_cache(len(TOKENS))
    batched = model.forward(np.array(TOKENS), 0, batched_cache)
    step_cache = model.new_cache(len(TOKENS))
    stepwise = np.stack([model.step(token, pos, step_cache) for pos, token in enumerate(TOKENS)])
    # BLAS sums matrix-vector and matrix-matrix products in different orders: a few float32 ulps apart
    np.testing.assert_allclose(stepwise, batched, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(step_cache.keys, batched_cache.keys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(step_cache.values, batched_cache.values, rtol=1e-5, atol=1e-5)
    assert np.any(batched_cache.keys[:, len(TOKENS) - 1] != 0)  # the last position was written


def test_forward_in_chunks_continues_from_the_cache(stories):
    model, _ = stories
    whole = model.logits_for_sequence(TOKENS)
    cache = model.new_cache()
    parts = [model.forward(np.array(TOKENS[:5]), 0, cache), model.forward(np.array(TOKENS[5:11]), 5, cache),
             model.forward(np.array(TOKENS[11:]), 11, cache)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-5)


def test_cache_capacity_and_seq_len_are_enforced(stories):
    model, _ = stories
    small = model.new_cache(4)
    assert small.capacity == 4 and small.keys.shape == (5, 4, 32)
    model.forward(np.array(TOKENS[:4]), 0, small)
    with pytest.raises(ValueError, match="exceed"):
        model.forward(np.array([5]), 4, small)
    assert model.new_cache(10_000).capacity == 512  # never more than seq_len
    with pytest.raises(ValueError, match="exceed"):
        model.forward(np.array([1, 2]), 511, model.new_cache())


@pytest.fixture(scope="module")
def quantized_q8(tmp_path_factory: pytest.TempPathFactory) -> Transformer:
    from harness.models.quantize import quantize_file

    out = quantize_file(fixture("stories260K.bin"), tmp_path_factory.mktemp("q8") / "q8.bin", "q8_0")
    checkpoint = load_checkpoint(out)
    assert checkpoint.config.weight_type == "q8_0"
    return Transformer(checkpoint)


def test_q8_0_model_stays_within_quantization_noise_of_the_float_reference(stories, quantized_q8):
    _, expected = stories
    got = quantized_q8.logits_for_sequence(TOKENS)
    errors = [relative_error(got[pos], expected[pos]) for pos in range(len(TOKENS))]
    assert max(errors) < 0.05  # int8 weights and activations: about 1% here, not 100%
    agree = np.count_nonzero(np.argmax(got, axis=1) == np.argmax(expected, axis=1))
    assert agree >= len(TOKENS) - 2


def test_q8_0_step_by_step_equals_batched_bit_for_bit(quantized_q8):
    """Quantized weights take the exact path (integer sums, sequential float sums): no BLAS order to differ."""
    batched = quantized_q8.logits_for_sequence(TOKENS)
    cache = quantized_q8.new_cache()
    stepwise = np.stack([quantized_q8.step(token, pos, cache) for pos, token in enumerate(TOKENS)])
    assert np.array_equal(stepwise, batched)
