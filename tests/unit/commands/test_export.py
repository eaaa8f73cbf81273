"""`llama98-harness export`: help, a real export of a tiny Hugging Face Llama directory (the files load), and one-line
refusals of a missing, wrong or unwritable input or output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.oracle.bpe import load_bpe
from harness.oracle.checkpoint import load_checkpoint
from tests.support.bpe_vocab import SharedVocab, build
from tests.support.cli_helpers import assert_help, assert_one_line_error, run_cli
from tests.support.hf_llama import make_hf_dir


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf")
    vocab: SharedVocab = build(root / "vocab", vocab_size=500)
    make_hf_dir(root / "model", vocab, shards=1)
    return root / "model"


def test_help_lists_the_options(capsys):
    assert_help("export", capsys, "HF_DIR", "MODEL.bin", "TOKENIZER.bin")


def test_export_writes_a_checkpoint_and_tokenizer_that_load(hf_dir, tmp_path, capsys):
    model, tokenizer = tmp_path / "model.bin", tmp_path / "tok.bin"
    result = run_cli(["export", str(hf_dir), "-o", str(model), "-z", str(tokenizer)], capsys)
    assert result.code == 0, result.err
    assert result.out == (f"wrote {model} (dim=64 layers=2 heads=4/2 vocab="
                          f"{json.loads((hf_dir / 'config.json').read_text())['vocab_size']}) and {tokenizer}\n")
    checkpoint = load_checkpoint(model)
    assert (checkpoint.config.dim, checkpoint.config.n_layers, checkpoint.config.n_kv_heads) == (64, 2, 2)
    assert load_bpe(tokenizer).encode(b"hello") != []


def test_a_missing_directory_is_refused(tmp_path, capsys):
    result = run_cli(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t")],
                     capsys)
    assert_one_line_error(result, "config.json: not found")
    assert not (tmp_path / "m.bin").exists()


def test_a_file_instead_of_a_directory_is_refused(tmp_path, capsys):
    afile = tmp_path / "model.safetensors"
    afile.write_bytes(b"\0" * 16)
    result = run_cli(["export", str(afile), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t")], capsys)
    assert_one_line_error(result, "config.json: not found")


def test_an_unsupported_model_type_is_refused(hf_dir, tmp_path, capsys):
    broken = tmp_path / "hf"
    broken.mkdir()
    for source in hf_dir.iterdir():
        (broken / source.name).write_bytes(source.read_bytes())
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))
    result = run_cli(["export", str(broken), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t")], capsys)
    assert_one_line_error(result, "model_type 'mistral' is not supported")


def test_unreadable_config_json_is_refused(tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{not json")
    result = run_cli(["export", str(tmp_path / "hf"), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t")],
                     capsys)
    assert_one_line_error(result, "cannot read JSON")


def test_a_directory_as_the_model_output_is_one_line(hf_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_cli(["export", str(hf_dir), "-o", str(out_dir), "-z", str(tmp_path / "tok.bin")], capsys)
    assert_one_line_error(result, str(out_dir))
    assert out_dir.is_dir() and list(out_dir.iterdir()) == []


def test_a_directory_as_the_tokenizer_output_is_one_line(hf_dir, tmp_path, capsys):
    out_dir = tmp_path / "tok"
    out_dir.mkdir()
    result = run_cli(["export", str(hf_dir), "-o", str(tmp_path / "m.bin"), "-z", str(out_dir)], capsys)
    assert_one_line_error(result, str(out_dir))
    assert out_dir.is_dir()
