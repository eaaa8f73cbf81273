"""Speed of quantized weights on the 15M shape (tiny686 build, callgrind): instructions and weight bytes per token
of q8_0 and ternary against fp32, with the MMX kernels and with the portable C89 ones.
Run with `pytest -m bench -s tests/bench/test_bench_quantized.py` to see the table.

Targets (issue 12): q8_0 at most 0.5x and ternary at most 0.4x of fp32's instructions per token; weight bytes at
most 0.3x (q8_0) and 0.2x (ternary, which needs its int8 classifier: the tied fp32 one alone is 0.6x).
"""

from __future__ import annotations

import pytest

from harness.perf.measure import host_ipt, weight_bytes, workload
from tests.support.port_helpers import built

pytestmark = pytest.mark.bench

NAMES = ("15M-shape", "15M-shape:q8_0", "15M-shape:ternary")


def test_quantized_15m_instructions_and_weight_bytes_per_token() -> None:
    mmx, portable = built("tiny686"), built("tiny686-c")
    ipt: dict[str, float] = {}
    traffic: dict[str, float] = {}
    print()
    for name in NAMES:
        load = workload(name)
        ipt[name] = host_ipt(mmx, load).per_token
        traffic[name] = weight_bytes(load)
        c_ipt = host_ipt(portable, load).per_token if name != "15M-shape" else ipt[name]
        print(f"{name:18} {ipt[name] / 1e6:8.2f} M instr/token (MMX), {c_ipt / 1e6:8.2f} M (C89), "
              f"{ipt[name] / ipt['15M-shape']:5.3f}x fp32; weights {traffic[name] / 1e6:7.2f} MB/token, "
              f"{traffic[name] / traffic['15M-shape']:5.3f}x fp32")
    assert ipt["15M-shape:q8_0"] <= 0.5 * ipt["15M-shape"]
    assert ipt["15M-shape:ternary"] <= 0.4 * ipt["15M-shape"]
    assert traffic["15M-shape:q8_0"] <= 0.3 * traffic["15M-shape"]
    assert traffic["15M-shape:ternary"] <= 0.2 * traffic["15M-shape"]
