"""Checkpoint headers from real bytes: every version the writers make parses to the config they were given, the
size a header implies is the size they wrote, and every impossible header is one CheckpointError line."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.formats.checkpoint import (
    HEADER_BYTES,
    L98M_VERSION,
    Q8_VERSION,
    TERNARY_VERSION,
    CheckpointError,
    CheckpointHeader,
    ModelConfig,
    RopeScaling,
    check_file_size,
    expected_file_size,
    pack_header,
    parse_header,
)
from harness.formats.l98m import LLAMA32_1B, L98Header
from harness.formats.parts import logical_size, read_head
from harness.models.modelgen import SHAPES, ModelShape, write_checkpoint
from harness.models.quantize import quantize_file, write_ternary_model
from tests.support.port_helpers import fixture

TERNARY_SHAPE = ModelShape(64, 172, 2, 8, 2, 512, 32, shared_classifier=False)
TIED_V3 = L98Header(64, 128, 2, 8, 2, 300, 131072, True, 500000.0, 1e-5, RopeScaling(32.0, 1.0, 4.0, 8192))
UNTIED_V3 = L98Header(48, 96, 3, 4, 4, 260, 512, False, 10000.0, 1e-6)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints of every version, written by the harness's own writers."""
    base = tmp_path_factory.mktemp("checkpoints")
    out = {
        "v0-unshared": write_checkpoint(base / "v0.bin", SHAPES["unshared-512"], seed=1, version=0),
        "v1-shared": write_checkpoint(base / "v1.bin", SHAPES["gqa-512"], seed=2, version=1),
        "v1-unshared": write_checkpoint(base / "v1u.bin", SHAPES["unshared-512"], seed=3, version=1),
    }
    out["q8_0"] = quantize_file(out["v1-shared"], base / "q8.bin", "q8_0")
    out["ternary"] = quantize_file(out["v1-shared"], base / "t.bin", "ternary")
    out["ternary-bitnet"] = write_ternary_model(base / "tb.bin", TERNARY_SHAPE, seed=4, ffn="relu2", sub_norms=True,
                                                int8_classifier=True)
    return out


def parsed(path: Path) -> CheckpointHeader:
    return parse_header(read_head(path, HEADER_BYTES), logical_size(path), path)


def dims(c: ModelConfig) -> tuple[int, ...]:
    return c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.seq_len


def test_stories260k_is_a_v0_file() -> None:
    path = fixture("stories260K.bin")
    header = parsed(path)
    assert (header.version, header.header_bytes) == (0, 28)
    assert dims(header.config) == (64, 172, 5, 8, 4, 512, 512) and header.config.shared_classifier
    assert check_file_size(header, path.stat().st_size, path) == path.stat().st_size


@pytest.mark.parametrize("name, version, header_bytes, shape", [
    ("v0-unshared", 0, 28, SHAPES["unshared-512"]),
    ("v1-shared", 1, 256, SHAPES["gqa-512"]),
    ("v1-unshared", 1, 256, SHAPES["unshared-512"]),
])
def test_float_files_parse_to_their_shape(files: dict[str, Path], name: str, version: int, header_bytes: int,
                                          shape: ModelShape) -> None:
    header = parsed(files[name])
    assert (header.version, header.header_bytes) == (version, header_bytes)
    assert dims(header.config) == dims(shape)
    assert header.config.shared_classifier == shape.shared_classifier
    assert header.config.weight_type == "fp32" and header.config.rope_scaling is None
    assert expected_file_size(header) == files[name].stat().st_size


def test_quantized_files_carry_their_flags(files: dict[str, Path]) -> None:
    q8 = parsed(files["q8_0"])
    assert (q8.version, q8.config.weight_type, q8.config.classifier_type, q8.config.group_size) == (
        Q8_VERSION, "q8_0", "q8_0", 4)  # the largest group up to 64 dividing dim 64 and hidden 172
    ternary = parsed(files["ternary"])
    assert (ternary.version, ternary.config.weight_type, ternary.config.ffn, ternary.config.sub_norms) == (
        TERNARY_VERSION, "ternary", "silu", False)
    assert ternary.config.shared_classifier and ternary.config.classifier_type == "fp32"
    bitnet = parsed(files["ternary-bitnet"])
    assert dims(bitnet.config) == dims(TERNARY_SHAPE)
    assert (bitnet.config.ffn, bitnet.config.sub_norms, bitnet.config.classifier_type) == ("relu2", True, "q8_0")
    assert not bitnet.config.shared_classifier
    for name in ("q8_0", "ternary", "ternary-bitnet"):
        header = parsed(files[name])
        assert check_file_size(header, files[name].stat().st_size, name) == files[name].stat().st_size


