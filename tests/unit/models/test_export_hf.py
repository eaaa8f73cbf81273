"""`llama98-harness export`: tiny Llama-3.2-style Hugging Face directories to the v3 checkpoint and BPE tokenizer,
checked against an independent Hugging Face-style forward pass and Hugging Face `tokenizers`."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cli import main
from harness.formats.checkpoint import CheckpointError
from harness.models.export_hf import export, unpermute
from harness.oracle.bpe import load_bpe
from harness.oracle.checkpoint import load_checkpoint
from harness.oracle.model import Transformer, rope_frequencies
from tests.support.bpe_helpers import build_bpetool, port_encode
from tests.support.bpe_vocab import SharedVocab, build
from tests.support.hf_llama import hf_forward, hf_inv_freq, make_hf_dir

PROMPT = "Once upon a time, Lily's cat sat on 12345 mats.\n"


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> SharedVocab:
    return build(tmp_path_factory.mktemp("vocab"), vocab_size=500)


def _export(hf_dir: Path, out: Path) -> tuple[Path, Path]:
    model, tok = out / "model.bin", out / "tokenizer.bin"
    export(hf_dir, model, tok)
    return model, tok


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_exported_model_matches_the_hugging_face_forward(dtype: str, vocab: SharedVocab, tmp_path: Path) -> None:
    tensors, config = make_hf_dir(tmp_path / "hf", vocab, dtype=dtype)
    model, tok = _export(tmp_path / "hf", tmp_path)
    checkpoint = load_checkpoint(model)
    c = checkpoint.config
    assert (checkpoint.version, c.seq_len, c.shared_classifier, c.n_kv_heads) == (3, 131072, True, 2)
    assert c.rope_theta == 500000.0 and c.rope_scaling is not None and c.rope_scaling.factor == 32.0
    ids = [vocab.specials["<|begin_of_text|>"], *load_bpe(tok).encode(PROMPT.encode())]
    logits = Transformer(checkpoint).logits_for_sequence(ids)
    expected = hf_forward(tensors, config, ids)
    assert np.abs(logits - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())
    assert (logits.argmax(-1) == expected.argmax(-1)).all()


def test_untied_model_and_eps_from_the_config(vocab: SharedVocab, tmp_path: Path) -> None:
    tensors, config = make_hf_dir(tmp_path / "hf", vocab, shards=3, tie_word_embeddings=False, rms_norm_eps=0.25,
                                  rope_scaling=None, rope_theta=10000.0)
    model, _ = _export(tmp_path / "hf", tmp_path)
    checkpoint = load_checkpoint(model)
    assert not checkpoint.config.shared_classifier and checkpoint.config.norm_eps == 0.25
    ids = [5, 17, 300, 2, 9]
    logits = Transformer(checkpoint).logits_for_sequence(ids)
    expected = hf_forward(tensors, config, ids)
    assert np.abs(logits - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())


def test_llama3_frequencies_cover_all_three_regions(vocab: SharedVocab, tmp_path: Path) -> None:
    _tensors, config = make_hf_dir(tmp_path / "hf", vocab, shards=1)
    model, _ = _export(tmp_path / "hf", tmp_path)
    freqs = rope_frequencies(load_checkpoint(model).config)
    expected = hf_inv_freq(config)
    np.testing.assert_allclose(freqs, expected, rtol=1e-6)
    plain = 1.0 / (config["rope_theta"] ** (np.arange(0, 16, 2) / 16))
    ratio = plain / expected
    assert np.isclose(ratio, 1.0).any() and np.isclose(ratio, 32.0).any()
    assert ((ratio > 1.01) & (ratio < 31.9)).any()


def test_prompt_ids_equal_hugging_face_tokenizers(vocab: SharedVocab, tmp_path: Path,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    _model, tok = _export(tmp_path / "hf", tmp_path)
    expected = vocab.hf.encode(PROMPT, add_special_tokens=False).ids
    bpetool = build_bpetool("native", tmp_path_factory.mktemp("native"))
    assert port_encode([str(bpetool)], tok, [PROMPT.encode()]) == [expected]
    loaded = load_bpe(tok)
    assert loaded.encode(PROMPT.encode()) == expected
    assert loaded.bos_id == vocab.specials["<|begin_of_text|>"]
    assert loaded.eos_id == vocab.specials["<|end_of_text|>"]
    assert set(loaded.stop_ids) == {vocab.specials["<|eot_id|>"], vocab.specials["<|eom_id|>"]}


def test_tiktoken_tokenizer_model_when_there_is_no_tokenizer_json(vocab: SharedVocab, tmp_path: Path) -> None:
    make_hf_dir(tmp_path / "hf", vocab, shards=1, vocab_size=len(vocab.ranks) + 256)
    (tmp_path / "hf" / "tokenizer.json").unlink()
    (tmp_path / "hf" / "original").mkdir()
    (tmp_path / "hf" / "original" / "tokenizer.model").write_bytes(vocab.tiktoken_file.read_bytes())
    _model, tok = _export(tmp_path / "hf", tmp_path)
    loaded = load_bpe(tok)
    assert len(loaded.tokens) == len(vocab.ranks) + 256
    assert loaded.encode(PROMPT.encode()) == vocab.tt.encode_ordinary(PROMPT)


def test_unpermute_inverts_the_hugging_face_permutation() -> None:
    heads, head_size, cols = 3, 8, 5
    w = np.arange(heads * head_size * cols, dtype=np.float32).reshape(heads * head_size, cols)
    # Hugging Face's conversion: view(heads, hs/2, 2, cols).transpose(1, 2)
    permuted = w.reshape(heads, head_size // 2, 2, cols).transpose(0, 2, 1, 3).reshape(-1, cols)
    np.testing.assert_array_equal(unpermute(permuted, heads), w)


def test_layers_are_contiguous_in_the_file(vocab: SharedVocab, tmp_path: Path) -> None:
    tensors, _config = make_hf_dir(tmp_path / "hf", vocab, shards=2)
    model, _ = _export(tmp_path / "hf", tmp_path)
    data = np.fromfile(model, dtype="<f4", offset=256)
    v, d = tensors["model.embed_tokens.weight"].shape
    start = v * d
    first = tensors["model.layers.1.input_layernorm.weight"]
    layer = d + d * d + 2 * 32 * d + d * d + d + 3 * 96 * d
    np.testing.assert_array_equal(data[start + layer:start + layer + d], first)
    np.testing.assert_array_equal(data[start + layer + d:start + layer + d + d * d].reshape(d, d),
                                  unpermute(tensors["model.layers.1.self_attn.q_proj.weight"], 4))


REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "model_type": ({"model_type": "mistral"}, "model_type 'mistral' is not supported"),
    "bias": ({"attention_bias": True}, "bias terms are not supported"),
    "rope": ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling type 'yarn'"),
    "act": ({"hidden_act": "gelu"}, "hidden_act"),
    "heads": ({"num_key_value_heads": 3}, "do not make even head sizes"),
    "vocab": ({"vocab_size": 100}, "the tokenizer has"),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_cli_refuses_in_one_line(name: str, vocab: SharedVocab, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    overrides, words = REFUSALS[name]
    make_hf_dir(tmp_path / "hf", vocab, shards=1, **overrides)
    code = main(["export", str(tmp_path / "hf"), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t.bin")])
    err = capsys.readouterr().err
    assert code != 0 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.bin").exists()


def test_bias_tensor_and_missing_tensor_are_refused(vocab: SharedVocab, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.numpy import save_file
    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    shard = tmp_path / "hf" / "model-00001-of-00001.safetensors"
    extra = tmp_path / "hf" / "model-extra.safetensors"
    save_file({"model.layers.0.self_attn.q_proj.bias": np.zeros(64, np.float32)}, str(extra))
    (tmp_path / "hf" / "model.safetensors.index.json").unlink()
    args = ["export", str(tmp_path / "hf"), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t.bin")]
    assert main(args) != 0 and "bias terms are not supported" in capsys.readouterr().err
    extra.unlink()
    shard.rename(tmp_path / "elsewhere.safetensors")
    assert main(args) != 0 and "no *.safetensors" in capsys.readouterr().err


def test_cli_exports(vocab: SharedVocab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    assert main(["export", str(tmp_path / "hf"), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t.bin")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "m.bin").config.vocab_size == len(vocab.ranks) + len(vocab.specials)


def test_bad_v3_headers_are_refused(vocab: SharedVocab, tmp_path: Path) -> None:
    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    model, _ = _export(tmp_path / "hf", tmp_path)
    good = model.read_bytes()
    cases = {"version": (4, struct.pack("<i", 4)), "weight_type": (36, struct.pack("<i", 1)),
             "eps": (48, struct.pack("<f", 0.0)), "scaling": (52, struct.pack("<i", 2)),
             "reserved": (100, b"\1")}
    for name, (offset, patch) in cases.items():
        bad = tmp_path / f"{name}.bin"
        bad.write_bytes(good[:offset] + patch + good[offset + len(patch):])
        with pytest.raises(CheckpointError):
            load_checkpoint(bad)
    (tmp_path / "short.bin").write_bytes(good[:-4])
    with pytest.raises(CheckpointError, match="shorter"):
        load_checkpoint(tmp_path / "short.bin")


def test_kv_cache_is_sized_by_the_run(vocab: SharedVocab, tmp_path: Path) -> None:
    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    model, _ = _export(tmp_path / "hf", tmp_path)
    transformer = Transformer(load_checkpoint(model))
    cache = transformer.new_cache(40)
    assert cache.keys.shape == (2, 40, 32)
    for pos in range(40):
        transformer.step(pos % 7, pos, cache)
    with pytest.raises(ValueError, match="cache"):
        transformer.step(1, 40, cache)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["max_position_embeddings"] == 131072


def test_llama32_1b_figures() -> None:
    from harness.formats.l98m import LLAMA32_1B, cost_per_token, kv_cache_bytes
    per_layer = 2 * 2048 * 2048 + 2 * 512 * 2048 + 3 * 8192 * 2048
    macs, weight_bytes = cost_per_token(LLAMA32_1B, 255)
    assert weight_bytes == 4 * (16 * per_layer + 128256 * 2048)
    assert macs == 16 * per_layer + 128256 * 2048 + 16 * 2 * 2048 * 256
    assert kv_cache_bytes(LLAMA32_1B, 256) == 16 * 2**20


def test_a_refusal_halfway_leaves_no_files(vocab: SharedVocab, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.numpy import save_file
    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    (tmp_path / "hf" / "model.safetensors.index.json").unlink()
    save_file({"model.layers.0.mlp.up_proj.weight": np.zeros((3, 3), np.float32)},
              str(tmp_path / "hf" / "model-zz.safetensors"))
    args = ["export", str(tmp_path / "hf"), "-o", str(tmp_path / "m.bin"), "-z", str(tmp_path / "t.bin")]
    assert main(args) != 0
    assert "unexpected or repeated" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_a_failed_tokenizer_rename_removes_the_model_it_wrote(vocab: SharedVocab, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The last step (the tokenizer's rename) fails after the model is in place: neither file is left, and the
    error is one ExportError line naming the tokenizer."""
    import harness.models.export_hf as export_hf
    from harness.models.export_hf import ExportError

    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    out = tmp_path / "out"
    out.mkdir()
    real_replace = export_hf.os.replace

    def replace(source: Any, target: Any) -> None:
        if Path(target).name == "t.bin":
            raise PermissionError(13, "Permission denied")
        real_replace(source, target)

    monkeypatch.setattr(export_hf.os, "replace", replace)
    with pytest.raises(ExportError, match=r"cannot write .*t\.bin: Permission denied \(removed the model"):
        export(tmp_path / "hf", out / "m.bin", out / "t.bin")
    assert list(out.iterdir()) == []


def test_the_same_file_for_model_and_tokenizer_is_refused(vocab: SharedVocab, tmp_path: Path) -> None:
    from harness.models.export_hf import ExportError

    make_hf_dir(tmp_path / "hf", vocab, shards=1)
    with pytest.raises(ExportError, match="cannot be written to the same file"):
        export(tmp_path / "hf", tmp_path / "x.bin", tmp_path / "." / "x.bin")
    assert not (tmp_path / "x.bin").exists()
