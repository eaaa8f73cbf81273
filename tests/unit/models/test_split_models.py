"""Split checkpoints end to end on the host: every writer (modelgen, quantize, export) splits byte-exactly, the
oracle reads a split file as the same model (weights, logits, tokens, verify), and the harness counts every part
(workspace plan, run timeout). The stories260K fixture split into 100 kB parts is the real-model case."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.formats.checkpoint import CheckpointError
from harness.formats.parts import PART_LIMIT, logical_size, part_paths, part_sizes, plan_parts, write_parts
from harness.formats.report import parse_report
from harness.judge.verify import oracle_report_text, verify
from harness.models.downloads import FixtureError, resolve
from harness.models.export_hf import export
from harness.models.modelgen import SHAPES, ModelShape, _file_layout, write_checkpoint
from harness.models.names import ModelChoice
from harness.models.quantize import quantize_file
from harness.oracle.checkpoint import load_checkpoint
from harness.oracle.generate import Oracle, clamp_args
from harness.oracle.model import Transformer
from harness.run.session import run_timeout
from harness.run.timeouts import Calibration
from harness.run.workspace import run_files
from harness.vm.profile import load_profile
from tests.support.hf_llama import make_hf_dir

SMALL = ModelShape(32, 64, 2, 4, 2, 300, 24, shared_classifier=False)
IDS = [1, 72, 101, 108, 108, 111, 3, 259]


def _joined(first: Path) -> bytes:
    return b"".join(path.read_bytes() for path in part_paths(first))


def _same_weights(a: Path, b: Path) -> None:
    one, two = load_checkpoint(a), load_checkpoint(b)
    assert (one.version, one.config, one.file_size) == (two.version, two.config, two.file_size)
    for name in ("token_embedding", "rms_att", "rms_ffn", "rms_final"):
        assert np.array_equal(getattr(one.weights, name), getattr(two.weights, name)), name
    logits = Transformer(one).logits_for_sequence(IDS)
    assert np.array_equal(logits, Transformer(two).logits_for_sequence(IDS))


@pytest.fixture(scope="module")
def split260k(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(whole model, the same split in 100 kB parts, tokenizer)."""
    try:
        model, tok = resolve("stories260K.bin", allow_download=False), resolve("tok512.bin", allow_download=False)
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")
    first = tmp_path_factory.mktemp("split") / "MODEL.BIN"
    write_parts(first, [model.read_bytes()], part_bytes=100_000)
    return model, first, tok


def test_the_split_fixture_is_the_same_model(split260k: tuple[Path, Path, Path]) -> None:
    model, first, tok = split260k
    assert len(part_paths(first)) == 11 and part_sizes(first)[-1] == model.stat().st_size - 1_000_000
    assert _joined(first) == model.read_bytes()
    _same_weights(model, first)
    whole, split = Oracle.load(model, tok), Oracle.load(first, tok)
    for temperature in (0.0, 1.0):
        args = clamp_args(whole.checkpoint.config.seq_len, temperature, 0.9, 42, 60, b"Once upon a time")
        assert split.generate(args).token_ids == whole.generate(args).token_ids
    result = split.generate(clamp_args(split.checkpoint.config.seq_len, 0.0, 0.9, 7, 40, None))
    report = parse_report(oracle_report_text(split, result))
    assert report.model.bytes == model.stat().st_size
    assert verify(first, tok, report, oracle=split).ok
    assert not verify(model.with_name("tok512.bin"), tok, report, oracle=split).ok  # the crc check can fail


