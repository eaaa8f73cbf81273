"""weight_bytes_per_token for float32, Q8_0 and ternary files, with a shared or a separate classifier, against two
counts made here from the raw file: one from the header fields and the formats' definitions (FORMATS.md), and
one from the file's size (a token reads every weight of the file once, except that the embedding table gives
one row and a shared classifier reads the whole embedding table again)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.models.modelgen import SHAPES, write_checkpoint
from harness.models.quantize import quantize_file, write_ternary_model
from harness.models.traffic import weight_bytes_per_token
from harness.oracle.checkpoint import load_checkpoint
from tests.support.port_helpers import fixture


@dataclass(frozen=True)
class Header:
    version: int
    header_bytes: int
    dim: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    seq_len: int
    shared: bool
    group: int = 0  # v2
    sub_norms: bool = False  # 98
    int8_classifier: bool = False  # 98

    @property
    def kv_dim(self) -> int:
        return self.dim * self.kv_heads // self.heads

    def matrices(self) -> list[tuple[int, int]]:
        """(rows, cols) of the seven matrices of one layer."""
        d, h, kv = self.dim, self.hidden, self.kv_dim
        return [(d, d), (kv, d), (kv, d), (d, d), (h, d), (d, h), (h, d)]


def read_header(path: Path) -> Header:
    head = path.read_bytes()[:256]
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic != 0x616B3432:
        fields = struct.unpack_from("<7i", head, 0)
        return Header(0, 28, *fields[:5], abs(fields[5]), fields[6], shared=fields[5] > 0)
    (version,) = struct.unpack_from("<i", head, 4)
    fields = struct.unpack_from("<7i", head, 8)
    header = Header(version, 256, *fields, shared=bool(head[36]))
    if version == 2:
        (group,) = struct.unpack_from("<i", head, 37)
        return Header(**{**header.__dict__, "group": group})
    if version == 98:
        assert head[37] == 2, "ternary weight type"
        return Header(**{**header.__dict__, "sub_norms": bool(head[39]), "int8_classifier": bool(head[40])})
    return header


def count_from_header(h: Header) -> float:
    """Bytes of weights one token's forward pass reads, from the definitions of each format."""
    norms = 4 * (2 * h.layers * h.dim + h.dim) + (4 * h.layers * (h.dim + h.hidden) if h.sub_norms else 0)
    if h.version == 2:  # Q8_0: int8 values + a float32 scale per group, embedding included
        per_value = 1 + 4 / h.group
        embedding_row = h.dim * per_value
        layers = h.layers * sum(r * c * per_value for r, c in h.matrices())
        classifier = h.vocab * h.dim * per_value
    elif h.version == 98:  # ternary: a float32 scale and 2 bits per weight; float32 embedding
        embedding_row = 4 * h.dim
        layers = h.layers * sum(4 + r * c / 4 for r, c in h.matrices())
        classifier = h.vocab * h.dim + 4 * h.vocab if h.int8_classifier else 4 * h.vocab * h.dim
    else:
        embedding_row = 4 * h.dim
        layers = h.layers * sum(4 * r * c for r, c in h.matrices())
        classifier = 4 * h.vocab * h.dim
    return embedding_row + norms + layers + classifier


def count_from_file_size(path: Path, h: Header) -> float:
    """The file minus what a token does not read: header, RoPE tables (v0), all embedding rows but one; plus the
    embedding table read again as a shared classifier."""
    embedding_table = h.vocab * h.dim * ((1 + 4 / h.group) if h.version == 2 else 4)
    size = path.stat().st_size - h.header_bytes - embedding_table * (h.vocab - 1) / h.vocab
    if h.version == 0:
        size -= 4 * h.seq_len * (h.dim // h.heads)  # two tables of seq_len * head_size / 2 floats
    if h.shared:
        size += embedding_table
    return size


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("traffic")
    stories = fixture("stories260K.bin")
    unshared = write_checkpoint(tmp / "unshared-v1.bin", SHAPES["unshared-512"], seed=1, version=1)
    return {
        "fp32 shared (v0)": stories,
        "fp32 separate (v0)": write_checkpoint(tmp / "unshared-v0.bin", SHAPES["unshared-512"], seed=1, version=0),
        "fp32 separate (v1)": unshared,
        "fp32 gqa shared (v1)": write_checkpoint(tmp / "gqa-v1.bin", SHAPES["gqa-512"], seed=2, version=1),
        "q8_0 shared": quantize_file(stories, tmp / "q8-shared.bin", "q8_0"),
        "q8_0 separate": quantize_file(unshared, tmp / "q8-separate.bin", "q8_0", group_size=8),
        "ternary int8 classifier": quantize_file(stories, tmp / "t-int8.bin", "ternary", int8_classifier=True),
        "ternary shared fp32 classifier": quantize_file(stories, tmp / "t-shared.bin", "ternary"),
        "ternary separate fp32 classifier": quantize_file(unshared, tmp / "t-separate.bin", "ternary"),
        "ternary sub-norms": write_ternary_model(tmp / "t-sub.bin", SHAPES["gqa-512"], seed=3, sub_norms=True),
    }


NAMES = ["fp32 shared (v0)", "fp32 separate (v0)", "fp32 separate (v1)", "fp32 gqa shared (v1)", "q8_0 shared",
         "q8_0 separate", "ternary int8 classifier", "ternary shared fp32 classifier",
         "ternary separate fp32 classifier", "ternary sub-norms"]


@pytest.mark.parametrize("name", NAMES)
def test_bytes_per_token_equals_the_count_from_the_header(models, name):
    path = models[name]
    header = read_header(path)
    got = weight_bytes_per_token(load_checkpoint(path).config)
    assert got == pytest.approx(count_from_header(header), rel=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_bytes_per_token_equals_the_file_less_what_a_token_does_not_read(models, name):
    path = models[name]
    got = weight_bytes_per_token(load_checkpoint(path).config)
    assert got == pytest.approx(count_from_file_size(path, read_header(path)), rel=1e-12)


def test_known_figures_for_stories260k(models):
    """stories260K: dim 64, hidden 172, 5 layers, 8 heads / 4 KV heads, vocab 512, shared classifier."""
    d, h, l, kv, v = 64, 172, 5, 32, 512
    weights = l * (2 * d * d + 2 * kv * d + 3 * h * d)
    norms = 2 * l * d + d
    fp32 = weight_bytes_per_token(load_checkpoint(models["fp32 shared (v0)"]).config)
    assert fp32 == 4 * (d + norms + weights + v * d)
    q8 = weight_bytes_per_token(load_checkpoint(models["q8_0 shared"]).config)
    assert read_header(models["q8_0 shared"]).group == 4  # the largest up to 64 dividing 64 and 172
    assert q8 == pytest.approx((d + weights + v * d) * (1 + 4 / 4) + 4 * norms)
    ternary = weight_bytes_per_token(load_checkpoint(models["ternary int8 classifier"]).config)
    assert ternary == pytest.approx(4 * d + 4 * norms + 7 * l * 4 + weights / 4 + v * d + 4 * v)
    assert ternary < q8 < fp32


def test_a_separate_classifier_costs_what_its_format_stores(models):
    """The classifier is read whole either way; its format decides the bytes: float32 4 per weight, the int8
    classifier one per weight plus a scale per row."""
    fp32_cls = weight_bytes_per_token(load_checkpoint(models["ternary shared fp32 classifier"]).config)
    int8_cls = weight_bytes_per_token(load_checkpoint(models["ternary int8 classifier"]).config)
    assert fp32_cls - int8_cls == pytest.approx(512 * 64 * 4 - (512 * 64 + 4 * 512))