@pytest.mark.parametrize("written", [TIED_V3, UNTIED_V3, LLAMA32_1B])
def test_the_l98m_writer_and_reader_agree(written: L98Header) -> None:
    header = parse_header(written.pack(), written.offsets()[1], "m.bin")
    c = header.config
    assert (header.version, header.header_bytes) == (L98M_VERSION, HEADER_BYTES)
    assert dims(c) == (written.dim, written.hidden_dim, written.n_layers, written.n_heads, written.n_kv_heads,
                       written.vocab_size, written.seq_len)
    assert c.shared_classifier == written.shared_classifier
    assert (c.rope_theta, c.norm_eps) == (float(np.float32(written.rope_theta)), float(np.float32(written.norm_eps)))
    assert c.rope_scaling == written.scaling  # one RopeScaling type, written and read
    assert expected_file_size(header) == written.offsets()[1]


def one_line(head: bytes, needle: str, file_size: int | None = None) -> str:
    with pytest.raises(CheckpointError) as info:
        header = parse_header(head, len(head) if file_size is None else file_size, "m.bin")
        check_file_size(header, len(head) if file_size is None else file_size, "m.bin")
    message = str(info.value)
    assert "\n" not in message and message.startswith("m.bin: "), message
    assert needle in message, message
    return message


def patched(head: bytes, offset: int, fmt: str, *values: object) -> bytes:
    out = bytearray(head)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


def test_impossible_llama2c_headers(files: dict[str, Path]) -> None:
    v1 = read_head(files["v1-shared"], HEADER_BYTES)
    v0 = read_head(files["v0-unshared"], HEADER_BYTES)
    one_line(b"\1\2\3", "3 bytes is too short for a llama2.c checkpoint header")
    one_line(v1[:100], "v1 checkpoint is 100 bytes, shorter than its 256-byte header")
    one_line(patched(v1, 4, "<i", 5), "llama2.c checkpoint version 5 is not supported")
    one_line(patched(v1, 36, "<B", 7), "v1 shared-classifier flag is 7, expected 0 or 1")
    one_line(patched(v0, 12, "<i", 0), "impossible checkpoint header field n_heads=0")
    one_line(patched(v1, 8, "<i", 1 << 30), "impossible checkpoint header field dim=1073741824")
    one_line(patched(v1, 8, "<i", 66), "dim=66 is not divisible by n_heads=8")
    one_line(patched(v1, 24, "<i", 3), "n_heads=8 is not divisible by n_kv_heads=3")
    one_line(patched(v1, 8, "<i", 24), "head size 3 is odd; RoPE needs pairs")


def test_impossible_quantized_headers(files: dict[str, Path]) -> None:
    q8 = read_head(files["q8_0"], HEADER_BYTES)
    ternary = read_head(files["ternary"], HEADER_BYTES)
    bitnet = read_head(files["ternary-bitnet"], HEADER_BYTES)
    one_line(patched(q8, 36, "<B", 2), "shared-classifier byte is 2, expected 0 or 1")
    one_line(patched(q8, 37, "<i", 0), "group size 0 must be positive")
    one_line(patched(q8, 37, "<i", 8), "group size 8 does not divide hidden_dim 172")
    one_line(patched(ternary, 37, "<B", 1), "weight type 1 is not supported in version 98 (2 = ternary)")
    one_line(patched(ternary, 38, "<B", 2), "bad version 98 flags ffn=2 sub_norms=0 classifier=0")
    one_line(patched(bitnet, 36, "<B", 1), "an int8 classifier is stored on its own, the shared byte must be 0")
    one_line(patched(ternary, 100, "<B", 1), "reserved header bytes 41..255 must be zero")
    one_line(patched(patched(ternary, 8, "<i", 80), 12, "<i", 170), "dim 80 and hidden_dim 170 must be multiples")


