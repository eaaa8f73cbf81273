"""Split checkpoints at a real size: the 110M shape (~440 MB float32) written whole and in 128 MiB parts, then
opened by the oracle whole (np.memmap), split with page-aligned parts (mapped side by side) and split with
unaligned parts (read into one array). `pytest -m bench tests/bench/test_bench_parts.py -s` prints the figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from harness.formats.parts import logical_crc32, part_paths, write_parts
from harness.models.modelgen import SHAPES, write_checkpoint
from harness.oracle.checkpoint import load_checkpoint

pytestmark = pytest.mark.bench
MIB = 1024 * 1024
T = TypeVar("T")


def _timed(action: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def test_bench_split_110m(tmp_path: Path) -> None:
    shape = SHAPES["110M-shape"]
    whole, write_whole = _timed(lambda: write_checkpoint(tmp_path / "whole.bin", shape, seed=0))
    split, write_split = _timed(lambda: write_checkpoint(tmp_path / "MODEL.BIN", shape, seed=0,
                                                         part_bytes=128 * MIB))
    size = whole.stat().st_size
    unaligned = tmp_path / "odd.bin"
    with whole.open("rb") as source:
        write_parts(unaligned, iter(lambda: source.read(8 * MIB), b""), part_bytes=100_000_000)
    assert logical_crc32(split) == logical_crc32(whole) == logical_crc32(unaligned)
    print(f"\n110M-shape: {size / 1e6:.1f} MB; write whole {write_whole:.2f} s, in {len(part_paths(split))} parts of "
          f"128 MiB {write_split:.2f} s")
    for label, path in (("whole (memmap)", whole), ("split, mapped", split), ("split, read", unaligned)):
        checkpoint, opened = _timed(lambda p=path: load_checkpoint(p))
        _, touched = _timed(lambda c=checkpoint: float(np.asarray(c.weights.w1).sum()))
        print(f"  open {label:15} {opened * 1000:8.1f} ms, then sum w1 {touched * 1000:8.1f} ms")
