"""Generated models of every shape (GQA, multi-query, unshared classifier, odd hidden size, one head, vocab 32000):
the native, -m32 x87 and sanitizer builds all run them and print the same bytes, and the report shows the shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.models.modelgen import LARGE_SHAPES, SHAPES, cached_checkpoint, cached_tokenizer
from tests.support.port_helpers import asan_bin, fixture, native_bin, parse_report, run_port, tiny686_bin  # noqa: F401

SHAPE_NAMES = [name for name in SHAPES if name not in LARGE_SHAPES]
RUNS = {
    "greedy-full": ["-t", "0", "-n", "0"],
    "sampled-prompt": ["-t", "1.0", "-p", "0.9", "-s", "17", "-n", "60", "-i", "Once upon a time"],
    "multinomial": ["-t", "0.7", "-p", "1", "-s", "5", "-n", "60"],
}


def _model_args(name: str) -> list[str]:
    shape = SHAPES[name]
    tokenizer = fixture("tokenizer.bin") if shape.vocab_size == 32000 else cached_tokenizer(shape.vocab_size)
    return [str(cached_checkpoint(name)), "-z", str(tokenizer)]


@pytest.mark.parametrize("run", sorted(RUNS))
@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shapes_native_equals_tiny686(name: str, run: str, native_bin: Path, tiny686_bin: Path) -> None:  # noqa: F811
    args = [*_model_args(name), *RUNS[run]]
    native = run_port(native_bin, args)
    m32 = run_port(tiny686_bin, args)
    assert native.returncode == 0, native.stderr
    assert m32.returncode == 0, m32.stderr
    assert len(native.stdout) > 1
    assert native.stdout == m32.stdout


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_shapes_under_sanitizers_and_report_fields(name: str, asan_bin: Path) -> None:  # noqa: F811
    shape = SHAPES[name]
    result = run_port(asan_bin, [*_model_args(name), *RUNS["sampled-prompt"], "-r", "-"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"AddressSanitizer" not in result.stderr and b"runtime error" not in result.stderr
    text = result.stdout.decode(errors="replace")
    report = parse_report(text[text.index("llama98 report 1\n"):])
    model = report.records["model"]
    assert (int(model["dim"]), int(model["hidden"]), int(model["layers"]), int(model["heads"]),
            int(model["kv_heads"]), int(model["vocab"]), int(model["seq_len"]), model["shared"]) == (
        shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.vocab_size,
        shape.seq_len, "1" if shape.shared_classifier else "0")
    assert report.done is not None and int(report.done["tokens"]) == len(report.tokens) >= 1
