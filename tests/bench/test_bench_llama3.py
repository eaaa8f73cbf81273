"""Instructions per token of the Llama 3.2 1B shape on the guest build, derived exactly from smaller models.

A 1B fp32 file is 4.9 GB: more than the port's 2 GiB allocation limit (and a 32-bit address space), and hours
under callgrind. The fp32 forward pass executes the same instructions whatever the weights are (every position of
these runs is forced by the prompt, so no sampling decision depends on the values), and its count is a sum of
per-layer and per-vocabulary-row parts. So the count is measured on models with the 1B's layer shape (dim 2048,
hidden 8192, 32 heads, 8 KV heads, llama3 RoPE) but 1 or 2 layers and a 512 or 1024-token vocabulary:

    ipt(16 layers, 128256 tokens) = ipt(1, 512) + 15 * (ipt(2, 512) - ipt(1, 512)) + 127744 * row,
    row = (ipt(1, 1024) - ipt(1, 512)) / 512

and the same extrapolation is first checked against a directly measured small model (it must agree to 0.01%).
Positions: tokens 3 and 4 (runs of -n 3 and -n 5); attention grows with the position, so its slope per position
and layer is measured on a 1B-headed model with a small hidden size (windows 3-5 and 43-45) and the figure is also
given at position 255 (a 256-token run). Run with `pytest -m bench -s tests/bench/test_bench_llama3.py`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.formats.checkpoint import RopeScaling
from harness.formats.l98m import LLAMA32_1B, L98Header, cost_per_token, kv_cache_bytes
from tests.support.port_helpers import parse_report, tiny686_bin  # noqa: F401

pytestmark = pytest.mark.bench

CALLGRIND_TIMEOUT_S = 3600
# 60 words: more tokens than any run below takes, so every position is forced.
PROMPT = " ".join(["once upon a time there was a small dog named Rex who ran to the park"] * 4)
SCALING = RopeScaling(32.0, 1.0, 4.0, 8192)


def _header(dim: int, hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> L98Header:
    return L98Header(dim, hidden, layers, heads, kv_heads, vocab, 131072, True, 500000.0, 1e-5, SCALING)


def _write(path: Path, header: L98Header) -> Path:
    """A v3 file with seeded random weights (values do not change the instruction count, see the docstring)."""
    _offsets, size = header.offsets()
    rng = np.random.default_rng(7)
    left = (size - 256) // 4
    with path.open("wb") as handle:
        handle.write(header.pack())
        while left:
            count = min(left, 1 << 24)
            (rng.random(count, dtype=np.float32) * np.float32(0.04) - np.float32(0.02)).tofile(handle)
            left -= count
    return path


def _ir(binary: Path, model: Path, tokenizer: Path, steps: int, tmp_path: Path) -> int:
    report = tmp_path / f"{model.stem}-{steps}.rep"
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", str(binary), str(model), "-z",
         str(tokenizer), "-i", PROMPT, "-t", "0", "-n", str(steps), "-r", str(report)],
        capture_output=True, text=True, timeout=CALLGRIND_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stderr[-1000:]
    parsed = parse_report(report.read_text())
    assert len(parsed.tokens) == steps
    assert int(parsed.records["prompt"]["tokens"]) > steps, "a sampled position would make the count data-dependent"
    match = re.search(r"Collected : (\d+)", result.stderr)
    assert match, result.stderr[-1000:]
    return int(match.group(1))


def _ipt(binary: Path, model: Path, tokenizer: Path, tmp_path: Path, short: int = 3, long: int = 5) -> float:
    return (_ir(binary, model, tokenizer, long, tmp_path) - _ir(binary, model, tokenizer, short, tmp_path)) / (
        long - short)


def _extrapolate(binary: Path, tokenizer: Path, tmp_path: Path, dims: tuple[int, int, int, int],
                 layers: int, vocab: int) -> tuple[float, float, float]:
    """(ipt of the extrapolated shape, per layer, per vocabulary row) from three small models."""
    d, h, heads, kv = dims
    one = _ipt(binary, _write(tmp_path / "a.bin", _header(d, h, 1, heads, kv, 512)), tokenizer, tmp_path)
    two = _ipt(binary, _write(tmp_path / "b.bin", _header(d, h, 2, heads, kv, 512)), tokenizer, tmp_path)
    wide = _ipt(binary, _write(tmp_path / "c.bin", _header(d, h, 1, heads, kv, 1024)), tokenizer, tmp_path)
    for name in ("a.bin", "b.bin", "c.bin"):
        (tmp_path / name).unlink()
    layer, row = two - one, (wide - one) / 512
    return one + (layers - 1) * layer + (vocab - 512) * row, layer, row


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.models.bpe_writer import from_tokenizer_json, write_bpe
    from tests.support.bpe_vocab import build

    base = tmp_path_factory.mktemp("tok")
    vocab = build(base / "vocab", vocab_size=500)
    write_bpe(base / "tok.bin", from_tokenizer_json(Path(vocab.tokenizer_json)),
              vocab.specials["<|begin_of_text|>"], vocab.specials["<|end_of_text|>"], [vocab.specials["<|eot_id|>"]])
    return base / "tok.bin"


def test_llama32_1b_instructions_per_token(tiny686_bin: Path, tokenizer: Path,  # noqa: F811
                                           tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed (apt-get install valgrind)")
    # 1. The method, on a shape small enough to measure directly.
    small = (256, 640, 8, 2)
    predicted, _layer, _row = _extrapolate(tiny686_bin, tokenizer, tmp_path, small, 4, 3072)
    measured = _ipt(tiny686_bin, _write(tmp_path / "d.bin", _header(*small[:2], 4, *small[2:], 3072)), tokenizer,
                    tmp_path)
    print(f"\nextrapolation check (dim 256, 4 layers, vocab 3072): predicted {predicted:.0f}, measured "
          f"{measured:.0f} instructions/token")
    assert abs(predicted - measured) <= 1e-4 * measured
    # 2. The 1B's layer shape.
    b = LLAMA32_1B
    total, layer, row = _extrapolate(tiny686_bin, tokenizer, tmp_path,
                                     (b.dim, b.hidden_dim, b.n_heads, b.n_kv_heads), b.n_layers, b.vocab_size)
    # 3. Attention's growth per position and layer, on the 1B's heads with a small hidden size.
    heads = _write(tmp_path / "e.bin", _header(b.dim, 64, 1, b.n_heads, b.n_kv_heads, 512))
    slope = (_ipt(tiny686_bin, heads, tokenizer, tmp_path, 43, 45) - _ipt(tiny686_bin, heads, tokenizer, tmp_path)
             ) / 40
    at_255 = total + b.n_layers * slope * (255 - 3.5)
    macs, _bytes = cost_per_token(b, 255)
    print(f"Llama 3.2 1B shape, -m32 -march=pentium2 -O2 (x87): {total / 1e9:.3f} G instructions/token at positions "
          f"3-4 ({layer / 1e6:.2f} M per layer, {row:.1f} per vocabulary row, the tied classifier "
          f"{row * b.vocab_size / 1e9:.3f} G); attention adds {slope:.0f} per position and layer: "
          f"{at_255 / 1e9:.3f} G at position 255 = {at_255 / macs:.2f} instructions per multiply-add; "
          f"KV cache at 256 tokens {kv_cache_bytes(b, 256) / 2**20:.1f} MiB")
    assert layer > 0 and row > 0 and slope > 0
