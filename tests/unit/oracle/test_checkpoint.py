"""Checkpoint reading (the harness.oracle.checkpoint package): v0 and v1 agree, every version loads through the one
dispatch, bad files are one-line errors, batched and stepwise forward agree."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from harness.formats.checkpoint import L98M_VERSION, Q8_VERSION, TERNARY_VERSION, CheckpointError, RopeScaling
from harness.formats.l98m import L98Header
from harness.models.downloads import FixtureError, resolve
from harness.models.modelgen import SHAPES, ModelShape, write_checkpoint
from harness.models.quantize import quantize_file
from harness.oracle.checkpoint import READERS, Checkpoint, Weights, load_checkpoint
from harness.oracle.model import Transformer
from harness.oracle.quant import Q8Tensor, TernaryTensor

SMALL = ["gqa-512", "unshared-512", "odd-hidden-mqa", "single-head-400"]


@pytest.mark.parametrize("name", SMALL)
def test_v0_and_v1_give_identical_logits(tmp_path, name):
    shape = SHAPES[name]
    v0 = load_checkpoint(write_checkpoint(tmp_path / "v0.bin", shape, seed=3, version=0))
    v1 = load_checkpoint(write_checkpoint(tmp_path / "v1.bin", shape, seed=3, version=1))
    assert (v0.version, v1.version) == (0, 1)
    assert v0.config == v1.config
    tokens = [1, 5, 299, 42, 7, 260, 99]
    a = Transformer(v0).logits_for_sequence(tokens)
    b = Transformer(v1).logits_for_sequence(tokens)
    assert a.shape == (len(tokens), shape.vocab_size)
    assert np.array_equal(a, b)


def test_unshared_classifier_is_read_from_the_end(tmp_path):
    shape = SHAPES["unshared-512"]
    path = write_checkpoint(tmp_path / "u.bin", shape, seed=1)
    (vocab_field,) = struct.unpack_from("<i", path.read_bytes(), 20)
    assert vocab_field == -512
    ckpt = load_checkpoint(path)
    assert not ckpt.config.shared_classifier
    tail = np.frombuffer(path.read_bytes()[-512 * shape.dim * 4 :], dtype="<f4").reshape(512, shape.dim)
    assert np.array_equal(ckpt.weights.classifier, tail)
    assert not np.array_equal(ckpt.weights.classifier, ckpt.weights.token_embedding)


def test_batched_forward_matches_stepwise(tmp_path):
    ckpt = load_checkpoint(write_checkpoint(tmp_path / "m.bin", SHAPES["gqa-512"], seed=2))
    model = Transformer(ckpt)
    tokens = [1, 17, 280, 300, 3, 511, 42, 42]
    batched = model.logits_for_sequence(tokens)
    cache = model.new_cache()
    stepwise = np.stack([model.step(t, pos, cache) for pos, t in enumerate(tokens)])
    np.testing.assert_allclose(batched, stepwise, rtol=0, atol=1e-4)


def test_stories260k_header():
    try:
        path = resolve("stories260K.bin", allow_download=False)
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")
    c = load_checkpoint(path).config
    assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len) == (
        64, 172, 5, 8, 4, 512, 512)
    assert c.shared_classifier


def one_line_error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    return message


def test_truncated_and_padded_files_are_rejected(tmp_path):
    good = write_checkpoint(tmp_path / "good.bin", SHAPES["odd-hidden-mqa"], seed=0).read_bytes()
    (tmp_path / "short.bin").write_bytes(good[:-4])
    (tmp_path / "long.bin").write_bytes(good + b"\0\0\0\0")
    assert "shorter" in one_line_error(tmp_path / "short.bin")
    assert "longer" in one_line_error(tmp_path / "long.bin")


def test_garbage_and_impossible_headers_are_rejected(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "garbage.bin").write_bytes(rng.bytes(4096))
    one_line_error(tmp_path / "garbage.bin")
    (tmp_path / "tiny.bin").write_bytes(b"\1\2\3")
    assert "too short" in one_line_error(tmp_path / "tiny.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    one_line_error(tmp_path / "empty.bin")
    cases = {
        "zero_heads.bin": (64, 172, 2, 0, 1, 512, 16),
        "indivisible.bin": (66, 172, 2, 4, 4, 512, 16),
        "kv.bin": (64, 172, 2, 8, 3, 512, 16),
        "negative.bin": (64, -1, 2, 8, 4, 512, 16),
        "huge.bin": (1 << 30, 172, 2, 8, 4, 512, 16),
    }
    for name, fields in cases.items():
        (tmp_path / name).write_bytes(struct.pack("<7i", *fields) + b"\0" * 64)
        one_line_error(tmp_path / name)


def test_v1_with_other_version_or_flag_is_rejected(tmp_path):
    shape = SHAPES["odd-hidden-mqa"]
    good = bytearray(write_checkpoint(tmp_path / "v1.bin", shape, seed=0, version=1).read_bytes())
    version3 = bytearray(good)
    struct.pack_into("<i", version3, 4, 3)  # 3 is L98M's version, not an ak42 one
    (tmp_path / "v3.bin").write_bytes(bytes(version3))
    assert "version 3 is not supported" in one_line_error(tmp_path / "v3.bin")
    bad_flag = bytearray(good)
    bad_flag[36] = 7
    (tmp_path / "flag.bin").write_bytes(bytes(bad_flag))
    assert "flag" in one_line_error(tmp_path / "flag.bin")


def test_missing_file_and_directory(tmp_path):
    assert "not found" in one_line_error(tmp_path / "nope.bin")
    (tmp_path / "dir.bin").mkdir()
    one_line_error(tmp_path / "dir.bin")


def test_file_size_formula_matches_shape(tmp_path):
    shape = ModelShape(32, 50, 2, 4, 2, 300, 10, shared_classifier=False)
    path = write_checkpoint(tmp_path / "f.bin", shape, seed=0)
    d, h, l, v, kv, hs = 32, 50, 2, 300, 16, 8
    floats = v * d + l * d + l * d * d + 2 * l * d * kv + l * d * d + l * d + 3 * l * d * h + d + 10 * hs + v * d
    assert path.stat().st_size == 28 + 4 * floats
    assert load_checkpoint(path).file_size == path.stat().st_size


def test_every_version_has_a_reader() -> None:
    assert sorted(READERS) == sorted([0, 1, Q8_VERSION, TERNARY_VERSION, L98M_VERSION])


def test_quantized_files_load_through_the_package(tmp_path):
    float_path = write_checkpoint(tmp_path / "f.bin", SHAPES["gqa-512"], seed=4, version=1)
    q8 = load_checkpoint(quantize_file(float_path, tmp_path / "q8.bin", "q8_0"))
    ternary = load_checkpoint(quantize_file(float_path, tmp_path / "t.bin", "ternary", int8_classifier=True))
    assert isinstance(q8, Checkpoint) and isinstance(q8.weights, Weights)
    assert (q8.version, ternary.version) == (Q8_VERSION, TERNARY_VERSION)
    assert isinstance(q8.weights.wq[0], Q8Tensor) and isinstance(q8.weights.classifier, Q8Tensor)
    assert isinstance(ternary.weights.w2[1], TernaryTensor) and isinstance(ternary.weights.classifier, Q8Tensor)
    assert len(ternary.weights.wk) == SHAPES["gqa-512"].n_layers


def test_a_v3_file_is_read_as_strided_layer_views(tmp_path):
    """Every float of a v3 file is a distinct value, so each tensor view can be checked against its offset."""
    header = L98Header(32, 48, 2, 4, 2, 260, 64, False, 500000.0, 1e-5, RopeScaling(8.0, 1.0, 4.0, 32))
    offsets, size = header.offsets()
    floats = np.arange((size - 256) // 4, dtype="<f4")
    path = tmp_path / "v3.bin"
    path.write_bytes(header.pack() + floats.tobytes())
    ckpt = load_checkpoint(path)
    assert ckpt.version == L98M_VERSION and ckpt.config.rope_scaling == header.scaling
    w, shapes = ckpt.weights, header.shapes()
    for layer in range(2):
        for name in ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3"):
            key = f"layers.{layer}.{name}"
            start = (offsets[key] - 256) // 4
            expected = floats[start:start + int(np.prod(shapes[key]))].reshape(shapes[key])
            assert np.array_equal(getattr(w, name)[layer], expected), key
    assert w.classifier[0, 0] == (offsets["classifier"] - 256) // 4
    assert w.rms_final[0] == (offsets["rms_final"] - 256) // 4
