"""The L98M (version 3) writer header: packed bytes, tensor offsets, and the Llama 3.2 1B cost figures."""

from __future__ import annotations

import struct

from harness.formats.checkpoint import HEADER_BYTES, RopeScaling, parse_header
from harness.formats.l98m import LLAMA32_1B, L98Header, cost_per_token, kv_cache_bytes

SMALL = L98Header(64, 172, 2, 8, 4, 512, 128, False, 500000.0, 1e-5, RopeScaling(8.0, 1.0, 4.0, 64))


def test_pack_is_256_bytes_that_the_reader_parses_back() -> None:
    head = SMALL.pack()
    assert len(head) == HEADER_BYTES == 256
    assert head[:4] == b"L98M"
    assert struct.unpack_from("<i", head, 4)[0] == 3
    parsed = parse_header(head, SMALL.offsets()[1], "small.bin")
    config = parsed.config
    assert (config.dim, config.hidden_dim, config.n_layers, config.n_heads, config.n_kv_heads, config.vocab_size,
            config.seq_len, config.shared_classifier) == (64, 172, 2, 8, 4, 512, 128, False)
    assert config.rope_scaling == SMALL.scaling
    assert config.rope_theta == 500000.0


def test_offsets_are_contiguous_in_file_order_and_end_at_the_file_size() -> None:
    offsets, size = SMALL.offsets()
    names = list(offsets)
    assert names[0] == "embedding" and names[-1] == "classifier"
    assert names[1:10] == [f"layers.0.{name}" for name in ("rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1",
                                                               "w2", "w3")]
    shapes = SMALL.shapes()
    for current, following in zip(names, names[1:]):
        count = 1
        for n in shapes[current]:
            count *= n
        assert offsets[following] == offsets[current] + 4 * count
    assert offsets["embedding"] == HEADER_BYTES
    last = shapes["classifier"]
    assert size == offsets["classifier"] + 4 * last[0] * last[1]


def test_a_shared_classifier_is_not_stored() -> None:
    shared = L98Header(64, 172, 2, 8, 4, 512, 128, True, 10000.0, 1e-5)
    assert "classifier" not in shared.shapes()
    assert shared.offsets()[1] == SMALL.offsets()[1] - 4 * 512 * 64


def test_llama32_1b_cost_figures() -> None:
    """The figures FORMATS.md quotes: about 1.24 G multiply-adds and 4.6 GiB of float32 weights per token."""
    macs, weight_bytes = cost_per_token(LLAMA32_1B, 255)
    matrices = 16 * (2 * 2048 * 2048 + 2 * 512 * 2048 + 3 * 8192 * 2048) + 128256 * 2048
    assert macs == matrices + 16 * 2 * 2048 * 256
    assert weight_bytes == 4 * matrices
    assert kv_cache_bytes(LLAMA32_1B, 256) == 2 * 16 * 256 * 512 * 4 == 16 * 2**20
