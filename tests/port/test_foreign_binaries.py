"""Foreign llama2.c-style binaries judged text-level on the host: a fork-style build of our sources is right at
T=0 and at a seeded T>0 with a prompt, a build with another RoPE base is wrong at a named byte and token, and the
kind of a binary is detected from what it contains."""

from __future__ import annotations

from pathlib import Path

from harness.models.names import choose_model
from harness.run.judged import choose_cli, detect_cli, judge_foreign
from harness.run.session import PortArgs
from tests.support.foreign_helpers import WRONG_ROPE, fork_binary
from tests.support.port_helpers import fixture, run_port


def _run(binary: Path, args: PortArgs) -> bytes:
    model, tokenizer = fixture("stories260K.bin"), fixture("tok512.bin")
    argv = args.argv(str(model), str(tokenizer), cli="llama2c")
    assert "-r" not in argv
    result = run_port(binary, argv)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_kind_of_binary_is_detected_from_its_report_string(native_bin: Path) -> None:
    fork = fork_binary("native")
    assert detect_cli(native_bin) == "llama98" and detect_cli(fork) == "llama2c"
    assert choose_cli("auto", fork) == "llama2c" and choose_cli("auto", None) == "llama98"
    assert choose_cli("llama98", fork) == "llama98"


def test_fork_style_build_is_ok_at_t0_and_seeded_t_with_a_prompt() -> None:
    fork = fork_binary("native")
    choice = choose_model(str(fixture("stories260K.bin")), str(fixture("tok512.bin")), allow_download=False)
    greedy = PortArgs(temperature=0.0, steps=150)
    output = _run(fork, greedy)
    assert output.startswith(b"llama2.c for Windows 98 (test fork)\n")  # chatter before the text
    verdict = judge_foreign(choice, greedy, output)
    assert verdict.ok, verdict.message
    assert verdict.text.startswith(b"Once upon a time") and verdict.level == "text-level"
    sampled = PortArgs(temperature=0.9, topp=0.85, seed=2024, steps=150, prompt=b"The cat")
    verdict = judge_foreign(choice, sampled, _run(fork, sampled))
    assert verdict.ok, verdict.message
    assert verdict.text.startswith(b"The cat")


def test_another_rope_base_diverges_at_a_named_byte_and_token() -> None:
    wrong = fork_binary("native", WRONG_ROPE)
    choice = choose_model(str(fixture("stories260K.bin")), str(fixture("tok512.bin")), allow_download=False)
    args = PortArgs(temperature=0.0, steps=200)
    verdict = judge_foreign(choice, args, _run(wrong, args))
    assert not verdict.ok
    assert verdict.divergence_byte is not None and verdict.divergence_byte > 0  # position 0 has no rotation
    assert verdict.divergence_token is not None and verdict.candidates
    assert f"at byte {verdict.divergence_byte}" in verdict.message and "top candidates" in verdict.message
    assert verdict.oracle_text.startswith(verdict.text)  # agreed up to the divergence
