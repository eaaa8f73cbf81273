"""The oracle prints what llama2.c `run` prints: checked against published llama2.c outputs for stories260K."""

from __future__ import annotations

import pytest

import harness.cli
from harness.models.downloads import FixtureError, resolve
from harness.oracle import generate, generate_text
from harness.oracle.generate import c_atof, c_atoi, clamp_args

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
