"""Generated checkpoints and tokenizers: right sizes, deterministic, cached, loadable, not degenerate."""

from __future__ import annotations

import struct

import pytest

from harness.oracle import generate, load_checkpoint, load_tokenizer
from harness.port.modelgen import (
    SHAPES,
    ModelGenError,
    ModelShape,
    cached_checkpoint,
    cached_tokenizer,
    tokenizer_pieces,
    write_checkpoint,
    write_tokenizer,
)


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


@pytest.mark.parametrize("name", [n for n in SHAPES if n != "15M-shape"])
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
