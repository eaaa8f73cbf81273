"""Peak memory of `llama98-harness quantize` on the big generated shapes, block by block and (110M) whole-tensor.

Each quantization runs in a fresh Python process, so its figures are its own: the peak resident set (ru_maxrss,
which also counts the pages of the memory-mapped input it has read: page cache, given back under pressure), the
peak of anonymous memory (RssAnon sampled every 2 ms: what the quantizer really holds) and, in a second process,
tracemalloc's peak (numpy reports its arrays to it). `pytest -m bench -s tests/bench/test_bench_quantize_memory.py`
prints the table; `-k 110M` skips the 1B shape (5 GB of float32 to generate first, several minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.paths import project_root
from harness.models.modelgen import SHAPES, write_checkpoint
from harness.models.quantize import BLOCK_FLOATS

pytestmark = pytest.mark.bench
MIB = 1024 * 1024
WHOLE_TENSOR = 1 << 40  # block_floats beyond any tensor: one block per tensor, the old algorithm's memory
LIMIT_BYTES = 256 * MIB  # the bound on the quantizer's own memory, for any model

CHILD = r"""
import json, resource, sys, threading, time, tracemalloc
from pathlib import Path
from harness.models.quantize import quantize_file

src, out, to, block, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
peak_anon = 0
stop = threading.Event()

def rss_anon():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0

def sample():
    global peak_anon
    while not stop.is_set():
        peak_anon = max(peak_anon, rss_anon())
        stop.wait(0.002)

base_anon = rss_anon()
if mode == "traced":
    tracemalloc.start()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
start = time.perf_counter()
quantize_file(src, out, to, block_floats=block)
seconds = time.perf_counter() - start
stop.set()
sampler.join()
traced = tracemalloc.get_traced_memory()[1] if mode == "traced" else None
print(json.dumps({"seconds": seconds, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "peak_anon": peak_anon, "base_anon": base_anon, "traced": traced, "out": out.stat().st_size}))
"""


def _measure(src: Path, out: Path, to: str, block_floats: int, mode: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), to, str(block_floats), mode],
                            capture_output=True, text=True, timeout=3600, cwd=project_root(), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def _row(label: str, rss: dict[str, float], traced: dict[str, float]) -> str:
    held = rss["peak_anon"] - rss["base_anon"]
    return (f"  {label:26} {rss['seconds']:7.1f} s  maxrss {rss['maxrss'] / MIB:8.1f} MiB  anon peak "
            f"{rss['peak_anon'] / MIB:7.1f} MiB (+{held / MIB:.1f} over start)  tracemalloc peak "
            f"{traced['traced'] / MIB:7.1f} MiB")


@pytest.mark.parametrize("shape_name", ["110M-shape", "1B-shape"])
def test_bench_quantize_peak_memory(tmp_path: Path, shape_name: str) -> None:
    start = time.perf_counter()
    src = write_checkpoint(tmp_path / "model.bin", SHAPES[shape_name], seed=0, version=1)
    generated = time.perf_counter() - start
    size = sum(path.stat().st_size for path in tmp_path.glob("model.*"))
    print(f"\n{shape_name} float32: {size / 1e6:.0f} MB (generated in {generated:.0f} s); q8_0, blocks of "
          f"{BLOCK_FLOATS} floats:")
    runs = [("blocks", BLOCK_FLOATS)] + ([("whole tensors (old)", WHOLE_TENSOR)] if shape_name == "110M-shape" else [])
    traced_peaks = {}
    for label, block_floats in runs:
        out = tmp_path / "q8.bin"
        rss = _measure(src, out, "q8_0", block_floats, "rss")
        traced = _measure(src, out, "q8_0", block_floats, "traced")
        for path in tmp_path.glob("q8.*"):
            path.unlink()
        print(_row(label, rss, traced))
        traced_peaks[label] = traced["traced"]
    assert traced_peaks["blocks"] < LIMIT_BYTES
