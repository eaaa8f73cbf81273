"""`llama98-harness quantize`: help, real Q8_0 and ternary files that load with the right header, and one-line
refusals of bad input and output paths and of impossible options."""

from __future__ import annotations

from pathlib import Path

from harness.models.modelgen import ModelShape, write_checkpoint
from harness.oracle.checkpoint import load_checkpoint
from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli
from tests.support.port_helpers import fixture


def test_help_lists_the_options(capsys):
    assert_help("quantize", capsys, "q8_0", "ternary", "int8", "fp32")


def test_q8_0_file_loads_with_its_group_size(tmp_path, capsys):
    out = tmp_path / "q8.bin"
    result = run_cli(["quantize", str(fixture("stories260K.bin")), str(out), "--to", "q8_0", "--group-size", "2"],
                     capsys)
    assert result.code == 0, result.err
    assert result.out == f"{out}\n"
    checkpoint = load_checkpoint(out)
    assert checkpoint.version == 2
    assert (checkpoint.config.weight_type, checkpoint.config.group_size) == ("q8_0", 2)
    assert checkpoint.config.dim == 64 and checkpoint.config.vocab_size == 512


def test_ternary_file_loads_with_its_classifier(tmp_path, capsys):
    for classifier, expected in (("int8", "q8_0"), ("fp32", "fp32")):
        out = tmp_path / f"t-{classifier}.bin"
        result = run_cli(["quantize", str(fixture("stories260K.bin")), str(out), "--to", "ternary", "--classifier",
                          classifier], capsys)
        assert result.code == 0, result.err
        config = load_checkpoint(out).config
        assert (config.weight_type, config.classifier_type) == ("ternary", expected)


def test_split_output_prints_every_part(tmp_path, capsys):
    # about 2 MiB of Q8_0: an 8192-token vocabulary with a separate classifier
    source = write_checkpoint(tmp_path / "wide.bin", ModelShape(64, 172, 2, 8, 4, 8192, 64, shared_classifier=False),
                              seed=4)
    out = tmp_path / "MODEL.BIN"
    result = run_cli(["quantize", str(source), str(out), "--to", "q8_0", "--part-mb", "1"], capsys)
    assert result.code == 0, result.err
    parts = [Path(line) for line in result.out.splitlines()]
    assert parts[0] == out and len(parts) >= 2 and all(p.is_file() for p in parts)
    assert parts[1] == tmp_path / "MODEL.B01"
    assert all(p.stat().st_size == 1 << 20 for p in parts[:-1])
    assert load_checkpoint(out).config.weight_type == "q8_0"


def test_a_missing_input_is_refused(tmp_path, capsys):
    result = run_cli(["quantize", str(tmp_path / "none.bin"), str(tmp_path / "out.bin"), "--to", "q8_0"], capsys)
    assert_one_line_error(result, "none.bin", "not found")
    assert not (tmp_path / "out.bin").exists()


def test_a_directory_as_input_is_refused(tmp_path, capsys):
    result = run_cli(["quantize", str(tmp_path), str(tmp_path / "out.bin"), "--to", "q8_0"], capsys)
    assert_one_line_error(result, "checkpoint path is a directory")


def test_a_group_size_that_does_not_divide_is_refused(tmp_path, capsys):
    result = run_cli(["quantize", str(fixture("stories260K.bin")), str(tmp_path / "o.bin"), "--to", "q8_0",
                      "--group-size", "5"], capsys)
    assert_one_line_error(result, "group size 5 does not divide dim 64")
    assert not (tmp_path / "o.bin").exists()


def test_a_group_size_for_ternary_is_refused(tmp_path, capsys):
    result = run_cli(["quantize", str(fixture("stories260K.bin")), str(tmp_path / "o.bin"), "--to", "ternary",
                      "--group-size", "4"], capsys)
    assert_one_line_error(result, "--group-size applies to q8_0 only", code=2)


def test_an_already_quantized_input_is_refused(tmp_path, capsys):
    first = tmp_path / "q8.bin"
    assert run_cli(["quantize", str(fixture("stories260K.bin")), str(first), "--to", "q8_0"], capsys).code == 0
    result = run_cli(["quantize", str(first), str(tmp_path / "again.bin"), "--to", "ternary"], capsys)
    assert_one_line_error(result, "already quantized (q8_0)")


def test_a_directory_as_output_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli(["quantize", str(fixture("stories260K.bin")), str(out), "--to", "q8_0"], capsys)
    assert_one_line_error(result, str(out))
    assert out.is_dir() and list(out.iterdir()) == []


def test_an_output_below_a_file_is_one_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run_cli(["quantize", str(fixture("stories260K.bin")), str(afile / "q8.bin"), "--to", "q8_0"], capsys)
    assert_one_line_error(result, str(afile), "is a file, not a directory")
