"""The port runs Llama-3-style models (version-3 checkpoints exported from tiny Hugging Face directories, BPE
tokenizer files) and the oracle verifies them token by token: GQA, tied and untied embeddings, rope theta 500000
with llama3 scaling, the tokenizer's BOS/EOS/stop ids, a KV cache sized by the run (-c), non-ASCII prompts whose
ids equal Hugging Face tokenizers' encoding. Native x86-64, the i386 x87 guest build run on the host, and the
Win32 build under Wine; bad input gets one-line errors."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from harness.formats.checkpoint import RopeScaling
from harness.formats.l98m import LLAMA32_1B, L98Header, kv_cache_bytes
from harness.formats.report import parse_report, split_stdout
from harness.judge.token_check import check_run
from harness.models.bpe_writer import from_tokenizer_json, write_bpe
from harness.models.export_hf import export
from harness.models.names import ModelChoice, ModelChoiceError, check_pair
from harness.oracle.bpe import load_bpe
from harness.oracle.generate import RunArgs
from harness.oracle.llama3 import Llama3Oracle
from tests.support.bpe_vocab import SharedVocab, build
from tests.support.hf_llama import make_hf_dir
from tests.support.port_helpers import (  # noqa: F401
    WINE_MISSING,
    native_bin,
    run_port,
    tiny686_bin,
    win32_exe,
    wine_command,
    wine_env,
)

PROMPTS = ["Grüße aus Köln, 世界 — ok", "Once upon a time", "naïve café ☕ «bonjour»\n"]


@dataclass
class Exported:
    model: Path
    tokenizer: Path
    vocab: SharedVocab

    @property
    def choice(self) -> ModelChoice:
        return ModelChoice(self.model, self.tokenizer, self.model.name)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> SharedVocab:
    return build(tmp_path_factory.mktemp("vocab"), vocab_size=500)


def _export(base: Path, vocab: SharedVocab, **overrides: object) -> Exported:
    make_hf_dir(base / "hf", vocab, dtype="BF16", shards=2, **overrides)  # type: ignore[arg-type]
    export(base / "hf", base / "model.bin", base / "tokenizer.bin")
    return Exported(base / "model.bin", base / "tokenizer.bin", vocab)


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory, vocab: SharedVocab) -> Exported:
    return _export(tmp_path_factory.mktemp("tied"), vocab, seed=3)


@pytest.fixture(scope="module")
def untied(tmp_path_factory: pytest.TempPathFactory, vocab: SharedVocab) -> Exported:
    """Untied classifier, MHA-free GQA with 4 query heads on 1 kv head, no rope scaling, another eps."""
    return _export(tmp_path_factory.mktemp("untied"), vocab, seed=4, tie_word_embeddings=False,
                   num_key_value_heads=1, rope_scaling=None, rms_norm_eps=1e-6)


def _args(exported: Exported, prompt: str, *extra: str) -> list[str]:
    return [str(exported.model), "-z", str(exported.tokenizer), "-i", prompt, "-r", "-", *extra]


def _run_and_check(binary: Path, exported: Exported, prompt: str, *extra: str) -> tuple[bytes, object]:
    result = run_port(binary, _args(exported, prompt, *extra))
    assert result.returncode == 0, result.stderr
    text, report = split_stdout(result.stdout)
    check = check_run(exported.choice, text, report)
    assert check.ok and check.transport_ok, str(check)
    hf_ids = exported.vocab.hf.encode(prompt, add_special_tokens=False).ids
    assert report.prompt_ids == [exported.vocab.specials["<|begin_of_text|>"], *hf_ids]
    return text, check


@pytest.mark.parametrize(("prompt", "flags"), [
    (PROMPTS[0], ("-t", "0", "-n", "40")),
    (PROMPTS[1], ("-t", "0.9", "-s", "11", "-n", "60")),
    (PROMPTS[2], ("-t", "1.5", "-p", "1.0", "-s", "3", "-n", "50")),
], ids=["greedy", "topp-seeded", "full-softmax-seeded"])
def test_native_port_matches_the_oracle(native_bin: Path, tied: Exported, prompt: str,  # noqa: F811
                                        flags: tuple[str, ...]) -> None:
    text, check = _run_and_check(native_bin, tied, prompt, *flags)
    assert text.startswith(prompt.encode())  # prompt tokens print as their bytes
    assert check.text_matches_oracle  # type: ignore[attr-defined]


def test_untied_gqa_model_without_scaling(native_bin: Path, untied: Exported) -> None:  # noqa: F811
    _run_and_check(native_bin, untied, PROMPTS[0], "-t", "0.8", "-s", "5", "-n", "40")


def test_guest_build_x87_matches_the_oracle(tiny686_bin: Path, tied: Exported, untied: Exported) -> None:  # noqa: F811
    """The -m32 -march=pentium2 static build (x87 arithmetic, MMX) the guest runs, run on this host."""
    _run_and_check(tiny686_bin, tied, PROMPTS[0], "-t", "0.9", "-s", "11", "-n", "50")
    _run_and_check(tiny686_bin, untied, PROMPTS[2], "-t", "0", "-n", "40")


def test_header_fields_and_kv_positions_in_the_report(native_bin: Path, tied: Exported) -> None:  # noqa: F811
    """seq_len is 131072 but the KV cache holds -n or -c positions; rope/eps fields are the header's."""
    result = run_port(native_bin, _args(tied, "Hi", "-n", "0", "-c", "24", "-t", "0"))
    assert result.returncode == 0, result.stderr
    _text, report = split_stdout(result.stdout)
    assert report.model.int_field("seq_len") == 131072
    assert report.args.steps == 24 and len(report.tokens) == 24
    assert report.model.fields["kv_positions"] == "24"
    assert report.model.fields["kv_bytes"] == str(2 * 2 * 24 * (64 // 4 * 2) * 4)  # 2 x layers x pos x kv_dim x 4
    assert (report.model.fields["rope_theta"], report.model.fields["rope_scaling"]) == ("500000", "1")
    assert report.tokenizer.int_field("bos") == tied.vocab.specials["<|begin_of_text|>"]
    assert check_run(tied.choice, _text, report).ok


def test_a_sampled_stop_id_ends_the_run_unprinted(native_bin: Path, tied: Exported, tmp_path: Path) -> None:  # noqa: F811
    """<|eot_id|>-style stop: the greedy run's first sampled id is made a stop id; so is a prompt id, which
    must not stop the run (only sampled ids do)."""
    prompt = PROMPTS[1]
    free = Llama3Oracle.load(tied.model, tied.tokenizer).generate(
        RunArgs(np.float32(0.0), np.float32(0.9), 1, 30, prompt.encode()))
    n_prompt = len(free.prompt_ids)
    first_sampled, in_prompt = free.token_ids[n_prompt - 1], free.token_ids[0]
    assert first_sampled != in_prompt
    source = from_tokenizer_json(Path(tied.vocab.tokenizer_json))
    stop_tok = tmp_path / "stop.bin"
    write_bpe(stop_tok, source, tied.vocab.specials["<|begin_of_text|>"], -1, [first_sampled, in_prompt])
    stopped = Exported(tied.model, stop_tok, tied.vocab)
    result = run_port(native_bin, _args(stopped, prompt, "-t", "0", "-n", "30"))
    assert result.returncode == 0, result.stderr
    text, report = split_stdout(result.stdout)
    assert report.token_ids == free.token_ids[:n_prompt]
    assert text == load_bpe(stop_tok).decode(free.token_ids[:n_prompt - 1]) + b"\n"
    assert check_run(stopped.choice, text, report).ok


def _one_line_error(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    assert result.returncode != 0
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_bad_input_gets_one_line_errors(native_bin: Path, tied: Exported, tmp_path: Path) -> None:  # noqa: F811
    data = tied.model.read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[:-100])
    _one_line_error(run_port(native_bin, [str(truncated), "-z", str(tied.tokenizer)]), "truncated")
    # a prompt longer than the context
    _one_line_error(run_port(native_bin, _args(tied, PROMPTS[0], "-c", "3")), "more than the context -c 3")
    _one_line_error(run_port(native_bin, _args(tied, "x", "-c", "0")), "-c 0")
    # a header field the port does not know: reserved bytes, an unknown rope scaling, an impossible theta
    for offset, value, needle in ((100, b"\x01", "reserved header byte 100"), (52, b"\x07\0\0\0", "rope scaling"),
                                  (44, b"\0\0\0\0", "rope_theta")):
        bad = tmp_path / f"bad{offset}.bin"
        bad.write_bytes(data[:offset] + value + data[offset + len(value):])
        _one_line_error(run_port(native_bin, [str(bad), "-z", str(tied.tokenizer)]), needle)


def test_a_tokenizer_of_another_vocabulary_is_refused(native_bin: Path, tied: Exported, tmp_path: Path) -> None:  # noqa: F811
    bigger = build(tmp_path / "vocab", vocab_size=700)
    other = tmp_path / "other.bin"
    write_bpe(other, from_tokenizer_json(Path(bigger.tokenizer_json)), bigger.specials["<|begin_of_text|>"],
              bigger.specials["<|end_of_text|>"], [bigger.specials["<|eot_id|>"]])
    _one_line_error(run_port(native_bin, [str(tied.model), "-z", str(other)]), "not its tokenizer")
    with pytest.raises(ModelChoiceError, match="wrong tokenizer") as caught:
        check_pair(ModelChoice(tied.model, other, "x"))
    assert "\n" not in str(caught.value)
    assert check_pair(tied.choice) == tied.choice


def _wine_path(path: Path) -> str:
    return "Z:" + str(path.resolve()).replace("/", "\\")


@pytest.mark.wine
def test_win32_build_under_wine_matches_the_oracle(win32_exe: Path, tied: Exported) -> None:  # noqa: F811
    wine = wine_command()
    if wine is None:
        pytest.skip(WINE_MISSING)
    env = wine_env()
    prompt = "Once upon a time, far away"  # Wine turns a UTF-8 argv into the ANSI code page: ASCII only here
    result = subprocess.run([*wine, str(win32_exe), _wine_path(tied.model), "-z", _wine_path(tied.tokenizer),
                             "-i", prompt, "-t", "0.9", "-s", "11", "-n", "50", "-r", "-"],
                            capture_output=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    text, report = split_stdout(result.stdout)
    check = check_run(tied.choice, text, report)
    assert check.ok and check.transport_ok, str(check)
    assert report.prompt_ids == [tied.vocab.specials["<|begin_of_text|>"],
                                 *tied.vocab.hf.encode(prompt, add_special_tokens=False).ids]
    assert parse_report(result.stdout[result.stdout.rfind(b"llama98 report "):]).tokenizer.fields["format"] == "bpe"


def test_kv_cache_of_the_1b_layers_at_256_tokens_is_16_mib(native_bin: Path, tied: Exported,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """The KV cache depends on layers and kv_dim only: a model with Llama 3.2 1B's 16 layers and 8 KV heads of 64
    (kv_dim 512) and seq_len 131072 holds 16 MiB at 256 tokens (8 GiB if the header sized it). Zero weights."""
    header = L98Header(512, 16, 16, 8, 8, 512, 131072, True, 500000.0, 1e-5, RopeScaling(32.0, 1.0, 4.0, 8192))
    model = tmp_path / "l16.bin"
    _offsets, size = header.offsets()
    with model.open("wb") as handle:
        handle.write(header.pack())
        handle.truncate(size)
    result = run_port(native_bin, [str(model), "-z", str(tied.tokenizer), "-i", "Hi", "-n", "256", "-t", "0",
                                   "-r", "-"])
    assert result.returncode == 0, result.stderr
    _text, report = split_stdout(result.stdout)
    assert report.model.fields["kv_positions"] == "256"
    assert int(report.model.fields["kv_bytes"]) == kv_cache_bytes(LLAMA32_1B, 256) == 16 * 2**20


def test_oracle_cli_verifies_a_port_report(native_bin: Path, tied: Exported, tmp_path: Path,  # noqa: F811
                                           capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    from harness.cli import main

    report = tmp_path / "run.rep"
    result = run_port(native_bin, [str(tied.model), "-z", str(tied.tokenizer), "-i", PROMPTS[0], "-t", "0.9",
                                   "-s", "2", "-n", "30", "-r", str(report)])
    assert result.returncode == 0, result.stderr
    assert main(["oracle", str(tied.model), "-z", str(tied.tokenizer), "--verify", str(report)]) == 0
    assert capfdbinary.readouterr().out.startswith(b"ok: 30 tokens match the oracle")
    report.write_bytes(report.read_bytes().replace(b"\ntoken pos=25 id=", b"\ntoken pos=25 id=1"))
    assert main(["oracle", str(tied.model), "-z", str(tied.tokenizer), "--verify", str(report)]) == 1
    assert b"FAIL: position 25" in capfdbinary.readouterr().out
    assert main(["oracle", str(tied.model), "-z", str(tied.tokenizer), "-i", PROMPTS[0], "-c", "3"]) != 0
    assert b"more than the context -c 3" in capfdbinary.readouterr().err
