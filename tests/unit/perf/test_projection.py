"""The Pentium II projection (harness.perf.projection): three per-token costs from counts and stated hardware
figures, their sum, which one limits, and the printed lines."""

from __future__ import annotations

import pytest

from harness.perf.projection import (
    DISK_BYTES_PER_S,
    PII_HZ,
    PII_IPC,
    PUBLISHED_1B_TOK_S,
    SDRAM_BYTES_PER_S,
    Projection,
    TokenCosts,
    describe,
    project,
)


def test_the_stated_hardware_figures():
    assert (PII_HZ, PII_IPC) == (350e6, 1.0)
    assert SDRAM_BYTES_PER_S == 250e6 and DISK_BYTES_PER_S == 15e6
    assert 1 / PUBLISHED_1B_TOK_S == pytest.approx(107.5, abs=0.1)


def test_each_cost_from_its_count():
    # 3.5 G instructions = 10 s at 350 MHz; 100 MB read: 6.67 s of disk, crossing the bus twice plus 500 MB of
    # weights touched: 700 MB at 250 MB/s = 2.8 s
    p = project(TokenCosts(instructions=3.5e9, bytes_read=100e6, weight_bytes=500e6))
    assert p.arithmetic_s == pytest.approx(10.0)
    assert p.memory_s == pytest.approx(2.8)
    assert p.disk_s == pytest.approx(100 / 15)
    assert p.seconds_per_token == pytest.approx(10.0 + 2.8 + 100 / 15)
    assert p.tok_s == pytest.approx(1 / p.seconds_per_token)
    assert p.limit == "arithmetic"


def test_a_resident_model_reads_nothing_from_disk():
    p = project(TokenCosts(instructions=1e6, bytes_read=0.0, weight_bytes=1e6))
    assert p.disk_s == 0.0
    assert p.memory_s == pytest.approx(1e6 / 250e6)  # its weights cross the bus once
    assert p.limit == "memory bus"


@pytest.mark.parametrize("costs, limit", [
    (TokenCosts(1e9, 5e9, 5e9), "disk"),
    (TokenCosts(1e6, 0.0, 1e10), "memory bus"),
    (TokenCosts(1e12, 1e6, 1e6), "arithmetic"),
])
def test_the_limit_is_the_largest_cost(costs, limit):
    p = project(costs)
    assert p.limit == limit
    assert max(p.arithmetic_s, p.memory_s, p.disk_s) == {"disk": p.disk_s, "memory bus": p.memory_s,
                                                         "arithmetic": p.arithmetic_s}[limit]


def test_costs_add_linearly():
    a = project(TokenCosts(1e9, 2e8, 3e8))
    b = project(TokenCosts(2e9, 4e8, 6e8))
    assert b.seconds_per_token == pytest.approx(2 * a.seconds_per_token)
    assert Projection(1.0, 2.0, 3.0).seconds_per_token == 6.0


def test_describe_prints_the_total_the_costs_and_the_comparison():
    costs = TokenCosts(instructions=3.5e9, bytes_read=1.5e9, weight_bytes=5.0e9)
    p = project(costs)
    lines = describe("1B-shape:q8_0", costs)
    assert len(lines) == 5 and all("\n" not in line for line in lines)
    assert lines[0].startswith("1B-shape:q8_0: projected on a Pentium II 350 / 128 MB: ")
    assert f"{p.seconds_per_token:.1f} s/token" in lines[0] and f"limited by {p.limit}" in lines[0]
    assert "arithmetic" in lines[1] and "3.50 G instructions at 350 MHz" in lines[1]
    assert "memory bus" in lines[2] and "8.00 GB over 250 MB/s" in lines[2]  # 5 GB + 2 x 1.5 GB
    assert "disk" in lines[3] and "1.50 GB read at 15 MB/s" in lines[3]
    ratio = p.seconds_per_token / (1 / PUBLISHED_1B_TOK_S)
    assert lines[4].strip().startswith("published: Llama 3.2 1B at 0.0093 tok/s") and f"{ratio:.2f}" in lines[4]