def test_a_missing_last_part_is_named_in_the_error(split260k: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _model, first, _tok = split260k
    copy = tmp_path / "model.bin"
    for index, path in enumerate(part_paths(first)[:-1]):  # the last part lost
        shutil.copyfile(path, tmp_path / ("model.bin" if index == 0 else f"model.b{index:02d}"))
    with pytest.raises(CheckpointError, match=r"^[^\n]*model.bin \(\+ model.b01..model.b09, 10 parts\): checkpoint "
                                              r"is 1000000 bytes, shorter than the 1056540"):
        load_checkpoint(copy)


@pytest.mark.parametrize("version", [0, 1])
def test_modelgen_splits_when_asked_and_at_the_limit(version: int, tmp_path: Path) -> None:
    whole = write_checkpoint(tmp_path / "whole.bin", SMALL, seed=5, version=version)
    size = whole.stat().st_size
    asked = write_checkpoint(tmp_path / "asked.bin", SMALL, seed=5, version=version, part_bytes=10_000)
    assert part_sizes(asked) == plan_parts(size, 10_000) and len(part_sizes(asked)) > 3
    auto = write_checkpoint(tmp_path / "AUTO.BIN", SMALL, seed=5, version=version, limit=size // 2)
    assert [p.name for p in part_paths(auto)] == ["AUTO.BIN", "AUTO.B01", "AUTO.B02"]
    not_split = write_checkpoint(tmp_path / "edge.bin", SMALL, seed=5, version=version, limit=size + 1)
    assert part_paths(not_split) == [not_split]
    for split in (asked, auto):
        assert _joined(split) == whole.read_bytes()
    _same_weights(whole, asked)


def test_the_1b_shape_is_split_automatically() -> None:
    """The decision only (the 4.9 GB file is never generated here): the writer's plan for its exact size."""
    header, layout = _file_layout(SHAPES["1B-shape"], 0)
    size = len(header) + sum(4 * int(np.prod(dims)) for _, dims in layout)
    plan = plan_parts(size)
    assert size > 4 * 10 ** 9 and len(plan) == 3 and sum(plan) == size and max(plan) < PART_LIMIT
    assert plan_parts(SHAPES["110M-shape"].weight_floats(0) * 4 + 28) == [SHAPES["110M-shape"].weight_floats(0) * 4
                                                                           + 28]


@pytest.mark.parametrize("to", ["q8_0", "ternary"])
def test_quantize_from_and_to_split_files(to: str, split260k: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, first, _tok = split260k
    whole = quantize_file(model, tmp_path / "whole.bin", to)
    split = quantize_file(first, tmp_path / "split.bin", to, part_bytes=50_000)  # a split source, split output
    assert len(part_paths(split)) > 1 and max(part_sizes(split)) == 50_000
    assert _joined(split) == whole.read_bytes()
    _same_weights(whole, split)
    auto = quantize_file(model, tmp_path / "auto.bin", to, limit=whole.stat().st_size)
    assert len(part_paths(auto)) == 2 and _joined(auto) == whole.read_bytes()


def test_quantize_and_export_commands_take_part_mb(split260k: tuple[Path, Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    model, _first, _tok = split260k
    out = tmp_path / "model.bin"
    assert main(["quantize", str(model), str(out), "--to", "ternary", "--classifier", "fp32", "--part-mb", "0"]) != 0
    error = capsys.readouterr().err
    assert "part size 0 bytes is impossible" in error and len(error.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["quantize", str(model), str(out), "--to", "ternary", "--classifier", "fp32", "--part-mb", "1"]) == 0
    assert capsys.readouterr().out.split() == [str(out)]  # 256 kB: one part of at most 1 MiB
    float_copy = tmp_path / "float.bin"
    assert main(["quantize", str(out), str(float_copy), "--to", "q8_0", "--part-mb", "1"]) != 0  # not float32


def test_export_splits_the_v3_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_hf_dir(tmp_path / "hf", shards=2)
    whole = tmp_path / "whole.bin"
    export(tmp_path / "hf", whole, tmp_path / "tok.bin")
    split = tmp_path / "MODEL.BIN"
    export(tmp_path / "hf", split, tmp_path / "tok2.bin", part_bytes=60_000)
    assert len(part_paths(split)) > 2 and _joined(split) == whole.read_bytes()
    _same_weights(whole, split)
    assert (tmp_path / "tok2.bin").read_bytes() == (tmp_path / "tok.bin").read_bytes()
    cli = tmp_path / "cli.bin"
    assert main(["export", str(tmp_path / "hf"), "-o", str(cli), "-z", str(tmp_path / "tok3.bin"),
                 "--part-mb", "1"]) == 0
    assert "wrote" in capsys.readouterr().out and _joined(cli) == whole.read_bytes()


def test_workspace_and_timeout_count_every_part(split260k: tuple[Path, Path, Path], tmp_path: Path) -> None:
    model, first, tok = split260k
    binary = tmp_path / "llama98"
    binary.write_bytes(b"\0" * 10)
    listed = run_files(load_profile("win98"), binary, (first, tok))
    sizes = part_sizes(first)
    assert listed[:3] == [("LLAMA98.EXE", 10), ("MODEL.BIN", sizes[0]), ("MODEL.B01", sizes[1])]
    assert listed[11] == ("MODEL.B10", sizes[10]) and listed[12] == ("TOK.BIN", tok.stat().st_size)
    tiny = run_files(load_profile("tiny686"), binary, (first, tok))
    assert [name for name, _ in tiny[1:4]] == ["model.bin", "model.b01", "model.b02"]
    config = load_checkpoint(first).config
    calibration = Calibration("none")
    assert logical_size(first) == model.stat().st_size
    choice = ModelChoice(first, tok, "split")
    assert run_timeout(choice, 50, 1.0, calibration) == calibration.run_timeout(config, model.stat().st_size, 50)
    streamed = run_timeout(choice, 50, 1.0, calibration, streamed=True)
    assert streamed > run_timeout(choice, 50, 1.0, calibration)


def test_a_split_header_shorter_than_its_first_part(tmp_path: Path) -> None:
    """Parts smaller than the 256-byte header: the header is read across them."""
    whole = write_checkpoint(tmp_path / "w.bin", ModelShape(8, 8, 1, 2, 1, 260, 8), seed=2, version=1)
    split = tmp_path / "s.bin"
    write_parts(split, [whole.read_bytes()], part_bytes=200)
    assert len(part_paths(split)) == -(-whole.stat().st_size // 200) > 2
    assert struct.unpack_from("<I", split.read_bytes())[0] == 0x616B3432  # the magic, in a 200-byte first part
    _same_weights(whole, split)


def test_a_mapped_split_is_the_same_model(split260k: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Parts of whole pages (what --part-mb and the automatic split make) are mapped, not read: same model."""
    model, _first, tok = split260k
    first = tmp_path / "model.bin"
    write_parts(first, [model.read_bytes()], part_bytes=64 * 1024)
    checkpoint = load_checkpoint(first)
    assert not checkpoint.weights.wq.flags.owndata
    _same_weights(model, first)
    args = clamp_args(checkpoint.config.seq_len, 0.0, 0.9, 1, 40, b"Lily")
    assert Oracle.load(first, tok).generate(args).token_ids == Oracle.load(model, tok).generate(args).token_ids
