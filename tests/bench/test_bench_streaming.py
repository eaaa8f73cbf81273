"""Models bigger than the guest's RAM, streamed in the 128 MB tiny686 guest under -icount: guest seconds per
token, instructions per token (arithmetic, the time reading weights taken out), bytes read per token and peak
memory, with the projection on a Pentium II 350 against the published 0.0093 tok/s for Llama 3.2 1B and what
limits it. Not CI (1B-shape is 5 GB of float32 to generate and move, then 1.3 GB as Q8_0); run with
`pytest -m bench -s --vm tiny686 tests/bench/test_bench_streaming.py` or
`llama98-harness bench --mode icount --models 110M-shape,1B-shape:q8_0,1B-shape`.
"""

from __future__ import annotations

import pytest

from harness.formats.parts import part_paths
from harness.perf.bench import bench_model, streamed_lines
from harness.perf.measure import DEFAULT_ICOUNT_SHIFT, workload
from harness.perf.projection import TokenCosts, project

pytestmark = [pytest.mark.bench, pytest.mark.vm]
MIB = 1 << 20


@pytest.mark.parametrize("name", ["110M-shape", "1B-shape:q8_0", "1B-shape"])
def test_streamed_model_in_a_128mb_guest(name: str, vm_image: tuple[str, object]) -> None:
    if vm_image[0] != "tiny686":
        pytest.skip("the table is for the 128 MB tiny686 guest")
    load = workload(name)
    figures, profile = bench_model(name, "icount", vm=None, profile="auto", binary=None, repeat=1,
                                   icount_shift=DEFAULT_ICOUNT_SHIFT, timeout_scale=1.0)
    print(f"\n{name} ({len(part_paths(load.model))} part(s), {profile}):")
    for line in streamed_lines(name, figures):
        print(line)
    peak, budget = figures["peak_bytes"], figures["budget"]
    assert isinstance(peak, int) and isinstance(budget, int)
    assert figures["streamed_bytes"] and peak <= budget < 128 * MIB
    read = figures["bytes_read_per_token"]
    assert isinstance(read, float) and read > 0
    ipt, weights = figures["guest_ipt"], figures["weight_bytes"]
    assert isinstance(ipt, float) and isinstance(weights, float)
    assert project(TokenCosts(ipt, read, weights)).seconds_per_token > 0
