"""floatlib returns the C library's expf, cosf, sinf and powf bit for bit (its docstring's promise).

The reference is a C89 program compiled here with gcc -std=c89 that calls the same float functions the port's
native build calls (ports/llama98/fmath.h declares them itself, as this program does, since C89's <math.h> has
only the double versions). Inputs and results cross the pipe as raw float32 bytes, so nothing is rounded on the
way. The tests also show that the shortcut floatlib avoids, float32(exp(double)), really differs from the C
library on some of these inputs, so a floatlib that took it would fail here.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.oracle import floatlib
from tests.support.c_programs import compile_c

C_MATH = r"""
#include <stdio.h>
#include <string.h>

float expf(float x);
float cosf(float x);
float sinf(float x);
float powf(float x, float y);

/* argv[1]: exp, sin, cos or pow; stdin: float32 arguments (pairs for pow); stdout: float32 results.
 * rope HEAD_SIZE POSITIONS: llama2.c's RoPE table, cos then sin for every (position, pair). */
int main(int argc, char **argv)
{
    float in[2];
    float out;
    int arity;
    if (argc == 4 && strcmp(argv[1], "rope") == 0) {
        int head_size, positions, pos, i;
        if (sscanf(argv[2], "%d", &head_size) != 1 || sscanf(argv[3], "%d", &positions) != 1) {
            return 2;
        }
        for (pos = 0; pos < positions; pos++) {
            for (i = 0; i < head_size; i += 2) {
                float freq = 1.0f / powf(10000.0f, i / (float)head_size);
                float val = pos * freq;
                float pair[2];
                pair[0] = cosf(val);
                pair[1] = sinf(val);
                fwrite(pair, sizeof(float), 2, stdout);
            }
        }
        return 0;
    }
    if (argc != 2) {
        return 2;
    }
    arity = strcmp(argv[1], "pow") == 0 ? 2 : 1;
    while (fread(in, sizeof(float), (size_t)arity, stdin) == (size_t)arity) {
        if (strcmp(argv[1], "exp") == 0) {
            out = expf(in[0]);
        } else if (strcmp(argv[1], "sin") == 0) {
            out = sinf(in[0]);
        } else if (strcmp(argv[1], "cos") == 0) {
            out = cosf(in[0]);
        } else {
            out = powf(in[0], in[1]);
        }
        fwrite(&out, sizeof(float), 1, stdout);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_math(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cmath") / "cmath"
    return compile_c(C_MATH, out, "-std=c89", "-pedantic", "-Wall", "-Werror", "-O0", libs=("-lm",))


def c_results(program: Path, function: str, *args: np.ndarray) -> np.ndarray:
    interleaved = np.stack([np.asarray(a, dtype=np.float32).reshape(-1) for a in args], axis=1)
    result = subprocess.run([str(program), function], input=interleaved.tobytes(), capture_output=True,
                            timeout=60, check=True)
    out = np.frombuffer(result.stdout, dtype=np.float32)
    assert out.size == interleaved.shape[0]
    return out.reshape(np.asarray(args[0]).shape)


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


def assert_bit_exact(got: np.ndarray, expected: np.ndarray, inputs: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == expected.shape
    differ = np.flatnonzero(bits(got).reshape(-1) != bits(expected).reshape(-1))
    shown = [(float(inputs.reshape(-1)[i]), float(got.reshape(-1)[i]), float(expected.reshape(-1)[i]))
             for i in differ[:5]]
    assert differ.size == 0, f"{differ.size} results differ from C (input, floatlib, C): {shown}"


EDGE_EXP_INPUTS = np.array(
    [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 88.72, 88.73, 89.0, 100.0, -87.3, -100.0, -103.9, -104.0, -110.0,
     np.inf, -np.inf, np.float32(np.finfo(np.float32).tiny), -np.finfo(np.float32).max],
    dtype=np.float32)


def test_expf_is_the_c_librarys_on_many_inputs_including_midpoint_cases(c_math):
    rng = np.random.default_rng(20240601)
    x = np.concatenate([rng.uniform(-87.0, 88.0, 300_000).astype(np.float32),
                        rng.uniform(-1.0, 1.0, 50_000).astype(np.float32),
                        rng.normal(0.0, 3.0, 50_000).astype(np.float32), EDGE_EXP_INPUTS])
    expected = c_results(c_math, "exp", x)
    got = floatlib.expf(x)
    assert_bit_exact(got, expected, x)
    # The shortcut float32(exp(double)) is wrong on some of these inputs, so the test above can tell them apart.
    with np.errstate(over="ignore"):
        naive = np.exp(x.astype(np.float64)).astype(np.float32)
    assert np.count_nonzero(bits(naive) != bits(expected)) > 0


def test_expf_edge_values(c_math):
    got = floatlib.expf(EDGE_EXP_INPUTS)
    assert_bit_exact(got, c_results(c_math, "exp", EDGE_EXP_INPUTS), EDGE_EXP_INPUTS)
    by_input = dict(zip(EDGE_EXP_INPUTS.tolist(), got.tolist()))
    assert by_input[0.0] == 1.0 and by_input[-0.0] == 1.0
    assert by_input[100.0] == np.inf and by_input[np.inf] == np.inf  # overflow
    assert by_input[-np.inf] == 0.0 and by_input[-110.0] == 0.0  # underflow to zero
    assert 0.0 < by_input[-100.0] < np.finfo(np.float32).tiny  # a subnormal result


def test_expf_keeps_the_shape_and_takes_scalars_and_lists():
    assert floatlib.expf(0.0).shape == ()
    assert floatlib.expf([[0.0, 1.0], [2.0, 3.0]]).shape == (2, 2)
    assert floatlib.expf([0.0, 1.0]).dtype == np.float32
    assert float(floatlib.expf(1.0)) == float(np.float32(np.e))


@pytest.mark.parametrize("name", ["sin", "cos"])
def test_sinf_cosf_are_the_c_librarys(c_math, name):
    rng = np.random.default_rng(7)
    # RoPE angles reach pos * freq with pos up to seq_len: large arguments are where float versions differ most
    x = np.concatenate([rng.uniform(-4.0, 4.0, 10_000), rng.uniform(0.0, 4096.0, 20_000),
                        [0.0, -0.0, np.pi / 2, np.pi, 1e-8, 1e6, 3e7]]).astype(np.float32)
    function = floatlib.sinf if name == "sin" else floatlib.cosf
    expected = c_results(c_math, name, x)
    assert_bit_exact(function(x), expected, x)
    naive = getattr(np, name)(x.astype(np.float64)).astype(np.float32)
    assert np.count_nonzero(bits(naive) != bits(expected)) > 0


def test_powf_is_the_c_librarys_and_broadcasts(c_math):
    rng = np.random.default_rng(11)
    base = np.concatenate([rng.uniform(0.0, 20000.0, 5000), [10000.0, 500000.0, 1.0, 0.0, 2.0, 0.5]])
    exponent = np.concatenate([rng.uniform(-2.0, 2.0, 5000), [0.5, 0.25, 7.0, 3.0, -1.0, 10.0]])
    base, exponent = base.astype(np.float32), exponent.astype(np.float32)
    assert_bit_exact(floatlib.powf(base, exponent), c_results(c_math, "pow", base, exponent), base)
    # a scalar base against a vector of exponents, as the RoPE frequencies call it
    exps = (np.arange(0, 64, 2, dtype=np.float32) / np.float32(64))
    scalar = floatlib.powf(np.float32(10000.0), exps)
    assert scalar.shape == exps.shape
    assert_bit_exact(scalar, c_results(c_math, "pow", np.full_like(exps, 10000.0), exps), exps)


@pytest.mark.parametrize("head_size", [8, 48, 64])
def test_rope_table_from_floatlib_equals_llama2c_loop(c_math, head_size):
    """llama2.c's RoPE expressions (freq = 1/powf(10000, i/hs), val = pos*freq, cosf, sinf) on floatlib."""
    positions = 300
    result = subprocess.run([str(c_math), "rope", str(head_size), str(positions)], capture_output=True,
                            timeout=60, check=True)
    c_table = np.frombuffer(result.stdout, dtype=np.float32).reshape(positions, head_size // 2, 2)
    exponents = np.arange(0, head_size, 2, dtype=np.float32) / np.float32(head_size)
    freqs = np.float32(1.0) / floatlib.powf(np.float32(10000.0), exponents)
    angles = np.arange(positions, dtype=np.float32)[:, None] * freqs[None, :]
    assert_bit_exact(floatlib.cosf(angles), np.ascontiguousarray(c_table[:, :, 0]), angles)
    assert_bit_exact(floatlib.sinf(angles), np.ascontiguousarray(c_table[:, :, 1]), angles)


def test_expf_of_infinities_and_overflow_is_warning_free():
    """An overflowing or infinite input (a masked logit, a huge score) must not make numpy warn on every call."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = floatlib.expf(np.array([np.inf, -np.inf, 100.0, np.finfo(np.float32).max], dtype=np.float32))
    assert got.tolist() == [np.inf, 0.0, np.inf, np.inf]
