"""The oracle's Llama 3 generation on exported tiny Llama-3.2-style models: greedy tokens equal the
Hugging Face-style reference's, prompts start with the tokenizer's BOS, runs end at stop ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.models.bpe_writer import from_tokenizer_json, write_bpe
from harness.models.export_hf import export
from harness.oracle.bpe import load_bpe
from harness.oracle.generate import RunArgs
from harness.oracle.llama3 import Llama3Oracle, is_bpe_tokenizer, run_positions
from harness.oracle.sampler import Sampler
from tests.support.bpe_vocab import SharedVocab, build
from tests.support.hf_llama import hf_forward, make_hf_dir

PROMPT = b"Once upon a time"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict, SharedVocab]:
    base = tmp_path_factory.mktemp("llama3")
    vocab = build(base / "vocab", vocab_size=500)
    tensors, config = make_hf_dir(base / "hf", vocab, shards=2, dtype="BF16", seed=3)
    export(base / "hf", base / "model.bin", base / "tokenizer.bin")
    return base / "model.bin", base / "tokenizer.bin", tensors, config, vocab


def _greedy(steps: int) -> RunArgs:
    return RunArgs(np.float32(0.0), np.float32(0.9), 1, steps, PROMPT)


def test_greedy_generation_matches_the_reference(exported: tuple) -> None:
    model, tok, tensors, config, vocab = exported
    oracle = Llama3Oracle.load(model, tok)
    result = oracle.generate(_greedy(24))
    prompt_ids = [vocab.specials["<|begin_of_text|>"], *vocab.hf.encode(PROMPT.decode(), add_special_tokens=False).ids]
    assert result.prompt_ids == prompt_ids
    ids = list(prompt_ids)
    while len(ids) < 25:
        ids.append(int(hf_forward(tensors, config, ids)[-1].argmax()))
    assert result.token_ids == ids[1:25]
    assert result.text == load_bpe(tok).decode(ids[1:25]) + b"\n"


def test_a_stop_id_ends_the_run(exported: tuple, tmp_path: Path) -> None:
    """The first sampled token is made a stop id, and so is a prompt token: only the sampled one stops."""
    model, tok, _tensors, _config, vocab = exported
    free = Llama3Oracle.load(model, tok).generate(_greedy(20))
    n_prompt = len(free.prompt_ids)
    first_sampled, in_prompt = free.token_ids[n_prompt - 1], free.token_ids[0]
    assert first_sampled != in_prompt and len(free.token_ids) == 20
    source = from_tokenizer_json(Path(vocab.tokenizer_json))
    write_bpe(tmp_path / "stop.bin", source, vocab.specials["<|begin_of_text|>"], -1, [first_sampled, in_prompt])
    stopped = Llama3Oracle.load(model, tmp_path / "stop.bin").generate(_greedy(20))
    assert stopped.token_ids == free.token_ids[:n_prompt]
    assert stopped.text == load_bpe(tok).decode(free.token_ids[:n_prompt - 1]) + b"\n"


def test_the_cache_is_sized_by_the_run(exported: tuple) -> None:
    model, tok, *_ = exported
    oracle = Llama3Oracle.load(model, tok)
    assert oracle.checkpoint.config.seq_len == 131072
    assert run_positions(131072, 0) == 131072
    assert run_positions(131072, 0, context=512) == 512
    assert run_positions(131072, 300, context=256) == 256
    assert run_positions(131072, 40, context=256) == 40
    cache = oracle.transformer.new_cache(run_positions(131072, 40, context=256))
    assert cache.keys.shape[1] == 40


def test_tokenizer_kinds_are_told_apart(exported: tuple, tmp_path: Path) -> None:
    _model, tok, *_ = exported
    assert is_bpe_tokenizer(tok)
    (tmp_path / "old.bin").write_bytes(b"\x07\x00\x00\x00")
    assert not is_bpe_tokenizer(tmp_path / "old.bin")
    assert not is_bpe_tokenizer(tmp_path / "missing.bin")


def test_oracle_cli_runs_a_llama3_model(exported: tuple, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    from harness.cli import main
    model, tok, *_ = exported
    direct = Llama3Oracle.load(model, tok).generate(_greedy(12))
    assert main(["oracle", str(model), "-z", str(tok), "-t", "0", "-n", "30", "-c", "12", "-i",
                 PROMPT.decode()]) == 0
    assert capfdbinary.readouterr().out == direct.text
    assert main(["oracle", str(model), "-z", str(tok), "-r", "-"]) != 0
    assert b"not supported with a BPE tokenizer" in capfdbinary.readouterr().err


def reference_llama3(oracle: Llama3Oracle, args: RunArgs) -> tuple[list[int], list[int], bytes]:
    """llama2.c's loop with Llama 3's rules, written out: BOS then the BPE ids, prompt ids forced, a sampled EOS or
    stop id ends the run unprinted, every printed id is its bytes."""
    vocab = oracle.tokenizer
    prompt = [vocab.bos_id] + vocab.encode(args.prompt or b"")
    stops = {vocab.eos_id, *vocab.stop_ids}
    sampler = Sampler.create(float(args.temperature), float(args.topp), args.seed)
    cache = oracle.transformer.new_cache(args.steps)
    ids: list[int] = []
    text = b""
    token = prompt[0]
    for pos in range(args.steps):
        logits = oracle.transformer.step(token, pos, cache)
        if pos < len(prompt) - 1:
            next_id = prompt[pos + 1]
        else:
            next_id = sampler.sample(logits)
            if next_id in stops:
                ids.append(next_id)
                break
        ids.append(next_id)
        text += vocab.tokens[next_id]
        token = next_id
    return prompt, ids, text + b"\n"


def test_the_loop_is_the_reference_loop(exported: tuple, tmp_path: Path) -> None:
    """The shared loop with Llama3Rules, on the free tokenizer and on one whose stop ids are tokens the free runs
    sample (and one the prompt forces), at T=0 and sampled."""
    model, tok, _tensors, _config, vocab = exported
    runs = [RunArgs(np.float32(t), np.float32(p), seed, steps, prompt) for t, p, seed, steps, prompt in (
        (0.0, 0.9, 1, 40, PROMPT), (1.0, 0.9, 42, 60, PROMPT), (0.8, 1.0, 7, 50, b"The dog ran"),
        (1.1, 0.5, 3, 30, "Émile saw a café ☕".encode()), (1.0, 0.9, 5, 2, PROMPT))]
    free = Llama3Oracle.load(model, tok)
    sampled: list[int] = []
    for args in runs:
        result = free.generate(args)
        assert (result.prompt_ids, result.token_ids, result.text) == reference_llama3(free, args)
        sampled += result.token_ids[len(result.prompt_ids) + 2:len(result.prompt_ids) + 4]
    source = from_tokenizer_json(Path(vocab.tokenizer_json))
    prompt_id = free.encode_prompt(PROMPT)[1]
    bos = vocab.specials["<|begin_of_text|>"]
    write_bpe(tmp_path / "stops.bin", source, bos, sampled[0], [*sampled[1:], prompt_id])
    stopping = Llama3Oracle.load(model, tmp_path / "stops.bin")
    stopped = 0
    for args in runs:
        result = stopping.generate(args)
        assert (result.prompt_ids, result.token_ids, result.text) == reference_llama3(stopping, args)
        stopped += len(result.token_ids) < args.steps
    assert stopped >= 2  # the stop rule was exercised
