"""The oracle prints what llama2.c `run` prints: checked against published llama2.c outputs for stories260K, and
the one generate loop (run_generation) against run.c's loop written out here."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import harness.cli
from harness.formats.report import parse_report
from harness.judge.verify import oracle_report_text, verify
from harness.models.downloads import FixtureError, resolve
from harness.models.modelgen import SHAPES, write_checkpoint, write_tokenizer
from harness.oracle import generate, generate_text
from harness.oracle.generate import Oracle, RunArgs, c_atof, c_atoi, clamp_args, run_generation
from harness.oracle.sampler import Sampler
from tests.support.port_helpers import fixture

# llama2.c `run stories260K.bin -z tok512.bin -t 0 -n 200`, as published in llama2.c's own test_all.py (which
# compares stdout after .strip(); run prints one more "\n" after the text).
ARGMAX_200 = (
    b"Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw"
    b" a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said, \"Lily, let's go to the"
    b" park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find"
    b" it.\"\nLily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n"
    b"Lily didn't want to help her mom, so she"
)
# llama2.c (commit 7ac65cb) with -t 1 -p 1 -s 42 -n 200 and -t 1 -p 0.95 -s 42 -n 200, as recorded by a
# public port's test script (shell $(...) strips the final newline).
SAMPLED_P1_S42 = (
    b"Once upon a time, there was a big roof. The fox was ready to look for people inside. He saw a big rock near a"
    b" big tree. The roof was very small and fun! He ate the roof too. He got a shiny stool, so he sicked the roof"
    b" with his friend, the girl named Mia.\n\"Help, Mia. Why are you sad, Mia?\" she asked.\n\"I want to try us,\""
    b" Mia said. \"It is cute. We have to find one of smells!\"\nMia felt proud of"
)
SAMPLED_P095_S42 = (
    b"Once upon a time, there was a little boy named Timmy. Timmy loved going to the park with his mom. One day,"
    b" Lily went outside to play outside in her pocket. He was scared and didn't know where to buy some colorful"
    b" animals.\nLater that day, Timmy's mom came outside and saw Timmy just playing in the shore. She didn't see"
    b" that made him happy, but Timmy's mom said he had to sort his cobwebs and write cold colors. Timmy asked his"
    b" mom if he was amazed! His mom"
)


def real_fixture(name: str):
    try:
        return resolve(name, allow_download=False)
    except FixtureError as error:
        pytest.skip(f"real fixture unavailable: {error}")


@pytest.fixture(scope="module")
def model260k():
    return real_fixture("stories260K.bin"), real_fixture("tok512.bin")


def run_cli(argv: list[str], monkeypatch, capfdbinary) -> tuple[int, bytes, bytes]:
    monkeypatch.setattr(harness.cli, "COMMAND_MODULES", ("harness.commands.oracle",))
    code = harness.cli.main(argv)
    out, err = capfdbinary.readouterr()
    return code, out, err


def test_argmax_story_is_llama2c_output(model260k):
    text = generate_text(*model260k, temperature=0.0, steps=200)
    assert text.startswith(b"Once upon a time, there was a little girl named Lily. "
                           b"She loved to play outside in the park.")
    assert text == ARGMAX_200 + b"\n"
    assert len(text.rstrip(b"\n")) == 464


@pytest.mark.parametrize("topp, expected", [(1.0, SAMPLED_P1_S42), (0.95, SAMPLED_P095_S42)])
def test_seeded_sampling_is_llama2c_output(model260k, topp, expected):
    assert generate_text(*model260k, temperature=1.0, topp=topp, seed=42, steps=200) == expected + b"\n"


def test_cli_prints_exactly_the_text(model260k, monkeypatch, capfdbinary):
    model, tok = map(str, model260k)
    code, out, err = run_cli(["oracle", model, "-z", tok, "-t", "0", "-n", "200"], monkeypatch, capfdbinary)
    assert code == 0
    assert out == ARGMAX_200 + b"\n"
    assert err == b""


def test_cli_clamps_like_run_c(model260k, monkeypatch, capfdbinary):
    model, tok = map(str, model260k)
    base = ["oracle", model, "-z", tok, "-s", "7", "-i", "Tom"]
    _, reference, _ = run_cli(base + ["-t", "0", "-p", "0.9", "-n", "512"], monkeypatch, capfdbinary)
    # negative temperature -> 0, topp outside [0, 1] -> 0.9, steps 0 or > seq_len -> seq_len
    _, clamped, _ = run_cli(base + ["-t", "-3", "-p", "1.5", "-n", "0"], monkeypatch, capfdbinary)
    _, too_many, _ = run_cli(base + ["-t", "0", "-n", "99999"], monkeypatch, capfdbinary)
    assert clamped == reference == too_many
    assert reference.startswith(b"Tom")


def test_steps_zero_runs_to_seq_len_or_bos(model260k):
    result = generate(*model260k, temperature=0.0, steps=0)
    assert result.args.steps == 512
    assert len(result.token_ids) == 512 or result.token_ids[-1] == 1


def test_prompt_tokens_are_forced_and_printed(model260k):
    result = generate(*model260k, temperature=0.0, steps=30, prompt="One day, a cat")
    assert result.text.startswith(b"One day, a cat")
    forced = len(result.prompt_ids) - 1
    assert result.token_ids[:forced] == result.prompt_ids[1:]


def test_steps_shorter_than_prompt_stop_inside_it(model260k):
    result = generate(*model260k, temperature=0.0, steps=2, prompt="One day, a cat sat")
    assert len(result.token_ids) == 2
    assert result.token_ids == result.prompt_ids[1:3]


def test_seed_zero_uses_the_clock_and_negative_seeds_wrap():
    assert clamp_args(512, seed=0).seed != 0
    assert clamp_args(512, seed=-5).seed == (1 << 64) - 5


def test_c_number_parsing():
    assert c_atof("0.5abc") == 0.5
    assert c_atof("abc") == 0.0
    assert c_atof(" -1e-1") == -0.1
    assert c_atoi("12x") == 12
    assert c_atoi("x") == 0
    assert c_atoi("4294967297") == 1  # strtol result truncated to int


def test_bad_checkpoint_is_one_line_error(tmp_path, monkeypatch, capfdbinary, model260k):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x01\x00\x00\x00" * 3)
    code, out, err = run_cli(["oracle", str(bad), "-z", str(model260k[1])], monkeypatch, capfdbinary)
    assert code == 1
    assert out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llama98-harness: error: ") and "bad.bin" in lines[0]


def test_chat_mode_is_refused(model260k, monkeypatch, capfdbinary):
    model, tok = map(str, model260k)
    code, _, err = run_cli(["oracle", model, "-z", tok, "-m", "chat"], monkeypatch, capfdbinary)
    assert code == 2
    assert b"only -m generate" in err


def test_cli_writes_a_report_verify_accepts(model260k, monkeypatch, capfdbinary, tmp_path):
    model, tok = map(str, model260k)
    report_path = tmp_path / "oracle.report"
    code, out, _ = run_cli(["oracle", model, "-z", tok, "-t", "0.8", "-s", "5", "-n", "40", "-i", "Tom",
                            "-r", str(report_path)], monkeypatch, capfdbinary)
    assert code == 0
    oracle = Oracle.load(model, tok)
    result = oracle.generate(clamp_args(512, 0.8, 0.9, 5, 40, b"Tom"))
    assert out == result.text
    assert report_path.read_text() == oracle_report_text(oracle, result)
    assert verify(model, tok, parse_report(report_path.read_text()), oracle=oracle).ok


def test_the_oracle_does_not_know_the_report_format():
    """The oracle only computes: importing every oracle module must not load the `-r` report format."""
    oracle_dir = Path(harness.cli.__file__).parent / "oracle"
    modules = sorted("harness." + ".".join(p.relative_to(oracle_dir.parent).with_suffix("").parts)
                     for p in oracle_dir.rglob("*.py"))
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name.removesuffix('.__init__'))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('harness.formats.report', 'harness.judge'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "harness.oracle.checkpoint.l98m" in modules and out.strip() == "[]"


# The one loop, checked against run.c's generate loop as run.c writes it (run.c `generate`): the first prompt id
# is fed at position 0, every later prompt id is forced, then ids are sampled; any next id equal to BOS (1) ends
# the run; each printed piece is decoded after the one before it (the leading-space rule after BOS).
def reference_llama2c(oracle: Oracle, args: RunArgs) -> tuple[list[int], list[int], bytes]:
    prompt = oracle.tokenizer.encode(args.prompt or b"", bos=True, eos=False)
    sampler = Sampler.create(float(args.temperature), float(args.topp), args.seed)
    cache = oracle.transformer.new_cache(args.steps)
    ids: list[int] = []
    text = b""
    token, pos = prompt[0], 0
    while pos < args.steps:
        logits = oracle.transformer.step(token, pos, cache)
        if pos < len(prompt) - 1:
            next_id = prompt[pos + 1]
        else:
            next_id = sampler.sample(logits)
        pos += 1
        ids.append(next_id)
        if next_id == 1:
            break
        text += oracle.tokenizer.decode(token, next_id)
        token = next_id
    return prompt, ids, text + b"\n"


RUNS = [(0.0, 0.9, 1, 0, None), (1.0, 0.9, 42, 0, None), (0.8, 1.0, 7, 150, "The dog ran"),
        (1.1, 0.5, 3, 120, "Émile saw a café ☕"), (1.0, 0.9, 5, 3, "Once upon a time")]


@pytest.fixture(scope="module")
def generated_llama2c(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    base = tmp_path_factory.mktemp("loop")
    model = write_checkpoint(base / "m.bin", SHAPES["gqa-512"], seed=9, version=1)
    return Oracle.load(model, write_tokenizer(base / "tok.bin", 512, seed=2))


@pytest.mark.parametrize("which", ["stories260K", "generated"])
def test_the_loop_is_run_c_loop(which, generated_llama2c):
    oracle = Oracle.load(fixture("stories260K.bin"), fixture("tok512.bin")) if which == "stories260K" \
        else generated_llama2c
    bos_stops = 0
    for temperature, topp, seed, steps, prompt in RUNS:
        args = clamp_args(oracle.checkpoint.config.seq_len, temperature, topp, seed, steps,
                          prompt.encode() if prompt else None)
        result = oracle.generate(args)
        assert (result.prompt_ids, result.token_ids, result.text) == reference_llama2c(oracle, args)
        bos_stops += result.token_ids[-1] == 1
    if which == "stories260K":
        assert bos_stops  # the stop rule was exercised: stories end at BOS long before seq_len


@dataclass
class ScriptedModel:
    """A stand-in transformer whose logits at position p make `script[p]` the argmax."""

    script: list[int]
    vocab: int = 16

    def new_cache(self, capacity: int) -> None:
        return None

    def step(self, token: int, pos: int, cache: None) -> np.ndarray:
        logits = np.zeros(self.vocab, dtype=np.float32)
        logits[self.script[pos]] = 1.0
        return logits


@dataclass
class RecordingRules:
    """Rules that stop at `stops` (sampled or, when `in_prompt`, forced too) and record what the loop asks."""

    prompt: list[int]
    stops: set[int]
    in_prompt: bool
    asked: list[tuple[int, bool]] = field(default_factory=list)

    def encode_prompt(self, prompt: bytes | None) -> list[int]:
        return list(self.prompt)

    def is_stop(self, token: int, sampled: bool) -> bool:
        self.asked.append((token, sampled))
        return token in self.stops and (sampled or self.in_prompt)

    def decode(self, prev: int, token: int) -> bytes:
        return f"{prev}>{token} ".encode()


def greedy(steps: int) -> RunArgs:
    return RunArgs(np.float32(0.0), np.float32(0.9), 1, steps, None)


def test_the_loop_asks_the_rules():
    model = ScriptedModel([0, 0, 8, 9, 3, 4, 4])
    rules = RecordingRules([5, 6, 3], stops={3}, in_prompt=False)
    result = run_generation(model, rules, greedy(7))  # type: ignore[arg-type]
    # position 0 feeds 5 and forces 6, position 1 forces 3 (a stop id, but forced), then 8, 9 and 3 are sampled
    assert rules.asked == [(6, False), (3, False), (8, True), (9, True), (3, True)]
    assert (result.prompt_ids, result.token_ids) == ([5, 6, 3], [6, 3, 8, 9, 3])
    assert result.text == b"5>6 6>3 3>8 8>9 \n"  # the stop id is not printed; run.c's final newline is
    stopped_in_prompt = run_generation(model, RecordingRules([5, 6, 3], {3}, in_prompt=True), greedy(7))  # type: ignore[arg-type]
    assert stopped_in_prompt.token_ids == [6, 3] and stopped_in_prompt.text == b"5>6 \n"
    short = run_generation(model, RecordingRules([5, 6, 3], set(), in_prompt=False), greedy(4))  # type: ignore[arg-type]
    assert short.token_ids == [6, 3, 8, 9] and short.text == b"5>6 6>3 3>8 8>9 \n"
