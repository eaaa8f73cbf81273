"""Generated checkpoints and tokenizers: right sizes, deterministic, cached, loadable, not degenerate."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest

from harness.models import modelgen
from harness.models.modelgen import (
    SHAPES,
    ModelGenError,
    ModelShape,
    cached_checkpoint,
    cached_tokenizer,
    random_weights,
    tokenizer_pieces,
    write_checkpoint,
    write_tokenizer,
)
from harness.models.names import split_quant
from harness.models.quantize import quantize_file
from harness.oracle import generate, load_checkpoint, load_tokenizer


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA98_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def test_shapes_cover_the_issue():
    shapes = list(SHAPES.values())
    assert SHAPES["15M-shape"] == ModelShape(288, 768, 6, 6, 6, 32000, 256)
    assert any(s.n_kv_heads < s.n_heads for s in shapes)
    assert any(not s.shared_classifier for s in shapes)
    assert any(s.hidden_dim % 2 for s in shapes)
    assert any(s.vocab_size == 512 for s in shapes)
    assert len(shapes) >= 5


LARGE_SHAPES = ("15M-shape", "110M-shape", "1B-shape")  # tested on their own (sizes, streaming)


@pytest.mark.parametrize("name", [n for n in SHAPES if n not in LARGE_SHAPES])
def test_every_shape_writes_a_checkpoint_the_oracle_reads(tmp_path, name):
    shape = SHAPES[name]
    for version in (0, 1):
        ckpt = load_checkpoint(write_checkpoint(tmp_path / f"{name}-{version}.bin", shape, seed=1, version=version))
        c = ckpt.config
        assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len,
                c.shared_classifier) == (shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads,
                                         shape.n_kv_heads, shape.vocab_size, shape.seq_len, shape.shared_classifier)


def test_15m_shape_has_the_real_models_size(private_cache):
    # stories15M.bin is 60,816,028 bytes; a v0 file of the same shape must be byte-for-byte as large
    assert cached_checkpoint("15M-shape").stat().st_size == 60816028


def _in_memory_reference(shape, seed, version):
    """The file as the generator wrote it before it streamed: every tensor from random_weights, concatenated."""
    w = random_weights(shape, seed)
    fields = [shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.vocab_size,
              shape.seq_len]
    if version == 0:
        fields[5] = fields[5] if shape.shared_classifier else -fields[5]
        hs = shape.head_size
        freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2)[: hs // 2] / hs))
        angles = np.outer(np.arange(shape.seq_len), freqs)
        parts = [struct.pack("<7i", *fields)] + [w[k] for k in ("embedding", "rms_att", "wq", "wk", "wv", "wo",
                                                                  "rms_ffn", "w1", "w2", "w3", "rms_final")]
        parts += [np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)]
    else:
        header = struct.pack("<Ii7iB", 0x616B3432, 1, *fields, int(shape.shared_classifier))
        parts = [header + bytes(256 - len(header))] + [w[k] for k in ("rms_att", "rms_ffn", "rms_final",
                                                                       "embedding", "wq", "wk", "wv", "wo", "w1",
                                                                       "w2", "w3")]
    if not shape.shared_classifier:
        parts.append(w["classifier"])
    return b"".join(p if isinstance(p, bytes) else np.ascontiguousarray(p, "<f4").tobytes() for p in parts)


@pytest.mark.parametrize("name", [n for n in SHAPES if n not in LARGE_SHAPES])
def test_streamed_files_equal_the_in_memory_weights(tmp_path, monkeypatch, name):
    """Blocks small enough that every tensor is split: the bytes must not depend on how the draws are split."""
    monkeypatch.setattr(modelgen, "STREAM_BLOCK_FLOATS", 1000)
    for version in (0, 1):
        path = write_checkpoint(tmp_path / f"{version}.bin", SHAPES[name], seed=3, version=version)
        assert path.read_bytes() == _in_memory_reference(SHAPES[name], 3, version)


def test_the_110m_shape_is_written_in_bounded_memory(tmp_path):
    shape = SHAPES["110M-shape"]
    assert (shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.vocab_size) == \
        (768, 2048, 12, 12, 12, 32000)
    tracemalloc.start()
    try:
        path = write_checkpoint(tmp_path / "110M.bin", shape, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        size = path.stat().st_size
        assert 430e6 < size < 450e6 and peak < 48 * 2**20, (size, peak)  # numpy reports to tracemalloc
        c = load_checkpoint(path).config
        assert size == 28 + 4 * c.weight_floats(0)
        q8 = quantize_file(path, tmp_path / "110M-q8_0.bin", "q8_0")  # what the :q8_0 suffix does to it
        assert load_checkpoint(q8).config.weight_type == "q8_0" and q8.stat().st_size < size / 3
    finally:
        for leftover in tmp_path.glob("110M*.bin"):
            leftover.unlink()


def test_the_1b_shape_is_llama_3_2_1b_and_larger_than_fat32_allows_unquantized():
    shape = SHAPES["1B-shape"]
    assert (shape.dim, shape.hidden_dim, shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.vocab_size,
            shape.shared_classifier) == (2048, 8192, 16, 32, 8, 128256, True)
    fp32_bytes = 28 + 4 * shape.weight_floats(0)
    assert 4.9e9 < fp32_bytes < 5.1e9 and fp32_bytes > 4 * 2**30
    assert split_quant("1B-shape:q8_0") == ("1B-shape", "q8_0")
    assert split_quant("110M-shape:ternary") == ("110M-shape", "ternary")


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    shape = SHAPES["odd-hidden-mqa"]
    a = write_checkpoint(tmp_path / "a.bin", shape, seed=5).read_bytes()
    b = write_checkpoint(tmp_path / "b.bin", shape, seed=5).read_bytes()
    c = write_checkpoint(tmp_path / "c.bin", shape, seed=6).read_bytes()
    assert a == b and a != c
    assert a[:28] == c[:28]  # same header


def test_cached_checkpoint_builds_once(private_cache):
    first = cached_checkpoint("gqa-512", seed=2)
    stamp = first.stat().st_mtime_ns
    again = cached_checkpoint(SHAPES["gqa-512"], seed=2)
    assert again == first and again.stat().st_mtime_ns == stamp
    assert first.parent == private_cache
    assert cached_checkpoint("gqa-512", seed=3) != first
    assert [p.name for p in private_cache.iterdir() if p.name.startswith(".")] == []


def test_bad_shapes_are_refused(tmp_path):
    with pytest.raises(ModelGenError):
        write_checkpoint(tmp_path / "x.bin", ModelShape(30, 60, 1, 4, 4, 512, 8), seed=0)
    with pytest.raises(ModelGenError):
        write_checkpoint(tmp_path / "x.bin", ModelShape(32, 60, 1, 4, 4, 100, 8), seed=0)
    with pytest.raises(ModelGenError, match="unknown model shape"):
        cached_checkpoint("no-such-shape")


@pytest.mark.parametrize("vocab_size", [260, 300, 400, 2000])
def test_generated_tokenizer_is_valid(tmp_path, vocab_size):
    path = write_tokenizer(tmp_path / "t.bin", vocab_size, seed=4)
    tok = load_tokenizer(path, vocab_size)
    data = path.read_bytes()
    assert struct.unpack_from("<i", data, 0)[0] == max(len(p) for p in tok.pieces)
    assert len(set(tok.pieces)) == vocab_size
    assert tok.pieces[1] == b"\n<s>\n" and tok.pieces[3] == b"<0x00>" and tok.pieces[258] == b"<0xFF>"
    assert all(not p.startswith(b"<0x") for p in tok.pieces[259:])
    assert tok.lookup(b" ") == 259
    text = b"the cat sat"
    ids = tok.encode(text)
    assert tok.decode_sequence(ids[1:], first_prev=1) == text
    assert tokenizer_pieces(vocab_size, 4) == tokenizer_pieces(vocab_size, 4)


@pytest.mark.parametrize("name", ["gqa-512", "unshared-512", "gqa-unshared-32000", "single-head-400"])
def test_generated_models_are_not_degenerate(private_cache, name):
    shape = SHAPES[name]
    model, tok = cached_checkpoint(name), cached_tokenizer(shape.vocab_size)
    greedy = generate(model, tok, temperature=0.0, seed=1, steps=40)
    sampled = generate(model, tok, temperature=1.0, topp=0.9, seed=1, steps=40)
    assert len(set(greedy.token_ids)) >= 8, greedy.text
    assert len(set(sampled.token_ids)) >= 8, sampled.text
    assert greedy.token_ids != sampled.token_ids
