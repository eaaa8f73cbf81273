"""Teacher-forced verify accepts the oracle's own runs and rejects every kind of tampering, naming it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import harness.cli
from harness.formats.report import parse_report
from harness.judge.verify import oracle_report_text, verify
from harness.models.downloads import FixtureError, resolve
from harness.models.modelgen import SHAPES, cached_checkpoint, cached_tokenizer
from harness.oracle.generate import Oracle, clamp_args


@pytest.fixture(scope="module")
def oracle260k() -> Oracle:
    try:
        model = resolve("stories260K.bin", allow_download=False)
        tok = resolve("tok512.bin", allow_download=False)
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")
    return Oracle.load(model, tok)


def run_report(oracle: Oracle, temperature: float, topp: float, seed: int, steps: int, prompt: bytes | None):
    result = oracle.generate(clamp_args(oracle.checkpoint.config.seq_len, temperature, topp, seed, steps, prompt))
    return result, oracle_report_text(oracle, result)


def check(oracle: Oracle, text: str):
    return verify(oracle.checkpoint.path, oracle.tokenizer.path, parse_report(text), oracle=oracle)


def replace_token(text: str, pos: int, new_id: int) -> str:
    return re.sub(rf"^token pos={pos} id=\d+", f"token pos={pos} id={new_id}", text, flags=re.M)


@pytest.mark.parametrize(
    "temperature, topp, seed, prompt",
    [(0.0, 0.9, 1, None), (1.0, 0.9, 42, None), (0.8, 1.0, 7, b"Tom and Zo\xc3\xab"), (1.2, 0.5, 99, b"Once")],
)
def test_accepts_the_oracles_own_run(oracle260k, temperature, topp, seed, prompt):
    _, text = run_report(oracle260k, temperature, topp, seed, 120, prompt)
    verdict = check(oracle260k, text)
    assert verdict.ok, str(verdict)
    assert "\n" not in str(verdict)


def lowest_logit_token(oracle: Oracle, ids: list[int], prompt_ids: list[int], pos: int) -> int:
    logits = oracle.transformer.logits_for_sequence([prompt_ids[0]] + ids[:pos])[pos]
    return int(np.argmin(logits))


@pytest.mark.parametrize("temperature, topp", [(0.0, 0.9), (1.0, 0.9), (1.0, 1.0)])
def test_rejects_one_changed_token_at_its_position(oracle260k, temperature, topp):
    result, text = run_report(oracle260k, temperature, topp, 5, 100, None)
    pos = 57
    wrong = lowest_logit_token(oracle260k, result.token_ids, result.prompt_ids, pos)
    assert wrong != result.token_ids[pos]
    verdict = check(oracle260k, replace_token(text, pos, wrong))
    assert not verdict.ok
    assert verdict.position == pos
    assert verdict.actual_id == wrong
    assert verdict.expected_id == result.token_ids[pos]
    assert verdict.gap is not None and verdict.gap > 1e-3
    assert f"position {pos}:" in str(verdict)
    expected_context = oracle260k.tokenizer.decode_sequence(result.token_ids[:pos])[-20:].decode()
    assert expected_context.replace("\n", "\\n") in verdict.context_text


def test_rejects_a_changed_forced_prompt_token(oracle260k):
    result, text = run_report(oracle260k, 0.0, 0.9, 1, 40, b"Once upon a time")
    verdict = check(oracle260k, replace_token(text, 1, 300))
    assert not verdict.ok and verdict.position == 1 and "forced prompt position" in verdict.message


def test_rejects_crc_and_size_mismatches(oracle260k):
    _, text = run_report(oracle260k, 0.0, 0.9, 1, 20, None)
    bad_model = re.sub(r"^(model bytes=\d+ crc32=)[0-9a-f]{8}", r"\g<1>deadbeef", text, flags=re.M)
    verdict = check(oracle260k, bad_model)
    assert not verdict.ok and "model mismatch" in verdict.message and "deadbeef" in verdict.message
    bad_tok = re.sub(r"^tokenizer bytes=\d+", "tokenizer bytes=5", text, flags=re.M)
    verdict = check(oracle260k, bad_tok)
    assert not verdict.ok and "tokenizer mismatch" in verdict.message
    bad_header = text.replace(" kv_heads=4 ", " kv_heads=8 ")
    verdict = check(oracle260k, bad_header)
    assert not verdict.ok and "kv_heads=8" in verdict.message


def test_rejects_missing_done_line(oracle260k):
    _, text = run_report(oracle260k, 0.0, 0.9, 1, 20, None)
    truncated = "\n".join(line for line in text.splitlines() if not line.startswith("done ")) + "\n"
    verdict = check(oracle260k, truncated)
    assert not verdict.ok and "no done line" in verdict.message


def test_rejects_prompt_mismatch(oracle260k):
    _, text = run_report(oracle260k, 0.0, 0.9, 1, 20, b"Once upon a time")
    other = text.replace("prompt_hex=" + b"Once upon a time".hex(), "prompt_hex=" + b"Once upon a tide".hex())
    verdict = check(oracle260k, other)
    assert not verdict.ok and "prompt mismatch" in verdict.message


def test_rejects_a_run_that_stops_early_without_bos(oracle260k):
    _, text = run_report(oracle260k, 0.0, 0.9, 1, 20, None)
    lines = [line for line in text.splitlines() if not line.startswith("token pos=19 ")]
    lines = [line.replace("done tokens=20", "done tokens=19") for line in lines]
    verdict = check(oracle260k, "\n".join(lines) + "\n")
    assert not verdict.ok and "without producing BOS" in verdict.message


def test_near_tie_within_tolerance_is_accepted(oracle260k):
    """Swap in the runner-up where the best two logits are closest, and set tol just above that gap."""
    result, text = run_report(oracle260k, 0.0, 0.9, 1, 200, None)
    logits = oracle260k.transformer.logits_for_sequence([1] + result.token_ids[:-1])
    top2 = np.sort(logits, axis=1)[:, -2:]
    pos = int(np.argmin(top2[:, 1] - top2[:, 0]))
    gap = float(top2[pos, 1] - top2[pos, 0])
    runner_up = int(np.argsort(logits[pos])[-2])
    # keep the rest of the run consistent: everything after pos is truncated away (steps shrink to match)
    lines = [l for l in text.splitlines() if not (l.startswith("token ") and int(l.split()[1][4:]) > pos)]
    lines = [re.sub(r"^done tokens=\d+", f"done tokens={pos + 1}", l) for l in lines]
    lines = [re.sub(r" steps=\d+ ", f" steps={pos + 1} ", l) for l in lines]
    tampered = replace_token("\n".join(lines) + "\n", pos, runner_up)
    o = oracle260k
    assert verify(o.checkpoint.path, o.tokenizer.path, parse_report(tampered), tol=gap * 1.01, oracle=o).ok
    strict = verify(o.checkpoint.path, o.tokenizer.path, parse_report(tampered), tol=gap * 0.5, oracle=o)
    assert not strict.ok and strict.position == pos


@pytest.mark.parametrize("name", ["gqa-512", "unshared-512", "odd-hidden-mqa"])
def test_generated_shapes_verify(name):
    shape = SHAPES[name]
    oracle = Oracle.load(cached_checkpoint(name), cached_tokenizer(shape.vocab_size))
    for temperature, topp in ((0.0, 0.9), (0.9, 0.9), (1.0, 1.0)):
        _, text = run_report(oracle, temperature, topp, 11, 60, b"ab cd")
        verdict = check(oracle, text)
        assert verdict.ok, str(verdict)


def test_cli_verify_exit_codes(oracle260k, tmp_path, monkeypatch, capsys):
    _, text = run_report(oracle260k, 0.7, 0.9, 3, 40, None)
    good = tmp_path / "good.txt"
    good.write_text(text)
    bad = tmp_path / "bad.txt"
    bad.write_text(replace_token(text, 30, 0))
    monkeypatch.setattr(harness.cli, "COMMAND_MODULES", ("harness.commands.oracle",))
    model, tok = str(oracle260k.checkpoint.path), str(oracle260k.tokenizer.path)
    assert harness.cli.main(["oracle", model, "-z", tok, "--verify", str(good)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    assert harness.cli.main(["oracle", model, "-z", tok, "--verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL: position 30:") and out.count("\n") == 1


def test_report_on_stdout_splits_and_verifies(oracle260k, monkeypatch, capfdbinary):
    """`-r -` puts the report after the text; split_stdout recovers both and the report verifies."""
    from harness.formats.report import split_stdout

    monkeypatch.setattr(harness.cli, "COMMAND_MODULES", ("harness.commands.oracle",))
    model, tok = str(oracle260k.checkpoint.path), str(oracle260k.tokenizer.path)
    argv = ["oracle", model, "-z", tok, "-t", "0.9", "-s", "17", "-n", "64", "-i", "Zoë and 日"]
    assert harness.cli.main(argv + ["-r", "-"]) == 0
    combined = capfdbinary.readouterr().out
    assert harness.cli.main(argv) == 0
    plain = capfdbinary.readouterr().out
    text, report = split_stdout(combined)
    assert text == plain
    assert report.args.prompt == "Zoë and 日".encode()
    assert verify(model, tok, report, oracle=oracle260k).ok


def test_coin_near_a_cdf_boundary_is_accepted_within_tolerance(oracle260k):
    """Replace a sampled token by its cdf neighbour where the coin was closest to their shared boundary."""
    from harness.oracle.rng import XorShiftRng
    from harness.oracle.sampler import apply_temperature

    result, text = run_report(oracle260k, 1.0, 1.0, 21, 200, None)
    logits = oracle260k.transformer.logits_for_sequence([1] + result.token_ids[:-1])
    rng = XorShiftRng(21)
    best = None
    for pos, token in enumerate(result.token_ids):
        coin = float(rng.next_f32())
        cdf = np.add.accumulate(apply_temperature(logits[pos], np.float32(1.0)), dtype=np.float32)
        if token + 1 < len(cdf):
            distance = float(cdf[token]) - coin  # the neighbour token + 1 starts at cdf[token]
            if best is None or distance < best[0]:
                best = (distance, pos, token + 1)
    distance, pos, neighbour = best
    assert 0 < distance < 0.01
    lines = [l for l in text.splitlines() if not (l.startswith("token ") and int(l.split()[1][4:]) > pos)]
    lines = [re.sub(r"^done tokens=\d+", f"done tokens={pos + 1}", l) for l in lines]
    lines = [re.sub(r" steps=\d+ ", f" steps={pos + 1} ", l) for l in lines]
    tampered = parse_report(replace_token("\n".join(lines) + "\n", pos, neighbour))
    o = oracle260k
    # at T=1 the cdf tolerance equals tol
    assert verify(o.checkpoint.path, o.tokenizer.path, tampered, tol=distance * 1.05, oracle=o).ok
    strict = verify(o.checkpoint.path, o.tokenizer.path, tampered, tol=distance * 0.5, oracle=o)
    assert not strict.ok and strict.position == pos and "cdf interval" in strict.message
