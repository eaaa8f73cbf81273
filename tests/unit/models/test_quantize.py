"""The quantizer: block by block it writes the bytes the whole-tensor algorithm wrote, in bounded memory; a group
size of 0 is refused like any other non-positive one; its files get a normal file's permissions."""

from __future__ import annotations

import os
import stat
import struct
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.formats.checkpoint import ModelConfig
from harness.models.modelgen import ModelShape, write_checkpoint
from harness.models.quantize import BLOCK_FLOATS, default_group_size, quantize_file
from harness.oracle.checkpoint import Weights, load_checkpoint
from harness.oracle.quant import Q8Tensor, pack_ternary, quantize_q80, quantize_ternary
from tests.support.port_helpers import fixture

# A shape with a big classifier and embedding (vocab 32000 x dim 288: 36 MB of float32 each, unshared) and one
# small layer, so the file is quick to generate and the two vocabulary tensors dominate whole-tensor memory.
BIG_VOCAB = ModelShape(288, 768, 1, 6, 6, 32000, 32, shared_classifier=False)


# --- the original whole-tensor algorithm (harness/models/quantize.py before it worked in blocks) -------------

def _header(version: int, config: ModelConfig, shared: bool, flags: bytes) -> bytes:
    fields = (config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads,
              config.vocab_size, config.seq_len)
    head = struct.pack("<Ii7iB", 0x616B3432, version, *fields, int(shared)) + flags
    return head + b"\0" * (256 - len(head))


def _f32(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def _q8(tensor: Q8Tensor) -> list[bytes]:
    return [np.ascontiguousarray(tensor.q, dtype="i1").tobytes(), _f32(tensor.s)]


def _layers(w: Weights) -> Iterable[np.ndarray]:
    for stack in (w.wq, w.wk, w.wv, w.wo, w.w1, w.w2, w.w3):
        yield from (np.asarray(m, dtype=np.float32) for m in stack)


def whole_q8_0(config: ModelConfig, w: Weights, group: int) -> Iterator[bytes]:
    shared = config.shared_classifier
    yield _header(2, config, shared, struct.pack("<i", group))
    yield _f32(w.rms_att)
    yield _f32(w.rms_ffn)
    yield _f32(w.rms_final)
    yield from _q8(quantize_q80(w.token_embedding, group))
    for matrix in _layers(w):
        yield from _q8(quantize_q80(matrix, group))
    if not shared:
        yield from _q8(quantize_q80(w.classifier, group))


def whole_ternary(config: ModelConfig, w: Weights, int8_classifier: bool) -> Iterator[bytes]:
    shared = config.shared_classifier and not int8_classifier
    yield _header(98, config, shared, bytes([2, 0, 0, int(int8_classifier)]))
    yield _f32(w.rms_att)
    yield _f32(w.rms_ffn)
    yield _f32(w.rms_final)
    yield _f32(w.token_embedding)
    for matrix in _layers(w):
        tensor = quantize_ternary(matrix)
        yield struct.pack("<f", float(tensor.scale)) + pack_ternary(tensor.t)
    if int8_classifier:
        yield from _q8(quantize_q80(w.classifier, config.dim))
    elif not shared:
        yield _f32(w.classifier)


def whole_tensor_bytes(src: Path, to: str, int8_classifier: bool = False, group: int | None = None) -> bytes:
    checkpoint = load_checkpoint(src)
    config, weights = checkpoint.config, checkpoint.weights
    if to == "q8_0":
        chosen = group or default_group_size(config.dim, config.hidden_dim)
        return b"".join(whole_q8_0(config, weights, chosen))
    return b"".join(whole_ternary(config, weights, int8_classifier))


# --- the tests ----------------------------------------------------------------------------------------------

CASES = [("q8_0", False, None), ("q8_0", False, 2), ("ternary", True, None), ("ternary", False, None)]


@pytest.mark.parametrize("block_floats", [BLOCK_FLOATS, 1], ids=["default-blocks", "smallest-blocks"])
@pytest.mark.parametrize(("to", "int8_classifier", "group"), CASES,
                         ids=["q8_0", "q8_0-group2", "ternary-int8-classifier", "ternary-fp32-classifier"])
def test_blocks_give_the_whole_tensor_bytes_on_stories260k(tmp_path: Path, to: str, int8_classifier: bool,
                                                           group: int | None, block_floats: int) -> None:
    """The smallest blocks (one numpy buffer, 8192 values) cut stories260K's embedding into four and its
    hidden-layer matrices into two, so a ternary scale really is summed over several blocks."""
    src = fixture("stories260K.bin")
    out = quantize_file(src, tmp_path / "out.bin", to, group, int8_classifier, block_floats=block_floats)
    assert out.read_bytes() == whole_tensor_bytes(src, to, int8_classifier, group)


@pytest.fixture(scope="module")
def big_vocab_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("big-vocab") / "model.bin", BIG_VOCAB, seed=3, version=1)


