"""Quantized weights: Q8_0 (llama2.c v2) and ternary (version 98) in the port, the oracle and the quantizer.

The port's integer sums are exact and its float scaling follows runq's order, so on the same file the native
port, the -m32 x87 build and the oracle agree token for token; teacher-forced verify accepts every port run.
(Byte equality with llama2.c's runq itself was measured outside the suite: llama2.c is not part of this repo.)
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main as cli_main
from harness.formats.checkpoint import CheckpointError
from harness.judge.verify import verify
from harness.models.modelgen import SHAPES, cached_checkpoint, cached_tokenizer
from harness.models.quantize import default_group_size, quantize_file, write_ternary_model
from harness.oracle.checkpoint import load_checkpoint
from harness.oracle.quant import (
    Q8Tensor,
    TernaryTensor,
    pack_ternary,
    quantize_q80,
    quantize_ternary,
    unpack_ternary,
)
from tests.port.test_vs_oracle import oracle_bytes
from tests.support.port_helpers import fixture, native_bin, run_port, tiny686_bin  # noqa: F401

RUNS = {
    "greedy": ["-t", "0", "-n", "80"],
    "seeded-prompt": ["-t", "0.9", "-p", "0.9", "-s", "11", "-n", "60", "-i", "Once upon"],
    "multinomial": ["-t", "1.0", "-p", "1.0", "-s", "5", "-n", "60"],
}
Q8_SHAPES = ["gqa-512", "unshared-512", "gqa-unshared-32000", "odd-hidden-mqa"]
TERNARY_VARIANTS = {
    "silu": {},
    "relu2-subnorm": {"ffn": "relu2", "sub_norms": True},
    "int8-classifier": {"int8_classifier": True},
    "relu2-subnorm-int8": {"ffn": "relu2", "sub_norms": True, "int8_classifier": True},
}


def _q8(tmp_path: Path, name: str) -> tuple[Path, Path]:
    out = tmp_path / f"{name}-q8.bin"
    quantize_file(cached_checkpoint(name), out, "q8_0")
    return out, cached_tokenizer(SHAPES[name].vocab_size)


def _check(model: Path, tokenizer: Path, args: list[str], native: Path, m32: Path, tmp_path: Path) -> None:
    """Native (SSE): the oracle's text byte for byte and an exact verify (tol 0); x87: verify's quantized bounds."""
    report = tmp_path / "report.txt"
    native_run = run_port(native, [str(model), "-z", str(tokenizer), *args, "-r", str(report)])
    assert native_run.returncode == 0, native_run.stderr
    assert native_run.stdout == oracle_bytes(model, tokenizer, args)
    verdict = verify(model, tokenizer, report, tol=0.0)
    assert verdict.ok and verdict.near_ties == 0, str(verdict)
    m32_run = run_port(m32, [str(model), "-z", str(tokenizer), *args, "-r", str(report)])
    assert m32_run.returncode == 0, m32_run.stderr
    verdict = verify(model, tokenizer, report)
    assert verdict.ok, str(verdict)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_stories260k_q8_port_equals_oracle(run: str, native_bin: Path, tiny686_bin: Path,  # noqa: F811
                                           tmp_path: Path) -> None:
    model = tmp_path / "s260k-q8.bin"
    quantize_file(fixture("stories260K.bin"), model, "q8_0")
    _check(model, fixture("tok512.bin"), RUNS[run], native_bin, tiny686_bin, tmp_path)


@pytest.mark.parametrize("name", Q8_SHAPES)
def test_generated_q8_shapes_port_equals_oracle(name: str, native_bin: Path, tiny686_bin: Path,  # noqa: F811
                                                tmp_path: Path) -> None:
    model, tokenizer = _q8(tmp_path, name)
    _check(model, tokenizer, RUNS["seeded-prompt"], native_bin, tiny686_bin, tmp_path)


@pytest.mark.parametrize("variant", sorted(TERNARY_VARIANTS))
def test_ternary_variants_port_equals_oracle(variant: str, native_bin: Path, tiny686_bin: Path,  # noqa: F811
                                             tmp_path: Path) -> None:
    model = write_ternary_model(tmp_path / "t.bin", SHAPES["gqa-512"], seed=3, **TERNARY_VARIANTS[variant])
    tokenizer = cached_tokenizer(512)
    config = load_checkpoint(model).config
    assert config.weight_type == "ternary"
    _check(model, tokenizer, RUNS["seeded-prompt"], native_bin, tiny686_bin, tmp_path)
    _check(model, tokenizer, RUNS["greedy"], native_bin, tiny686_bin, tmp_path)


def test_quantize_q8_matches_llama2c_recipe() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 12), dtype=np.float32)
    w[0, :4] = 0.0  # an all-zero group: scale 0, values 0
    w[1, :4] = [127.0, 0.5, -0.5, 1.5]  # scale 1: halves round to even
    t = quantize_q80(w, 4)
    assert t.s[0, 0] == 0 and not t.q[0, :4].any()
    assert list(t.q[1, :4]) == [127, 0, 0, 2]
    expected_scale = np.abs(w.reshape(-1, 4)).max(axis=1).astype(np.float32) / np.float32(127.0)
    assert np.array_equal(t.s.reshape(-1), expected_scale)
    assert np.abs(t.dequantize() - w).max() <= t.s.max() / 2 + 1e-6


def test_ternary_quantization_and_packing_round_trip() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 8), dtype=np.float32)
    t = quantize_ternary(w)
    assert t.scale == np.float32(np.mean(np.abs(w), dtype=np.float64))
    assert set(np.unique(t.t)) <= {-1, 0, 1}
    packed = np.frombuffer(pack_ternary(t.t), dtype=np.uint8)
    assert packed.size == 12
    assert np.array_equal(unpack_ternary(packed, 6, 8), t.t)
    assert pack_ternary(np.array([[1, -1, 0, 1]], dtype=np.int8)) == bytes([0b01_00_10_01])
    assert unpack_ternary(np.array([0b11], dtype=np.uint8), 1, 4) is None


def test_default_group_size_divides_both_dimensions() -> None:
    assert default_group_size(64, 172) == 4
    assert default_group_size(288, 768) == 48
    assert default_group_size(32, 97) == 1


def _one_line_port_error(native: Path, model: Path, tokenizer: Path) -> str:
    result = run_port(native, [str(model), "-z", str(tokenizer), "-n", "4"])
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98: error: "), result.stderr
    return lines[0]


def test_bad_q8_files_get_one_line_errors(native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    model, tokenizer = _q8(tmp_path, "gqa-512")
    data = model.read_bytes()
    wrong_group = bytearray(data)
    struct.pack_into("<i", wrong_group, 37, 64)  # divides dim 64 but not hidden_dim 172
    (tmp_path / "group.bin").write_bytes(bytes(wrong_group))
    message = _one_line_port_error(native_bin, tmp_path / "group.bin", tokenizer)
    assert "group size 64 does not divide hidden_dim 172" in message
    with pytest.raises(CheckpointError, match="group size 64 does not divide hidden_dim 172"):
        load_checkpoint(tmp_path / "group.bin")
    (tmp_path / "short.bin").write_bytes(data[:-10])
    assert "truncated" in _one_line_port_error(native_bin, tmp_path / "short.bin", tokenizer)
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "short.bin")
    (tmp_path / "head.bin").write_bytes(data[:100])
    assert "shorter than the 256-byte ak42 header" in _one_line_port_error(native_bin, tmp_path / "head.bin",
                                                                          tokenizer)


def test_bad_ternary_files_get_one_line_errors(native_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    model = write_ternary_model(tmp_path / "t.bin", SHAPES["gqa-512"], seed=3)
    tokenizer = cached_tokenizer(512)
    config = load_checkpoint(model).config
    data = bytearray(model.read_bytes())
    # the first packed byte of wq[0]: header, norms, fp32 embedding, then wq's scale
    first = 256 + 4 * (2 * config.n_layers * config.dim + config.dim) + 4 * config.vocab_size * config.dim + 4
    data[first] = 0xFF
    (tmp_path / "pack.bin").write_bytes(bytes(data))
    assert "wrong packing" in _one_line_port_error(native_bin, tmp_path / "pack.bin", tokenizer)
    with pytest.raises(CheckpointError, match="wrong packing"):
        load_checkpoint(tmp_path / "pack.bin")
    flags = bytearray(model.read_bytes())
    flags[38] = 9
    (tmp_path / "flags.bin").write_bytes(bytes(flags))
    assert "bad version 98 flags" in _one_line_port_error(native_bin, tmp_path / "flags.bin", tokenizer)
    (tmp_path / "short.bin").write_bytes(model.read_bytes()[:-1])
    assert "truncated" in _one_line_port_error(native_bin, tmp_path / "short.bin", tokenizer)


def test_quantize_cli_refuses_bad_group_and_quantized_input(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = cached_checkpoint("gqa-512")
    assert cli_main(["quantize", str(src), str(tmp_path / "o.bin"), "--to", "q8_0", "--group-size", "64"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["llama98-harness: error: group size 64 does not divide hidden_dim 172"]
    assert cli_main(["quantize", str(src), str(tmp_path / "o.bin"), "--to", "q8_0"]) == 0
    assert load_checkpoint(tmp_path / "o.bin").config.group_size == 4
    assert cli_main(["quantize", str(tmp_path / "o.bin"), str(tmp_path / "p.bin"), "--to", "ternary"]) == 1
    assert "already quantized" in capsys.readouterr().err


def test_oracle_linear_matches_integer_reference() -> None:
    """The oracle's Q8 and ternary products against a plain Python loop in runq's order."""
    from harness.oracle.quant import linear, quantize_activations

    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 16), dtype=np.float32)
    w = rng.standard_normal((3, 16), dtype=np.float32)
    q8: Q8Tensor = quantize_q80(w, 8)
    xq, xs = quantize_activations(x, 8)
    got = linear(x, q8)
    for t in range(2):
        for d in range(3):
            val = np.float32(0.0)
            for g in range(2):
                isum = int(sum(int(xq[t, g * 8 + k]) * int(q8.q[d, g * 8 + k]) for k in range(8)))
                val = np.float32(val + np.float32(np.float32(isum) * q8.s[d, g]) * xs[t, g])
            assert got[t, d] == val
    tern: TernaryTensor = quantize_ternary(w)
    xq1, xs1 = quantize_activations(x, 16)
    got_t = linear(x, tern)
    for t in range(2):
        for d in range(3):
            isum = int(sum(int(xq1[t, k]) * int(tern.t[d, k]) for k in range(16)))
            assert got_t[t, d] == np.float32(np.float32(isum) * tern.scale) * xs1[t, 0]