def test_impossible_l98m_headers() -> None:
    v3 = TIED_V3.pack()
    one_line(v3[:100], "v3 checkpoint is 100 bytes, shorter than its 256-byte header")
    one_line(patched(v3, 4, "<i", 4), "L98M checkpoint version 4 is not supported (only 3)")
    one_line(patched(v3, 36, "<i", 1), "weight type 1 is not supported (only 0 = float32)")
    one_line(patched(v3, 40, "<i", 3), "unknown flags or non-zero reserved header bytes")
    one_line(patched(v3, 200, "<B", 9), "unknown flags or non-zero reserved header bytes")
    one_line(patched(v3, 44, "<f", 0.0), "impossible rope_theta=0.0")
    one_line(patched(v3, 48, "<f", 1.5), "norm_eps=1.5")
    one_line(patched(v3, 52, "<i", 7), "rope scaling type 7 is not supported (0 none, 1 llama3)")
    one_line(patched(UNTIED_V3.pack(), 56, "<f", 2.0), "rope scaling type 0 is not supported")
    one_line(patched(v3, 60, "<f", 8.0), "impossible llama3 rope scaling factor=32.0 low=8.0 high=4.0")
    one_line(patched(v3, 8, "<i", 66), "dim=66 is not divisible by n_heads=8")  # dimensions are checked as well


def test_a_size_other_than_the_header_implies(files: dict[str, Path]) -> None:
    v1 = files["v1-shared"]
    size = v1.stat().st_size
    head = read_head(v1, HEADER_BYTES)
    assert "shorter than the" in one_line(head, f"checkpoint is {size - 4} bytes", size - 4)
    assert f"longer than the {size} its v1 header (dim=64" in one_line(head, "", size + 4)
    q8 = files["q8_0"]
    assert "shorter (truncated?)" in one_line(read_head(q8, HEADER_BYTES), "v2 header", q8.stat().st_size - 1)
    assert "longer than" in one_line(TIED_V3.pack(), "v3 header", TIED_V3.offsets()[1] + 1)


def test_a_checkpoint_error_is_a_one_line_harness_error() -> None:
    """The CLI and the pytest plugin print a HarnessError as one line instead of a traceback."""
    assert issubclass(CheckpointError, HarnessError)


BASE = ModelConfig(64, 172, 2, 8, 2, 512, 32, shared_classifier=True)
PACKED = {
    "v0-shared": (0, BASE),
    "v0-unshared": (0, replace(BASE, shared_classifier=False)),
    "v1-shared": (1, BASE),
    "v1-unshared": (1, replace(BASE, shared_classifier=False)),
    "v2": (Q8_VERSION, replace(BASE, weight_type="q8_0", group_size=4, classifier_type="q8_0")),
    "v2-unshared": (Q8_VERSION, replace(BASE, shared_classifier=False, weight_type="q8_0", group_size=4,
                                        classifier_type="q8_0")),
    "98": (TERNARY_VERSION, replace(BASE, weight_type="ternary", group_size=64)),
    "98-bitnet": (TERNARY_VERSION, replace(BASE, shared_classifier=False, weight_type="ternary", group_size=64,
                                           ffn="relu2", sub_norms=True, classifier_type="q8_0")),
}


@pytest.mark.parametrize("name", sorted(PACKED))
def test_pack_header_is_the_inverse_of_parse_header(name: str) -> None:
    version, config = PACKED[name]
    head = pack_header(version, config)
    header = CheckpointHeader(version, len(head), config)
    assert len(head) == (28 if version == 0 else HEADER_BYTES)
    assert parse_header(head, expected_file_size(header), "m.bin") == header


def test_pack_header_refuses_what_no_llama2c_header_holds() -> None:
    with pytest.raises(CheckpointError, match="version 3 has no ak42 or v0 header"):
        pack_header(L98M_VERSION, BASE)
    with pytest.raises(CheckpointError, match="no code for ffn=gelu"):
        pack_header(TERNARY_VERSION, replace(BASE, ffn="gelu"))