def _traced_peak(src: Path, out: Path, to: str, block_floats: int) -> int:
    tracemalloc.start()
    try:
        quantize_file(src, out, to, int8_classifier=True, block_floats=block_floats)
        return tracemalloc.get_traced_memory()[1]  # numpy reports its arrays to tracemalloc
    finally:
        tracemalloc.stop()


def _bound(block_floats: int, group: int) -> int:
    """What block-wise quantization may hold: six float32 copies of a block (quantize_q80's temporaries are
    |w|, w / scale, its rint and the np.where over it, at most three alive at once, plus the bytes handed to the
    writer), one tensor's scales (float32 per group, kept until the tensor ends) and 2 MiB of slack."""
    vocab_tensor = BIG_VOCAB.vocab_size * BIG_VOCAB.dim
    return 6 * 4 * block_floats + 2 * 4 * vocab_tensor // group + 2 * 2**20


@pytest.mark.parametrize("to", ["q8_0", "ternary"])
def test_peak_memory_is_bounded_by_the_block_not_the_tensor(big_vocab_model: Path, tmp_path: Path,
                                                             to: str) -> None:
    block_floats = 1 << 18  # 1 MiB of float32: the vocabulary tensors are 36 blocks each
    group = default_group_size(BIG_VOCAB.dim, BIG_VOCAB.hidden_dim) if to == "q8_0" else BIG_VOCAB.dim
    bound = _bound(block_floats, group)
    peak = _traced_peak(big_vocab_model, tmp_path / "blocks.bin", to, block_floats)
    assert peak < bound, f"{to}: peak {peak} bytes with blocks of {block_floats} floats, bound {bound}"
    # The same code with one block per tensor is the old whole-tensor quantization: it breaks the bound, so
    # the assertion above can fail, and the output is the same.
    whole = _traced_peak(big_vocab_model, tmp_path / "whole.bin", to, 1 << 30)
    assert whole > bound, f"{to}: whole tensors peaked at {whole} bytes only, bound {bound}"
    assert (tmp_path / "blocks.bin").read_bytes() == (tmp_path / "whole.bin").read_bytes()


@pytest.mark.parametrize("group", ["0", "-4"])
def test_cli_refuses_a_non_positive_group_size_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          group: str) -> None:
    out = tmp_path / "out.bin"
    code = main(["quantize", str(fixture("stories260K.bin")), str(out), "--to", "q8_0", "--group-size", group])
    captured = capsys.readouterr()
    assert code != 0
    assert captured.err == f"llama98-harness: error: group size {group} must be positive\n"
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_quantized_files_get_the_permissions_of_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        first = quantize_file(fixture("stories260K.bin"), tmp_path / "q8.bin", "q8_0")
        parts = quantize_file(fixture("stories260K.bin"), tmp_path / "t.bin", "ternary", part_bytes=64 * 1024)
    finally:
        os.umask(old)
    written = [first, *sorted(tmp_path.glob("t.*"))]
    assert len(written) > 2 and parts in written
    assert {stat.S_IMODE(path.stat().st_mode) for path in written} == {mode}
