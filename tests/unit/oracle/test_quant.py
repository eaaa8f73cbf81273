"""Q8_0 and ternary arithmetic (harness.oracle.quant) against their definitions: llama2.c export.py's Q8_0 and runq's
quantize()/matmul, BitNet b1.58's absmean ternary weights and the 2-bit packing of ports/llama98/FORMATS.md."""

from __future__ import annotations

import numpy as np
import pytest

from harness.oracle.quant import (
    Q8Tensor,
    TernaryTensor,
    linear,
    pack_ternary,
    quantize_activations,
    quantize_q80,
    quantize_ternary,
    round_half_away,
    unpack_ternary,
)


def random_matrix(rows: int, cols: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, (rows, cols)).astype(np.float32)


# --- Q8_0 weights ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [4, 16, 64])
def test_q8_0_round_trip_error_is_at_most_half_a_step(group):
    w = random_matrix(24, 128, seed=group)
    tensor = quantize_q80(w, group)
    assert tensor.q.dtype == np.int8 and tensor.q.shape == (24, 128)
    assert tensor.s.dtype == np.float32 and tensor.s.shape == (24, 128 // group)
    step = np.repeat(tensor.s, group, axis=1).astype(np.float64)
    error = np.abs(tensor.dequantize().astype(np.float64) - w.astype(np.float64))
    # round to nearest: half a step, plus float32 rounding of the quotient and of q * s
    assert np.all(error <= step * (0.5 + 1e-5))
    assert error.max() > 0.3 * step.max()  # it is a lossy format: the bound is not trivially met


def test_q8_0_scale_is_max_over_127_per_group_and_groups_never_straddle_rows():
    rows, cols, group = 3, 12, 4
    w = np.zeros((rows, cols), dtype=np.float32)
    # every (row, group) gets its own maximum magnitude, at a different place in the group
    for r in range(rows):
        for g in range(cols // group):
            w[r, g * group + (r + g) % group] = (-1) ** g * np.float32(10 * r + g + 1)
    tensor = quantize_q80(w, group)
    for r in range(rows):
        for g in range(cols // group):
            assert tensor.s[r, g] == np.float32(np.float32(10 * r + g + 1) / np.float32(127.0))
            block = tensor.q[r, g * group:(g + 1) * group]
            assert block[(r + g) % group] == (-1) ** g * 127  # the largest magnitude maps to +-127
            assert np.count_nonzero(block) == 1


def test_q8_0_changing_one_value_changes_only_its_group():
    w = random_matrix(4, 32, seed=1)
    before = quantize_q80(w, 8)
    w2 = w.copy()
    w2[2, 17] = 5.0  # row 2, group 2 (columns 16..23)
    after = quantize_q80(w2, 8)
    changed_scales = np.argwhere(before.s != after.s)
    assert changed_scales.tolist() == [[2, 2]]
    changed_values = np.argwhere(before.q != after.q)
    assert set(map(tuple, changed_values.tolist())) <= {(2, c) for c in range(16, 24)}


def test_q8_0_known_values_round_half_to_even():
    # scale = 254 / 127 = 2: quotients 0.5, 1.5, 2.5, -0.5, -1.5, -2.5 round to even (torch.round)
    w = np.array([[254.0, 1.0, 3.0, 5.0, -254.0, -1.0, -3.0, -5.0]], dtype=np.float32)
    tensor = quantize_q80(w, 4)
    assert tensor.s.tolist() == [[2.0, 2.0]]
    assert tensor.q.tolist() == [[127, 0, 2, 2, -127, 0, -2, -2]]
    assert tensor.dequantize().tolist() == [[254.0, 0.0, 4.0, 4.0, -254.0, 0.0, -4.0, -4.0]]


def test_q8_0_all_zero_group_has_scale_zero_and_values_zero():
    w = np.array([[0.0, 0.0, 0.0, 0.0, 1.0, -2.0, 0.5, 0.0]], dtype=np.float32)
    tensor = quantize_q80(w, 4)
    assert tensor.s[0, 0] == 0.0 and not tensor.q[0, :4].any()
    assert np.all(np.isfinite(tensor.dequantize()))
    assert tensor.q[0, 5] == -127


def test_q8_0_group_that_does_not_divide_the_row_is_refused():
    with pytest.raises(ValueError):
        quantize_q80(random_matrix(4, 6, seed=0), 4)


# --- activations (runq's quantize) -------------------------------------------------------------------------------

def test_round_half_away_from_zero_like_c_round():
    values = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 126.5, -126.5], dtype=np.float32)
    assert round_half_away(values).tolist() == [1, 2, 3, -1, -2, -3, 0, 127, -127]


def test_activation_quantization_known_values():
    x = np.array([[127.0, 63.5, -0.5, 1.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    q, s = quantize_activations(x, 4)
    assert s.tolist() == [[1.0, 0.0]]
    assert q.tolist() == [[127, 64, -1, 1, 0, 0, 0, 0]]  # halves away from zero, unlike the weights


# --- ternary ------------------------------------------------------------------------------------------------------

def test_ternary_scale_is_mean_absolute_value_and_weights_are_clipped_rounded():
    w = np.array([[0.1, -0.3, 0.02, 2.0], [-2.0, 0.0, 0.25, -0.04]], dtype=np.float32)
    tensor = quantize_ternary(w)
    mean_abs = np.float32(np.mean(np.abs(w.astype(np.float64))))
    assert tensor.scale == mean_abs  # 4.71 / 8 = 0.58875
    # w / scale: 0.17, -0.51, 0.03, 3.4, -3.4, 0, 0.42, -0.07 -> round, clip to [-1, 1]
    assert tensor.t.tolist() == [[0, -1, 0, 1], [-1, 0, 0, 0]]
    assert tensor.t.dtype == np.int8 and tensor.shape == (2, 4)


def test_ternary_of_zeros_is_zero_with_zero_scale():
    tensor = quantize_ternary(np.zeros((2, 4), dtype=np.float32))
    assert tensor.scale == 0.0 and not tensor.t.any()


def test_ternary_pack_known_bytes():
    # weight e in bits 2*(e % 4): 0 -> 00, +1 -> 01, -1 -> 10
    t = np.array([[0, 1, -1, 0, 1, 1, 1, 1, -1, -1, -1, -1]], dtype=np.int8)
    assert pack_ternary(t) == bytes([0b00_10_01_00, 0b01_01_01_01, 0b10_10_10_10])


@pytest.mark.parametrize("shape", [(1, 4), (3, 8), (64, 172), (5, 12)])
def test_ternary_pack_unpack_round_trip(shape):
    t = np.random.default_rng(sum(shape)).integers(-1, 2, size=shape).astype(np.int8)
    packed = pack_ternary(t)
    assert len(packed) == t.size // 4
    again = unpack_ternary(np.frombuffer(packed, dtype=np.uint8), *shape)
    assert again is not None and again.dtype == np.int8
    assert np.array_equal(again, t)


def test_ternary_unpack_refuses_code_3_and_pack_refuses_partial_bytes():
    assert unpack_ternary(np.array([0b11_00_00_00], dtype=np.uint8), 1, 4) is None
    with pytest.raises(ValueError, match="4 weights per byte"):
        pack_ternary(np.zeros((1, 6), dtype=np.int8))


# --- linear --------------------------------------------------------------------------------------------------------

def runq_matmul(x: np.ndarray, w: Q8Tensor) -> np.ndarray:
    """llama2.c runq's quantize() + matmul() for one vector, written out scalar by scalar in float32."""
    group = w.group
    n = x.size
    xq = np.zeros(n, dtype=np.int64)
    xs = []
    for g in range(n // group):
        block = x[g * group:(g + 1) * group]
        wmax = np.float32(0.0)
        for value in block:
            wmax = max(wmax, np.float32(abs(value)))
        scale = np.float32(wmax / np.float32(127.0))
        xs.append(scale)
        for i, value in enumerate(block):
            quotient = np.float32(value / scale)
            xq[g * group + i] = int(np.floor(float(quotient) + 0.5)) if quotient >= 0 else -int(
                np.floor(-float(quotient) + 0.5))
    out = np.zeros(w.q.shape[0], dtype=np.float32)
    for row in range(w.q.shape[0]):
        val = np.float32(0.0)
        for g in range(n // group):
            ival = int(np.dot(xq[g * group:(g + 1) * group], w.q[row, g * group:(g + 1) * group].astype(np.int64)))
            val = np.float32(val + np.float32(np.float32(np.float32(ival) * w.s[row, g]) * xs[g]))
        out[row] = val
    return out


def test_q8_0_linear_is_runqs_matmul_bit_for_bit():
    w = quantize_q80(random_matrix(12, 32, seed=5), 8)
    x = np.random.default_rng(6).normal(0.0, 1.0, (3, 32)).astype(np.float32)
    got = linear(x, w)
    assert got.dtype == np.float32 and got.shape == (3, 12)
    for t in range(3):
        assert np.array_equal(got[t], runq_matmul(x[t], w))


def test_q8_0_linear_is_close_to_the_float_product():
    w = random_matrix(48, 128, seed=8)
    x = np.random.default_rng(9).normal(0.0, 1.0, (2, 128)).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64).T
    got = linear(x, quantize_q80(w, 32))
    assert np.max(np.abs(got - exact)) < 0.02 * np.max(np.abs(exact))
    assert not np.array_equal(got, (x @ w.T).astype(np.float32))  # it really is the quantized product


def test_ternary_linear_known_value():
    tensor = TernaryTensor(np.array([[1, 0, -1, 1], [0, 0, 0, 0]], dtype=np.int8), np.float32(0.5))
    x = np.array([[127.0, 2.0, -1.0, 3.0]], dtype=np.float32)
    # activations quantized over the whole row: scale 1, values unchanged; 127 + 1 + 3 = 131; * 0.5 * 1
    assert linear(x, tensor).tolist() == [[65.5, 0.0]]


def test_float_linear_is_a_plain_product():
    w = random_matrix(5, 8, seed=3)
    x = random_matrix(2, 8, seed=4)
    np.testing.assert_allclose(linear(x, w), x @ w.T, rtol=1e-6)
